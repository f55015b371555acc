package functionv1

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/google/go-cmp/cmp"
)

// packedFixture is a batch with what the dense encoding must carry: offsets with gaps (compacted
// topics, transaction markers), timestamps going back, null and empty keys and values, headers,
// and a result with errors, several outputs, named, unknown and default streams, outputs that
// repeat or do not repeat the input's key and value, and explicit timestamps.
func packedFixture() (*Batch, *BatchResult, []string) {
	streams := []string{"counts", "audit"}
	batch := &Batch{Id: 9, StateSession: "s-2", Stream: "words", Topic: "t.words", Partition: 5}
	result := &BatchResult{Id: 9}
	offset, ts := int64(1<<40), int64(1_700_000_000_000)
	for i := range 40 {
		offset += 1 + int64(i%3)*7
		ts += int64(i%5) - 2
		r := &Record{Offset: offset, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "value %d", i), TimestampMs: ts}
		switch i % 6 {
		case 0:
			r.Key = nil
		case 1:
			r.Value = nil
		case 2:
			r.Headers = []*Header{{Key: "h", Value: []byte("x")}, {Key: "empty"}}
		}
		batch.Records = append(batch.Records, r)
		rr := &RecordResult{}
		switch i % 7 {
		case 0: // a filter: no output
		case 1:
			rr.Error = fmt.Sprintf("poison %d", i)
		case 2: // identity
			rr.Outputs = []*OutputRecord{{Key: r.Key, Value: r.Value, TimestampMs: r.TimestampMs, Headers: r.Headers}}
		case 3: // a map of the value, by name and by the only stream
			rr.Outputs = []*OutputRecord{{Stream: "counts", Key: r.Key, Value: []byte("V")}, {Key: r.Key, Value: []byte("W"), TimestampMs: 42}}
		case 4: // re-keyed, unknown stream
			rr.Outputs = []*OutputRecord{{Stream: "nope", Key: []byte("other"), Value: r.Value}}
		case 5:
			rr.Outputs = []*OutputRecord{{Stream: "audit", Headers: []*Header{{Key: "a", Value: []byte("b")}}}, {Stream: "counts", Key: []byte("x"), Value: []byte("y"), TimestampMs: -5}}
		case 6: // a copy with equal bytes (not the same slice) is the input's too
			rr.Outputs = []*OutputRecord{{Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...)}}
		}
		result.Records = append(result.Records, rr)
	}
	return batch, result, streams
}

func TestPackedBatchDecodesToTheSameBatch(t *testing.T) {
	batch, _, _ := packedFixture()
	p := batch.Pack()
	var got Batch
	if err := got.Unpack(p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(batch, &got, protocmp.Transform()); diff != "" {
		t.Errorf("Unpack(Pack(batch)) differs (-want +got):\n%s", diff)
	}
}

// TestPackedBatchRequestIsPlainProtobuf checks that the sidecar's way of writing a PackedBatch
// (the fields, then the records string appended in place) is the protobuf encoding of the
// message, as any language's protobuf library decodes it, and that ReusedRequest decodes it to
// the batch a Batch message of the same records decodes to.
func TestPackedBatchRequestIsPlainProtobuf(t *testing.T) {
	batch, _, _ := packedFixture()
	p := batch.Pack()
	p.StateGeneration, p.StateInterval = 7, 1<<33
	hdr := &PackedBatch{Id: p.Id, StateSession: p.StateSession, Stream: p.Stream, Topic: p.Topic, Partition: p.Partition, Count: p.Count, BaseOffset: p.BaseOffset, BaseTimestampMs: p.BaseTimestampMs,
		StateGeneration: p.StateGeneration, StateInterval: p.StateInterval}
	size := PackedBatchRequestSize(hdr, len(p.Records))
	b := append(AppendPackedBatchRequest(nil, hdr, len(p.Records)), p.Records...)
	b = AppendPackedBatchTrailer(b, hdr)
	if len(b) != size {
		t.Fatalf("wrote %d bytes, PackedBatchRequestSize said %d", len(b), size)
	}
	want, err := (&ProcessRequest{Request: &ProcessRequest_PackedBatch{PackedBatch: p}}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("bytes differ from the generated marshaller's (-want +got):\n%s", diff)
	}
	var generic ProcessRequest
	if err := proto.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, generic.GetPackedBatch(), protocmp.Transform()); diff != "" {
		t.Errorf("protobuf's own decoder reads (-want +got):\n%s", diff)
	}
	// One ReusedRequest for a packed batch, a plain one, then the packed one again.
	plain, err := (&ProcessRequest{Request: &ProcessRequest_Batch{Batch: batch}}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	var r ReusedRequest
	for i, msg := range [][]byte{b, plain, b} {
		if err := r.UnmarshalSlab(msg); err != nil {
			t.Fatal(err)
		}
		if got, want := r.Packed(), i != 1; got != want {
			t.Errorf("message %d: Packed() = %v, want %v", i, got, want)
		}
		if gen, iv := r.PackedState(); r.Packed() && (gen != p.StateGeneration || iv != p.StateInterval) {
			t.Errorf("message %d: PackedState() = %d, %d, want %d, %d", i, gen, iv, p.StateGeneration, p.StateInterval)
		}
		if diff := cmp.Diff(batch, r.GetBatch(), protocmp.Transform()); diff != "" {
			t.Errorf("message %d: ReusedRequest decodes (-want +got):\n%s", i, diff)
		}
	}
}

func TestPackedResultDecodesToTheSameResult(t *testing.T) {
	batch, result, streams := packedFixture()
	index := func(s string) (int, bool) {
		for i, name := range streams {
			if name == s {
				return i + 1, true
			}
		}
		return 0, false
	}
	var b []byte
	for i, rr := range result.Records {
		b = AppendPackedResult(b, batch.Records[i], rr, index)
	}
	got, err := (&PackedResult{Id: result.Id, Count: uint32(len(result.Records)), Records: b}).Unpack(batch, streams)
	if err != nil {
		t.Fatal(err)
	}
	// What the sidecar produces from the v1 result: an output timestamp equal to the input's is
	// the input's (0), and empty bytes are null.
	want := proto.Clone(result).(*BatchResult)
	for i, rr := range want.Records {
		for _, o := range rr.Outputs {
			if o.TimestampMs == batch.Records[i].TimestampMs {
				o.TimestampMs = 0
			}
			if len(o.Key) == 0 {
				o.Key = nil
			}
			if len(o.Value) == 0 {
				o.Value = nil
			}
		}
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Unpack(AppendPackedResult(result)) differs (-want +got):\n%s", diff)
	}
	// An identity output costs its framing only: no key or value bytes.
	id := AppendPackedResult(nil, batch.Records[9], result.Records[9], index) // record 9: identity, no headers
	if len(id) > 6 {
		t.Errorf("an identity result takes %d bytes (%x), want at most 6", len(id), id)
	}
}

func TestPackedDecodersRejectCorruptInput(t *testing.T) {
	batch, result, _ := packedFixture()
	p := batch.Pack()
	var b []byte
	for i, rr := range result.Records {
		b = AppendPackedResult(b, batch.Records[i], rr, func(string) (int, bool) { return 0, false })
	}
	cases := []struct {
		reason string
		decode func() error
	}{
		{"a batch cut short", func() error {
			q := proto.Clone(p).(*PackedBatch)
			q.Records = q.Records[:len(q.Records)-3]
			return new(Batch).Unpack(q)
		}},
		{"a batch with bytes after its records", func() error {
			q := proto.Clone(p).(*PackedBatch)
			q.Count--
			return new(Batch).Unpack(q)
		}},
		{"a count beyond the bytes", func() error {
			q := proto.Clone(p).(*PackedBatch)
			q.Count = 1 << 30
			return new(Batch).Unpack(q)
		}},
		{"a result cut short", func() error {
			_, err := (&PackedResult{Count: p.Count, Records: b[:len(b)-2]}).Unpack(batch, nil)
			return err
		}},
		{"a result with the wrong count", func() error {
			_, err := (&PackedResult{Count: p.Count - 1, Records: b}).Unpack(batch, nil)
			return err
		}},
		{"an invalid record head", func() error {
			rd := NewPackedResultReader([]byte{3})
			_, _, err := rd.Next()
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			if err := tc.decode(); err == nil {
				t.Error("decoded without an error")
			}
		})
	}
}

// TestPackedStateRoundTrips checks the state writes of a PackedResult (protocol version 3):
// values, empty values (not deletes), deletes and empty keys read back as written, and a
// truncated or invalid string is an error, not a panic.
func TestPackedStateRoundTrips(t *testing.T) {
	type write struct {
		Key, Value []byte
		Del        bool
	}
	want := []write{{[]byte("a"), []byte("1"), false}, {[]byte("b"), []byte{}, false}, {[]byte("c"), nil, true}, {nil, []byte("x"), false}}
	var b []byte
	size := 0
	for _, w := range want {
		b = AppendPackedMutation(b, w.Key, w.Value, w.Del)
		size += PackedMutationSize(w.Key, w.Value, w.Del)
	}
	if size != len(b) {
		t.Fatalf("PackedMutationSize says %d bytes, wrote %d", size, len(b))
	}
	var got []write
	rd := NewPackedStateReader(b)
	for rd.More() {
		k, v, del, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, write{k, v, del})
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(x, y []byte) bool { return string(x) == string(y) && (x == nil) == (y == nil) })); diff != "" {
		t.Errorf("state writes read back (-want +got):\n%s", diff)
	}
	for _, bad := range [][]byte{b[:len(b)-1], {2, 0}, {0, 5, 'a'}} {
		rd := NewPackedStateReader(bad)
		var err error
		for rd.More() && err == nil {
			_, _, _, err = rd.Next()
		}
		if err == nil {
			t.Errorf("state %q: no error", bad)
		}
	}
}
