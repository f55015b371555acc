package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// ioProcess is an I/O sidecar run once as a child process (not restarted), so that a test can
// see how it exits.
type ioProcess struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan error
}

func startIO(t *testing.T, bin string, e *testenv.Entity, ordinal int) *ioProcess {
	t.Helper()
	dir := filepath.Join(e.Config.Runtime.SocketDir, "pod"+strconv.Itoa(ordinal))
	return startBinary(t, bin, "millrace-io", ordinal, "--config", e.Path, "--socket-dir", dir, "--metrics-addr", "-")
}

// startBinary runs one of the test binaries once as a child process of pod ordinal, logging to a
// file that the test prints when it fails.
func startBinary(t *testing.T, bin, name string, ordinal int, args ...string) *ioProcess {
	t.Helper()
	p := &ioProcess{logPath: filepath.Join(t.TempDir(), fmt.Sprintf("%s-%d.log", name, ordinal)), exited: make(chan error, 1)}
	f, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = exec.Command(filepath.Join(bin, name), args...)
	p.cmd.Env = append(os.Environ(), "MILLRACE_ORDINAL="+strconv.Itoa(ordinal))
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("MILLRACE_TEST_DUMP") != "" {
			// A goroutine dump into the log, to see where a process hangs.
			_ = p.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-p.exited:
			case <-time.After(2 * time.Second):
			}
		}
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			t.Logf("--- %s %d log ---\n%s", name, ordinal, b)
		}
	})
	return p
}

// logContains reports whether the process has logged s.
func (p *ioProcess) logContains(s string) bool {
	b, _ := os.ReadFile(p.logPath)
	return strings.Contains(string(b), s)
}

// waitLog waits until the sidecar's log contains s.
func (p *ioProcess) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(p.logPath)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the I/O sidecar never logged %q", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// terminate sends SIGTERM, as the kubelet does, and returns how the process exited. The bound is
// far beyond the shutdown timeout plus its abort grace (25 s): a process still running then
// hangs, which is the bug this guards against, not slowness.
func (p *ioProcess) terminate(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		return err
	case <-time.After(90 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into the log
		<-p.exited
		t.Fatal("the I/O sidecar did not exit after SIGTERM")
		return nil
	}
}

// supportProcesses runs the function and, for a stateful entity, the state sidecar of a pod.
func supportProcesses(t *testing.T, bin string, e *testenv.Entity, function string, ordinal int) {
	cs := startPodProcesses(t, bin, e, function, ordinal)
	var keep []*child
	for _, c := range cs {
		if strings.HasSuffix(c.name, "-io") {
			c.mu.Lock()
			c.stopping = true
			c.mu.Unlock()
			c.stop()
			continue
		}
		keep = append(keep, c)
	}
	t.Cleanup(func() {
		for _, c := range keep {
			c.stop()
		}
	})
}

// A configuration reload just after the session opened, then SIGTERM: the sidecar must exit
// (the CLI engineer saw it hang forever after "drain exceeded the shutdown timeout" with the
// word count's sum entity: ExactlyOnce, Static, stateful). The reload comes at every point of
// the new session's start in turn: while it opens, while it joins the group, and after.
func TestSIGTERMAfterReloadExits(t *testing.T) {
	bin := binaries(t)
	for _, delay := range []time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1500 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			k := testenv.Fake(t)
			wc, e := sumEntity(t, k, config.ExactlyOnce, func(c *config.Executor) {
				c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1, 2, 3}}, Generation: 1}
			})
			k.Produce(t, true, wordRecords(wc.words, "a", "b", "c")...)
			supportProcesses(t, bin, e, "wordcount-sum", 0)
			io := startIO(t, bin, e, 0)
			io.waitLog(t, "session open")
			e.Update(t, func(c *config.Executor) {
				c.UserConfig = map[string]string{"reload": "1"}
				c.Assignment.Generation = 2
			})
			io.waitLog(t, "executor config changed")
			time.Sleep(delay)
			if err := io.terminate(t); err != nil {
				t.Errorf("the I/O sidecar exited with %v after SIGTERM, want a clean drain (exit 0)", err)
			}
		})
	}
}

// SIGTERM while records flow: the sidecar drains and commits, then exits 0. The committed input
// offsets then cover exactly the outputs visible to a read_committed consumer (sum emits one
// count per input), and a restarted sidecar continues with no duplicate and no gap.
func TestSIGTERMDuringFlowDrainsAndCommits(t *testing.T) {
	bin := binaries(t)
	k := testenv.Fake(t)
	wc, e := sumEntity(t, k, config.ExactlyOnce, func(c *config.Executor) {
		c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1, 2, 3}}, Generation: 1}
	})
	supportProcesses(t, bin, e, "wordcount-sum", 0)
	io := startIO(t, bin, e, 0)

	stopProducing := produceWords(t, k, wc.words, 2*time.Millisecond)
	// Counts are flowing, and go on flowing while the sidecar stops.
	waitRecords(t, k, wc.counts, 50)
	if err := io.terminate(t); err != nil {
		t.Errorf("the I/O sidecar exited with %v after SIGTERM, want a clean drain (exit 0)", err)
	}
	truth := stopProducing()
	io.waitLog(t, "I/O sidecar stopped")

	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	offs, err := k.Admin.FetchOffsets(fctx, e.Config.GroupID)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	consumed := 0
	for _, r := range k.ReadAll(t, wc.words, false) {
		if o, ok := offs.Lookup(wc.words, r.Partition); ok && r.Offset < o.At {
			consumed++
		}
	}
	outputs := len(k.ReadAll(t, wc.counts, true))
	if consumed == 0 || consumed != outputs {
		t.Fatalf("after the drain, committed offsets cover %d inputs but %d outputs are committed; want equal and > 0", consumed, outputs)
	}
	t.Logf("drained with %d inputs committed", consumed)

	// The restarted sidecar resumes from the drain's commit.
	io = startIO(t, bin, e, 0)
	seen := wc.waitCounts(t, truth, 90*time.Second)
	checkExactlyOnce(t, seen, truth)
	_ = io.terminate(t)
}

// A function that never answers: the drain cannot finish, so after the shutdown timeout Run
// aborts the interval and returns ErrShutdownTimeout instead of waiting, and nothing of the
// interval is committed.
func TestShutdownTimeoutAbortsAndReturns(t *testing.T) {
	k := testenv.Fake(t)
	e := k.NewEntity(t, "stuck", []string{"in"}, []string{"out"}, 1, false, config.ExactlyOnce)
	k.CreateTopics(t, 1, e.Topics()...)
	var received atomic.Int32
	release := make(chan struct{})
	defer close(release)
	stuck := sdk.Map(func(ctx context.Context, r sdk.Record) (sdk.Output, error) {
		received.Add(1)
		<-release
		return sdk.Output{Value: r.Value}, nil
	})
	sock := filepath.Join(e.Dir, "fn.sock")
	fnCtx, stopFn := context.WithCancel(context.Background())
	defer stopFn()
	go func() { _ = sdk.Serve(fnCtx, stuck, sdk.WithSocket(sock), sdk.WithLogger(testenv.Logger())) }()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- iosidecar.Run(ctx, e.Path, iosidecar.WithFunctionSocket(sock), iosidecar.WithOrdinal(0),
			iosidecar.WithMetricsAddr("-", nil), iosidecar.WithLogger(testenv.Logger()),
			iosidecar.WithShutdownTimeout(500*time.Millisecond))
	}()
	k.Produce(t, false, &kgo.Record{Topic: "in", Value: []byte("x")})
	for received.Load() == 0 {
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, iosidecar.ErrShutdownTimeout) {
			t.Fatalf("Run returned %v, want ErrShutdownTimeout", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its shutdown timeout")
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	offs, err := k.Admin.FetchOffsets(fctx, e.Config.GroupID)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("in", 0); ok && o.At > 0 {
		t.Errorf("committed offset %d for a record the function never answered", o.At)
	}
	if recs := k.ReadAll(t, "out", true); len(recs) != 0 {
		t.Errorf("%d committed outputs, want none", len(recs))
	}
}
