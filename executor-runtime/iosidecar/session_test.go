package iosidecar

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// assignRecorder is a state sidecar that records the partition lists it is assigned.
type assignRecorder struct {
	statev1.StateClient
	assigns [][]int32
}

func (r *assignRecorder) Assign(_ context.Context, in *statev1.AssignRequest, _ ...grpc.CallOption) (*statev1.AssignResponse, error) {
	r.assigns = append(r.assigns, slices.Clone(in.GetPartitions()))
	return &statev1.AssignResponse{}, nil
}

// A partition revoked (or lost) and assigned again between two syncs may have been owned and
// committed by another pod in between; the state sidecar must drop it and restore it, which it
// does only for a partition it sees gained. A sync that saw just the final assignment would keep
// the stale store (issue 10).
func TestARegainedPartitionIsDroppedAndRestoredByTheStateSidecar(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Executor{Inputs: []config.Input{{Topic: "words", Stream: "words"}}}
	cfg.Runtime.MaxInFlightBatches = 1
	s := newSession(cfg, 0, "0", &options{log: slog.New(slog.DiscardHandler)}, newMetrics(prometheus.NewRegistry()), &atomic.Bool{})
	s.live = &liveness{}
	st := &assignRecorder{}
	s.st, s.stSess = st, "session"

	s.onAssigned(ctx, nil, map[string][]int32{"words": {0, 1}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	s.onRevoked(ctx, nil, map[string][]int32{"words": {1}})
	s.onAssigned(ctx, nil, map[string][]int32{"words": {1}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	want := [][]int32{{0, 1}, {0}, {0, 1}}
	if !slices.EqualFunc(st.assigns, want, slices.Equal) {
		t.Fatalf("the state sidecar was assigned %v, want %v (partition 1 dropped before it is assigned again)", st.assigns, want)
	}

	// A partition that stayed assigned is not dropped.
	s.onAssigned(ctx, nil, map[string][]int32{"words": {2}})
	if err := s.syncAssignment(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.assigns[len(st.assigns)-1]; len(st.assigns) != 4 || !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("after gaining partition 2 the state sidecar was assigned %v, want one more assignment [0 1 2]", st.assigns)
	}
}
