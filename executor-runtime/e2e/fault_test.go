package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the sidecars and the word count functions once per test binary.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "millrace-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir,
			"github.com/millrace-dev/millrace/cmd/millrace-io",
			"github.com/millrace-dev/millrace/cmd/millrace-state",
			"github.com/millrace-dev/millrace/cmd/wordcount-split",
			"github.com/millrace-dev/millrace/cmd/wordcount-sum",
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// child is a process kept running like a container under kubelet: restarted whenever it exits.
type child struct {
	name    string
	path    string
	args    []string
	ordinal int
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	stopping bool
	starts   int
	done     chan struct{}
}

func (c *child) supervise(t *testing.T) {
	c.done = make(chan struct{})
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		defer logf.Close()
		for {
			c.mu.Lock()
			if c.stopping {
				c.mu.Unlock()
				return
			}
			cmd := exec.Command(c.path, c.args...)
			cmd.Env = append(os.Environ(), "MILLRACE_ORDINAL="+strconv.Itoa(c.ordinal))
			cmd.Stdout, cmd.Stderr = logf, logf
			if err := cmd.Start(); err != nil {
				c.mu.Unlock()
				fmt.Fprintf(logf, "start: %v\n", err)
				return
			}
			c.cmd = cmd
			c.starts++
			c.mu.Unlock()
			_ = cmd.Wait()
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

func (c *child) kill() { c.signal(syscall.SIGKILL) }

func (c *child) signal(sig os.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(sig)
	}
}

// keptLogDir returns a directory for the children's logs that outlives a failed test, so that
// the whole history of every process can be read afterwards (the test's log holds only tails).
func keptLogDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "millrace-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the full logs of the processes are in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// stop sends SIGTERM and waits, as a pod deletion does.
func (c *child) stop() {
	c.mu.Lock()
	c.stopping = true
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
	c.mu.Unlock()
	select {
	case <-c.done:
	case <-time.After(40 * time.Second):
		c.kill()
		<-c.done
	}
}

// startPodProcesses runs one pod of an entity (function, I/O sidecar, state sidecar) as child
// processes with their own socket directory, as the containers of a pod.
func startPodProcesses(t *testing.T, bin string, e *testenv.Entity, function string, ordinal int) []*child {
	logs := keptLogDir(t)
	name := fmt.Sprintf("%s-%d", e.Config.Entity, ordinal)
	dir := filepath.Join(e.Config.Runtime.SocketDir, "pod"+strconv.Itoa(ordinal))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, e.Config.Runtime.FunctionSocket)
	cs := []*child{
		{name: name + "-function", path: filepath.Join(bin, function), args: []string{"--socket", sock}},
		{name: name + "-io", path: filepath.Join(bin, "millrace-io"), args: []string{"--config", e.Path, "--socket-dir", dir, "--metrics-addr", "-"}},
	}
	if e.Config.State != nil {
		cs = append(cs, &child{name: name + "-state", path: filepath.Join(bin, "millrace-state"), args: []string{"--config", e.Path, "--socket-dir", dir, "--metrics-addr", "-"}})
	}
	for _, c := range cs {
		c.ordinal = ordinal
		c.logPath = filepath.Join(logs, c.name+".log")
		c.supervise(t)
	}
	return cs
}

// testFaults runs the word count as child processes, SIGKILLs a random one again and again while
// lines flow in, and then checks the counts (as Kafka's streams_eos system test does).
func testFaults(t *testing.T, k *testenv.Kafka, g config.Guarantee, sumPods int, tweak func(*config.Executor)) {
	bin := binaries(t)
	wc := newWordCount(t, k, g)
	if tweak != nil {
		wc.split.Update(t, tweak)
		wc.sum.Update(t, tweak)
	}
	var children []*child
	children = append(children, startPodProcesses(t, bin, wc.split, "wordcount-split", 0)...)
	for ord := range sumPods {
		children = append(children, startPodProcesses(t, bin, wc.sum, "wordcount-sum", ord)...)
	}
	var truth map[string]int
	stopped := false
	stopAll := func() {
		if stopped {
			return
		}
		stopped = true
		begin := time.Now()
		var wg sync.WaitGroup
		for _, c := range children {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop() }()
		}
		wg.Wait()
		t.Logf("children stopped in %v", time.Since(begin).Round(time.Millisecond))
	}
	defer func() {
		if t.Failed() && !stopped {
			// While the processes still run: what the broker holds, then a goroutine dump of every
			// I/O sidecar (SIGQUIT; the supervisor restarts it).
			t.Logf("broker state:\n%s", brokerDiagnostics(t, k, wc.split, wc.sum))
			t.Logf("data:\n%s", dataDiagnostics(t, wc, truth))
			for _, c := range children {
				if strings.HasSuffix(c.name, "-io") {
					c.signal(syscall.SIGQUIT)
				}
			}
			time.Sleep(time.Second)
		}
		stopAll()
		if t.Failed() {
			for _, c := range children {
				b, _ := os.ReadFile(c.logPath)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("--- %s (started %d times) ---\n%s", c.name, c.starts, b)
			}
		}
	}()

	flow := 25 * time.Second
	if testing.Short() {
		flow = 8 * time.Second
	}
	const chunk, pace = 20, 100 * time.Millisecond
	var lines []string
	lines, truth = corpus(7, chunk*int(flow/pace))
	r := rand.New(rand.NewPCG(11, 11))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	kills := 0
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(200+r.IntN(600)) * time.Millisecond):
			}
			children[r.IntN(len(children))].kill()
			kills++
		}
	}()

	for i := 0; i < len(lines); i += chunk {
		recs := make([]*kgo.Record, 0, chunk)
		for j, l := range lines[i:min(i+chunk, len(lines))] {
			recs = append(recs, &kgo.Record{Topic: wc.lines, Key: []byte(strconv.Itoa(i + j)), Value: []byte(l)})
		}
		k.Produce(t, false, recs...)
		time.Sleep(pace)
	}
	// Keep killing a little after the input ends, then let the pipeline settle.
	time.Sleep(2 * time.Second)
	cancel()
	<-killerDone
	if kills < 5 {
		t.Fatalf("only %d processes were killed; the test did not exercise failures", kills)
	}
	t.Logf("%d lines, %d SIGKILLs", len(lines), kills)

	settle := time.Now()
	seen := wc.waitCounts(t, truth, 180*time.Second)
	t.Logf("counts complete %v after the last kill", time.Since(settle).Round(time.Millisecond))
	if g == config.ExactlyOnce {
		checkExactlyOnce(t, seen, truth)
	} else {
		checkAtLeastOnce(t, seen, truth)
	}
	restarts := 0
	for _, c := range children {
		restarts += c.starts - 1
	}
	if restarts == 0 {
		t.Fatal("no process was restarted")
	}
}

func TestFaultsAtLeastOnce(t *testing.T) {
	testFaults(t, testenv.Fake(t), config.AtLeastOnce, 1, nil)
}

func TestFaultsExactlyOnce(t *testing.T) {
	testFaults(t, testenv.Fake(t), config.ExactlyOnce, 1, nil)
}

// Two pods of the stateful step share its partitions in the group: kills now also cause
// rebalances, so partitions and their state move between pods while records flow.
func TestFaultsExactlyOnceTwoPods(t *testing.T) {
	testFaults(t, testenv.Fake(t), config.ExactlyOnce, 2, nil)
}
