package testenv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

// Logger is quiet unless MILLRACE_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("MILLRACE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Process is one component running in a goroutine.
type Process struct {
	cancel context.CancelFunc
	done   chan error
}

// Exited reports whether the component has returned on its own.
func (p *Process) Exited() bool {
	select {
	case err := <-p.done:
		p.done <- err
		return true
	default:
		return false
	}
}

// Stop cancels the component and waits for it to return.
func (p *Process) Stop(tb testing.TB) {
	tb.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("component returned: %v", err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatalf("component did not stop")
	}
}

func start(tb testing.TB, fn func(ctx context.Context) error) *Process {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- fn(ctx) }()
	return p
}

// Pod is one entity pod run in process: function, state sidecar (if stateful), I/O sidecar.
type Pod struct {
	Function, State, IO *Process
}

// Stop stops the I/O sidecar first (it drains and commits), then the others.
func (p *Pod) Stop(tb testing.TB) {
	tb.Helper()
	p.IO.Stop(tb)
	p.Function.Stop(tb)
	if p.State != nil {
		p.State.Stop(tb)
	}
}

// StartFunction runs the function container of pod ordinal alone with handler h, as the kubelet
// restarts it next to running sidecars (StartPod starts one with the sidecars).
func StartFunction(tb testing.TB, e *Entity, ordinal int, h sdk.Handler, fnOpts ...sdk.Option) *Process {
	tb.Helper()
	dir := filepath.Join(e.Dir, "pod"+strconv.Itoa(ordinal))
	fnSock := filepath.Join(dir, e.Config.Runtime.FunctionSocket)
	stSock := filepath.Join(dir, e.Config.Runtime.StateSocket)
	log := Logger().With("pod", ordinal)
	return start(tb, func(ctx context.Context) error {
		return sdk.Serve(ctx, h, append([]sdk.Option{sdk.WithSocket(fnSock), sdk.WithStateSocket(stSock), sdk.WithLogger(log)}, fnOpts...)...)
	})
}

// StartPod runs an entity pod with ordinal and handler h in process.
func StartPod(tb testing.TB, e *Entity, ordinal int, h sdk.Handler, ioOpts ...iosidecar.Option) *Pod {
	tb.Helper()
	return StartPodWith(tb, e, ordinal, h, nil, ioOpts...)
}

// StartPodWith is StartPod with options for the function's sdk.Serve too.
func StartPodWith(tb testing.TB, e *Entity, ordinal int, h sdk.Handler, fnOpts []sdk.Option, ioOpts ...iosidecar.Option) *Pod {
	tb.Helper()
	// Each pod of an entity has its own socket directory; the config file is shared.
	dir := filepath.Join(e.Dir, "pod"+strconv.Itoa(ordinal))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	fnSock := filepath.Join(dir, e.Config.Runtime.FunctionSocket)
	stSock := filepath.Join(dir, e.Config.Runtime.StateSocket)
	log := Logger().With("pod", ordinal)
	p := &Pod{}
	p.Function = StartFunction(tb, e, ordinal, h, fnOpts...)
	if e.Config.State != nil {
		p.State = start(tb, func(ctx context.Context) error {
			return state.Run(ctx, e.Path, state.WithSocket(stSock), state.WithMetricsAddr("-", nil), state.WithLogger(log))
		})
	}
	opts := append([]iosidecar.Option{
		iosidecar.WithFunctionSocket(fnSock), iosidecar.WithStateSocket(stSock), iosidecar.WithOrdinal(ordinal),
		iosidecar.WithMetricsAddr("-", nil), iosidecar.WithLogger(log),
		iosidecar.WithConfigPollInterval(100 * time.Millisecond),
		iosidecar.WithDroppedInputDelay(0), iosidecar.WithDroppedInputBackoff(100*time.Millisecond, time.Second),
	}, ioOpts...)
	p.IO = start(tb, func(ctx context.Context) error { return iosidecar.Run(ctx, e.Path, opts...) })
	return p
}
