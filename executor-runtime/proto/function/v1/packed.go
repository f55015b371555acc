package functionv1

import (
	"bytes"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is written by hand: the dense encoding of protocol version 2, the byte strings
// PackedBatch.records and PackedResult.records (docs/function-protocol.md, "Protocol version 2").
// A record costs a few bytes of framing instead of a nested message with a tag per field, its
// offset and timestamp are deltas, and an output that repeats its input's key or value carries
// a flag instead of the bytes. The outer messages are plain protobuf, so any language's protobuf
// library reads them; only the records strings need this encoding.

// ProtocolVersionPacked is the protocol version that adds PackedBatch and PackedResult.
const ProtocolVersionPacked = 2

// ProtocolVersionState is the protocol version that carries state in the packed messages: the
// function returns its state writes in PackedResult.state and keeps the state it read while
// PackedBatch.state_generation stays the same (docs/function-protocol.md, "Protocol version 3").
const ProtocolVersionState = 3

// Output flags of a PackedResult record.
const (
	PackedKeyFromInput   = 1 << 0 // the output's key is the input's: no key bytes follow
	PackedValueFromInput = 1 << 1 // the output's value is the input's: no value bytes follow
	PackedTimestamp      = 1 << 2 // a timestamp follows; otherwise the output has the input's
	PackedHeaders        = 1 << 3 // headers follow
	PackedStreamName     = 1 << 4 // a stream name follows, instead of an index in the flags
	packedStreamShift    = 5      // flags >> 5: 0 the only stream, i output_streams[i-1]
)

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func appendBytes(b, v []byte) []byte {
	return append(protowire.AppendVarint(b, uint64(len(v))), v...)
}

func sizeBytes(n int) int { return protowire.SizeVarint(uint64(n)) + n }

// PackedRecordSize is the encoded size of one record of a PackedBatch, without its headers'
// own bytes (add PackedHeaderSize for each).
func PackedRecordSize(offsetDelta, timestampDelta int64, key, value []byte, headers int) int {
	return protowire.SizeVarint(zigzag(offsetDelta)) + protowire.SizeVarint(zigzag(timestampDelta)) +
		sizeBytes(len(key)) + sizeBytes(len(value)) + protowire.SizeVarint(uint64(headers))
}

// PackedHeaderSize is the encoded size of one header.
func PackedHeaderSize(key string, value []byte) int {
	return sizeBytes(len(key)) + sizeBytes(len(value))
}

// AppendPackedRecord appends a record of a PackedBatch: offsetDelta is its offset minus the
// previous record's plus one (for the first record, minus base_offset), timestampDelta its
// timestamp minus the previous record's (the first: minus base_timestamp_ms). headers headers
// must follow, each appended by AppendPackedHeader.
func AppendPackedRecord(b []byte, offsetDelta, timestampDelta int64, key, value []byte, headers int) []byte {
	b = protowire.AppendVarint(b, zigzag(offsetDelta))
	b = protowire.AppendVarint(b, zigzag(timestampDelta))
	b = appendBytes(b, key)
	b = appendBytes(b, value)
	return protowire.AppendVarint(b, uint64(headers))
}

// AppendPackedHeader appends one header of a record or an output.
func AppendPackedHeader(b []byte, key string, value []byte) []byte {
	b = protowire.AppendVarint(b, uint64(len(key)))
	b = append(b, key...)
	return appendBytes(b, value)
}

// PackedBatchRequestSize is the size of a ProcessRequest that carries b (whose Records field is
// ignored) with records of recordsLen bytes.
func PackedBatchRequestSize(b *PackedBatch, recordsLen int) int {
	n := b.headerSize(recordsLen)
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

func (b *PackedBatch) headerSize(recordsLen int) int {
	n := 0
	if b.Id != 0 {
		n += 1 + protowire.SizeVarint(b.Id)
	}
	for _, s := range []string{b.StateSession, b.Stream, b.Topic} {
		if s != "" {
			n += 1 + sizeBytes(len(s))
		}
	}
	if b.Partition != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.Partition))
	}
	if b.Count != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.Count))
	}
	if b.BaseOffset != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.BaseOffset))
	}
	if b.BaseTimestampMs != 0 {
		n += 1 + protowire.SizeVarint(uint64(b.BaseTimestampMs))
	}
	if recordsLen > 0 {
		n += 1 + sizeBytes(recordsLen)
	}
	if b.StateGeneration != 0 {
		n += 1 + protowire.SizeVarint(b.StateGeneration)
	}
	if b.StateInterval != 0 {
		n += 1 + protowire.SizeVarint(b.StateInterval)
	}
	return n
}

// AppendPackedBatchRequest appends a ProcessRequest{packed_batch: b} up to the records, whose
// recordsLen bytes the caller appends next: a sender can then encode the records straight into
// the message, with no Record messages and no copy of the records string.
func AppendPackedBatchRequest(buf []byte, b *PackedBatch, recordsLen int) []byte {
	buf = protowire.AppendTag(buf, 3, protowire.BytesType)
	buf = protowire.AppendVarint(buf, uint64(b.headerSize(recordsLen)))
	if b.Id != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 1, protowire.VarintType), b.Id)
	}
	for i, s := range []string{b.StateSession, b.Stream, b.Topic} {
		if s != "" {
			buf = protowire.AppendString(protowire.AppendTag(buf, protowire.Number(2+i), protowire.BytesType), s)
		}
	}
	if b.Partition != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 5, protowire.VarintType), uint64(b.Partition))
	}
	if b.Count != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 6, protowire.VarintType), uint64(b.Count))
	}
	if b.BaseOffset != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 7, protowire.VarintType), uint64(b.BaseOffset))
	}
	if b.BaseTimestampMs != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 8, protowire.VarintType), uint64(b.BaseTimestampMs))
	}
	if recordsLen > 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 9, protowire.BytesType), uint64(recordsLen))
	}
	return buf
}

// AppendPackedBatchTrailer appends the fields of b that follow the records (protocol version 3's
// state_generation and state_interval), after the records AppendPackedBatchRequest announced:
// the message then has its fields in number order, as protobuf's own marshaller writes them.
func AppendPackedBatchTrailer(buf []byte, b *PackedBatch) []byte {
	if b.StateGeneration != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 10, protowire.VarintType), b.StateGeneration)
	}
	if b.StateInterval != 0 {
		buf = protowire.AppendVarint(protowire.AppendTag(buf, 11, protowire.VarintType), b.StateInterval)
	}
	return buf
}

var errPackedShort = errors.New("packed records: truncated")

type packedReader struct{ data []byte }

func (r *packedReader) varint() (uint64, error) {
	v, n := protowire.ConsumeVarint(r.data)
	if n < 0 {
		return 0, errPackedShort
	}
	r.data = r.data[n:]
	return v, nil
}

func (r *packedReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.data)) {
		return nil, errPackedShort
	}
	v := r.data[:n:n]
	r.data = r.data[n:]
	if n == 0 {
		return nil, nil
	}
	return v, nil
}

func (r *packedReader) headers(n uint64) ([]*Header, error) {
	if n > uint64(len(r.data)) {
		return nil, errPackedShort
	}
	hs := make([]Header, n)
	ptrs := make([]*Header, n)
	for i := range hs {
		k, err := r.bytes()
		if err != nil {
			return nil, err
		}
		v, err := r.bytes()
		if err != nil {
			return nil, err
		}
		hs[i] = Header{Key: string(k), Value: v}
		ptrs[i] = &hs[i]
	}
	return ptrs, nil
}

// Unpack decodes p into m, the Batch with the same records (keys and values alias p.Records).
func (m *Batch) Unpack(p *PackedBatch) error { return m.unpack(p, nil) }

func (m *Batch) unpack(p *PackedBatch, sl *batchSlabs) error {
	if sl == nil {
		sl = &batchSlabs{}
	} else {
		sl.reset()
	}
	*m = Batch{Id: p.Id, StateSession: p.StateSession, Stream: p.Stream, Topic: p.Topic, Partition: p.Partition}
	// Each record takes at least 5 bytes: a count beyond that is corrupt, not a reason to allocate.
	if uint64(p.Count) > uint64(len(p.Records)) {
		return fmt.Errorf("packed batch %d: %d records in %d bytes", p.Id, p.Count, len(p.Records))
	}
	if cap(sl.ptrs) < int(p.Count) {
		sl.ptrs = make([]*Record, 0, p.Count)
	}
	m.Records = sl.ptrs[:0]
	r := packedReader{p.Records}
	offset, ts := p.BaseOffset, p.BaseTimestampMs
	for i := 0; i < int(p.Count); i++ {
		rec := sl.next()
		d, err := r.varint()
		if err != nil {
			return fmt.Errorf("packed batch %d, record %d: %w", p.Id, i, err)
		}
		offset += unzigzag(d)
		d, err = r.varint()
		if err != nil {
			return fmt.Errorf("packed batch %d, record %d: %w", p.Id, i, err)
		}
		ts += unzigzag(d)
		rec.Offset, rec.TimestampMs = offset, ts
		if rec.Key, err = r.bytes(); err == nil {
			rec.Value, err = r.bytes()
		}
		var nh uint64
		if err == nil {
			nh, err = r.varint()
		}
		if err == nil && nh > 0 {
			rec.Headers, err = r.headers(nh)
		}
		if err != nil {
			return fmt.Errorf("packed batch %d, record %d: %w", p.Id, i, err)
		}
		m.Records = append(m.Records, rec)
		offset++
	}
	sl.ptrs = m.Records[:0]
	if len(r.data) != 0 {
		return fmt.Errorf("packed batch %d: %d bytes after %d records", p.Id, len(r.data), p.Count)
	}
	return nil
}

// Pack encodes the records of m as PackedBatch.records, with m's fields in the other fields.
// The I/O sidecar encodes from Kafka records directly; Pack is the reference and the encoder for
// tests and tools.
func (m *Batch) Pack() *PackedBatch {
	p := &PackedBatch{Id: m.Id, StateSession: m.StateSession, Stream: m.Stream, Topic: m.Topic, Partition: m.Partition, Count: uint32(len(m.Records))}
	if len(m.Records) > 0 {
		p.BaseOffset, p.BaseTimestampMs = m.Records[0].Offset, m.Records[0].TimestampMs
	}
	offset, ts := p.BaseOffset, p.BaseTimestampMs
	var b []byte
	for _, r := range m.Records {
		b = AppendPackedRecord(b, r.Offset-offset, r.TimestampMs-ts, r.Key, r.Value, len(r.Headers))
		for _, h := range r.Headers {
			b = AppendPackedHeader(b, h.Key, h.Value)
		}
		offset, ts = r.Offset+1, r.TimestampMs
	}
	p.Records = b
	return p
}

// AppendPackedResult appends the result rr of the input record in to PackedResult.records.
// streamIndex maps an output stream name to its position in Open.output_streams plus one, or
// false when the name is not among them (the name is then sent as such).
func AppendPackedResult(b []byte, in *Record, rr *RecordResult, streamIndex func(string) (int, bool)) []byte {
	if rr.Error != "" {
		b = protowire.AppendVarint(b, 1)
		return protowire.AppendString(b, rr.Error)
	}
	b = protowire.AppendVarint(b, 2*uint64(len(rr.Outputs)))
	for _, o := range rr.Outputs {
		var flags uint64
		if len(o.Key) > 0 && bytes.Equal(o.Key, in.Key) {
			flags |= PackedKeyFromInput
		}
		if len(o.Value) > 0 && bytes.Equal(o.Value, in.Value) {
			flags |= PackedValueFromInput
		}
		if o.TimestampMs != 0 && o.TimestampMs != in.TimestampMs {
			flags |= PackedTimestamp
		}
		if len(o.Headers) > 0 {
			flags |= PackedHeaders
		}
		if o.Stream != "" {
			if i, ok := streamIndex(o.Stream); ok {
				flags |= uint64(i) << packedStreamShift
			} else {
				flags |= PackedStreamName
			}
		}
		b = protowire.AppendVarint(b, flags)
		if flags&PackedStreamName != 0 {
			b = protowire.AppendString(b, o.Stream)
		}
		if flags&PackedKeyFromInput == 0 {
			b = appendBytes(b, o.Key)
		}
		if flags&PackedValueFromInput == 0 {
			b = appendBytes(b, o.Value)
		}
		if flags&PackedTimestamp != 0 {
			b = protowire.AppendVarint(b, zigzag(o.TimestampMs))
		}
		if flags&PackedHeaders != 0 {
			b = protowire.AppendVarint(b, uint64(len(o.Headers)))
			for _, h := range o.Headers {
				b = AppendPackedHeader(b, h.Key, h.Value)
			}
		}
	}
	return b
}

// PackedOutput is one output of a PackedResult record, as PackedResultReader decodes it.
type PackedOutput struct {
	// StreamIndex is 0 for the only output stream, i for Open.output_streams[i-1]; Stream is set
	// instead when the function named a stream that is not among them.
	StreamIndex int
	Stream      string
	// KeyFromInput and ValueFromInput say the output repeats the input's key or value; Key and
	// Value are then nil.
	KeyFromInput, ValueFromInput bool
	Key, Value                   []byte
	// TimestampMs is 0 for the input's timestamp.
	TimestampMs int64
	Headers     []*Header
}

// PackedResultReader decodes PackedResult.records record by record.
type PackedResultReader struct {
	r packedReader
}

// NewPackedResultReader reads records.
func NewPackedResultReader(records []byte) PackedResultReader {
	return PackedResultReader{packedReader{records}}
}

// Next reads the head of the next record's result: an error text, or the number of outputs
// that ReadOutput then reads.
func (p *PackedResultReader) Next() (errText string, outputs int, err error) {
	head, err := p.r.varint()
	if err != nil {
		return "", 0, err
	}
	switch {
	case head == 1:
		t, err := p.r.bytes()
		if err != nil {
			return "", 0, err
		}
		if len(t) == 0 {
			return "", 0, errors.New("packed result: empty error text")
		}
		return string(t), 0, nil
	case head&1 != 0:
		return "", 0, fmt.Errorf("packed result: invalid record head %d", head)
	case head/2 > uint64(len(p.r.data)):
		return "", 0, errPackedShort
	}
	return "", int(head / 2), nil
}

// ReadOutput reads the next output of the current record into o.
func (p *PackedResultReader) ReadOutput(o *PackedOutput) error {
	flags, err := p.r.varint()
	if err != nil {
		return err
	}
	*o = PackedOutput{StreamIndex: int(flags >> packedStreamShift), KeyFromInput: flags&PackedKeyFromInput != 0, ValueFromInput: flags&PackedValueFromInput != 0}
	if flags&PackedStreamName != 0 {
		s, err := p.r.bytes()
		if err != nil {
			return err
		}
		o.Stream = string(s)
	}
	if !o.KeyFromInput {
		if o.Key, err = p.r.bytes(); err != nil {
			return err
		}
	}
	if !o.ValueFromInput {
		if o.Value, err = p.r.bytes(); err != nil {
			return err
		}
	}
	if flags&PackedTimestamp != 0 {
		u, err := p.r.varint()
		if err != nil {
			return err
		}
		o.TimestampMs = unzigzag(u)
	}
	if flags&PackedHeaders != 0 {
		n, err := p.r.varint()
		if err != nil {
			return err
		}
		if o.Headers, err = p.r.headers(n); err != nil {
			return err
		}
	}
	return nil
}

// Done reports an error if bytes are left after the last record.
func (p *PackedResultReader) Done() error {
	if len(p.r.data) != 0 {
		return fmt.Errorf("packed result: %d bytes after the last record", len(p.r.data))
	}
	return nil
}

// Unpack decodes p, the result of batch in, into the BatchResult with the same results:
// outputs that repeat the input's key or value get the input's bytes, and stream indexes become
// the names in outputStreams.
func (p *PackedResult) Unpack(in *Batch, outputStreams []string) (*BatchResult, error) {
	if int(p.Count) != len(in.Records) {
		return nil, fmt.Errorf("packed result %d: %d results for %d records", p.Id, p.Count, len(in.Records))
	}
	res := &BatchResult{Id: p.Id}
	rd := NewPackedResultReader(p.Records)
	for _, r := range in.Records {
		errText, n, err := rd.Next()
		if err != nil {
			return nil, err
		}
		rr := &RecordResult{Error: errText}
		for range n {
			var o PackedOutput
			if err := rd.ReadOutput(&o); err != nil {
				return nil, err
			}
			out := &OutputRecord{Stream: o.Stream, Key: o.Key, Value: o.Value, TimestampMs: o.TimestampMs, Headers: o.Headers}
			if o.StreamIndex > 0 {
				if o.StreamIndex > len(outputStreams) {
					return nil, fmt.Errorf("packed result %d: stream index %d of %d streams", p.Id, o.StreamIndex, len(outputStreams))
				}
				out.Stream = outputStreams[o.StreamIndex-1]
			}
			if o.KeyFromInput {
				out.Key = r.Key
			}
			if o.ValueFromInput {
				out.Value = r.Value
			}
			rr.Outputs = append(rr.Outputs, out)
		}
		res.Records = append(res.Records, rr)
	}
	return res, rd.Done()
}

// AppendPackedMutation appends one state write to a PackedResult.state string (protocol version
// 3): a head varint (0 a value, 1 a delete), the key, and for a value its bytes. The partition
// is the batch's.
func AppendPackedMutation(b, key, value []byte, del bool) []byte {
	if del {
		return appendBytes(append(b, 1), key)
	}
	return appendBytes(appendBytes(append(b, 0), key), value)
}

// PackedMutationSize is the encoded size of one state write.
func PackedMutationSize(key, value []byte, del bool) int {
	if del {
		return 1 + sizeBytes(len(key))
	}
	return 1 + sizeBytes(len(key)) + sizeBytes(len(value))
}

// PackedStateReader decodes PackedResult.state write by write.
type PackedStateReader struct {
	r packedReader
}

// NewPackedStateReader reads state.
func NewPackedStateReader(state []byte) PackedStateReader {
	return PackedStateReader{packedReader{state}}
}

// More reports whether a write is left.
func (p *PackedStateReader) More() bool { return len(p.r.data) > 0 }

// Next reads the next write; key and value alias the string. A value is never nil (an empty
// value is a value, not a delete).
func (p *PackedStateReader) Next() (key, value []byte, del bool, err error) {
	head, err := p.r.varint()
	if err != nil {
		return nil, nil, false, err
	}
	if head > 1 {
		return nil, nil, false, fmt.Errorf("packed state: invalid write head %d", head)
	}
	if key, err = p.r.bytes(); err != nil {
		return nil, nil, false, err
	}
	if head == 1 {
		return key, nil, true, nil
	}
	if value, err = p.r.bytes(); err != nil {
		return nil, nil, false, err
	}
	if value == nil {
		value = []byte{}
	}
	return key, value, false, nil
}
