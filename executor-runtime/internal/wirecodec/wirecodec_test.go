package wirecodec

import (
	"testing"

	"google.golang.org/protobuf/proto"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
)

// The fast codec must write exactly the standard protobuf encoding, since functions in other
// languages read it with their own protobuf libraries.
func TestCodecMatchesStandardProtobuf(t *testing.T) {
	big := make([]byte, 200_000) // above gRPC's pooling threshold
	msgs := []*functionv1.ProcessRequest{
		{Request: &functionv1.ProcessRequest_Batch{Batch: &functionv1.Batch{Id: 7, Topic: "in", Partition: 3, Records: []*functionv1.Record{
			{Offset: 1, Key: []byte("k"), Value: []byte("v"), Headers: []*functionv1.Header{{Key: "h", Value: []byte("x")}}, TimestampMs: 42},
		}}}},
		{Request: &functionv1.ProcessRequest_Batch{Batch: &functionv1.Batch{Records: []*functionv1.Record{{Value: big}}}}},
	}
	for _, msg := range msgs {
		bs, err := codec{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		std, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got := bs.Materialize()
		var a, b functionv1.ProcessRequest
		if err := proto.Unmarshal(got, &a); err != nil {
			t.Fatalf("standard protobuf cannot read the codec's bytes: %v", err)
		}
		if err := (codec{}).Unmarshal(bs, &b); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&a, msg) || !proto.Equal(&b, msg) || len(got) != len(std) {
			t.Fatalf("round trip differs (codec %d bytes, standard %d)", len(got), len(std))
		}
	}
}
