package state

import (
	"context"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// fakeRestorer restores from an in-memory changelog.
type fakeRestorer struct {
	changelog map[int32][]Mutation
	restores  int
}

func (f *fakeRestorer) Restore(_ context.Context, store Store, partitions []int32) (int64, error) {
	f.restores++
	var n int64
	for _, p := range partitions {
		if err := store.Apply(f.changelog[p]); err != nil {
			return n, err
		}
		n += int64(len(f.changelog[p]))
	}
	return n, nil
}

func newTestServer(t *testing.T, r Restorer) *Server {
	s := NewServer(NewMemoryStore(), r, slog.New(slog.DiscardHandler))
	s.metrics = newMetrics(prometheus.NewRegistry())
	return s
}

func get(t *testing.T, s *Server, session string, p int32, key string) (string, bool) {
	t.Helper()
	res, err := s.Get(context.Background(), &statev1.GetRequest{Session: session, Partition: p, Key: []byte(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return string(res.GetValue()), res.GetFound()
}

func begin(t *testing.T, s *Server, parts ...int32) string {
	t.Helper()
	ctx := context.Background()
	b, err := s.Begin(ctx, &statev1.BeginRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Assign(ctx, &statev1.AssignRequest{Session: b.GetSession(), Partitions: parts}); err != nil {
		t.Fatal(err)
	}
	return b.GetSession()
}

func write(t *testing.T, s *Server, session string, p int32, key, value string) error {
	t.Helper()
	_, err := s.Write(context.Background(), &statev1.WriteRequest{Session: session, Mutations: []*statev1.Mutation{{Partition: p, Key: []byte(key), Value: []byte(value)}}})
	return err
}

func TestPendingWritesAreVisibleThenCommittedOrDiscarded(t *testing.T) {
	ctx := context.Background()
	r := &fakeRestorer{changelog: map[int32][]Mutation{0: {{Partition: 0, Key: []byte("a"), Value: []byte("1")}}}}
	s := newTestServer(t, r)
	sess := begin(t, s, 0)
	if v, ok := get(t, s, sess, 0, "a"); !ok || v != "1" {
		t.Fatalf("restored a = %q %v, want 1", v, ok)
	}
	if err := write(t, s, sess, 0, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, s, sess, 0, "a"); v != "2" {
		t.Fatalf("pending write not visible: a = %q", v)
	}
	fl, err := s.Flush(ctx, &statev1.FlushRequest{Session: sess})
	if err != nil || len(fl.GetMutations()) != 1 {
		t.Fatalf("flush = %v, %v; want one mutation", fl, err)
	}
	if _, err := s.Complete(ctx, &statev1.CompleteRequest{Session: sess, Commit: false}); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, s, sess, 0, "a"); v != "1" {
		t.Fatalf("after abort a = %q, want 1", v)
	}
	if err := write(t, s, sess, 0, "a", "3"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(ctx, &statev1.FlushRequest{Session: sess}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, &statev1.CompleteRequest{Session: sess, Commit: true}); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, s, sess, 0, "a"); v != "3" {
		t.Fatalf("after commit a = %q, want 3", v)
	}
}

func TestANewSessionFencesTheOldOne(t *testing.T) {
	s := newTestServer(t, &fakeRestorer{})
	old := begin(t, s, 0)
	current := begin(t, s, 0)
	if err := write(t, s, old, 0, "a", "stale"); err == nil {
		t.Fatal("a write with the previous session's token succeeded")
	}
	if _, ok := get(t, s, current, 0, "a"); ok {
		t.Fatal("the stale write is visible")
	}
}

func TestWritesToUnassignedPartitionsFail(t *testing.T) {
	s := newTestServer(t, &fakeRestorer{})
	sess := begin(t, s, 0)
	if err := write(t, s, sess, 1, "a", "x"); err == nil {
		t.Fatal("a write to a partition this pod does not own succeeded")
	}
}

func TestAnUncompletedFlushRestoresOnTheNextSession(t *testing.T) {
	ctx := context.Background()
	r := &fakeRestorer{changelog: map[int32][]Mutation{}}
	s := newTestServer(t, r)
	sess := begin(t, s, 0)
	if err := write(t, s, sess, 0, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(ctx, &statev1.FlushRequest{Session: sess}); err != nil {
		t.Fatal(err)
	}
	// The I/O sidecar died after the flush; whether its transaction committed is only known to
	// the changelog, which here says it did.
	r.changelog[0] = []Mutation{{Partition: 0, Key: []byte("a"), Value: []byte("1")}}
	restoresBefore := r.restores
	next := begin(t, s, 0)
	if r.restores != restoresBefore+1 {
		t.Fatalf("partition was not restored after an in-doubt flush")
	}
	if v, ok := get(t, s, next, 0, "a"); !ok || v != "1" {
		t.Fatalf("a = %q %v after restore, want 1", v, ok)
	}
}

func TestAssignDropsLostPartitionsAndRestoresGainedOnes(t *testing.T) {
	r := &fakeRestorer{changelog: map[int32][]Mutation{1: {{Partition: 1, Key: []byte("b"), Value: []byte("9")}}}}
	s := newTestServer(t, r)
	sess := begin(t, s, 0)
	if _, err := s.Assign(context.Background(), &statev1.AssignRequest{Session: sess, Partitions: []int32{1}}); err != nil {
		t.Fatal(err)
	}
	if v, ok := get(t, s, sess, 1, "b"); !ok || v != "9" {
		t.Fatalf("gained partition: b = %q %v, want 9", v, ok)
	}
	if _, err := s.Get(context.Background(), &statev1.GetRequest{Session: sess, Partition: 0, Key: []byte("a")}); err == nil {
		t.Fatal("a read of a lost partition succeeded")
	}
}

// GetMany answers each key as Get does: pending writes first, then the store, found or not; and
// it is fenced by the session and the assignment like Get.
func TestGetManyReadsLikeGet(t *testing.T) {
	ctx := context.Background()
	r := &fakeRestorer{changelog: map[int32][]Mutation{0: {{Partition: 0, Key: []byte("a"), Value: []byte("1")}, {Partition: 0, Key: []byte("b"), Value: []byte("1")}}}}
	s := newTestServer(t, r)
	sess := begin(t, s, 0)
	if err := write(t, s, sess, 0, "b", "2"); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a", "b", "c", "a"}
	req := &statev1.GetManyRequest{Session: sess, Partition: 0}
	for _, k := range keys {
		req.Keys = append(req.Keys, []byte(k))
	}
	res, err := s.GetMany(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetValues()) != len(keys) {
		t.Fatalf("%d values for %d keys", len(res.GetValues()), len(keys))
	}
	for i, k := range keys {
		v, ok := get(t, s, sess, 0, k)
		if got := res.GetValues()[i]; string(got.GetValue()) != v || got.GetFound() != ok {
			t.Errorf("GetMany %s = %q %v, Get = %q %v", k, got.GetValue(), got.GetFound(), v, ok)
		}
	}
	if _, err := s.GetMany(ctx, &statev1.GetManyRequest{Session: "stale", Partition: 0, Keys: req.Keys}); err == nil {
		t.Error("GetMany with a stale session succeeded")
	}
	if _, err := s.GetMany(ctx, &statev1.GetManyRequest{Session: sess, Partition: 1, Keys: req.Keys}); err == nil {
		t.Error("GetMany of a partition not assigned succeeded")
	}
}

// Between two sessions of the I/O sidecar its Kafka client has left the group, and another pod
// may have owned a partition and committed changes to it. A new session that is assigned the
// partition again must restore it from the changelog, not keep the store of the session before
// (issue 10: word counts fell back by what the other pod had counted in between).
func TestANewSessionRestoresItsPartitionsEvenAfterACleanEnd(t *testing.T) {
	ctx := context.Background()
	r := &fakeRestorer{changelog: map[int32][]Mutation{0: {{Partition: 0, Key: []byte("a"), Value: []byte("1")}}}}
	s := newTestServer(t, r)
	sess := begin(t, s, 0)
	if err := write(t, s, sess, 0, "a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Flush(ctx, &statev1.FlushRequest{Session: sess}); err != nil {
		t.Fatal(err)
	}
	r.changelog[0] = append(r.changelog[0], Mutation{Partition: 0, Key: []byte("a"), Value: []byte("2")})
	if _, err := s.Complete(ctx, &statev1.CompleteRequest{Session: sess, Commit: true}); err != nil {
		t.Fatal(err)
	}
	// The session ends cleanly; another pod owns partition 0 and commits a=7.
	r.changelog[0] = append(r.changelog[0], Mutation{Partition: 0, Key: []byte("a"), Value: []byte("7")})
	restoresBefore := r.restores
	next := begin(t, s, 0)
	if r.restores != restoresBefore+1 {
		t.Errorf("the new session's partition was not restored (%d restores, want %d)", r.restores, restoresBefore+1)
	}
	if v, ok := get(t, s, next, 0, "a"); !ok || v != "7" {
		t.Fatalf("a = %q %v in the new session, want 7 (the other pod's committed value)", v, ok)
	}
}
