package sdk

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
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
	mu             sync.Mutex
	keysRead       [][]string // the keys of each GetMany
}

func (c *countingState) Get(ctx context.Context, req *statev1.GetRequest) (*statev1.GetResponse, error) {
	c.gets.Add(1)
	return c.Server.Get(ctx, req)
}

func (c *countingState) GetMany(ctx context.Context, req *statev1.GetManyRequest) (*statev1.GetManyResponse, error) {
	c.getManys.Add(1)
	c.mu.Lock()
	var keys []string
	for _, k := range req.GetKeys() {
		keys = append(keys, string(k))
	}
	c.keysRead = append(c.keysRead, keys)
	c.mu.Unlock()
	if c.withoutGetMany {
		return nil, status.Error(codes.Unimplemented, "method GetMany not implemented")
	}
	return c.Server.GetMany(ctx, req)
}

// startState serves a state sidecar on a Unix socket with partition 0 assigned and returns a
// client of it as the SDK makes one, and the session.
func startState(t testing.TB, svc *countingState) (stateBackend, string) {
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

// A batch reads each of its keys once, however often they repeat; a record that fails drops its
// write, so the next record of the key sees the value before it; and an engine that reuses its
// buffers (as Serve's does) keeps batches of different sizes apart.
func TestStateReadsOfRepeatedKeysAndFailedRecords(t *testing.T) {
	svc := &countingState{Server: state.NewServer(state.NewMemoryStore(), noRestore{}, slog.New(slog.DiscardHandler))}
	st, session := startState(t, svc)
	h := Stateful(func(ctx context.Context, r Record, st State, emit func(Output)) error {
		if err := counter().Process(ctx, r, st, emit); err != nil {
			return err
		}
		if string(r.Value) == "poison" {
			return errors.New("poison")
		}
		return nil
	})
	e := newEngine(h, Hooks{}, st, SessionInfo{})
	e.reuse = true
	batch := func(id uint64, recs ...[2]string) *functionv1.Batch {
		b := &functionv1.Batch{Id: id, StateSession: session, Topic: "words"}
		for i, kv := range recs {
			b.Records = append(b.Records, &functionv1.Record{Offset: int64(i), Key: []byte(kv[0]), Value: []byte(kv[1])})
		}
		return b
	}
	for i, tc := range []struct {
		batch *functionv1.Batch
		want  []string
	}{
		{batch(0, [2]string{"a", "1"}, [2]string{"a", "poison"}, [2]string{"a", "1"}, [2]string{"b", "1"}, [2]string{"c", "poison"}, [2]string{"a", "1"}),
			[]string{"a=1", "a=2", "b=1", "a=3"}},
		{batch(1, [2]string{"c", "1"}, [2]string{"a", "1"}), []string{"c=1", "a=4"}},
		{batch(2, [2]string{"b", "1"}, [2]string{"b", "1"}, [2]string{"c", "1"}), []string{"b=2", "b=3", "c=2"}},
	} {
		res, err := e.process(context.Background(), tc.batch)
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if diff := cmp.Diff(tc.want, outputsOf(res)); diff != "" {
			t.Errorf("batch %d outputs (-want +got):\n%s", i, diff)
		}
	}
	if diff := cmp.Diff([][]string{{"a", "b", "c"}, {"c", "a"}, {"b", "c"}}, svc.keysRead); diff != "" {
		t.Errorf("keys read by GetMany (-want +got):\n%s", diff)
	}
}
