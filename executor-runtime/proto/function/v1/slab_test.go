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
