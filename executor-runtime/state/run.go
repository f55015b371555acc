// Package state is the Millrace state sidecar: a key-value store per input partition behind the
// gRPC API of executor-runtime/proto/state/v1, on its own Unix domain socket, backed by memory or
// Pebble and by the entity's compacted changelog topic. See docs/executor.md.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/health"
	"github.com/millrace-dev/millrace/executor-runtime/internal/kafkaclient"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

type metrics struct {
	writes     prometheus.Counter
	restored   prometheus.Counter
	commits    prometheus.Counter
	aborts     prometheus.Counter
	partitions prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		writes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "millrace_state_writes_total", Help: "State writes received from the function."}),
		restored:   prometheus.NewCounter(prometheus.CounterOpts{Name: "millrace_state_restored_records_total", Help: "Changelog records replayed while restoring partitions."}),
		commits:    prometheus.NewCounter(prometheus.CounterOpts{Name: "millrace_state_commits_total", Help: "Flushed write sets applied after the I/O sidecar committed."}),
		aborts:     prometheus.NewCounter(prometheus.CounterOpts{Name: "millrace_state_aborts_total", Help: "Flushed write sets discarded after the I/O sidecar aborted."}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Name: "millrace_state_partitions", Help: "Partitions whose state this sidecar holds."}),
	}
	reg.MustRegister(m.writes, m.restored, m.commits, m.aborts, m.partitions)
	return m
}

// Option configures Run.
type Option func(*runOptions)

type runOptions struct {
	log         *slog.Logger
	registry    *prometheus.Registry
	metricsAddr string
	onMetrics   func(net.Addr)
	socket      string
	socketDir   string
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *runOptions) { o.log = l } }

// WithRegistry collects metrics into reg instead of a new registry.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *runOptions) { o.registry = reg } }

// WithMetricsAddr overrides the listen address of /metrics, /healthz and /readyz (default
// ":<runtime.stateMetricsPort>"); "-" disables the endpoint. bound, if not nil, receives the
// address actually bound.
func WithMetricsAddr(addr string, bound func(net.Addr)) Option {
	return func(o *runOptions) { o.metricsAddr, o.onMetrics = addr, bound }
}

// WithSocketDir overrides runtime.socketDir (the socket is <dir>/<runtime.stateSocket>).
func WithSocketDir(dir string) Option { return func(o *runOptions) { o.socketDir = dir } }

// WithSocket overrides the socket path (default runtime.socketDir/runtime.stateSocket).
func WithSocket(path string) Option { return func(o *runOptions) { o.socket = path } }

// Run serves the state sidecar of the entity configured at cfgPath until ctx ends.
func Run(ctx context.Context, cfgPath string, opts ...Option) error {
	o := runOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if cfg.State == nil {
		return errors.New("the executor config has no state section: this entity has no state sidecar")
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
		o.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if o.socket == "" {
		dir := cfg.Runtime.SocketDir
		if o.socketDir != "" {
			dir = o.socketDir
		}
		o.socket = filepath.Join(dir, cfg.Runtime.StateSocket)
	}
	if o.metricsAddr == "" {
		o.metricsAddr = ":" + strconv.Itoa(int(cfg.Runtime.StateMetricsPort))
	}
	log := o.log.With("entity", cfg.Entity)

	store, err := OpenStore(cfg.State.Backend, cfg.State.Dir)
	if err != nil {
		return err
	}
	defer store.Close()
	kopts, err := kafkaclient.Options(cfg.Kafka, log)
	if err != nil {
		return err
	}
	kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	restorer := &ChangelogRestorer{Topic: cfg.State.ChangelogTopic, Opts: kopts, OpenTxnWait: TransactionTimeout(cfg) + 5*time.Second, Log: log}
	srv := NewServer(store, restorer, log)
	srv.metrics = newMetrics(o.registry)

	if err := os.MkdirAll(filepath.Dir(o.socket), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Remove(o.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	lis, err := net.Listen("unix", o.socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.socket, err)
	}
	gs := grpc.NewServer(append(wirecodec.ServerOptions(), grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))...)
	statev1.RegisterStateServer(gs, srv)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(lis) }()
	if o.metricsAddr != "-" {
		go func() {
			errc <- health.Serve(ctx, o.metricsAddr, o.registry, func() error {
				if !srv.Ready() {
					return errors.New("state not restored yet")
				}
				return nil
			}, nil, o.onMetrics)
		}()
	}
	log.Info("state sidecar serving", "socket", o.socket, "backend", cfg.State.Backend, "changelog", cfg.State.ChangelogTopic)
	select {
	case <-ctx.Done():
		gs.GracefulStop()
		return nil
	case err := <-errc:
		gs.Stop()
		return err
	}
}

// TransactionTimeout is the transaction timeout of an entity's ExactlyOnce producers: 10 s, or
// ten commit intervals when that is longer. The broker aborts a transaction left open this long
// by a producer that died; the state sidecar waits a little longer than this for one before
// restoring.
func TransactionTimeout(cfg *config.Executor) time.Duration {
	return max(10*time.Second, 10*cfg.Runtime.CommitInterval.Duration)
}
