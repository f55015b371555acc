package iosidecar

import (
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// GCPercent is the garbage-collection target the millrace-io binary sets when GOGC is not in its
// environment. The sidecar's live heap is small and bounded (the fetch buffer and the batches in
// flight), but it allocates per batch at a high rate, so with Go's default of 100 it collects
// constantly: in the executor benchmark garbage collection was about a third of the sidecar's
// CPU. 400 lets the heap grow to five times the live data (tens of MiB) and collects a quarter as
// often. Set GOGC (or GOMEMLIMIT, which still applies) in the container to override it.
const GCPercent = 400

// Option configures Run.
type Option func(*options)

type options struct {
	log             *slog.Logger
	registry        *prometheus.Registry
	metricsAddr     string
	onMetrics       func(net.Addr)
	socketDir       string
	functionSocket  string
	stateSocket     string
	ordinal         *int
	pollConfig      time.Duration
	shutdownTimeout time.Duration
	livenessTimeout time.Duration
	hooks           Hooks
	// dropBackoff and dropBackoffMax bound the backoff between attempts at deleting a dropped
	// input's committed offsets (dropped.go).
	dropBackoff, dropBackoffMax time.Duration
	dropDelay                   *time.Duration
}

// Hooks observe the sidecar; they run synchronously, so keep them fast. Any may be nil.
type Hooks struct {
	// OnAssigned is called with the partitions (per input topic) this pod processes, after the
	// state of gained partitions is restored.
	OnAssigned func(map[string][]int32)
	// OnCommit is called after each commit interval that committed input offsets.
	OnCommit func()
	// OnSessionEnd is called when a session ends, with nil when it ended for a configuration
	// change or shutdown.
	OnSessionEnd func(error)
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegistry collects metrics into reg.
func WithRegistry(reg *prometheus.Registry) Option { return func(o *options) { o.registry = reg } }

// WithMetricsAddr overrides the listen address of /metrics, /healthz and /readyz (default
// ":<runtime.metricsPort>"); "-" disables it. bound, if not nil, receives the bound address.
func WithMetricsAddr(addr string, bound func(net.Addr)) Option {
	return func(o *options) { o.metricsAddr, o.onMetrics = addr, bound }
}

// WithSocketDir overrides runtime.socketDir, the directory of the function and state sockets
// (several pods of one entity on one machine, as in local mode, each need their own).
func WithSocketDir(dir string) Option { return func(o *options) { o.socketDir = dir } }

// WithFunctionSocket overrides the function socket path (default runtime.socketDir/functionSocket).
func WithFunctionSocket(path string) Option { return func(o *options) { o.functionSocket = path } }

// WithStateSocket overrides the state socket path (default runtime.socketDir/stateSocket).
func WithStateSocket(path string) Option { return func(o *options) { o.stateSocket = path } }

// WithOrdinal sets the pod ordinal instead of reading MILLRACE_ORDINAL, POD_NAME or the hostname.
func WithOrdinal(n int) Option { return func(o *options) { o.ordinal = &n } }

// WithConfigPollInterval sets how often the config file is checked for changes (default 1s).
func WithConfigPollInterval(d time.Duration) Option { return func(o *options) { o.pollConfig = d } }

// WithShutdownTimeout bounds the drain on shutdown (default 20s, inside Kubernetes' default 30s
// grace period).
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithLivenessTimeout overrides runtime.livenessTimeout: /healthz fails when a session that holds
// partitions has not turned its processing loop for this long.
func WithLivenessTimeout(d time.Duration) Option { return func(o *options) { o.livenessTimeout = d } }

// WithHooks installs hooks.
func WithHooks(h Hooks) Option { return func(o *options) { o.hooks = h } }

// WithDroppedInputDelay sets how long a session waits before its first attempt at deleting the
// committed offsets of inputs the entity no longer reads (by default 2 minutes: see dropped.go).
func WithDroppedInputDelay(d time.Duration) Option { return func(o *options) { o.dropDelay = &d } }

// WithDroppedInputBackoff sets the first and the longest wait between two attempts at deleting
// the committed offsets of an input the entity no longer reads, while an heir has not committed
// or a member still reads it (by default 2 s, doubling up to a minute).
func WithDroppedInputBackoff(first, longest time.Duration) Option {
	return func(o *options) { o.dropBackoff, o.dropBackoffMax = first, longest }
}
