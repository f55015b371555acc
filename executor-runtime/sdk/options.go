package sdk

import (
	"log/slog"
	"os"
	"time"
)

// Environment variables a function binary reads.
const (
	// EnvFunctionSocket is the path of the socket the function serves on.
	EnvFunctionSocket = "MILLRACE_FUNCTION_SOCKET"
	// EnvStateSocket overrides the path of the state sidecar's socket.
	EnvStateSocket = "MILLRACE_STATE_SOCKET"
	// DefaultSocket is used when neither an option nor the environment names a socket.
	DefaultSocket = "/var/run/millrace/function.sock"
)

// Option configures Serve and Local.
type Option func(*options)

type options struct {
	socket      string
	stateSocket string
	logger      *slog.Logger
	hooks       Hooks
	userConfig  map[string]string
	// protocolVersions are the function protocol versions Serve announces in Opened.
	protocolVersions []uint32
	// stateCacheKeys bounds the function's copy of its state (protocol version 3).
	stateCacheKeys int
	// shutdownTimeout bounds how long Serve waits, after its context ended, for the I/O sidecar
	// to commit and close its session.
	shutdownTimeout time.Duration
}

// DefaultShutdownTimeout is how long Serve waits after SIGTERM for the I/O sidecar to close its
// session: the sidecar's own drain bound (20 s), inside Kubernetes' default 30 s grace period.
const DefaultShutdownTimeout = 20 * time.Second

func newOptions(opts []Option) options {
	o := options{
		socket:      os.Getenv(EnvFunctionSocket),
		stateSocket: os.Getenv(EnvStateSocket),
		logger:      slog.Default(),

		protocolVersions: []uint32{1, 2, 3},
		stateCacheKeys:   DefaultStateCacheKeys,

		shutdownTimeout: DefaultShutdownTimeout,
	}
	if o.socket == "" {
		o.socket = DefaultSocket
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithProtocolVersions sets the function protocol versions Serve announces to the I/O sidecar
// (default 1, 2 and 3; the session speaks the highest that both speak). WithProtocolVersions(1)
// makes the function speak what SDKs before version 2 spoke, one Record message per record;
// WithProtocolVersions(1, 2) what SDKs before version 3 spoke, one state read and one state
// write call per batch.
func WithProtocolVersions(versions ...uint32) Option {
	return func(o *options) { o.protocolVersions = versions }
}

// WithStateCacheKeys bounds how many keys of its state the function keeps between batches
// (protocol version 3; default DefaultStateCacheKeys). Past it, the function drops its copy at
// the next commit interval and reads the state sidecar again.
func WithStateCacheKeys(n int) Option { return func(o *options) { o.stateCacheKeys = n } }

// WithSocket sets the path of the Unix domain socket to serve on, overriding
// MILLRACE_FUNCTION_SOCKET.
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// WithStateSocket sets the path of the state sidecar's socket. By default it is the file the I/O
// sidecar names, in the directory of the function socket.
func WithStateSocket(path string) Option { return func(o *options) { o.stateSocket = path } }

// WithShutdownTimeout bounds how long Serve keeps serving, after its context ended, for the I/O
// sidecar to commit and close its session (default DefaultShutdownTimeout). Past it, Serve stops
// hard and returns ErrShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithLogger sets the logger; the default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithHooks installs hooks, for metrics or logging of your own.
func WithHooks(h Hooks) Option { return func(o *options) { o.hooks = h } }

// WithUserConfig sets the user configuration a Local runner hands the function; Serve receives
// it from the I/O sidecar instead.
func WithUserConfig(m map[string]string) Option { return func(o *options) { o.userConfig = m } }

// Hooks are called synchronously on the processing path; keep them fast. Any may be nil.
type Hooks struct {
	// OnSession is called when the I/O sidecar opens a session.
	OnSession func(SessionInfo)
	// OnBatch is called after a batch is processed.
	OnBatch func(BatchInfo)
	// OnRecordError is called for each record whose handler failed.
	OnRecordError func(r Record, err error)
}

// SessionInfo describes a session opened by the I/O sidecar.
type SessionInfo struct {
	Namespace, Pipeline, Entity string
	UserConfig                  map[string]string
	OutputStreams               []string
}

// BatchInfo describes one processed batch.
type BatchInfo struct {
	Records int
	// ProtocolVersion is the protocol of the batch: 1 (Batch), 2 (PackedBatch) or 3 (PackedBatch,
	// with the state carried in the batch's messages).
	ProtocolVersion uint32
	Errors          int
	Outputs         int
	Duration        time.Duration
}
