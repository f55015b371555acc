// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) with the
// CRDs Millrace composes, for the envtest suites of the operator and the CLI.
//
// The binaries are built from the Go module proxy by hack/envtest-assets.sh (make envtest-assets)
// into a cache outside the clone. Third-party CRDs come from ../shared/crds when that folder exists
// (the real CRDs of Strimzi 1.2.0 and 0.45.0, KEDA and the Prometheus Operator); otherwise KEDA's
// come from its Go module and Strimzi's from the open stand-ins in testdata.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubernetesVersion is the version of the API server the suites run against.
const KubernetesVersion = "1.36.3"

// Strimzi selects which Strimzi CRDs a test environment installs.
type Strimzi string

const (
	// StrimziNone installs no Strimzi CRDs.
	StrimziNone Strimzi = ""
	// StrimziV1 installs Strimzi 1.2.0's CRDs (kafka.strimzi.io/v1 only), or the stand-ins.
	StrimziV1 Strimzi = "v1"
	// StrimziV1beta2 installs Strimzi 0.45.0's CRDs (v1beta2, no v1), or the v1beta2 stand-ins.
	StrimziV1beta2 Strimzi = "v1beta2"
)

// Options says what to install.
type Options struct {
	Strimzi            Strimzi
	KEDA               bool
	PrometheusOperator bool
}

// Env is a running API server with the CRDs installed.
type Env struct {
	Config *rest.Config
	env    *envtest.Environment
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// RepoRoot is the root of the Millrace checkout.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SharedCRDs is the folder of the real third-party CRDs: $MILLRACE_SHARED_CRDS, else
// ../shared/crds next to the checkout; "" when absent.
func SharedCRDs() string {
	dir := os.Getenv("MILLRACE_SHARED_CRDS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "..", "shared", "crds")
	}
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return dir
	}
	return ""
}

// AssetsDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS, else the cache that
// hack/envtest-assets.sh fills.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cache := os.Getenv("MILLRACE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "millrace")
	}
	dir := filepath.Join(cache, "envtest", KubernetesVersion)
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no kube-apiserver in %s: run `make envtest-assets` (or set KUBEBUILDER_ASSETS)", dir)
	}
	return dir, nil
}

// MillraceCRDs is the folder of the generated Pipeline CRD.
func MillraceCRDs() string { return filepath.Join(RepoRoot(), "config", "crd", "bases") }

// KEDACRDs returns the ScaledObject CRD files: the real ones from ../shared/crds, else KEDA's own
// module.
func KEDACRDs() ([]string, error) {
	if shared := SharedCRDs(); shared != "" {
		return []string{filepath.Join(shared, "keda-v2.21.0")}, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/kedacore/keda/v2").Output()
	if err != nil {
		return nil, fmt.Errorf("find the KEDA module: %w", err)
	}
	return []string{filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "bases")}, nil
}

// PrometheusCRDs returns the Prometheus Operator CRD folder: the real CRDs from ../shared/crds,
// else the ones hack/third-party-crds.sh generated from the operator's Go types
// ($MILLRACE_PROMETHEUS_CRDS, which make test sets).
func PrometheusCRDs() ([]string, error) {
	if shared := SharedCRDs(); shared != "" {
		return []string{filepath.Join(shared, "prometheus-operator-v0.90.0")}, nil
	}
	if dir := os.Getenv("MILLRACE_PROMETHEUS_CRDS"); dir != "" {
		return []string{dir}, nil
	}
	return nil, errors.New("no Prometheus Operator CRDs: ../shared/crds is absent and MILLRACE_PROMETHEUS_CRDS is unset (run `make test`, or hack/third-party-crds.sh)")
}

// StrimziCRDs returns the CRD folder for a Strimzi variant.
func StrimziCRDs(v Strimzi) ([]string, error) {
	shared := SharedCRDs()
	switch v {
	case StrimziNone:
		return nil, nil
	case StrimziV1:
		if shared != "" {
			return []string{filepath.Join(shared, "strimzi-1.2.0")}, nil
		}
		return []string{filepath.Join(RepoRoot(), "controllers", "testenv", "testdata", "strimzi-subset")}, nil
	case StrimziV1beta2:
		if shared != "" {
			return []string{filepath.Join(shared, "strimzi-0.45.0")}, nil
		}
		return []string{filepath.Join(RepoRoot(), "controllers", "testenv", "testdata", "strimzi-subset-v1beta2")}, nil
	}
	return nil, fmt.Errorf("unknown Strimzi variant %q", v)
}

// Paths lists every CRD folder the options ask for, the Millrace CRD first.
func (o Options) Paths() ([]string, error) {
	paths := []string{MillraceCRDs()}
	s, err := StrimziCRDs(o.Strimzi)
	if err != nil {
		return nil, err
	}
	paths = append(paths, s...)
	if o.KEDA {
		k, err := KEDACRDs()
		if err != nil {
			return nil, err
		}
		paths = append(paths, k...)
	}
	if o.PrometheusOperator {
		p, err := PrometheusCRDs()
		if err != nil {
			return nil, err
		}
		paths = append(paths, p...)
	}
	return paths, nil
}

// Start starts an API server and etcd and installs the CRDs the options name.
func Start(o Options) (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	paths, err := o.Paths()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     paths,
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start envtest (kube-apiserver and etcd from %s): %w", assets, err)
	}
	return &Env{Config: cfg, env: env}, nil
}

// InstallCRDs installs more CRDs into a running environment, as a cluster admin would install an
// operator after Millrace, and waits until they are served.
func (e *Env) InstallCRDs(paths ...string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	return envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true})
}

// UninstallCRDs removes CRDs, as when an operator is uninstalled.
func (e *Env) UninstallCRDs(paths ...string) error {
	return envtest.UninstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true})
}

// WriteKubeconfig writes a kubeconfig of a cluster-admin user into dir, for processes (the
// operator binary, kube-controller-manager, the CLI) that talk to the test API server.
func (e *Env) WriteKubeconfig(dir, user string) (string, error) {
	u, err := e.env.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("add user %s: %w", user, err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, user+".kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// ControllerManager is a real kube-controller-manager running against the test API server. It
// gives the suites what envtest alone lacks: the garbage collector that deletes children through
// owner references, and the StatefulSet controller.
type ControllerManager struct {
	cmd  *exec.Cmd
	done chan error
	dir  string
}

// StartControllerManager starts kube-controller-manager (built by hack/envtest-assets.sh next to
// kube-apiserver) with the given controllers, e.g. "garbagecollector", "statefulset".
func (e *Env) StartControllerManager(controllers ...string) (*ControllerManager, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no kube-controller-manager in %s: run `make envtest-assets`", assets)
	}
	dir, err := os.MkdirTemp("", "millrace-kcm-")
	if err != nil {
		return nil, err
	}
	path, err := e.WriteKubeconfig(dir, "kube-controller-manager")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin,
		"--kubeconfig="+path,
		"--controllers="+strings.Join(controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--secure-port=0",
		// The garbage collector rescans its graph at this period; short keeps tests quick.
		"--concurrent-gc-syncs=5",
	)
	logFile, err := os.Create(filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kube-controller-manager: %w", err)
	}
	cm := &ControllerManager{cmd: cmd, done: make(chan error, 1), dir: dir}
	go func() { cm.done <- cmd.Wait(); _ = logFile.Close() }()
	return cm, nil
}

// Log is the path of the controller manager's log, for failing tests to point at.
func (c *ControllerManager) Log() string { return filepath.Join(c.dir, "kube-controller-manager.log") }

// Stop stops the controller manager.
func (c *ControllerManager) Stop() error {
	_ = c.cmd.Process.Kill()
	<-c.done
	return os.RemoveAll(c.dir)
}
