package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// Restorer replays the changelog of partitions into a store. It returns how many records it
// applied.
type Restorer interface {
	Restore(ctx context.Context, store Store, partitions []int32) (int64, error)
}

type pendingKey struct {
	partition int32
	key       string
}

// Server is the state sidecar's gRPC service. Reads see the writes of the current session;
// writes are pending until the I/O sidecar flushes them into the changelog and completes.
//
// Sessions fence stale writers: a function still processing a batch of an I/O session that has
// ended (its sidecar was killed, or a new assignment began) holds an old token, and its calls
// fail instead of changing the new session's state.
type Server struct {
	statev1.UnimplementedStateServer

	store    Store
	restorer Restorer
	log      *slog.Logger
	metrics  *metrics

	mu       sync.Mutex
	session  string
	owned    map[int32]bool
	pending  map[pendingKey]Mutation
	order    []pendingKey
	inDoubt  bool
	assigned bool // set after the first Assign: the sidecar is ready
}

// NewServer returns a state service over store (its metrics in a registry of its own; Run
// registers them for /metrics).
func NewServer(store Store, restorer Restorer, log *slog.Logger) *Server {
	return &Server{store: store, restorer: restorer, log: log, owned: map[int32]bool{}, pending: map[pendingKey]Mutation{},
		metrics: newMetrics(prometheus.NewRegistry())}
}

// Ready reports whether the first assignment has been restored.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.assigned
}

func (s *Server) checkSession(session string) error {
	if session == "" || session != s.session {
		return status.Errorf(codes.FailedPrecondition, "state session %q is not the current session", session)
	}
	return nil
}

func (s *Server) checkPartition(p int32) error {
	if !s.owned[p] {
		return status.Errorf(codes.FailedPrecondition, "partition %d is not assigned to this pod", p)
	}
	return nil
}

// Get reads a key.
func (s *Server) Get(_ context.Context, req *statev1.GetRequest) (*statev1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	if err := s.checkPartition(req.GetPartition()); err != nil {
		return nil, err
	}
	if m, ok := s.pending[pendingKey{req.GetPartition(), string(req.GetKey())}]; ok {
		return &statev1.GetResponse{Value: m.Value, Found: !m.Delete}, nil
	}
	v, ok, err := s.store.Get(req.GetPartition(), req.GetKey())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read state: %v", err)
	}
	return &statev1.GetResponse{Value: v, Found: ok}, nil
}

// GetMany reads several keys of one partition, each as Get would.
func (s *Server) GetMany(_ context.Context, req *statev1.GetManyRequest) (*statev1.GetManyResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	p := req.GetPartition()
	if err := s.checkPartition(p); err != nil {
		return nil, err
	}
	keys := req.GetKeys()
	vals := make([]statev1.GetResponse, len(keys))
	res := &statev1.GetManyResponse{Values: make([]*statev1.GetResponse, len(keys))}
	for i, k := range keys {
		res.Values[i] = &vals[i]
		if m, ok := s.pending[pendingKey{p, string(k)}]; ok {
			vals[i] = statev1.GetResponse{Value: m.Value, Found: !m.Delete}
			continue
		}
		v, ok, err := s.store.Get(p, k)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "read state: %v", err)
		}
		vals[i] = statev1.GetResponse{Value: v, Found: ok}
	}
	return res, nil
}

// Write adds pending writes.
func (s *Server) Write(_ context.Context, req *statev1.WriteRequest) (*statev1.WriteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	for _, m := range req.GetMutations() {
		if err := s.checkPartition(m.GetPartition()); err != nil {
			return nil, err
		}
	}
	for _, m := range req.GetMutations() {
		k := pendingKey{m.GetPartition(), string(m.GetKey())}
		if _, ok := s.pending[k]; !ok {
			s.order = append(s.order, k)
		}
		s.pending[k] = Mutation{Partition: m.GetPartition(), Key: m.GetKey(), Value: m.GetValue(), Delete: m.GetDelete()}
	}
	s.metrics.writes.Add(float64(len(req.GetMutations())))
	return &statev1.WriteResponse{}, nil
}

func (s *Server) clearPending() {
	clear(s.pending)
	s.order = s.order[:0]
}

// Begin starts a session. A session owns no partitions until its first Assign, which restores
// every partition it lists from the changelog: the state of the previous session is dropped,
// however that session ended. Between two sessions the I/O sidecar's Kafka client has left the
// group, so another pod may have owned the partitions meanwhile and committed changes to them;
// a store kept from before would miss those and the next writes would lose them (issue 10:
// counts of a word fell back by the records another pod had counted in between).
func (s *Server) Begin(context.Context, *statev1.BeginRequest) (*statev1.BeginResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b [12]byte
	_, _ = rand.Read(b[:])
	s.session = hex.EncodeToString(b[:])
	s.clearPending()
	if s.inDoubt {
		// The last flush was never completed: its writes may or may not be in the changelog.
		s.log.Info("previous flush was not completed; its partitions are restored from the changelog")
		s.inDoubt = false
	}
	for p := range s.owned {
		if err := s.store.DropPartition(p); err != nil {
			return nil, status.Errorf(codes.Internal, "drop partition %d: %v", p, err)
		}
	}
	clear(s.owned)
	s.metrics.partitions.Set(0)
	return &statev1.BeginResponse{Session: s.session}, nil
}

// Assign drops lost partitions and restores gained ones.
func (s *Server) Assign(ctx context.Context, req *statev1.AssignRequest) (*statev1.AssignResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	want := map[int32]bool{}
	for _, p := range req.GetPartitions() {
		want[p] = true
	}
	for p := range s.owned {
		if want[p] {
			continue
		}
		if err := s.store.DropPartition(p); err != nil {
			return nil, status.Errorf(codes.Internal, "drop partition %d: %v", p, err)
		}
		delete(s.owned, p)
		s.order = slices.DeleteFunc(s.order, func(k pendingKey) bool {
			if k.partition == p {
				delete(s.pending, k)
				return true
			}
			return false
		})
		s.log.Info("dropped state partition", "partition", p)
	}
	var gained []int32
	for p := range want {
		if !s.owned[p] {
			gained = append(gained, p)
		}
	}
	slices.Sort(gained)
	var restored int64
	if len(gained) > 0 {
		for _, p := range gained {
			if err := s.store.DropPartition(p); err != nil {
				return nil, status.Errorf(codes.Internal, "drop partition %d: %v", p, err)
			}
		}
		n, err := s.restorer.Restore(ctx, s.store, gained)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "restore partitions %v: %v", gained, err)
		}
		restored = n
		for _, p := range gained {
			s.owned[p] = true
		}
		s.metrics.restored.Add(float64(n))
		s.log.Info("restored state partitions", "partitions", gained, "records", n)
	}
	s.metrics.partitions.Set(float64(len(s.owned)))
	s.assigned = true
	return &statev1.AssignResponse{RestoredRecords: restored}, nil
}

// Flush hands out the pending writes.
func (s *Server) Flush(_ context.Context, req *statev1.FlushRequest) (*statev1.FlushResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	res := &statev1.FlushResponse{Mutations: make([]*statev1.Mutation, len(s.order))}
	for i, k := range s.order {
		m := s.pending[k]
		res.Mutations[i] = &statev1.Mutation{Partition: m.Partition, Key: m.Key, Value: m.Value, Delete: m.Delete}
	}
	if len(s.order) > 0 {
		s.inDoubt = true
	}
	return res, nil
}

// Complete applies or discards the flushed writes.
func (s *Server) Complete(_ context.Context, req *statev1.CompleteRequest) (*statev1.CompleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkSession(req.GetSession()); err != nil {
		return nil, err
	}
	if req.GetCommit() && len(s.order) > 0 {
		muts := make([]Mutation, len(s.order))
		for i, k := range s.order {
			muts[i] = s.pending[k]
		}
		if err := s.store.Apply(muts); err != nil {
			return nil, status.Errorf(codes.Internal, "apply state: %v", err)
		}
	}
	s.clearPending()
	s.inDoubt = false
	if req.GetCommit() {
		s.metrics.commits.Inc()
	} else {
		s.metrics.aborts.Inc()
	}
	return &statev1.CompleteResponse{}, nil
}

// String names the server for logs.
func (s *Server) String() string { return fmt.Sprintf("state server (session %s)", s.session) }
