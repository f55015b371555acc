package pipeline

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/testenv"
)

// BenchmarkOperatorProcess100 and BenchmarkOperatorProcess1000 run the real operator binary
// (cmd/manager, built here) as its own process against the envtest API server, so that its
// resident memory is the operator's alone, with GOMEMLIMIT as config/manager deploys it. In the
// same run they first measure the baseline: the same children created by a bare client
// (bench_baseline_test.go). They report the time to converge against the baseline's time, and
// the process's resident memory once converged and at its peak.
func BenchmarkOperatorProcess100(b *testing.B)  { benchmarkOperatorProcess(b, 100, 0) }
func BenchmarkOperatorProcess1000(b *testing.B) { benchmarkOperatorProcess(b, 1000, 0) }

// BenchmarkOperatorProcessIdle is the memory baseline: the operator with no Pipeline.
func BenchmarkOperatorProcessIdle(b *testing.B) { benchmarkOperatorProcess(b, 0, 0) }

// BenchmarkOperatorProcessUnrelated measures, in one run, the operator with 100 Pipelines and
// then again in a namespace that also holds MILLRACE_BENCH_UNRELATED (default 10,000) KafkaTopics,
// ConfigMaps and StatefulSets each that Millrace does not manage, and reports the ratio of the
// resident memories.
func BenchmarkOperatorProcessUnrelated(b *testing.B) {
	perKind := 10000
	if v, err := strconv.Atoi(os.Getenv("MILLRACE_BENCH_UNRELATED")); err == nil {
		perKind = v
	}
	benchmarkOperatorProcess(b, 100, perKind)
}

// operatorRun is what one run of the operator process measured.
type operatorRun struct {
	converge               time.Duration
	rss, peak, anon, files int64
	// cpu is the operator's CPU seconds and server the API server's and etcd's while the n
	// Pipelines converged.
	cpu, server float64
	n           int
}

func benchmarkOperatorProcess(b *testing.B, n, unrelated int) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "manager")
	// Built as the image builds it (Makefile, docker-build).
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the operator: %v\n%s", err, out)
	}
	if fi, err := os.Stat(bin); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-binary")
	}
	e := envV1
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: e.cfg.Host, CertificateAuthorityData: e.cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: e.cfg.CertData, ClientKeyData: e.cfg.KeyData, Token: e.cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		b.Fatal(err)
	}
	limit := os.Getenv("MILLRACE_BENCH_GOMEMLIMIT")
	if limit == "" {
		limit = deployedMemoryLimit(b)
	}
	b.Logf("GOMEMLIMIT=%s; load average %s", limit, loadAverage())
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if n > 0 && unrelated == 0 {
			serverBefore := serverCPU()
			base := baselineCreate(ctx, b, e, n, false)
			b.ReportMetric((serverCPU()-serverBefore)/float64(n)*1000, "server-cpu-ms/pipeline-baseline")
			b.ReportMetric(base.Seconds(), "s/baseline")
			b.ReportMetric(float64(n)/base.Seconds(), "pipelines/s-baseline")
			// The same objects by server-side apply, as the operator must write them.
			serverBefore = serverCPU()
			ssa := baselineCreate(ctx, b, e, n, true)
			b.ReportMetric((serverCPU()-serverBefore)/float64(n)*1000, "server-cpu-ms/pipeline-baseline-apply")
			b.ReportMetric(float64(n)/ssa.Seconds(), "pipelines/s-baseline-apply")
			run := runOperator(ctx, b, e, bin, kubeconfig, limit, n, 0)
			b.ReportMetric(float64(n)/run.converge.Seconds(), "pipelines/s")
			b.ReportMetric(base.Seconds()/run.converge.Seconds(), "x-baseline-rate")
			run.report(b, "")
			continue
		}
		run := runOperator(ctx, b, e, bin, kubeconfig, limit, n, 0)
		run.report(b, "")
		if unrelated > 0 {
			with := runOperator(ctx, b, e, bin, kubeconfig, limit, n, unrelated)
			with.report(b, "-unrelated")
			b.ReportMetric(float64(with.rss)/float64(run.rss), "x-rss-unrelated")
		}
	}
	b.Logf("load average after: %s", loadAverage())
}

func (r operatorRun) report(b *testing.B, suffix string) {
	b.ReportMetric(r.converge.Seconds(), "s/converge"+suffix)
	if r.n > 0 {
		b.ReportMetric(r.cpu/float64(r.n)*1000, "operator-cpu-ms/pipeline"+suffix)
		b.ReportMetric(r.server/float64(r.n)*1000, "server-cpu-ms/pipeline"+suffix)
	}
	b.ReportMetric(float64(r.rss)/(1<<20), "MiB-rss"+suffix)
	b.ReportMetric(float64(max(r.peak, r.rss))/(1<<20), "MiB-rss-peak"+suffix)
	b.ReportMetric(float64(r.anon)/(1<<20), "MiB-rss-anon"+suffix)
	b.ReportMetric(float64(r.files)/(1<<20), "MiB-rss-file"+suffix)
}

// runOperator starts the operator process for a fresh namespace (after creating unrelated
// objects of each kind there), converges one warm-up Pipeline (the operator's start and the
// first informers are not what is measured), then times n Pipelines created at once until all
// have their status written.
func runOperator(ctx context.Context, b *testing.B, e *env, bin, kubeconfig, limit string, n, unrelated int) operatorRun {
	ns := e.namespace(&testing.T{})
	if unrelated > 0 {
		took := createUnrelated(ctx, b, e, ns, unrelated)
		b.Logf("created %d unrelated objects in %s", 3*unrelated, took.Round(time.Second))
	}
	args := []string{"--watch-namespace", ns, "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--zap-log-level", "error"}
	// MILLRACE_BENCH_ARGS: more flags for the operator, to compare settings.
	args = append(args, strings.Fields(os.Getenv("MILLRACE_BENCH_ARGS"))...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOMEMLIMIT="+limit)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Convergence is seen through a watch rather than by listing the Pipelines again and
	// again, which would cost the API server more than the operator's own reads.
	converged := watchConverged(ctx, b, e, ns)
	var peak int64
	waitConverged := func(want int, since time.Time) {
		for {
			peak = max(peak, processRSS(cmd.Process.Pid))
			done := converged()
			if done == want {
				return
			}
			if time.Since(since) > 30*time.Minute {
				b.Fatalf("%d/%d converged", done, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := e.client.Create(ctx, fiveEntities(ns, "warmup")); err != nil {
		b.Fatal(err)
	}
	waitConverged(1, time.Now())
	start, cpuBefore, serverBefore := time.Now(), processCPU(cmd.Process.Pid), serverCPU()
	for j := 0; j < n; j++ {
		if err := e.client.Create(ctx, fiveEntities(ns, "p"+strconv.Itoa(j))); err != nil {
			b.Fatal(err)
		}
	}
	waitConverged(n+1, start)
	run := operatorRun{converge: time.Since(start), n: n,
		cpu: processCPU(cmd.Process.Pid) - cpuBefore, server: serverCPU() - serverBefore}
	time.Sleep(3 * time.Second) // let the last events settle
	run.rss = processRSS(cmd.Process.Pid)
	run.peak = max(peak, run.rss)
	run.anon = processStatus(cmd.Process.Pid, "RssAnon:")
	run.files = processStatus(cmd.Process.Pid, "RssFile:")
	return run
}

// watchConverged watches the Pipelines of ns and returns how many have had their status
// written so far.
func watchConverged(ctx context.Context, b *testing.B, e *env, ns string) func() int {
	wc, err := client.NewWithWatch(e.cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	w, err := wc.Watch(ctx, &v1alpha1.PipelineList{}, client.InNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	done := map[string]bool{}
	closed := false
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*v1alpha1.Pipeline); ok && statusWritten(p) {
				mu.Lock()
				done[p.Name] = true
				mu.Unlock()
			}
		}
		mu.Lock()
		closed = true
		mu.Unlock()
	}()
	b.Cleanup(w.Stop)
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			// The API server ended the watch: count from a list.
			return convergedCount(ctx, b, e, ns)
		}
		return len(done)
	}
}

// deployedMemoryLimit is the operator container's memory limit in config/manager, which the
// Deployment passes to the operator as GOMEMLIMIT, in Go's notation.
func deployedMemoryLimit(b *testing.B) string {
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "manager", "manager.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)limits:.*?memory:\s*(\d+)Mi`).FindSubmatch(raw)
	if m == nil {
		b.Fatal("no memory limit in config/manager/manager.yaml")
	}
	return string(m[1]) + "MiB"
}

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// processCPU is the user and system CPU seconds of process pid, from /proc.
func processCPU(pid int) float64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces, in parentheses).
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// serverCPU is the CPU seconds of this process's kube-apiserver and etcd children (envtest's).
func serverCPU() float64 {
	entries, _ := os.ReadDir("/proc")
	var total float64
	self := strconv.Itoa(os.Getpid())
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 || f[1] != self || (comm != "kube-apiserver" && comm != "etcd") {
			continue
		}
		total += processCPU(pid)
	}
	return total
}

func processRSS(pid int) int64 { return processStatus(pid, "VmRSS:") }

// processStatus reads a size in kB from /proc/<pid>/status, in bytes.
func processStatus(pid int, field string) int64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field) {
			if f := strings.Fields(line); len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
