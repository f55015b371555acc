package pipeline

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/millrace-dev/millrace/controllers/testenv"
)

// BenchmarkOperatorProcess100 and BenchmarkOperatorProcess1000 run the real operator binary
// (cmd/manager, built here) as its own process against the envtest API server, so that its
// resident memory is the operator's alone. They report the time to converge and the process's
// resident memory once converged and at its peak.
func BenchmarkOperatorProcess100(b *testing.B)  { benchmarkOperatorProcess(b, 100) }
func BenchmarkOperatorProcess1000(b *testing.B) { benchmarkOperatorProcess(b, 1000) }

// BenchmarkOperatorProcessIdle is the baseline: the operator with no Pipeline.
func BenchmarkOperatorProcessIdle(b *testing.B) { benchmarkOperatorProcess(b, 0) }

func benchmarkOperatorProcess(b *testing.B, n int) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build the operator: %v\n%s", err, out)
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
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		t := &testing.T{}
		ns := e.namespace(t)
		cmd := exec.Command(bin, "--watch-namespace", ns, "--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--zap-log-level", "error")
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		if limit := os.Getenv("MILLRACE_BENCH_GOMEMLIMIT"); limit != "" {
			cmd.Env = append(cmd.Env, "GOMEMLIMIT="+limit)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for j := 0; j < n; j++ {
			if err := e.client.Create(ctx, fiveEntities(ns, "p"+strconv.Itoa(j))); err != nil {
				b.Fatal(err)
			}
		}
		var peak int64
		for {
			peak = max(peak, processRSS(cmd.Process.Pid))
			done := convergedCount(ctx, b, e, ns)
			if done == n {
				break
			}
			if time.Since(start) > 30*time.Minute {
				b.Fatalf("%d/%d converged", done, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
		took := time.Since(start)
		time.Sleep(3 * time.Second) // let the last events settle
		settled := processRSS(cmd.Process.Pid)
		anon := processStatus(cmd.Process.Pid, "RssAnon:")
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.ReportMetric(took.Seconds(), "s/converge")
		b.ReportMetric(float64(settled)/(1<<20), "MiB-rss")
		b.ReportMetric(float64(max(peak, settled))/(1<<20), "MiB-rss-peak")
		b.ReportMetric(float64(anon)/(1<<20), "MiB-rss-anon")
	}
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
