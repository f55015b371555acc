// Package framework runs Millrace end to end without a real cluster's nodes: a real
// kube-apiserver and etcd (envtest), a real kube-controller-manager (garbage collector and
// StatefulSet controller), the CRDs of the composed operators, and the operator itself as the
// binary users deploy (cmd/manager), talking to the API server through a kubeconfig.
//
// Scenarios live one per folder under e2e/, behind the `e2e` build tag, each in three steps:
// setup, assess, teardown.
package framework

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/testenv"
)

// Cluster is a running control plane with the operator deployed.
type Cluster struct {
	Env        *testenv.Env
	Client     client.Client
	Kubeconfig string

	kcm      *testenv.ControllerManager
	operator *exec.Cmd
	opDone   chan error
	opLog    string
	dir      string
}

// Options of a Cluster.
type Options struct {
	testenv.Options
	// Controllers of kube-controller-manager to run; none when empty.
	Controllers []string
}

// Setup starts the control plane, kube-controller-manager and the operator binary.
func Setup(t *testing.T, o Options) *Cluster {
	t.Helper()
	env, err := testenv.Start(o.Options)
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	c := &Cluster{Env: env, dir: t.TempDir()}
	t.Cleanup(func() { c.teardown(t) })

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, strimzi.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	if c.Client, err = client.New(env.Config, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if c.Kubeconfig, err = env.WriteKubeconfig(c.dir, "e2e-admin"); err != nil {
		t.Fatal(err)
	}
	if len(o.Controllers) > 0 {
		if c.kcm, err = env.StartControllerManager(o.Controllers...); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	c.startOperator(t)
	return c
}

// startOperator builds cmd/manager and runs it against the test API server.
func (c *Cluster) startOperator(t *testing.T) {
	t.Helper()
	bin := filepath.Join(c.dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the operator: %v\n%s", err, out)
	}
	c.opLog = filepath.Join(c.dir, "operator.log")
	logFile, err := os.Create(c.opLog)
	if err != nil {
		t.Fatal(err)
	}
	c.operator = exec.Command(bin,
		"--metrics-bind-address=0",
		"--health-probe-bind-address="+freeAddr(t),
		"--leader-elect=false",
	)
	c.operator.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	c.operator.Stdout, c.operator.Stderr = logFile, logFile
	if err := c.operator.Start(); err != nil {
		t.Fatalf("start the operator: %v", err)
	}
	c.opDone = make(chan error, 1)
	go func() { c.opDone <- c.operator.Wait(); _ = logFile.Close() }()
}

func (c *Cluster) teardown(t *testing.T) {
	if t.Failed() {
		c.dumpLog(t, "operator", c.opLog)
		if c.kcm != nil {
			c.dumpLog(t, "kube-controller-manager", c.kcm.Log())
		}
	}
	if c.operator != nil && c.operator.Process != nil {
		_ = c.operator.Process.Signal(os.Interrupt)
		select {
		case <-c.opDone:
		case <-time.After(20 * time.Second):
			_ = c.operator.Process.Kill()
			<-c.opDone
		}
	}
	if c.kcm != nil {
		_ = c.kcm.Stop()
	}
	_ = c.Env.Stop()
}

func (c *Cluster) dumpLog(t *testing.T, name, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("last lines of the %s log:\n%s", name, bytes.TrimSpace(b))
}

// OperatorRunning reports whether the operator process is still alive: a crash is a failure in
// every scenario.
func (c *Cluster) OperatorRunning() error {
	select {
	case err := <-c.opDone:
		c.opDone <- err
		return fmt.Errorf("the operator exited: %v", err)
	default:
		return nil
	}
}

// Eventually polls cond until it returns nil or the timeout passes, then fails with its last
// error. The timeout bounds a wait; it is not an assertion on speed.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = cond(ctx); last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, last)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
