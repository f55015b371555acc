package functionv1

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestSlabDecodersMatchGenerated(t *testing.T) {
	batch := &Batch{Id: 7, StateSession: "s-1", Stream: "words", Topic: "t.words", Partition: 3}
	result := &BatchResult{Id: 7}
	for i := range 20 {
		r := &Record{Offset: int64(100 + i), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i), TimestampMs: int64(i)}
		if i%5 == 0 {
			r.Headers = []*Header{{Key: "h", Value: []byte("x")}, {Key: "empty"}}
		}
		batch.Records = append(batch.Records, r)
		rr := &RecordResult{}
		switch i % 4 {
		case 0: // no output
		case 1:
			rr.Error = "boom"
		default:
			for j := range i % 3 {
				rr.Outputs = append(rr.Outputs, &OutputRecord{Stream: "out", Key: r.Key, Value: fmt.Appendf(nil, "%d", j), TimestampMs: 5, Headers: r.Headers})
			}
		}
		result.Records = append(result.Records, rr)
	}
	cases := []struct {
		reason string
		msg    interface {
			proto.Message
			MarshalVT() ([]byte, error)
		}
		decode func([]byte) (proto.Message, error)
		gen    func([]byte) (proto.Message, error)
	}{
		{"a batch", &ProcessRequest{Request: &ProcessRequest_Batch{Batch: batch}},
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalSlab(b) },
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalVTUnsafe(b) }},
		{"an empty batch", &ProcessRequest{Request: &ProcessRequest_Batch{Batch: &Batch{Id: 1}}},
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalSlab(b) },
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalVTUnsafe(b) }},
		{"an Open (generated path)", &ProcessRequest{Request: &ProcessRequest_Open{Open: &Open{ProtocolVersion: 1, Entity: "e", UserConfig: map[string]string{"a": "b"}}}},
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalSlab(b) },
			func(b []byte) (proto.Message, error) { m := &ProcessRequest{}; return m, m.UnmarshalVTUnsafe(b) }},
		{"a batch result", &ProcessResponse{Response: &ProcessResponse_Result{Result: result}},
			func(b []byte) (proto.Message, error) { m := &ProcessResponse{}; return m, m.UnmarshalSlab(b) },
			func(b []byte) (proto.Message, error) { m := &ProcessResponse{}; return m, m.UnmarshalVTUnsafe(b) }},
		{"an Opened (generated path)", &ProcessResponse{Response: &ProcessResponse_Opened{Opened: &Opened{ProtocolVersion: 1, Sdk: "x"}}},
			func(b []byte) (proto.Message, error) { m := &ProcessResponse{}; return m, m.UnmarshalSlab(b) },
			func(b []byte) (proto.Message, error) { m := &ProcessResponse{}; return m, m.UnmarshalVTUnsafe(b) }},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			b, err := tc.msg.MarshalVT()
			if err != nil {
				t.Fatal(err)
			}
			want, err := tc.gen(b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tc.decode(b)
			if err != nil {
				t.Fatalf("UnmarshalSlab: %v", err)
			}
			if !proto.Equal(got, want) || !proto.Equal(got, tc.msg) {
				t.Fatalf("UnmarshalSlab decoded\n%v\nthe generated decoder\n%v", got, want)
			}
			// Truncated input is an error, never a panic.
			for cut := 1; cut < len(b); cut += max(1, len(b)/50) {
				_, _ = tc.decode(b[:cut])
			}
		})
	}
}

// A reused message decodes every message of a sequence as the generated decoder does, whatever
// it held before: a smaller batch after a larger one, an Open between batches, headers that the
// previous batch had and this one has not.
func TestReusedMessagesMatchGenerated(t *testing.T) {
	small := &Batch{Id: 9, Topic: "t", Records: []*Record{{Offset: 1, Key: []byte("k")}}}
	big := &Batch{Id: 8, StateSession: "s", Stream: "in", Topic: "t", Partition: 2}
	bigResult := &BatchResult{Id: 8}
	for i := range 150 { // more than the first chunk of a slab
		r := &Record{Offset: int64(i), Value: fmt.Appendf(nil, "v%d", i), TimestampMs: 3}
		rr := &RecordResult{}
		if i%3 == 0 {
			r.Headers = []*Header{{Key: "h", Value: []byte("x")}}
			rr.Error = "boom"
		} else {
			rr.Outputs = []*OutputRecord{{Stream: "o", Key: r.Key, Value: r.Value, TimestampMs: 4, Headers: r.Headers}, {Value: []byte("second")}}
		}
		big.Records = append(big.Records, r)
		bigResult.Records = append(bigResult.Records, rr)
	}
	requests := []*ProcessRequest{
		{Request: &ProcessRequest_Batch{Batch: big}},
		{Request: &ProcessRequest_Batch{Batch: small}},
		{Request: &ProcessRequest_Open{Open: &Open{ProtocolVersion: 1, Entity: "e"}}},
		{Request: &ProcessRequest_Batch{Batch: &Batch{Id: 10}}},
		{Request: &ProcessRequest_Batch{Batch: big}},
	}
	var req ReusedRequest
	for i, want := range requests {
		b, err := want.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if err := req.UnmarshalSlab(b); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !proto.Equal(&req.ProcessRequest, want) {
			t.Fatalf("request %d: decoded\n%v\nwant\n%v", i, &req.ProcessRequest, want)
		}
	}
	responses := []*ProcessResponse{
		{Response: &ProcessResponse_Result{Result: bigResult}},
		{Response: &ProcessResponse_Result{Result: &BatchResult{Id: 9, Records: []*RecordResult{{Outputs: []*OutputRecord{{Value: []byte("v")}}}}}}},
		{Response: &ProcessResponse_Opened{Opened: &Opened{ProtocolVersion: 1, Sdk: "x"}}},
		{Response: &ProcessResponse_Result{Result: &BatchResult{Id: 10, Records: []*RecordResult{{}, {Error: "e"}}}}},
		{Response: &ProcessResponse_Result{Result: bigResult}},
	}
	var res ReusedResponse
	for i, want := range responses {
		b, err := want.MarshalVT()
		if err != nil {
			t.Fatal(err)
		}
		if err := res.UnmarshalSlab(b); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if !proto.Equal(&res.ProcessResponse, want) {
			t.Fatalf("response %d: decoded\n%v\nwant\n%v", i, &res.ProcessResponse, want)
		}
	}
}

func FuzzSlabDecoders(f *testing.F) {
	b, _ := (&ProcessResponse{Response: &ProcessResponse_Result{Result: &BatchResult{Id: 1, Records: []*RecordResult{{Error: "x"}, {Outputs: []*OutputRecord{{Key: []byte("k")}}}}}}}).MarshalVT()
	f.Add(b)
	b, _ = (&ProcessRequest{Request: &ProcessRequest_Batch{Batch: &Batch{Id: 1, Topic: "t", Records: []*Record{{Key: []byte("k")}}}}}).MarshalVT()
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ProcessRequest
		if req.UnmarshalSlab(data) == nil {
			var gen ProcessRequest
			if gen.UnmarshalVTUnsafe(data) == nil && !proto.Equal(discard(&req), discard(&gen)) {
				t.Fatalf("request: slab %v, generated %v", &req, &gen)
			}
		}
		var res ProcessResponse
		if res.UnmarshalSlab(data) == nil {
			var gen ProcessResponse
			if gen.UnmarshalVTUnsafe(data) == nil && !proto.Equal(discard(&res), discard(&gen)) {
				t.Fatalf("response: slab %v, generated %v", &res, &gen)
			}
		}
	})
}

// discard drops unknown fields, which the slab decoders do not keep.
func discard(m proto.Message) proto.Message {
	var walk func(protoreflect.Message)
	walk = func(m protoreflect.Message) {
		m.SetUnknown(nil)
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := range v.List().Len() {
					walk(v.List().Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
	return m
}
