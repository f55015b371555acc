package iosidecar

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// writeRecorder is a state sidecar that records the writes handed to it.
type writeRecorder struct {
	assignRecorder
	writes [][]string
}

func (r *writeRecorder) Write(_ context.Context, in *statev1.WriteRequest, _ ...grpc.CallOption) (*statev1.WriteResponse, error) {
	var w []string
	for _, m := range in.GetMutations() {
		s := string(rune('0'+m.GetPartition())) + "/" + string(m.GetKey())
		if m.GetDelete() {
			w = append(w, s+" deleted")
		} else {
			w = append(w, s+"="+string(m.GetValue()))
		}
	}
	r.writes = append(r.writes, w)
	return &statev1.WriteResponse{}, nil
}

func packedState(writes ...[3]string) []byte {
	var b []byte
	for _, w := range writes {
		b = functionv1.AppendPackedMutation(b, []byte(w[0]), []byte(w[1]), w[2] == "delete")
	}
	return b
}

// TestStateWritesOfResults: with protocol version 3 the sidecar gathers the state writes of the
// function's results, the last one per key in the order of the keys' first writes, and hands
// them to the state sidecar at the end of the interval. A partition gained, or regained, gets a
// new generation (the function drops its copy of it) and the interval's writes of a partition
// lost or regained are dropped; so are the writes of a batch sent before its partition's
// generation changed (the partition's state was restored since).
func TestStateWritesOfResults(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Executor{Inputs: []config.Input{{Topic: "words", Stream: "words"}}, State: &config.State{}}
	cfg.Runtime.MaxInFlightBatches = 1
	s := newSession(cfg, 0, "0", &options{log: slog.New(slog.DiscardHandler)}, newMetrics(prometheus.NewRegistry()), &atomic.Bool{})
	s.live = &liveness{}
	st := &writeRecorder{}
	s.st, s.stSess, s.stateInBatch = st, "session", true
	sent := func(p int32) *sentBatch {
		return &sentBatch{records: []*kgo.Record{{Topic: "words", Partition: p}}, gen: s.gen[p]}
	}

	s.onAssigned(ctx, nil, map[string][]int32{"words": {0, 1}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	gen0, gen1 := s.gen[0], s.gen[1]
	if gen0 == 0 || gen1 == 0 || gen0 == gen1 {
		t.Fatalf("generations after the first assignment: %v, want two different ones", s.gen)
	}
	b0, b1 := sent(0), sent(1)
	for _, w := range []struct {
		b     *sentBatch
		state []byte
	}{
		{b0, packedState([3]string{"a", "1"}, [3]string{"b", "1"})},
		{b1, packedState([3]string{"a", "7"})},
		{b0, packedState([3]string{"a", "2"}, [3]string{"c", "", "delete"}, [3]string{"d", ""})},
	} {
		if err := s.addWrites(w.b, w.state); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.writeState(ctx); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"0/a=2", "0/b=1", "1/a=7", "0/c deleted", "0/d="}}
	if diff := cmp.Diff(want, st.writes); diff != "" {
		t.Fatalf("writes handed to the state sidecar (-want +got):\n%s", diff)
	}
	// The next interval starts empty.
	if err := s.writeState(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.writes) != 1 {
		t.Fatalf("an interval without writes wrote %v", st.writes[1:])
	}

	// Partition 1 is revoked and assigned again, partition 2 gained, mid-interval: a batch of 1
	// sent before is stale.
	stale := sent(1)
	if err := s.addWrites(sent(0), packedState([3]string{"k", "0"})); err != nil {
		t.Fatal(err)
	}
	if err := s.addWrites(stale, packedState([3]string{"k", "1"})); err != nil {
		t.Fatal(err)
	}
	s.onRevoked(ctx, nil, map[string][]int32{"words": {1}})
	s.onAssigned(ctx, nil, map[string][]int32{"words": {1, 2}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	if s.gen[0] != gen0 {
		t.Errorf("partition 0 kept: generation %d, want %d", s.gen[0], gen0)
	}
	if s.gen[1] == gen1 || s.gen[2] == 0 || s.gen[1] == s.gen[2] {
		t.Errorf("regained partition 1 and gained 2: generations %v, want new ones (1 was %d)", s.gen, gen1)
	}
	if err := s.addWrites(stale, packedState([3]string{"late", "1"})); err != nil {
		t.Fatal(err)
	}
	if err := s.addWrites(sent(2), packedState([3]string{"k", "2"})); err != nil {
		t.Fatal(err)
	}
	if err := s.writeState(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, []string{"0/k=0", "2/k=2"})
	if diff := cmp.Diff(want, st.writes); diff != "" {
		t.Fatalf("writes handed to the state sidecar (-want +got):\n%s", diff)
	}

	// Losing partition 0 drops its writes of the interval.
	if err := s.addWrites(sent(0), packedState([3]string{"gone", "1"})); err != nil {
		t.Fatal(err)
	}
	s.onRevoked(ctx, nil, map[string][]int32{"words": {0}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.gen[0]; ok {
		t.Errorf("lost partition 0 still has a generation: %v", s.gen)
	}
	if err := s.writeState(ctx); err != nil {
		t.Fatal(err)
	}
	if len(st.writes) != 2 {
		t.Fatalf("the writes of a lost partition were handed over: %v", st.writes[2:])
	}
	if err := s.addWrites(sent(1), []byte{7}); err == nil {
		t.Error("corrupt state writes: no error")
	}
}
