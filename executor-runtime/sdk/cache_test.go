package sdk

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

// stateWritesOf decodes a PackedResult.state string as "key=value" and "key deleted".
func stateWritesOf(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	rd := functionv1.NewPackedStateReader(b)
	for rd.More() {
		k, v, del, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		if del {
			out = append(out, string(k)+" deleted")
		} else {
			out = append(out, string(k)+"="+string(v))
		}
	}
	return out
}

// TestStateCacheOfProtocolVersion3: with protocol version 3 the function keeps the state it read
// and wrote from batch to batch and returns its writes with the batch's result: it reads each
// key from the state sidecar once (the keys it does not hold, for the rest of the batch, in one
// GetMany) and never calls Write. It drops a partition's copy when the batch's generation
// changes, and the whole copy past its limit at a new interval: the values are then read from
// the state sidecar again. (The state sidecar here never receives the writes, as the I/O sidecar
// would hand them over only at the end of an interval: a value read from it again shows that the
// copy was dropped.)
func TestStateCacheOfProtocolVersion3(t *testing.T) {
	svc := &countingState{Server: state.NewServer(state.NewMemoryStore(), noRestore{}, slog.New(slog.DiscardHandler))}
	st, session := startState(t, svc)
	writes := &atomic.Int64{}
	backend := &countingWrites{stateBackend: st, n: writes}
	h := Stateful(func(ctx context.Context, r Record, st State, emit func(Output)) error {
		if string(r.Value) == "delete" {
			return st.Delete()
		}
		if err := counter().Process(ctx, r, st, emit); err != nil {
			return err
		}
		if string(r.Value) == "poison" {
			return errors.New("poison")
		}
		return nil
	})
	e := newEngine(h, Hooks{}, backend, SessionInfo{})
	e.reuse = true
	e.cache = newStateCache(4)
	batch := func(id uint64, recs ...[2]string) *functionv1.Batch {
		b := &functionv1.Batch{Id: id, StateSession: session, Topic: "words"}
		for i, kv := range recs {
			b.Records = append(b.Records, &functionv1.Record{Offset: int64(i), Key: []byte(kv[0]), Value: []byte(kv[1])})
		}
		return b
	}
	one := [2]string{"", "1"}
	k := func(key string) [2]string { return [2]string{key, one[1]} }
	for i, tc := range []struct {
		reason           string
		gen, interval    uint64
		batch            *functionv1.Batch
		want, wantWrites []string
		wantRead         []string // the keys of the batch's GetMany, none when nil
	}{
		{"the first batch reads its keys once", 1, 1, batch(0, k("a"), k("b"), k("a"), k("c")),
			[]string{"a=1", "b=1", "a=2", "c=1"}, []string{"a=2", "b=1", "c=1"}, []string{"a", "b", "c"}},
		{"kept keys are not read again; a failed record's write is dropped", 1, 1, batch(1, k("a"), k("d"), [2]string{"b", "poison"}, [2]string{"c", "delete"}),
			[]string{"a=3", "d=1"}, []string{"a=3", "d=1", "c deleted"}, []string{"d"}},
		{"a deleted key stays deleted", 1, 1, batch(2, k("c"), k("b")), []string{"c=1", "b=2"}, []string{"c=1", "b=2"}, nil},
		{"a new generation drops the partition's copy", 2, 1, batch(3, k("a")), []string{"a=1"}, []string{"a=1"}, []string{"a"}},
		{"past the limit within an interval, the copy is kept", 2, 1, batch(4, k("x"), k("y"), k("z"), k("w")),
			[]string{"x=1", "y=1", "z=1", "w=1"}, []string{"x=1", "y=1", "z=1", "w=1"}, []string{"x", "y", "z", "w"}},
		{"still kept in the same interval", 2, 1, batch(5, k("x")), []string{"x=2"}, []string{"x=2"}, nil},
		{"past the limit at a new interval, the copy is dropped", 2, 2, batch(6, k("x")), []string{"x=1"}, []string{"x=1"}, []string{"x"}},
	} {
		before := len(svc.keysRead)
		res, err := e.processCached(context.Background(), tc.batch, tc.gen, tc.interval)
		if err != nil {
			t.Fatalf("batch %d (%s): %v", i, tc.reason, err)
		}
		if diff := cmp.Diff(tc.want, outputsOf(res)); diff != "" {
			t.Errorf("batch %d (%s) outputs (-want +got):\n%s", i, tc.reason, diff)
		}
		if diff := cmp.Diff(tc.wantWrites, stateWritesOf(t, e.stateOut)); diff != "" {
			t.Errorf("batch %d (%s) state writes (-want +got):\n%s", i, tc.reason, diff)
		}
		var read []string
		if len(svc.keysRead) > before {
			if len(svc.keysRead) > before+1 {
				t.Errorf("batch %d (%s): %d GetMany calls, want at most 1", i, tc.reason, len(svc.keysRead)-before)
			}
			read = svc.keysRead[before]
		}
		if diff := cmp.Diff(tc.wantRead, read); diff != "" {
			t.Errorf("batch %d (%s) keys read (-want +got):\n%s", i, tc.reason, diff)
		}
	}
	if n := writes.Load(); n != 0 {
		t.Errorf("%d Write calls, want none: the writes go back in the results", n)
	}
	if n := svc.gets.Load(); n != 0 {
		t.Errorf("%d Get calls, want none", n)
	}
}

type countingWrites struct {
	stateBackend
	n *atomic.Int64
}

func (c *countingWrites) Write(ctx context.Context, session string, muts []*statev1.Mutation) error {
	c.n.Add(1)
	return c.stateBackend.Write(ctx, session, muts)
}

// The session's version is the highest both ends list; a sidecar that lists none predates
// version 3 and speaks 1 and 2, so a function of this SDK then writes its state with Write.
func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		reason            string
		sidecar, function []uint32
		want              uint32
	}{
		{"both speak 3", []uint32{1, 2, 3}, []uint32{1, 2, 3}, 3},
		{"a sidecar before version 3 lists nothing", nil, []uint32{1, 2, 3}, 2},
		{"a function pinned to 1 and 2", []uint32{1, 2, 3}, []uint32{1, 2}, 2},
		{"a function pinned to 1", []uint32{1, 2, 3}, []uint32{1}, 1},
		{"a sidecar of a later version", []uint32{1, 2, 3, 4}, []uint32{1, 2, 3}, 3},
	} {
		if got := negotiate(tc.sidecar, tc.function); got != tc.want {
			t.Errorf("%s: negotiate(%v, %v) = %d, want %d", tc.reason, tc.sidecar, tc.function, got, tc.want)
		}
	}
}
