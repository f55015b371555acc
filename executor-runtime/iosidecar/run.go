// Package iosidecar is the Millrace I/O sidecar: it consumes an entity's input topics with
// franz-go, sends record batches to the function over the function protocol
// (executor-runtime/proto/function/v1), produces the outputs, dead-letters poison records,
// writes the state sidecar's changes to the changelog and commits, with AtLeastOnce or
// ExactlyOnce guarantees. See docs/executor.md.
package iosidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/configwatch"
	"github.com/millrace-dev/millrace/executor-runtime/internal/health"
	"github.com/millrace-dev/millrace/executor-runtime/internal/ordinal"
)

// ErrShutdownTimeout is returned by Run when the drain after ctx ended did not finish within the
// shutdown timeout: the interval in progress was aborted (not committed) and Run returned anyway,
// so that the pod exits inside its termination grace period. Nothing is lost: the next session,
// in this pod or another, resumes from the last commit.
var ErrShutdownTimeout = errors.New("drain exceeded the shutdown timeout")

// abortGrace bounds, after the shutdown timeout, the wait for the session to abort its
// transaction and for its Kafka client to close: 20 s of drain + 5 s stays inside Kubernetes'
// default 30 s grace period.
const abortGrace = 5 * time.Second

// liveness is what /healthz reports: the processing loop of a session that holds partitions
// turns at least once per commit interval (each poll returns by the interval's deadline), so a
// loop that has not turned for the liveness timeout is stuck, and the kubelet should restart
// the container. Waiting for a state restore counts as progress.
type liveness struct {
	last    atomic.Int64 // unix nanoseconds of the loop's last turn
	waiting atomic.Int32 // restores in progress
}

func (l *liveness) beat() { l.last.Store(time.Now().UnixNano()) }

// check fails when the session holds partitions (assigned is the readiness flag: an assignment
// with restored state) and its loop has not turned for timeout.
func (l *liveness) check(assigned bool, timeout time.Duration) error {
	if !assigned || l.waiting.Load() > 0 {
		return nil
	}
	if since := time.Since(time.Unix(0, l.last.Load())); since > timeout {
		return fmt.Errorf("the session holds partitions and has made no progress for %s (polling, dispatching and committing are stuck)", since.Round(time.Second))
	}
	return nil
}

func closedWith(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	return ch
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Status is what GET /status on the metrics port says: the digest (config.Digest) of the
// executor.json the running session applied, and whether the session is ready (it holds its
// assignment, with state restored). A pod has applied a configuration when both match.
type Status struct {
	Config string `json:"config"`
	Ready  bool   `json:"ready"`
	// Retire is the progress of a retirement (config.Executor.Retire), when the applied
	// configuration has one.
	Retire *RetireStatus `json:"retire,omitempty"`
}

// Phases of RetireStatus.Phase.
const (
	// RetireDraining: the group's committed offsets have not reached every target yet.
	RetireDraining = "Draining"
	// RetireDrained: the group's committed offsets have reached every partition's target (a
	// group-wide fact any pod can report); the pod has stopped consuming and left the group.
	RetireDrained = "Drained"
	// RetireDeleted: the group was deleted (DeleteGroups answered OK or GROUP_ID_NOT_FOUND).
	RetireDeleted = "Deleted"
)

// RetireStatus is the progress of a retirement.
type RetireStatus struct {
	// Phase: "Draining" (targets not yet all committed), "Drained" (the GROUP's committed offsets
	// have reached every partition's target: a group-wide fact any pod can report; the pod then
	// stops consuming and leaves the group), "Deleted" (the group was deleted: DeleteGroups answered
	// OK or GROUP_ID_NOT_FOUND). Without DeleteGroup the final phase is "Drained".
	Phase string `json:"phase"`
	// Remaining: records between the group's committed offsets and the targets (0 when drained).
	Remaining int64 `json:"remaining"`
}

// update is a new configuration and the bytes it was read from.
type update struct {
	cfg *config.Executor
	raw []byte
}

// Run runs the I/O sidecar of the entity configured at cfgPath until ctx ends, then drains:
// it stops fetching, waits for the function to answer what it was sent, commits and returns
// nil. If that takes longer than the shutdown timeout, it aborts the interval and returns
// ErrShutdownTimeout within abortGrace (5 s) more, whatever the session was waiting for. A changed configuration file starts a new session with the new
// configuration, without a restart of the process.
func Run(ctx context.Context, cfgPath string, opts ...Option) error {
	o := options{log: slog.Default(), pollConfig: configwatch.DefaultInterval, shutdownTimeout: 20 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("read executor config: %w", err)
	}
	cfg, err := config.Parse(raw)
	if err != nil {
		return err
	}
	ord := 0
	// identity names this pod in the group (instance id) and in the transactional id: the
	// ordinal of a StatefulSet pod, or, for a pod without one (Group mode only), its hostname,
	// so that two such pods never fence each other.
	identity := ""
	if o.ordinal != nil {
		ord = *o.ordinal
	} else if n, err := ordinal.FromEnv(); err == nil {
		ord = n
	} else if cfg.Assignment.Mode == config.StaticAssignment {
		return err
	} else {
		host, herr := os.Hostname()
		if herr != nil {
			return fmt.Errorf("no pod ordinal (%v) and no hostname: %w", err, herr)
		}
		identity = host
		o.log.Warn("no pod ordinal found; identifying this pod by its hostname", "hostname", host, "err", err)
	}
	if identity == "" {
		identity = strconv.Itoa(ord)
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
		o.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	socketDir := cfg.Runtime.SocketDir
	if o.socketDir != "" {
		socketDir = o.socketDir
	}
	if o.functionSocket == "" {
		o.functionSocket = filepath.Join(socketDir, cfg.Runtime.FunctionSocket)
	}
	if o.stateSocket == "" && cfg.State != nil {
		o.stateSocket = filepath.Join(socketDir, cfg.Runtime.StateSocket)
	}
	if o.metricsAddr == "" {
		o.metricsAddr = ":" + strconv.Itoa(int(cfg.Runtime.MetricsPort))
	}
	m := newMetrics(o.registry)
	var ready atomic.Bool
	live := &liveness{}
	livenessTimeout := o.livenessTimeout
	if livenessTimeout == 0 {
		livenessTimeout = cfg.Runtime.LivenessTimeout.Duration
	}
	if livenessTimeout == 0 {
		livenessTimeout = config.DefaultLivenessTimeout
	}

	// work outlives ctx by the shutdown timeout so the last interval can commit. When the
	// timeout passes, expired closes and work is cancelled: the session aborts its transaction
	// and Run returns ErrShutdownTimeout, also when some call ignores the cancellation (then it
	// waits abortGrace at most for the session and for closing it).
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	expired, graceOver := make(chan struct{}), make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-work.Done():
			return
		}
		t := time.NewTimer(o.shutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			o.log.Error("drain exceeded the shutdown timeout; aborting the interval and stopping without a final commit", "timeout", o.shutdownTimeout)
			close(expired)
			time.AfterFunc(abortGrace, func() { close(graceOver) })
			cancelWork()
		case <-work.Done():
		}
	}()
	// bounded waits for ch until it is ready, or until abortGrace after the shutdown timeout
	// expired; false means it gave up.
	bounded := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-graceOver:
			return false
		}
	}
	// end waits for a session to return and then closes it, both bounded. The pod is going away
	// when ctx ended or the function stopped: then the session leaves the group for good.
	end := func(s *session, done <-chan error) (error, bool) {
		var err error
		returned := make(chan struct{})
		go func() { err = <-done; close(returned) }()
		if !bounded(returned) {
			o.log.Error("session did not return after the shutdown timeout; exiting without waiting for it", "grace", abortGrace)
			return nil, false
		}
		closed := make(chan struct{})
		go func() {
			s.close(ctx.Err() != nil || errors.Is(err, errFunctionStopped) || errors.Is(err, errRetired) || s.leave)
			close(closed)
		}()
		if !bounded(closed) {
			o.log.Error("closing the session did not finish after the shutdown timeout; exiting without waiting for it", "grace", abortGrace)
			return err, false
		}
		return err, true
	}

	// applied is the digest of the configuration of the running session, which GET /status
	// reports with the readiness: the operator counts the pods that applied a hot change.
	var applied atomic.Pointer[string]
	setApplied := func(raw []byte) { d := config.Digest(raw); applied.Store(&d) }
	setApplied(raw)
	// ret is the progress of a retirement (executor.json's retire), across sessions.
	ret := &retirement{}
	ret.apply(cfg)
	status := health.Route{Path: "/status", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Status{Config: *applied.Load(), Ready: ready.Load(), Retire: ret.snapshot()})
	})}

	errc := make(chan error, 1)
	if o.metricsAddr != "-" {
		go func() {
			err := health.Serve(work, o.metricsAddr, o.registry, func() error {
				if !ready.Load() {
					return errors.New("no assignment with restored state yet")
				}
				return nil
			}, func() error { return live.check(ready.Load(), livenessTimeout) }, o.onMetrics, status)
			if err != nil {
				errc <- err
			}
		}()
	}
	updates := make(chan update, 1)
	go configwatch.Watch(work, cfgPath, o.pollConfig, raw, o.log, func(c *config.Executor, b []byte) {
		select {
		case <-updates:
		default:
		}
		updates <- update{cfg: c, raw: b}
	})

	// retired idles a pod whose entity is retired and no longer consumes (drained, or retired
	// without Drain): no session, no group membership, /healthz healthy and /readyz not ready,
	// until the configuration changes or ctx ends. With DeleteGroup the consumer group is deleted
	// meanwhile (retirement.finish).
	retired := func(cfg *config.Executor) (*update, bool) {
		ready.Store(false)
		ret.set(RetireDrained, 0)
		fctx, cancel := context.WithCancel(work)
		defer cancel()
		go ret.finish(fctx, cfg, ord, o.log)
		select {
		case <-ctx.Done():
			return nil, false
		case u := <-updates:
			return &u, true
		}
	}

	backoff := time.Second
	for {
		if cfg.Retire != nil && (!cfg.Retire.Drain || ret.phase() != RetireDraining) {
			o.log.Info("the entity is retired; not consuming", "phase", ret.phase(), "drain", cfg.Retire.Drain, "deleteGroup", cfg.Retire.DeleteGroup)
			u, ok := retired(cfg)
			if !ok {
				m.sessions.WithLabelValues("shutdown").Inc()
				o.log.Info("I/O sidecar stopped")
				return nil
			}
			cfg = u.cfg
			setApplied(u.raw)
			ret.apply(cfg)
			continue
		}
		stop := make(chan struct{})
		s := newSession(cfg, ord, identity, &o, m, &ready)
		s.live = live
		if cfg.Retire != nil {
			s.retire = ret
		}
		done := make(chan error, 1)
		started := time.Now()
		go func() { done <- s.run(work, stop) }()

		var next *update
		var sessErr error
		finished := true
		select {
		case sessErr = <-done:
			sessErr, finished = end(s, closedWith(sessErr))
		case u := <-updates:
			next = &u
			o.log.Info("executor config changed; starting a new session")
			// A retirement leaves the group for good (a classic static member too), so that a
			// group to delete is empty at once.
			s.leave = u.cfg.Retire != nil
			close(stop)
			sessErr, finished = end(s, done)
		case <-ctx.Done():
			close(stop)
			sessErr, finished = end(s, done)
		case err := <-errc:
			close(stop)
			end(s, done)
			return err
		}
		ready.Store(false)
		if !finished || isClosed(expired) {
			m.sessions.WithLabelValues("shutdown").Inc()
			return fmt.Errorf("%w (%s): the last interval was aborted, not committed; its records are processed again by the next session", ErrShutdownTimeout, o.shutdownTimeout)
		}
		functionStopped := errors.Is(sessErr, errFunctionStopped)
		retiredNow := errors.Is(sessErr, errRetired)
		if errors.Is(sessErr, errStopped) || functionStopped || retiredNow {
			sessErr = nil
		}
		if o.hooks.OnSessionEnd != nil {
			o.hooks.OnSessionEnd(sessErr)
		}
		if ctx.Err() != nil {
			m.sessions.WithLabelValues("shutdown").Inc()
			o.log.Info("I/O sidecar stopped", "err", sessErr)
			return nil
		}
		if functionStopped {
			// The pod is most likely being deleted (the kubelet signals the function first and
			// this sidecar once the function has exited), or the function container restarts.
			// Either way the interval is committed and the group left; the next session waits
			// for a function to serve again, holding no partitions.
			m.sessions.WithLabelValues("function_stopped").Inc()
			o.log.Info("session closed because the function is stopping; waiting for a function to serve")
			backoff = time.Second
			continue
		}
		if next != nil {
			m.sessions.WithLabelValues("reconfigured").Inc()
			cfg = next.cfg
			setApplied(next.raw)
			ret.apply(cfg)
			backoff = time.Second
			continue
		}
		if retiredNow {
			m.sessions.WithLabelValues("retired").Inc()
			ret.set(RetireDrained, 0)
			backoff = time.Second
			continue
		}
		m.sessions.WithLabelValues("failed").Inc()
		o.log.Error("session ended; starting a new one", "err", sessErr, "backoff", backoff)
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case u := <-updates:
			cfg = u.cfg
			setApplied(u.raw)
			ret.apply(cfg)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
