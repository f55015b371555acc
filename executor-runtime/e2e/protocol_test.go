package e2e

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
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

// TestFunctionProtocolVersions runs the same function through the I/O sidecar twice: speaking
// protocol version 1 only (what SDKs before version 2, and functions on raw stubs such as the
// one in docs/function-protocol.md, speak: an Opened without protocol_versions), and with the
// versions 1 and 2, where the sidecar picks the dense encoding of version 2, and with the SDK's
// default, 1 to 3 (version 3 changes nothing for a stateless entity). All must
// produce the same records: outputs to two streams, kept and rewritten keys and values, headers,
// timestamps, dropped records, and dead letters for an error and for an unknown stream.
func TestFunctionProtocolVersions(t *testing.T) {
	handler := sdk.FlatMap(func(_ context.Context, r sdk.Record, emit func(sdk.Output)) error {
		i, err := strconv.Atoi(string(r.Key))
		if err != nil {
			return err
		}
		switch i % 5 {
		case 0: // dropped
		case 1:
			return fmt.Errorf("record %d is poison", i)
		case 2: // identity to one stream, a rewritten copy with a header and a timestamp to the other
			emit(sdk.Output{Stream: "a", Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp})
			emit(sdk.Output{Stream: "b", Key: []byte("re-" + string(r.Key)), Value: bytes.ToUpper(r.Value),
				Headers: []sdk.Header{{Key: "n", Value: r.Key}}, Timestamp: time.UnixMilli(1_000_000 + int64(i))})
		case 3:
			emit(sdk.Output{Stream: "b", Key: r.Key, Value: r.Value})
			emit(sdk.Output{Stream: "nope", Key: r.Key, Value: r.Value}) // the record goes to the DLQ, nothing to b
		case 4:
			emit(sdk.Output{Stream: "a", Value: r.Value}) // null key
		}
		return nil
	})
	const n = 200
	type produced struct {
		Topic, Key, Value string
		Headers           map[string]string
		Timestamp         int64
	}
	run := func(t *testing.T, fnOpts []sdk.Option) (map[uint32]int, []produced) {
		k := testenv.Fake(t)
		in := k.Prefix + "in"
		e := k.NewEntity(t, "versions", []string{in}, []string{"a", "b"}, 1, false, config.AtLeastOnce)
		k.CreateTopics(t, 1, e.Topics()...)
		var mu sync.Mutex
		versions := map[uint32]int{}
		fnOpts = append(fnOpts, sdk.WithHooks(sdk.Hooks{OnBatch: func(b sdk.BatchInfo) {
			mu.Lock()
			versions[b.ProtocolVersion] += b.Records
			mu.Unlock()
		}}))
		pod := testenv.StartPodWith(t, e, 0, handler, fnOpts)
		defer pod.Stop(t)
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, &kgo.Record{Topic: in, Key: []byte(strconv.Itoa(i)), Value: fmt.Appendf(nil, "value %d", i),
				Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("x")}}, Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i%7))})
		}
		k.Produce(t, false, recs...)
		var out []produced
		for _, c := range []struct {
			topic string
			want  int
		}{{"a", 2 * n / 5}, {"b", n / 5}, {in + ".dlq", 2 * n / 5}} {
			for _, r := range waitRecords(t, k, c.topic, c.want) {
				h := headers(r)
				if c.topic != "a" && c.topic != "b" {
					c.topic = "dlq"
				}
				out = append(out, produced{Topic: c.topic, Key: string(r.Key), Value: string(r.Value), Headers: h, Timestamp: r.Timestamp.UnixMilli()})
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return versions, out
	}
	v1Versions, v1 := run(t, []sdk.Option{sdk.WithProtocolVersions(1)})
	v2Versions, v2 := run(t, []sdk.Option{sdk.WithProtocolVersions(1, 2)})
	v3Versions, v3 := run(t, nil)
	if diff := cmp.Diff(map[uint32]int{1: n}, v1Versions); diff != "" {
		t.Errorf("a function speaking version 1 only got batches of these versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[uint32]int{2: n}, v2Versions); diff != "" {
		t.Errorf("a function speaking versions 1 and 2 got batches of these versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[uint32]int{3: n}, v3Versions); diff != "" {
		t.Errorf("a function speaking the SDK's default versions got batches of these versions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(v1, v2); diff != "" {
		t.Errorf("version 2 produced other records than version 1 (-v1 +v2):\n%s", diff)
	}
	if diff := cmp.Diff(v1, v3); diff != "" {
		t.Errorf("version 3 produced other records than version 1 (-v1 +v3):\n%s", diff)
	}
	// And the records are right, not only equal: spot checks of each case.
	want := []produced{
		{Topic: "a", Key: "2", Value: "value 2", Headers: map[string]string{"h": "x"}, Timestamp: 1_700_000_000_002},
		{Topic: "b", Key: "re-2", Value: "VALUE 2", Headers: map[string]string{"n": "2"}, Timestamp: 1_000_002},
		{Topic: "a", Key: "", Value: "value 4", Headers: map[string]string{}, Timestamp: 1_700_000_000_004},
	}
	for _, p := range v1 {
		want = slices.DeleteFunc(want, func(w produced) bool { return cmp.Equal(p, w) })
		if p.Topic == "dlq" && !strings.Contains(p.Headers[iosidecar.HeaderError], "poison") && !strings.Contains(p.Headers[iosidecar.HeaderError], `"nope"`) {
			t.Errorf("dead letter %s with error %q", p.Key, p.Headers[iosidecar.HeaderError])
		}
	}
	for _, w := range want {
		t.Errorf("no output %+v", w)
	}
}
