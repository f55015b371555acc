package iosidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/kafkaclient"
	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

// Dead-letter headers name the origin of a poison record.
const (
	HeaderSourceTopic     = "millrace.source.topic"
	HeaderSourcePartition = "millrace.source.partition"
	HeaderSourceOffset    = "millrace.source.offset"
	HeaderError           = "millrace.error"
)

const maxMessageBytes = 64 << 20

// errStopped ends a session that was asked to stop (shutdown or configuration change).
var errStopped = errors.New("session stopped")

// errFunctionStopped ends a session whose function said it is stopping (ProcessResponse.stopping):
// the interval was drained and committed, and the next session waits for a function to serve.
var errFunctionStopped = errors.New("the function is stopping")

// session is one life of the data plane: a Kafka client in the entity's group, a stream to the
// function and a session of the state sidecar. Any failure of one of them ends the session
// without committing; Run starts a new one, which resumes from the last commit. That is the
// whole recovery story, and it is the same for every failure.
type session struct {
	cfg      *config.Executor
	ordinal  int
	identity string // the ordinal, or the hostname of a pod without one
	o        *options
	log      *slog.Logger
	m        *metrics
	ready    *atomic.Bool
	live     *liveness

	cl  *kgo.Client
	txn *kgo.GroupTransactSession // nil under AtLeastOnce
	// instanceID is the static member id of a classic Group-mode member, empty otherwise.
	instanceID string
	// kafkaBase are the connection options, for the short-lived admin client of close.
	kafkaBase []kgo.Opt
	// starts places inputs with a start position; nil when no input has one.
	starts *starts
	// retire is the retirement of the entity (Run's, across sessions), when the configuration
	// drains its inputs; rcut is this session's cut.
	retire *retirement
	rcut   retireCut
	// leave makes close leave the group also as a classic static member (see close).
	leave bool
	// lister lists offsets and committed offsets for starts; created on first use.
	listerMu sync.Mutex
	lister   *kgo.Client

	fnConn *grpc.ClientConn
	fn     functionv1.Function_ProcessClient
	stConn *grpc.ClientConn
	st     statev1.StateClient
	stSess string

	streamOf map[string]string // input topic -> stream
	dlqOf    map[string]string // input topic -> dead-letter topic
	topicOf  map[string]string // output stream -> topic
	only     string            // the topic of the only output stream, if there is one

	// assignment, written by the group callbacks and read by the processing loop.
	amu      sync.Mutex
	assigned map[string][]int32
	changed  bool
	synced   map[int32]bool
	// lost are the partitions revoked or lost since the last syncAssignment: one that is
	// assigned again by then may have been processed by another pod in between.
	lost map[int32]bool

	// in-flight batches.
	sem     chan struct{}
	bmu     sync.Mutex
	batches map[uint64]*sentBatch
	nextID  uint64
	notify  chan struct{}
	broken  chan struct{}
	// fnStopping closes when the function says it is stopping.
	fnStopping chan struct{}
	fail       atomic.Pointer[error]
	// produced is s.promise, bound once rather than per record.
	produced func(*kgo.Record, error)
	// outCounts counts a batch's outputs per topic, for one metric update per batch; outputs to
	// the only output topic are counted in onlyCount, without a map lookup per record.
	outCounts map[string]int
	onlyCount int
	// The counters of the metrics updated per batch, resolved once per topic.
	inCounter  map[string]prometheus.Counter
	outCounter map[string]prometheus.Counter

	// The messages send reuses for every batch (only dispatch's goroutine sends).
	sendReq   functionv1.ProcessRequest
	sendWrap  functionv1.ProcessRequest_Batch
	sendBatch functionv1.Batch
	sendSlab  []functionv1.Record
	sendPtrs  []*functionv1.Record
	// protocol is the function protocol version of the session (packed.go); packedOuts is
	// receive's scratch for the outputs of one record.
	protocol   uint32
	packedOuts []functionv1.PackedOutput
}

type sentBatch struct {
	records []*kgo.Record
	polled  time.Time
	sent    time.Time
}

func (s *session) setFail(err error) {
	// A cancelled stream is the session being closed, not a failure worth an error log.
	if s.fail.CompareAndSwap(nil, &err) && !errors.Is(err, context.Canceled) && status.Code(errors.Unwrap(err)) != codes.Canceled {
		s.log.Error("session failing", "err", err)
	}
}

func (s *session) failure() error {
	if p := s.fail.Load(); p != nil {
		return *p
	}
	return nil
}

func newSession(cfg *config.Executor, ordinal int, identity string, o *options, m *metrics, ready *atomic.Bool) *session {
	s := &session{
		cfg: cfg, ordinal: ordinal, identity: identity, o: o, m: m, ready: ready,
		log:      o.log.With("entity", cfg.Entity, "ordinal", ordinal),
		streamOf: map[string]string{}, dlqOf: map[string]string{}, topicOf: map[string]string{},
		assigned: map[string][]int32{}, synced: map[int32]bool{}, lost: map[int32]bool{},
		sem:        make(chan struct{}, cfg.Runtime.MaxInFlightBatches),
		batches:    map[uint64]*sentBatch{},
		notify:     make(chan struct{}, 1),
		broken:     make(chan struct{}),
		fnStopping: make(chan struct{}),
		outCounts:  map[string]int{},
		inCounter:  map[string]prometheus.Counter{}, outCounter: map[string]prometheus.Counter{},
	}
	s.produced = s.promise
	for _, in := range cfg.Inputs {
		s.streamOf[in.Topic] = in.Stream
		s.dlqOf[in.Topic] = in.DeadLetterTopic
	}
	for _, out := range cfg.Outputs {
		s.topicOf[out.Stream] = out.Topic
	}
	if len(cfg.Outputs) == 1 {
		s.only = cfg.Outputs[0].Topic
	}
	return s
}

// routingPartitioner writes changelog records to the partition of their state (the input
// partition) and hashes keys everywhere else, as Kafka's Java client does.
type routingPartitioner struct {
	manual string
}

func (p routingPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.manual {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return kgo.StickyKeyPartitioner(nil).ForTopic(topic)
}

func (s *session) kafkaOptions(ctx context.Context) ([]kgo.Opt, error) {
	base, err := kafkaclient.Options(s.cfg.Kafka, s.log)
	if err != nil {
		return nil, err
	}
	s.kafkaBase = base
	topics := make([]string, 0, len(s.cfg.Inputs))
	for _, in := range s.cfg.Inputs {
		topics = append(topics, in.Topic)
	}
	reset := kgo.NewOffset().AtStart()
	if s.cfg.OffsetReset == "latest" {
		reset = kgo.NewOffset().AtEnd()
	}
	changelog := ""
	if s.cfg.State != nil {
		changelog = s.cfg.State.ChangelogTopic
	}
	maxRecords := int(s.cfg.Runtime.MaxBatchRecords * s.cfg.Runtime.MaxInFlightBatches)
	opts := append(base,
		kgo.ConsumerGroup(s.cfg.GroupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		// Control records (transaction markers) are returned so that committed offsets move past
		// them: otherwise a drained partition of a transactional input keeps a lag of 1 forever
		// and KEDA never scales the entity to zero (kedacore/keda#5675).
		kgo.KeepControlRecords(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RecordPartitioner(routingPartitioner{manual: changelog}),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(max(10_000, 4*maxRecords)),
		kgo.OnPartitionsAssigned(s.onAssigned),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onRevoked),
	)
	if s.starts = newStarts(s.cfg, s.listAdmin, s.log); s.starts != nil {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(s.starts.adjust))
	}
	// Static membership (KIP-345) in the classic protocol of Group mode: a restarted pod rejoins
	// under its StatefulSet identity and takes its partitions back at once, instead of waiting
	// out the session timeout of its dead predecessor. Such a member does not leave the group
	// when its client closes, so close leaves explicitly when the pod stops (see close).
	// Not with KIP-848, where a member that died without leaving holds its instance id until
	// the broker's group.consumer.session.timeout.ms, so a restarted pod could not rejoin.
	// Not in Static mode either: a static member that rejoins a stable group gets its previous
	// assignment back without a rebalance, and a rejoining static leader is told to skip the
	// assignment, so a new map would never be applied. Static pods are dynamic members: every
	// new session (a reload with a new map) leaves and joins, which is a rebalance in which the
	// leader applies the newest map.
	sessionTimeout := s.cfg.Runtime.SessionTimeout.Duration
	if sessionTimeout == 0 {
		sessionTimeout = config.DefaultClassicSessionTimeout
	}
	classic := []kgo.Opt{kgo.SessionTimeout(sessionTimeout), kgo.HeartbeatInterval(min(3*time.Second, sessionTimeout/3))}
	switch s.cfg.Assignment.Mode {
	case config.StaticAssignment:
		opts = append(opts, kgo.Balancers(newStaticBalancer(s.ordinal, s.cfg.Assignment)))
		opts = append(opts, classic...)
	default:
		use848 := s.cfg.Runtime.GroupProtocol == config.GroupProtocolConsumer
		if s.cfg.Runtime.GroupProtocol == "" {
			use848 = brokersSupportKIP848(ctx, base)
		}
		if use848 {
			opts = append(opts, kgo.Balancers(kgo.StickyBalancer()), kgo.ServerSideBalancer())
			if d := s.cfg.Runtime.SessionTimeout.Duration; d > 0 {
				requestGroupSessionTimeout(ctx, base, s.cfg.GroupID, d, s.log)
			}
		} else {
			s.instanceID = s.cfg.GroupID + "-" + s.identity
			opts = append(opts, kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.InstanceID(s.instanceID))
			opts = append(opts, classic...)
		}
		s.log.Info("group protocol", "kip848", use848)
	}
	if s.cfg.Guarantee == config.ExactlyOnce {
		opts = append(opts,
			kgo.TransactionalID(s.cfg.TransactionalIDPrefix+"-"+s.identity),
			kgo.TransactionTimeout(state.TransactionTimeout(s.cfg)),
			kgo.RequireStableFetchOffsets(),
		)
	}
	return opts, nil
}

// requestGroupSessionTimeout asks the broker to use d as the KIP-848 session timeout of group
// (the group config consumer.session.timeout.ms). The broker accepts it only within its
// group.consumer.min.session.timeout.ms..group.consumer.max.session.timeout.ms (45 s..60 s by
// default) and only from a principal allowed to alter the group's configs; otherwise the
// broker's group.consumer.session.timeout.ms stays in force, which is logged, not fatal.
func requestGroupSessionTimeout(ctx context.Context, base []kgo.Opt, group string, d time.Duration, log *slog.Logger) {
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrIncrementalAlterConfigsRequest()
	res := kmsg.NewIncrementalAlterConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
	res.ResourceName = group
	c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
	c.Name = "consumer.session.timeout.ms"
	c.Op = kmsg.IncrementalAlterConfigOpSet
	c.Value = kmsg.StringPtr(strconv.FormatInt(d.Milliseconds(), 10))
	res.Configs = append(res.Configs, c)
	req.Resources = append(req.Resources, res)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil && len(resp.Resources) > 0 {
		err = kerr.ErrorForCode(resp.Resources[0].ErrorCode)
		if err != nil && resp.Resources[0].ErrorMessage != nil {
			err = fmt.Errorf("%w: %s", err, *resp.Resources[0].ErrorMessage)
		}
	}
	if err != nil {
		log.Warn("the broker did not take runtime.sessionTimeout as the group's consumer.session.timeout.ms; its group.consumer.session.timeout.ms applies (see group.consumer.min/max.session.timeout.ms)", "sessionTimeout", d, "err", err)
		return
	}
	log.Info("group session timeout set", "consumer.session.timeout.ms", d.Milliseconds())
}

// brokersSupportKIP848 reports whether every broker serves ConsumerGroupHeartbeat v1 (Kafka 4.0).
func brokersSupportKIP848(ctx context.Context, base []kgo.Opt) bool {
	cl, err := kgo.NewClient(base...)
	if err != nil {
		return false
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil || len(vs) == 0 {
		return false
	}
	for _, v := range vs {
		if v.Err != nil {
			return false
		}
		if max, ok := v.KeyMaxVersion(68); !ok || max < 1 {
			return false
		}
	}
	return true
}

func (s *session) onAssigned(_ context.Context, _ *kgo.Client, added map[string][]int32) {
	s.amu.Lock()
	defer s.amu.Unlock()
	for t, ps := range added {
		s.assigned[t] = append(s.assigned[t], ps...)
		slices.Sort(s.assigned[t])
		s.assigned[t] = slices.Compact(s.assigned[t])
	}
	s.changed = true
	s.m.rebalances.Inc()
}

// listAdmin is the admin client that resolves start positions. It is not the session's client:
// franz-go may call the start adjustment before the session has its client in hand.
func (s *session) listAdmin() (*kadm.Client, error) {
	s.listerMu.Lock()
	defer s.listerMu.Unlock()
	if s.lister == nil {
		cl, err := kgo.NewClient(s.kafkaBase...)
		if err != nil {
			return nil, fmt.Errorf("kafka client for start positions: %w", err)
		}
		s.lister = cl
	}
	return kadm.NewClient(s.lister), nil
}

// dropInputs deletes the group's committed offsets on the topics this configuration no longer
// reads (see dropped), with a Kafka client of its own, until none is left or the session ends.
func (s *session) dropInputs(ctx context.Context) {
	var cl *kgo.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	admin := func() (*kadm.Client, error) {
		if cl == nil {
			c, err := kgo.NewClient(s.kafkaBase...)
			if err != nil {
				return nil, fmt.Errorf("kafka client for dropped inputs: %w", err)
			}
			cl = c
		}
		return kadm.NewClient(cl), nil
	}
	newDropped(s.cfg, admin, s.o, s.m, s.log).run(ctx)
}

func (s *session) onRevoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.amu.Lock()
	defer s.amu.Unlock()
	for t, ps := range lost {
		s.assigned[t] = slices.DeleteFunc(s.assigned[t], func(p int32) bool { return slices.Contains(ps, p) })
		for _, p := range ps {
			s.m.lag.DeleteLabelValues(t, strconv.Itoa(int(p)))
			s.lost[p] = true
		}
	}
	s.changed = true
	s.m.rebalances.Inc()
}

// syncAssignment hands a changed assignment to the state sidecar, which restores gained
// partitions before any of their records reach the function.
func (s *session) syncAssignment(ctx context.Context) error {
	s.amu.Lock()
	if !s.changed {
		s.amu.Unlock()
		return nil
	}
	s.changed = false
	snapshot := map[string][]int32{}
	parts := map[int32]bool{}
	for t, ps := range s.assigned {
		snapshot[t] = slices.Clone(ps)
		for _, p := range ps {
			parts[p] = true
		}
	}
	// A partition lost and assigned again since the last sync may have been owned, processed
	// and committed by another pod in between: the state sidecar drops it first, so that the
	// assignment below restores it from the changelog instead of keeping a stale store.
	var regained []int32
	for p := range s.lost {
		if parts[p] {
			regained = append(regained, p)
		}
	}
	clear(s.lost)
	s.amu.Unlock()
	if s.st != nil {
		list := slices.Sorted(maps.Keys(parts))
		s.live.waiting.Add(1)
		defer s.live.waiting.Add(-1)
		if len(regained) > 0 {
			kept := slices.DeleteFunc(slices.Clone(list), func(p int32) bool { return slices.Contains(regained, p) })
			if _, err := s.st.Assign(ctx, &statev1.AssignRequest{Session: s.stSess, Partitions: kept}, grpc.WaitForReady(true)); err != nil {
				return fmt.Errorf("drop regained partitions %v in the state sidecar: %w", regained, err)
			}
		}
		if _, err := s.st.Assign(ctx, &statev1.AssignRequest{Session: s.stSess, Partitions: list}, grpc.WaitForReady(true)); err != nil {
			return fmt.Errorf("assign partitions %v to the state sidecar: %w", list, err)
		}
	}
	s.synced = parts
	for _, in := range s.cfg.Inputs {
		s.m.assigned.WithLabelValues(in.Topic).Set(float64(len(snapshot[in.Topic])))
	}
	s.live.beat()
	s.ready.Store(true)
	s.log.Info("assignment", "partitions", snapshot)
	if s.o.hooks.OnAssigned != nil {
		s.o.hooks.OnAssigned(snapshot)
	}
	return nil
}

// open connects the session's three parties. The function comes first: a session that waits
// for its function (one that said it is stopping, or is restarting) holds no partitions, so
// they move to the other pods meanwhile. Under ExactlyOnce the producer id is initialised
// before the state session begins, which fences a predecessor with the same transactional id
// and aborts its open transaction, so that the state restore that follows sees only committed
// changelog writes.
func (s *session) open(ctx context.Context) error {
	dial := append(wirecodec.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)
	var err error
	s.fnConn, err = grpc.NewClient("unix://"+s.o.functionSocket, dial...)
	if err != nil {
		return fmt.Errorf("connect to function: %w", err)
	}
	s.fn, err = functionv1.NewFunctionClient(s.fnConn).Process(ctx, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("open function stream: %w", err)
	}
	open := &functionv1.Open{
		ProtocolVersion: 1,
		Namespace:       s.cfg.Namespace, Pipeline: s.cfg.Pipeline, Entity: s.cfg.Entity,
		UserConfig: s.cfg.UserConfig,
	}
	for _, in := range s.cfg.Inputs {
		open.InputStreams = append(open.InputStreams, in.Stream)
	}
	for _, out := range s.cfg.Outputs {
		open.OutputStreams = append(open.OutputStreams, out.Stream)
	}
	if s.cfg.State != nil {
		open.StateSocket = s.cfg.Runtime.StateSocket
	}
	if err := s.fn.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_Open{Open: open}}); err != nil {
		return fmt.Errorf("send Open to function: %w", err)
	}
	res, err := s.fn.Recv()
	if err != nil {
		return fmt.Errorf("receive Opened from function: %w", err)
	}
	if res.GetOpened() == nil {
		return errors.New("function answered Open with something other than Opened")
	}
	sdkName := res.GetOpened().GetSdk()
	s.protocol = negotiateProtocol(res.GetOpened())

	opts, err := s.kafkaOptions(ctx)
	if err != nil {
		return err
	}
	if s.starts != nil {
		if err := s.starts.waitHandovers(ctx); err != nil {
			return fmt.Errorf("take inputs over: %w", err)
		}
	}
	if s.retire != nil {
		if err := s.prepareRetire(ctx); err != nil {
			return err
		}
	}
	if s.cfg.Guarantee == config.ExactlyOnce {
		s.txn, err = kgo.NewGroupTransactSession(opts...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
		s.cl = s.txn.Client()
		if _, _, err := s.cl.ProducerID(ctx); err != nil {
			return fmt.Errorf("initialize transactional producer: %w", err)
		}
	} else {
		s.cl, err = kgo.NewClient(opts...)
		if err != nil {
			return fmt.Errorf("kafka client: %w", err)
		}
	}
	if s.cfg.State != nil {
		s.stConn, err = grpc.NewClient("unix://"+s.o.stateSocket, dial...)
		if err != nil {
			return fmt.Errorf("connect to state sidecar: %w", err)
		}
		s.st = statev1.NewStateClient(s.stConn)
		res, err := s.st.Begin(ctx, &statev1.BeginRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("begin state session: %w", err)
		}
		s.stSess = res.GetSession()
	}
	s.log.Info("session open", "function_sdk", sdkName, "protocol_version", s.protocol, "guarantee", s.cfg.Guarantee, "mode", s.cfg.Assignment.Mode)
	return nil
}

// close ends the session. Closing the client leaves the group, except for a classic static
// member (Group mode), which the broker keeps until its session timeout so that a restart
// takes its partitions back without a rebalance. leave says the pod is going away (shutdown,
// or its function stopped): then the static member is removed too, so that its partitions move
// to the other pods at once rather than after the session timeout.
func (s *session) close(leave bool) {
	if s.cl != nil {
		s.cl.CloseAllowingRebalance()
		if leave && s.instanceID != "" {
			s.leaveStatic()
		}
	}
	s.listerMu.Lock()
	if s.lister != nil {
		s.lister.Close()
		s.lister = nil
	}
	s.listerMu.Unlock()
	if s.fn != nil {
		_ = s.fn.CloseSend()
	}
	if s.fnConn != nil {
		s.fnConn.Close()
	}
	if s.stConn != nil {
		s.stConn.Close()
	}
}

// leaveStatic removes the session's static member from the group, with a client of its own:
// the session's client is closed, so nothing rejoins under the instance id meanwhile.
func (s *session) leaveStatic() {
	cl, err := kgo.NewClient(s.kafkaBase...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	res, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(s.cfg.GroupID).InstanceIDs(s.instanceID).Reason("millrace pod stopping"))
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		s.log.Warn("leave the group; the partitions move after the session timeout instead", "instance", s.instanceID, "err", err)
		return
	}
	s.log.Info("left the group", "instance", s.instanceID)
}

// run processes until stop is closed (then it finishes the current interval, commits and
// returns errStopped) or something fails.
func (s *session) run(ctx context.Context, stop <-chan struct{}) error {
	// Until the session is open, stopping cancels it: the function or the state sidecar may not
	// be up, and there is nothing to drain yet.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opened := make(chan struct{})
	go func() {
		select {
		case <-stop:
			cancel()
		case <-opened:
		}
	}()
	err := s.open(ctx)
	close(opened)
	if err != nil {
		select {
		case <-stop:
			return errStopped
		default:
			return err
		}
	}
	// stopping ends when stop closes: it cancels the waits that must not hold up a drain (polling,
	// restoring newly assigned state), while committing keeps using ctx.
	stopping, cancelStopping := context.WithCancel(ctx)
	defer cancelStopping()
	go func() {
		select {
		case <-stop:
		case <-s.fnStopping:
		case <-stopping.Done():
		}
		cancelStopping()
	}()
	// stopped says why the session stops: the function's notice ends it with errFunctionStopped
	// (unless Run also asked it to stop).
	stopped := func() error {
		if isClosed(s.fnStopping) && !isClosed(stop) {
			return errFunctionStopped
		}
		return errStopped
	}
	go s.receive(ctx)
	go s.dropInputs(ctx)
	for {
		if err := s.interval(ctx, stopping); err != nil {
			if stopping.Err() != nil && ctx.Err() == nil {
				// Asked to stop while waiting: the interval was aborted, which is a stop, not a
				// failure of the session.
				s.log.Info("interval aborted while stopping", "err", err)
				return stopped()
			}
			return err
		}
		if stopping.Err() != nil {
			return stopped()
		}
		if s.retireCheck(ctx) {
			s.log.Info("retirement: the group's committed offsets reached every drain target; leaving the group")
			return errRetired
		}
	}
}

// interval is one commit interval: begin, poll and dispatch until the interval ends or stopping
// is cancelled, drain, write state to the changelog, commit.
func (s *session) interval(ctx, stopping context.Context) error {
	if s.txn != nil {
		if err := s.txn.Begin(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
	}
	if err := s.syncAssignment(stopping); err != nil {
		return s.abort(ctx, err)
	}
	deadline := time.Now().Add(s.cfg.Runtime.CommitInterval.Duration)
	polled := 0
	for stopping.Err() == nil && time.Now().Before(deadline) {
		pollCtx, cancel := context.WithDeadline(stopping, deadline)
		fetches := s.cl.PollRecords(pollCtx, int(s.cfg.Runtime.MaxBatchRecords*s.cfg.Runtime.MaxInFlightBatches))
		cancel()
		s.live.beat()
		if err := s.failure(); err != nil {
			return s.abort(ctx, err)
		}
		if ctx.Err() != nil {
			return s.abort(ctx, ctx.Err())
		}
		if fetches.IsClientClosed() {
			return s.abort(ctx, errors.New("kafka client closed"))
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return s.abort(ctx, ferr)
		}
		if err := s.syncAssignment(stopping); err != nil {
			return s.abort(ctx, err)
		}
		if s.starts != nil {
			if err := s.starts.commit(ctx, s.cl); err != nil {
				s.log.Warn("start positions not committed; a partition that changes hands before its first commit resolves its start again", "err", err)
			}
		}
		now := time.Now()
		var derr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if derr != nil || len(fp.Records) == 0 {
				return
			}
			last := fp.Records[len(fp.Records)-1]
			s.m.lag.WithLabelValues(fp.Topic, strconv.Itoa(int(fp.Partition))).Set(float64(max(0, fp.HighWatermark-last.Offset-1)))
			recs := fp.Records
			if s.retire != nil {
				recs = s.cut(fp.Topic, fp.Partition, recs)
			}
			derr = s.dispatch(ctx, recs, now)
			polled += len(recs)
		})
		if derr != nil {
			return s.abort(ctx, derr)
		}
	}
	return s.commit(ctx, polled)
}

// dispatch sends the data records of one partition's fetch to the function in batches of at most
// MaxBatchRecords, blocking while MaxInFlightBatches are outstanding: that bound, with franz-go's
// bounded fetch buffer, is the sidecar's backpressure.
func (s *session) dispatch(ctx context.Context, recs []*kgo.Record, polled time.Time) error {
	// Control records (transaction markers) are rare: only then is the fetch copied to leave
	// them out. The batches keep referencing the records until they are answered.
	data := recs
	if slices.ContainsFunc(recs, func(r *kgo.Record) bool { return r.Attrs.IsControl() }) {
		data = slices.DeleteFunc(slices.Clone(recs), func(r *kgo.Record) bool { return r.Attrs.IsControl() })
	}
	n := int(s.cfg.Runtime.MaxBatchRecords)
	for len(data) > 0 {
		chunk := data[:min(n, len(data))]
		data = data[len(chunk):]
		select {
		case s.sem <- struct{}{}:
		case <-s.broken:
			return s.failure()
		case <-ctx.Done():
			return ctx.Err()
		}
		s.bmu.Lock()
		s.nextID++
		id := s.nextID
		sb := &sentBatch{records: chunk, polled: polled, sent: time.Now()}
		s.batches[id] = sb
		s.bmu.Unlock()
		s.m.inFlight.Inc()
		if err := s.send(id, chunk); err != nil {
			err = fmt.Errorf("send batch to function: %w", err)
			s.setFail(err)
			return err
		}
		s.counter(s.inCounter, s.m.recordsIn, chunk[0].Topic).Add(float64(len(chunk)))
	}
	return nil
}

// send encodes one batch into the session's reused messages: gRPC marshals a message before
// Send returns (the connection has no stats handler that could read it later), so the same
// structs serve every batch and a batch costs no allocation per record
// (keys and values are referenced, not copied).
func (s *session) send(id uint64, chunk []*kgo.Record) error {
	if s.protocol >= functionv1.ProtocolVersionPacked {
		return s.sendPacked(id, chunk)
	}
	first := chunk[0]
	if cap(s.sendSlab) < len(chunk) {
		s.sendSlab = make([]functionv1.Record, len(chunk))
		s.sendPtrs = make([]*functionv1.Record, len(chunk))
	}
	b := &s.sendBatch
	*b = functionv1.Batch{
		Id: id, StateSession: s.stSess,
		Stream: s.streamOf[first.Topic], Topic: first.Topic, Partition: first.Partition,
		Records: s.sendPtrs[:len(chunk)],
	}
	for i, r := range chunk {
		pr := &s.sendSlab[i]
		*pr = functionv1.Record{Offset: r.Offset, Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp.UnixMilli()}
		if len(r.Headers) > 0 {
			pr.Headers = make([]*functionv1.Header, len(r.Headers))
			for j, h := range r.Headers {
				pr.Headers[j] = &functionv1.Header{Key: h.Key, Value: h.Value}
			}
		}
		b.Records[i] = pr
	}
	s.sendReq.Request = &s.sendWrap
	s.sendWrap.Batch = b
	err := s.fn.Send(&s.sendReq)
	// Drop the references to the records so the fetch can be collected once answered.
	clear(s.sendSlab[:len(chunk)])
	return err
}

// receive handles the function's results: it produces outputs and dead letters and frees the
// batch's in-flight slot. Produce errors fail the session; nothing is skipped.
func (s *session) receive(ctx context.Context) {
	defer close(s.broken)
	// Each result is handled before the next is received, so one message serves them all.
	var res functionv1.ReusedResponse
	for {
		if err := s.fn.RecvMsg(&res); err != nil {
			s.setFail(fmt.Errorf("receive from function: %w", err))
			return
		}
		r := res.GetResult()
		packed := res.GetPackedResult()
		if r == nil && packed == nil {
			if res.GetStopping() != nil {
				if !isClosed(s.fnStopping) {
					s.log.Info("the function is stopping; committing the interval and closing the session")
					close(s.fnStopping)
				}
				continue
			}
			s.setFail(errors.New("function sent something other than a BatchResult or Stopping"))
			return
		}
		id := r.GetId()
		if packed != nil {
			id = packed.GetId()
		}
		s.bmu.Lock()
		sb, ok := s.batches[id]
		delete(s.batches, id)
		s.bmu.Unlock()
		if !ok {
			s.setFail(fmt.Errorf("function answered unknown batch %d", id))
			return
		}
		if packed != nil {
			if err := s.handlePacked(ctx, sb, packed); err != nil {
				s.setFail(err)
				return
			}
		} else if len(r.GetRecords()) != len(sb.records) {
			s.setFail(fmt.Errorf("function answered batch %d with %d results for %d records", r.GetId(), len(r.GetRecords()), len(sb.records)))
			return
		}
		now := time.Now()
		s.m.functionLat.Observe(now.Sub(sb.sent).Seconds())
		s.m.batchLatency.Observe(now.Sub(sb.polled).Seconds())
		for i, rr := range r.GetRecords() { // none for a packed result
			s.handleResult(ctx, sb.records[i], rr)
		}
		if s.onlyCount > 0 {
			s.counter(s.outCounter, s.m.recordsOut, s.only).Add(float64(s.onlyCount))
			s.onlyCount = 0
		}
		for topic, n := range s.outCounts {
			s.counter(s.outCounter, s.m.recordsOut, topic).Add(float64(n))
		}
		clear(s.outCounts)
		<-s.sem
		s.m.inFlight.Dec()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// recordPool recycles produced records: franz-go is done with a record once its promise runs.
var recordPool = sync.Pool{New: func() any { return new(kgo.Record) }}

func newRecord() *kgo.Record { return recordPool.Get().(*kgo.Record) }

func (s *session) promise(r *kgo.Record, err error) {
	if err != nil {
		s.setFail(fmt.Errorf("produce to %s: %w", r.Topic, err))
		return
	}
	*r = kgo.Record{}
	recordPool.Put(r)
}

func (s *session) produce(ctx context.Context, rec *kgo.Record) {
	if s.txn != nil {
		s.txn.Produce(ctx, rec, s.produced)
	} else {
		s.cl.Produce(ctx, rec, s.produced)
	}
}

func (s *session) handleResult(ctx context.Context, in *kgo.Record, rr *functionv1.RecordResult) {
	if msg := rr.GetError(); msg != "" {
		s.deadLetter(ctx, in, msg)
		return
	}
	// All outputs are checked before any is produced: a record with one bad output produces none.
	for _, o := range rr.GetOutputs() {
		if s.outputTopic(o) == "" {
			s.deadLetter(ctx, in, fmt.Sprintf("output stream %q is not an output of entity %s", o.GetStream(), s.cfg.Entity))
			return
		}
	}
	for _, o := range rr.GetOutputs() {
		rec := newRecord()
		rec.Topic, rec.Key, rec.Value, rec.Timestamp = s.outputTopic(o), o.Key, o.Value, in.Timestamp
		if ts := o.GetTimestampMs(); ts != 0 {
			rec.Timestamp = time.UnixMilli(ts)
		}
		if len(o.GetHeaders()) > 0 {
			rec.Headers = make([]kgo.RecordHeader, len(o.GetHeaders()))
			for i, h := range o.GetHeaders() {
				rec.Headers[i] = kgo.RecordHeader{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
		if rec.Topic == s.only {
			s.onlyCount++
		} else {
			s.outCounts[rec.Topic]++
		}
		s.produce(ctx, rec)
	}
}

// counter returns vec's counter for topic, resolved once per session (the map is used by one
// goroutine only: dispatch's for inCounter, receive's for outCounter).
func (s *session) counter(cache map[string]prometheus.Counter, vec *prometheus.CounterVec, topic string) prometheus.Counter {
	c, ok := cache[topic]
	if !ok {
		c = vec.WithLabelValues(topic)
		cache[topic] = c
	}
	return c
}

func (s *session) outputTopic(o *functionv1.OutputRecord) string {
	if o.GetStream() == "" {
		return s.only
	}
	return s.topicOf[o.GetStream()]
}

func (s *session) deadLetter(ctx context.Context, in *kgo.Record, msg string) {
	headers := append(slices.Clone(in.Headers),
		kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(in.Topic)},
		kgo.RecordHeader{Key: HeaderSourcePartition, Value: []byte(strconv.Itoa(int(in.Partition)))},
		kgo.RecordHeader{Key: HeaderSourceOffset, Value: []byte(strconv.FormatInt(in.Offset, 10))},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(msg)},
	)
	s.produce(ctx, &kgo.Record{Topic: s.dlqOf[in.Topic], Key: in.Key, Value: in.Value, Headers: headers, Timestamp: in.Timestamp})
	s.m.deadLettered.WithLabelValues(in.Topic).Inc()
	s.log.Warn("dead-lettered record", "topic", in.Topic, "partition", in.Partition, "offset", in.Offset, "err", msg)
}

// drain waits until the function has answered every batch sent.
func (s *session) drain(ctx context.Context) error {
	for {
		s.bmu.Lock()
		n := len(s.batches)
		s.bmu.Unlock()
		if n == 0 {
			return s.failure()
		}
		select {
		case <-s.notify:
		case <-s.broken:
			return s.failure()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// abortTimeout bounds aborting a transaction; it is shorter than abortGrace so that a shutdown
// that ran out of time still aborts before Run gives up on the session.
const abortTimeout = 3 * time.Second

// abort ends a failed interval without committing and returns err, which ends the session.
func (s *session) abort(ctx context.Context, err error) error {
	s.m.commits.WithLabelValues("failed").Inc()
	if s.txn != nil {
		// The transaction's outcome does not matter for correctness (the next session fences it
		// anyway); aborting now just frees the partitions' last stable offset sooner.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		_, _ = s.txn.End(actx, kgo.TryAbort)
	}
	return err
}

// commit ends an interval: once every batch is answered and every output acknowledged, the
// state writes go to the changelog, then offsets commit (in the same transaction under
// ExactlyOnce, strictly after under AtLeastOnce).
func (s *session) commit(ctx context.Context, polled int) error {
	if err := s.drain(ctx); err != nil {
		return s.abort(ctx, err)
	}
	if s.st != nil {
		fl, err := s.st.Flush(ctx, &statev1.FlushRequest{Session: s.stSess})
		if err != nil {
			return s.abort(ctx, fmt.Errorf("flush state: %w", err))
		}
		for _, m := range fl.GetMutations() {
			rec := &kgo.Record{Topic: s.cfg.State.ChangelogTopic, Partition: m.GetPartition(), Key: m.GetKey()}
			if !m.GetDelete() {
				rec.Value = m.GetValue()
				if rec.Value == nil {
					rec.Value = []byte{}
				}
			}
			s.produce(ctx, rec)
		}
	}
	if err := s.cl.Flush(ctx); err != nil {
		return s.abort(ctx, fmt.Errorf("flush producer: %w", err))
	}
	if err := s.failure(); err != nil {
		return s.abort(ctx, err)
	}
	if s.txn != nil {
		// End is bounded: when the group has dropped this member (its session expired while the
		// process was frozen, or the broker fenced it), End waits for a forced heartbeat that the
		// stopped heartbeat loop never takes, or for the revoke that BlockRebalanceOnPoll holds
		// back until End returns, and would wait forever (issue 10: sidecars that stopped
		// heartbeating and committing). Past the bound the transaction is not committed and the
		// session ends; the next one resolves the transaction when it initialises its producer.
		endCtx, cancel := context.WithTimeout(s.capCommit(ctx), state.TransactionTimeout(s.cfg))
		committed, err := s.txn.End(endCtx, kgo.TryCommit)
		if err == nil && endCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no outcome within %s: %w", state.TransactionTimeout(s.cfg), endCtx.Err())
		}
		cancel()
		if err != nil {
			// The outcome is unknown; the state sidecar keeps the flush in doubt and the next
			// session restores from the changelog.
			s.m.commits.WithLabelValues("failed").Inc()
			return fmt.Errorf("end transaction: %w", err)
		}
		if err := s.completeState(ctx, committed); err != nil {
			return err
		}
		s.afterRetireCommit(committed)
		if committed {
			s.m.commits.WithLabelValues("committed").Inc()
			s.afterCommit(polled)
		} else {
			// A rebalance interrupted the transaction: franz-go rewound consumption to the last
			// commit, and the aborted state writes are discarded.
			s.m.commits.WithLabelValues("aborted").Inc()
			s.log.Info("transaction aborted by a rebalance; reprocessing from the last commit")
		}
		s.txn.AllowRebalance()
		return nil
	}
	if err := s.completeState(ctx, true); err != nil {
		return err
	}
	// A partition cut at its drain target commits even when none of its records was processed
	// (aborted records or markers before the target).
	if polled > 0 || len(s.rcut.pending) > 0 {
		if err := s.cl.CommitUncommittedOffsets(s.capCommit(ctx)); err != nil {
			// Another pod reprocesses these records: duplicates, never loss.
			s.m.commits.WithLabelValues("failed").Inc()
			s.log.Warn("commit offsets", "err", err)
		} else {
			s.m.commits.WithLabelValues("committed").Inc()
			s.afterRetireCommit(true)
			s.afterCommit(polled)
		}
	}
	s.cl.AllowRebalance()
	return nil
}

func (s *session) afterCommit(polled int) {
	if polled > 0 && s.o.hooks.OnCommit != nil {
		s.o.hooks.OnCommit()
	}
}

func (s *session) completeState(ctx context.Context, commit bool) error {
	if s.st == nil {
		return nil
	}
	if _, err := s.st.Complete(ctx, &statev1.CompleteRequest{Session: s.stSess, Commit: commit}); err != nil {
		return fmt.Errorf("complete state: %w", err)
	}
	return nil
}
