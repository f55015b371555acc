// Package wirecodec is the gRPC codec of the executor runtime's sockets: the standard protobuf
// wire format (any language's protobuf library reads it), marshalled in Go by the code
// vtprotobuf generates next to the messages, which is several times cheaper per record than
// reflection-based protobuf on the hot path of the function protocol. It is installed per
// connection, never globally, so that a user's own gRPC clients in a function are unaffected.
package wirecodec

import (
	"fmt"

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

func (codec) Marshal(v any) (mem.BufferSlice, error) {
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
	b := data.Materialize()
	// The messages that carry records also allocate those from slabs, one per batch.
	if sm, ok := v.(slabMessage); ok {
		return sm.UnmarshalSlab(b)
	}
	return m.UnmarshalVTUnsafe(b)
}

// DialOptions install the codec and its buffer pool on a client connection.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec{})),
		experimental.WithBufferPool(pool),
	}
}

// ServerOptions install the codec and its buffer pool on a server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(codec{}), experimental.BufferPool(pool)}
}
