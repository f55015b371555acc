package pipeline

// The envtest suite: a real kube-apiserver and etcd, the real CRDs of Strimzi (1.2.0 serving
// kafka.strimzi.io/v1, and 0.45.0 serving only v1beta2), KEDA and the Prometheus Operator.
//
// envtest runs no controllers but the API server's own: no StatefulSet controller, no garbage
// collector, no Strimzi, no KEDA. Tests simulate what those would do (patch a StatefulSet's or
// KafkaTopic's status, scale through /scale as the HPA does) and assert owner references where a
// real cluster's garbage collector would act.
//
// Every test runs its own operator (a manager whose cache is limited to the test's namespace)
// in its own namespace, so tests cannot see each other's objects and an operator can be
// stopped and started again mid-test.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/testenv"
)

// env is one API server with one set of CRDs.
type env struct {
	name string
	// strimzi is the kafka.strimzi.io version the environment serves.
	strimzi string
	te      *testenv.Env
	cfg     *rest.Config
	client  client.Client
}

var (
	// envV1 serves Strimzi 1.2.0 (v1), KEDA and the Prometheus Operator from the start.
	envV1 *env
	// envV1beta2 serves Strimzi 0.45.0 (v1beta2) only, without KEDA or the Prometheus Operator,
	// which tests install mid-way. It starts on first use.
	envV1beta2     *env
	envV1beta2Once sync.Once
	envV1beta2Err  error
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapLevel())))
	var err error
	envV1, err = startEnv("strimzi-v1", testenv.Options{Strimzi: testenv.StrimziV1, KEDA: true, PrometheusOperator: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = envV1.te.Stop()
	if envV1beta2 != nil {
		_ = envV1beta2.te.Stop()
	}
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("MILLRACE_TEST_LOG") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

func startEnv(name string, o testenv.Options) (*env, error) {
	te, err := testenv.Start(o)
	if err != nil {
		// Starting etcd and kube-apiserver on a busy 2-core machine occasionally fails
		// (a port taken meanwhile, a slow start); one retry makes the suite robust to it.
		fmt.Fprintf(os.Stderr, "start %s, retrying once: %v\n", name, err)
		if te, err = testenv.Start(o); err != nil {
			return nil, err
		}
	}
	cfg := rest.CopyConfig(te.Config)
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, err
	}
	return &env{name: name, strimzi: string(o.Strimzi), te: te, cfg: cfg, client: c}, nil
}

// v1beta2Env starts the second API server on first use.
func v1beta2Env(t *testing.T) *env {
	t.Helper()
	envV1beta2Once.Do(func() {
		envV1beta2, envV1beta2Err = startEnv("strimzi-v1beta2", testenv.Options{Strimzi: testenv.StrimziV1beta2})
	})
	if envV1beta2Err != nil {
		t.Fatalf("start the Strimzi v1beta2 environment: %v", envV1beta2Err)
	}
	return envV1beta2
}

// bothEnvs runs a scenario against Strimzi 1.2.0 (v1) and 0.45.0 (v1beta2).
func bothEnvs(t *testing.T, scenario func(t *testing.T, e *env)) {
	t.Run("strimzi-v1", func(t *testing.T) { scenario(t, envV1) })
	t.Run("strimzi-v1beta2", func(t *testing.T) { scenario(t, v1beta2Env(t)) })
}

var nsCounter atomic.Int64

// namespace creates a fresh namespace for one test.
func (e *env) namespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1))}}
	if err := e.client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// operator is a running manager with the reconciler, for one namespace.
type operator struct {
	writes *writeCounter
	r      *Reconciler
	cancel context.CancelFunc
	done   chan error
}

// stop stops the operator and waits for it.
func (o *operator) stop(t *testing.T) {
	t.Helper()
	if o.cancel == nil {
		return
	}
	o.cancel()
	o.cancel = nil
	select {
	case err := <-o.done:
		if err != nil {
			t.Errorf("manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("manager did not stop")
	}
	o.r.Close()
}

// startOperator runs the operator for namespace ns until the test ends; opts adjust its Options.
func (e *env) startOperator(t *testing.T, ns string, opts ...func(*Options)) *operator {
	t.Helper()
	return e.startOperatorWith(t, ns, e.cfg, opts...)
}

// startOperatorWith runs the operator for namespace ns with the REST config cfg (for example one
// that impersonates a user bound to the operator's ClusterRole).
func (e *env) startOperatorWith(t *testing.T, ns string, cfg *rest.Config, opts ...func(*Options)) *operator {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 Scheme(),
		Cache:                  CacheOptions(ns),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptrTo(true)},
	})
	if err != nil {
		t.Fatalf("create manager: %v", err)
	}
	writes := newWriteCounter(mgr.GetClient())
	ctx, cancel := context.WithCancel(context.Background())
	o := Options{
		Images:    render.Images{IOSidecar: "example/io:test", StateSidecar: "example/state:test"},
		Client:    writes,
		Namespace: ns,
	}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := SetupWithManager(ctx, mgr, o)
	if err != nil {
		cancel()
		t.Fatalf("set up reconciler: %v", err)
	}
	// A refused Kafka admin client and a blocked deletion are retried every second, not 30 s.
	r.adminRetryPeriod.Store(int64(time.Second))
	op := &operator{writes: writes, r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { op.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { op.stop(t) })
	return op
}

func ptrTo[T any](v T) *T { return &v }

// eventually polls check until it returns nil, failing the test with the last error after
// timeout. Tests never assert durations; the timeout only bounds a broken test.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	const timeout = 60 * time.Second
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
}

// consistently checks that check keeps returning nil for a while.
func consistently(t *testing.T, what string, d time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeCounter is a client.Client that counts the writes the reconciler makes, per namespace.
type writeCounter struct {
	client.Client
	mu     sync.Mutex
	counts map[string]int
	log    map[string][]string
}

func newWriteCounter(c client.Client) *writeCounter {
	return &writeCounter{Client: c, counts: map[string]int{}, log: map[string][]string{}}
}

func (w *writeCounter) count(verb string, obj any, ns, name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.counts[ns]++
	what := fmt.Sprintf("%T", obj)
	if kind, ok := obj.(string); ok {
		what = kind
	}
	w.log[ns] = append(w.log[ns], fmt.Sprintf("%s %s %s", verb, what, name))
}

func (w *writeCounter) writes(ns string) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counts[ns], append([]string(nil), w.log[ns]...)
}

func (w *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.count("create", obj, obj.GetNamespace(), obj.GetName())
	return w.Client.Create(ctx, obj, opts...)
}

func (w *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.count("update", obj, obj.GetNamespace(), obj.GetName())
	return w.Client.Update(ctx, obj, opts...)
}

func (w *writeCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	w.count("patch", obj, obj.GetNamespace(), obj.GetName())
	return w.Client.Patch(ctx, obj, patch, opts...)
}

func (w *writeCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	ns, name := "", ""
	if u, ok := obj.(interface {
		GetNamespace() string
		GetName() string
	}); ok {
		ns, name = u.GetNamespace(), u.GetName()
	}
	// An applied configuration is logged by its kind, children of different kinds share names.
	var what any = obj
	if k, ok := obj.(interface{ GetKind() string }); ok && k.GetKind() != "" {
		what = k.GetKind()
	}
	w.count("apply", what, ns, name)
	return w.Client.Apply(ctx, obj, opts...)
}

func (w *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	w.count("delete", obj, obj.GetNamespace(), obj.GetName())
	return w.Client.Delete(ctx, obj, opts...)
}

func (w *writeCounter) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	w.count("deleteallof", obj, obj.GetNamespace(), "")
	return w.Client.DeleteAllOf(ctx, obj, opts...)
}

func (w *writeCounter) Status() client.SubResourceWriter {
	return &statusCounter{SubResourceWriter: w.Client.Status(), w: w}
}

type statusCounter struct {
	client.SubResourceWriter
	w *writeCounter
}

func (s *statusCounter) Create(ctx context.Context, obj client.Object, sub client.Object, opts ...client.SubResourceCreateOption) error {
	s.w.count("status-create", obj, obj.GetNamespace(), obj.GetName())
	return s.SubResourceWriter.Create(ctx, obj, sub, opts...)
}

func (s *statusCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.w.count("status-update", obj, obj.GetNamespace(), obj.GetName())
	return s.SubResourceWriter.Update(ctx, obj, opts...)
}

func (s *statusCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.w.count("status-patch", obj, obj.GetNamespace(), obj.GetName())
	return s.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

var errNotYet = errors.New("not yet")

func mustDiscovery(t *testing.T, e *env) discovery.DiscoveryInterface {
	t.Helper()
	d, err := discovery.NewDiscoveryClientForConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
