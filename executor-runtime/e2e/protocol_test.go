package e2e

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// TestEmptyOutputKeyAndValueAreProducedAsNull pins what docs/function-protocol.md says of empty
// bytes: proto3 does not put an empty bytes field on the wire, so the I/O sidecar cannot tell an
// empty key or value from an absent one, and produces both as Kafka null (a null value on a
// compacted topic is a tombstone). A non-empty key and value pass unchanged.
func TestEmptyOutputKeyAndValueAreProducedAsNull(t *testing.T) {
	k := testenv.Fake(t)
	in, out := k.Prefix+"in", k.Prefix+"out"
	e := k.NewEntity(t, "empty", []string{in}, []string{out}, 1, false, config.AtLeastOnce)
	k.CreateTopics(t, 1, e.Topics()...)
	pod := testenv.StartPod(t, e, 0, sdk.FlatMap(func(_ context.Context, r sdk.Record, emit func(sdk.Output)) error {
		emit(sdk.Output{Key: []byte{}, Value: []byte{}})
		emit(sdk.Output{Key: nil, Value: nil})
		emit(sdk.Output{Key: r.Key, Value: r.Value})
		return nil
	}))
	defer pod.Stop(t)
	k.Produce(t, false, &kgo.Record{Topic: in, Key: []byte("k"), Value: []byte("v")})

	recs := waitRecords(t, k, out, 3)
	if len(recs) != 3 {
		t.Fatalf("got %d output records, want 3", len(recs))
	}
	for i, r := range recs[:2] {
		if r.Key != nil || r.Value != nil {
			t.Errorf("output %d: key %#v, value %#v; want both null (nil)", i, r.Key, r.Value)
		}
	}
	if r := recs[2]; string(r.Key) != "k" || string(r.Value) != "v" {
		t.Errorf("output 2 = %q=%q, want k=v", r.Key, r.Value)
	}
}
