// Package wirecodec is the gRPC codec of the executor runtime's sockets: the standard protobuf
// wire format (any language's protobuf library reads it), marshalled in Go by the code
// vtprotobuf generates next to the messages, which is several times cheaper per record than
// reflection-based protobuf on the hot path of the function protocol. It is installed per
// connection, never globally, so that a user's own gRPC clients in a function are unaffected.
package wirecodec

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
)

type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
	UnmarshalVTUnsafe([]byte) error
}

// pool has a tier at every power of two: gRPC clears a pooled buffer's whole capacity on Get,
// and with its default tiers (…, 32 KiB, 1 MiB) every batch-sized message would clear 1 MiB.
var pool = func() mem.BufferPool {
	var exps []uint8
	for e := uint8(8); e <= 26; e++ {
		exps = append(exps, e)
	}
	p, err := mem.NewBinaryTieredBufferPool(exps...)
	if err != nil {
		panic(err)
	}
	return p
}()

// slabMessage is a message with a hand-written decoder that allocates its records per batch
// (functionv1.ProcessRequest and ProcessResponse).
type slabMessage interface {
	UnmarshalSlab([]byte) error
}

type codec struct{}

func (codec) Name() string { return "proto" }

func fallback() encoding.CodecV2 { return encoding.GetCodecV2("proto") }

// Raw is a message its sender encoded itself, straight into a buffer of the codec's pool: Marshal
// hands that buffer to gRPC as it is, without another copy. A Raw is sent once.
type Raw struct{ buf *[]byte }

// NewRaw returns a Raw of size bytes and its buffer, empty with room for size bytes, to append
// the encoded message to (exactly size bytes).
func NewRaw(size int) (*Raw, []byte) {
	buf := pool.Get(size)
	return &Raw{buf: buf}, (*buf)[:0]
}

// Set records the encoded message, b, which must be the buffer NewRaw returned, appended to.
func (r *Raw) Set(b []byte) error {
	if len(b) != len(*r.buf) || (len(b) > 0 && &b[0] != &(*r.buf)[0]) {
		return fmt.Errorf("raw message: %d bytes encoded for %d", len(b), len(*r.buf))
	}
	return nil
}

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*Raw); ok {
		if r.buf == nil {
			return nil, errors.New("raw message sent twice")
		}
		buf := r.buf
		r.buf = nil
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	}
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	// One copy of the whole message, which the decoded message's bytes and strings then alias
	// (never returned to a pool, so never overwritten): on the hot path this replaces two
	// allocations and copies per record (key and value) with one per batch.
	b := materialize(data)
	// The messages that carry records also allocate those from slabs, one per batch.
	if sm, ok := v.(slabMessage); ok {
		return sm.UnmarshalSlab(b)
	}
	return m.UnmarshalVTUnsafe(b)
}

// materialize copies data into one new buffer, like data.Materialize, but without zeroing the
// buffer first: a batch is tens of KiB, and clearing it cost about as much as copying into it.
// strings.Builder is the standard library's way to allocate without zeroing; the buffer is
// handed out as bytes, and the string it was built as is never used again.
func materialize(data mem.BufferSlice) []byte {
	n := data.Len()
	if n == 0 {
		return nil
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, b := range data {
		sb.Write(b.ReadOnlyData())
	}
	s := sb.String()
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// Transport sizes for a local socket that carries batches of tens of KiB: a batch is written and
// read in one system call rather than in 32 KiB pieces, and HTTP/2 flow control (64 KiB windows
// by default) never makes a sender wait for window updates while a few batches are in flight.
// These are local settings of each end; the bytes on the socket are still plain gRPC.
const (
	socketBufferBytes = 512 << 10
	windowBytes       = 16 << 20
)

// DialOptions install the codec, its buffer pool and the transport sizes on a client connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{})),
		experimental.WithBufferPool(pool),
		grpc.WithWriteBufferSize(socketBufferBytes),
		grpc.WithReadBufferSize(socketBufferBytes),
		grpc.WithInitialWindowSize(windowBytes),
		grpc.WithInitialConnWindowSize(windowBytes),
	}
}

// ServerOptions install the codec, its buffer pool and the transport sizes on a server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec{}), experimental.BufferPool(pool),
		grpc.WriteBufferSize(socketBufferBytes),
		grpc.ReadBufferSize(socketBufferBytes),
		grpc.InitialWindowSize(windowBytes),
		grpc.InitialConnWindowSize(windowBytes),
	}
}
