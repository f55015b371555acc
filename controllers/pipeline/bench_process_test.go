package pipeline

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
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

// buildOperator builds cmd/manager of the source tree at src as the image builds it (Makefile,
// docker-build) into bin and reports its size.
func buildOperator(b *testing.B, src, bin, suffix string) {
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/manager")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the operator in %s: %v\n%s", src, err, out)
	}
	if fi, err := os.Stat(bin); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-binary"+suffix)
	}
}

// baselineSource extracts commit (MILLRACE_BENCH_BASELINE) of this repository into a
// directory of its own, to build the operator as it was: before/after in the same run.
func baselineSource(b *testing.B, commit string) string {
	dir := filepath.Join(b.TempDir(), "baseline")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	archive := exec.Command("sh", "-c", "git archive --format=tar "+commit+" | tar -x -C "+dir)
	archive.Dir = testenv.RepoRoot()
	if out, err := archive.CombinedOutput(); err != nil {
		b.Fatalf("extract %s: %v\n%s", commit, err, out)
	}
	return dir
}

func benchmarkOperatorProcess(b *testing.B, n, unrelated int) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "manager")
	buildOperator(b, testenv.RepoRoot(), bin, "")
	// MILLRACE_BENCH_BASELINE: a commit whose operator runs too, right after this one's, against
	// the same API server and the same bare-client baselines.
	oldBin, oldSrc := "", ""
	if commit := os.Getenv("MILLRACE_BENCH_BASELINE"); commit != "" && unrelated == 0 {
		oldBin, oldSrc = filepath.Join(dir, "manager-baseline"), baselineSource(b, commit)
		buildOperator(b, oldSrc, oldBin, "-old")
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
	b.Logf("GOMEMLIMIT=%s, GOGC=%s (deployed %q); load average %s", limit, os.Getenv("GOGC"), deployedGOGC(b, testenv.RepoRoot()), loadAverage())
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if n > 0 && unrelated == 0 {
			serverBefore, requestsBefore := serverCPU(), serverRequests(b, e)
			base := baselineCreate(ctx, b, e, n, false)
			logRequests(b, "baseline", requestsBefore, serverRequests(b, e), n)
			b.ReportMetric((serverCPU()-serverBefore)/float64(n)*1000, "server-cpu-ms/pipeline-baseline")
			b.ReportMetric(base.Seconds(), "s/baseline")
			b.ReportMetric(float64(n)/base.Seconds(), "pipelines/s-baseline")
			// The same objects by server-side apply, as the operator must write them.
			serverBefore = serverCPU()
			ssa := baselineCreate(ctx, b, e, n, true)
			b.ReportMetric((serverCPU()-serverBefore)/float64(n)*1000, "server-cpu-ms/pipeline-baseline-apply")
			b.ReportMetric(float64(n)/ssa.Seconds(), "pipelines/s-baseline-apply")
			b.ReportMetric(base.Seconds()/ssa.Seconds(), "x-baseline-rate-apply")
			run := runOperator(ctx, b, e, testenv.RepoRoot(), bin, kubeconfig, limit, n, 0, "")
			b.ReportMetric(float64(n)/run.converge.Seconds(), "pipelines/s")
			b.ReportMetric(base.Seconds()/run.converge.Seconds(), "x-baseline-rate")
			b.ReportMetric(ssa.Seconds()/run.converge.Seconds(), "x-baseline-apply-rate")
			run.report(b, "")
			if oldBin != "" {
				old := runOperator(ctx, b, e, oldSrc, oldBin, kubeconfig, limit, n, 0, "-old")
				b.ReportMetric(float64(n)/old.converge.Seconds(), "pipelines/s-old")
				b.ReportMetric(base.Seconds()/old.converge.Seconds(), "x-baseline-rate-old")
				old.report(b, "-old")
			}
			continue
		}
		run := runOperator(ctx, b, e, testenv.RepoRoot(), bin, kubeconfig, limit, n, 0, "")
		run.report(b, "")
		if unrelated > 0 {
			with := runOperator(ctx, b, e, testenv.RepoRoot(), bin, kubeconfig, limit, n, unrelated, "-unrelated")
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
//
// With MILLRACE_BENCH_PROFILE set to a directory, the operator serves Go's profiles and the run
// writes there, for MILLRACE_BENCH_PROFILE_SECONDS (default 10) from the n Pipelines' creation,
// a CPU profile of the operator and one of the API server (kube-apiserver serves
// /debug/pprof to its admin), and the operator's heap once converged; name tells the runs apart.
//
// src is the source tree the binary was built from, whose config/manager says the GOGC it is
// deployed with.
func runOperator(ctx context.Context, b *testing.B, e *env, src, bin, kubeconfig, limit string, n, unrelated int, name string) operatorRun {
	ns := e.namespace(&testing.T{})
	if unrelated > 0 {
		took := createUnrelated(ctx, b, e, ns, unrelated)
		b.Logf("created %d unrelated objects in %s", 3*unrelated, took.Round(time.Second))
	}
	args := []string{"--watch-namespace", ns, "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--zap-log-level", "error"}
	// MILLRACE_BENCH_ARGS: more flags for the operator, to compare settings.
	args = append(args, strings.Fields(os.Getenv("MILLRACE_BENCH_ARGS"))...)
	profDir := os.Getenv("MILLRACE_BENCH_PROFILE")
	pprofAddr := ""
	if profDir != "" {
		pprofAddr = freeAddress(b)
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "GOMEMLIMIT="+limit)
	if gogc := deployedGOGC(b, src); gogc != "" && os.Getenv("GOGC") == "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
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
	var profiles sync.WaitGroup
	if profDir != "" && n > 0 {
		secs := os.Getenv("MILLRACE_BENCH_PROFILE_SECONDS")
		if secs == "" {
			secs = "10"
		}
		base := filepath.Join(profDir, fmt.Sprintf("%d%s", n, name))
		profiles.Add(2)
		go func() {
			defer profiles.Done()
			fetchProfile(b, http.DefaultClient, "http://"+pprofAddr+"/debug/pprof/profile?seconds="+secs, base+"-operator.cpu.pprof")
		}()
		go func() {
			defer profiles.Done()
			hc, err := rest.HTTPClientFor(e.cfg)
			if err != nil {
				b.Error(err)
				return
			}
			fetchProfile(b, hc, strings.TrimSuffix(e.cfg.Host, "/")+"/debug/pprof/profile?seconds="+secs, base+"-apiserver.cpu.pprof")
		}()
		time.Sleep(200 * time.Millisecond) // the profiles start before the Pipelines
	}
	requestsBefore := serverRequests(b, e)
	start, cpuBefore, serverBefore := time.Now(), processCPU(cmd.Process.Pid), serverCPU()
	for j := 0; j < n; j++ {
		if err := e.client.Create(ctx, fiveEntities(ns, "p"+strconv.Itoa(j))); err != nil {
			b.Fatal(err)
		}
	}
	waitConverged(n+1, start)
	run := operatorRun{converge: time.Since(start), n: n,
		cpu: processCPU(cmd.Process.Pid) - cpuBefore, server: serverCPU() - serverBefore}
	if n > 0 {
		logRequests(b, "operator"+name, requestsBefore, serverRequests(b, e), n)
	}
	profiles.Wait()
	time.Sleep(3 * time.Second) // let the last events settle
	if profDir != "" && n > 0 {
		fetchProfile(b, http.DefaultClient, "http://"+pprofAddr+"/debug/pprof/heap?gc=1", filepath.Join(profDir, fmt.Sprintf("%d%s-operator.heap.pprof", n, name)))
	}
	run.rss = processRSS(cmd.Process.Pid)
	run.peak = max(peak, run.rss)
	run.anon = processStatus(cmd.Process.Pid, "RssAnon:")
	run.files = processStatus(cmd.Process.Pid, "RssFile:")
	return run
}

// serverRequests is the API server's apiserver_request_total, by verb, resource and
// subresource, from its /metrics.
func serverRequests(b *testing.B, e *env) map[string]float64 {
	hc, err := rest.HTTPClientFor(e.cfg)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := hc.Get(strings.TrimSuffix(e.cfg.Host, "/") + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	label := func(line, name string) string {
		i := strings.Index(line, name+`="`)
		if i < 0 {
			return ""
		}
		rest := line[i+len(name)+2:]
		return rest[:strings.IndexByte(rest, '"')]
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			continue
		}
		key := label(line, "verb") + " " + label(line, "resource")
		if sub := label(line, "subresource"); sub != "" {
			key += "/" + sub
		}
		out[key] += v
	}
	return out
}

// logRequests logs the requests the API server served between before and after, per Pipeline.
func logRequests(b *testing.B, what string, before, after map[string]float64, n int) {
	var parts []string
	total := 0.0
	for k, v := range after {
		if d := (v - before[k]) / float64(n); d >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, d))
			total += d
		}
	}
	sort.Strings(parts)
	b.Logf("%s: API requests per Pipeline %.1f: %s", what, total, strings.Join(parts, ", "))
}

// freeAddress is a loopback address with a port free at the time of the call.
func freeAddress(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// fetchProfile writes what url serves to path.
func fetchProfile(b *testing.B, hc *http.Client, url, path string) {
	resp, err := hc.Get(url)
	if err != nil {
		b.Errorf("profile %s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Errorf("profile %s: %v %s", url, err, resp.Status)
		return
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		b.Error(err)
	}
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

// deployedGOGC is the GOGC that config/manager of the source tree src sets on the operator
// container, "" if none.
func deployedGOGC(b *testing.B, src string) string {
	raw, err := os.ReadFile(filepath.Join(src, "config", "manager", "manager.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	if m := regexp.MustCompile(`name: GOGC\s+value: "?(\w+)"?`).FindSubmatch(raw); m != nil {
		return string(m[1])
	}
	return ""
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
