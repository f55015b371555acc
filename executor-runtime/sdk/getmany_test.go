package sdk

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

type noRestore struct{}

func (noRestore) Restore(context.Context, state.Store, []int32) (int64, error) { return 0, nil }

// countingState is the real state sidecar's service, counting the reads; without GetMany it
// answers GetMany as a state sidecar that predates it does (Unimplemented).
type countingState struct {
	*state.Server
	withoutGetMany bool
	gets, getManys atomic.Int64
}

func (c *countingState) Get(ctx context.Context, req *statev1.GetRequest) (*statev1.GetResponse, error) {
	c.gets.Add(1)
	return c.Server.Get(ctx, req)
}

func (c *countingState) GetMany(ctx context.Context, req *statev1.GetManyRequest) (*statev1.GetManyResponse, error) {
	c.getManys.Add(1)
	if c.withoutGetMany {
		return nil, status.Error(codes.Unimplemented, "method GetMany not implemented")
	}
	return c.Server.GetMany(ctx, req)
}

// startState serves a state sidecar on a Unix socket with partition 0 assigned and returns a
// client of it as the SDK makes one, and the session.
func startState(t *testing.T, svc *countingState) (stateBackend, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lis, err := net.Listen("unix", filepath.Join(dir, "state.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	statev1.RegisterStateServer(srv, svc)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	b, err := svc.Begin(ctx, &statev1.BeginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Assign(ctx, &statev1.AssignRequest{Session: b.GetSession(), Partitions: []int32{0}}); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "state.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &grpcState{c: statev1.NewStateClient(conn)}, b.GetSession()
}

// counter counts records per key in state and emits the running count.
func counter() Handler {
	return Stateful(func(_ context.Context, r Record, st State, emit func(Output)) error {
		var n int
		if v, ok, err := st.Get(); err != nil {
			return err
		} else if ok {
			n, _ = strconv.Atoi(string(v))
		}
		n++
		if err := st.Put([]byte(strconv.Itoa(n))); err != nil {
			return err
		}
		emit(Output{Key: r.Key, Value: []byte(strconv.Itoa(n))})
		return nil
	})
}

func countBatch(id uint64, session string, keys ...string) *functionv1.Batch {
	b := &functionv1.Batch{Id: id, StateSession: session, Partition: 0, Topic: "words"}
	for i, k := range keys {
		b.Records = append(b.Records, &functionv1.Record{Offset: int64(i), Key: []byte(k), Value: []byte("1")})
	}
	return b
}

func outputsOf(res *functionv1.BatchResult) []string {
	var out []string
	for _, r := range res.GetRecords() {
		for _, o := range r.GetOutputs() {
			out = append(out, string(o.GetKey())+"="+string(o.GetValue()))
		}
	}
	return out
}

// The reads of a batch go to the state sidecar in one GetMany, not one Get per record; a state
// sidecar without GetMany (older than it) still gets every read, key by key, with the same
// results.
func TestStateReadsOfABatchAreOneCall(t *testing.T) {
	batches := [][]string{{"a", "b", "a", "c"}, {"a", "b", "d"}}
	want := [][]string{{"a=1", "b=1", "a=2", "c=1"}, {"a=3", "b=2", "d=1"}}
	for _, tc := range []struct {
		name           string
		withoutGetMany bool
		wantGets       int64
		wantGetManys   int64
	}{
		// One GetMany per batch.
		{name: "state sidecar with GetMany", wantGets: 0, wantGetManys: 2},
		// One GetMany refused, then one Get per key not written earlier in its batch: a, b, c
		// in the first batch, a, b, d in the second.
		{name: "state sidecar without GetMany", withoutGetMany: true, wantGets: 6, wantGetManys: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &countingState{Server: state.NewServer(state.NewMemoryStore(), noRestore{}, slog.New(slog.DiscardHandler)), withoutGetMany: tc.withoutGetMany}
			st, session := startState(t, svc)
			e := newEngine(counter(), Hooks{}, st, SessionInfo{})
			for i, keys := range batches {
				res, err := e.process(context.Background(), countBatch(uint64(i), session, keys...))
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if diff := cmp.Diff(want[i], outputsOf(res)); diff != "" {
					t.Errorf("batch %d outputs (-want +got):\n%s", i, diff)
				}
			}
			if got := svc.gets.Load(); got != tc.wantGets {
				t.Errorf("Get calls = %d, want %d", got, tc.wantGets)
			}
			if got := svc.getManys.Load(); got != tc.wantGetManys {
				t.Errorf("GetMany calls = %d, want %d", got, tc.wantGetManys)
			}
		})
	}
}
