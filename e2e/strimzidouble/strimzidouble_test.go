package strimzidouble

// The double against a real kube-apiserver (envtest, with Strimzi 1.2.0's CRDs and a real
// kube-controller-manager for the garbage collector) and a real Kafka broker with a SCRAM
// listener and the StandardAuthorizer (hack/test.sh starts it):
//
//	MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP       PLAINTEXT listener, ANONYMOUS is a super user
//	MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP_SASL  SASL_PLAINTEXT listener with SCRAM-SHA-512
//
// Without them the tests that need the broker skip; the pure helpers are tested regardless.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/millrace-dev/millrace/controllers/testenv"
)

const (
	envBootstrap     = "MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP"
	envBootstrapSASL = "MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP_SASL"
	testCluster      = "my-cluster"
	waitTimeout      = 60 * time.Second
)

// kube is an API server with one Strimzi version's CRDs and a controller manager (for the
// garbage collector), started on first use so that the pure tests run without it.
type kube struct {
	once sync.Once
	err  error
	env  *testenv.Env
	kcm  *testenv.ControllerManager
	c    client.Client
}

var kubes = map[testenv.Strimzi]*kube{testenv.StrimziV1: {}, testenv.StrimziV1beta2: {}}

// suite holds the Kafka admin client of the broker.
var suite struct {
	once sync.Once
	err  error
	adm  *kadm.Client
	kcl  *kgo.Client
}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	// Re-apply every few seconds, so that the periodic reconcile is seen quickly.
	resyncPeriod = 2 * time.Second
	code := m.Run()
	for _, k := range kubes {
		if k.kcm != nil {
			_ = k.kcm.Stop()
		}
		if k.env != nil {
			_ = k.env.Stop()
		}
	}
	if suite.kcl != nil {
		suite.kcl.Close()
	}
	os.Exit(code)
}

func zapLevel() zapcore.Level {
	if os.Getenv("MILLRACE_TEST_LOG") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// setup returns the API server for a Strimzi version, or skips when no broker is given.
func setup(t *testing.T, v testenv.Strimzi) *kube {
	t.Helper()
	if os.Getenv(envBootstrap) == "" {
		t.Skipf("%s is unset: these tests need a real Kafka broker with a SCRAM listener and the StandardAuthorizer (make test starts one)", envBootstrap)
	}
	suite.once.Do(func() {
		if suite.kcl, suite.err = kgo.NewClient(kgo.SeedBrokers(os.Getenv(envBootstrap))); suite.err == nil {
			suite.adm = kadm.NewClient(suite.kcl)
		}
	})
	if suite.err != nil {
		t.Fatalf("setup: %v", suite.err)
	}
	k := kubes[v]
	k.once.Do(func() {
		if k.env, k.err = testenv.Start(testenv.Options{Strimzi: v}); k.err != nil {
			return
		}
		if k.kcm, k.err = k.env.StartControllerManager("garbagecollector"); k.err != nil {
			return
		}
		scheme := runtime.NewScheme()
		if k.err = clientgoscheme.AddToScheme(scheme); k.err != nil {
			return
		}
		k.c, k.err = client.New(k.env.Config, client.Options{Scheme: scheme})
	})
	if k.err != nil {
		t.Fatalf("setup Strimzi %s: %v", v, k.err)
	}
	return k
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fixture is one test's namespace, watched by its own double.
type fixture struct {
	ctx context.Context
	ns  string
	c   client.Client
	gv  schema.GroupVersion // the Strimzi API version served
}

// start makes a namespace and runs a double for it, against Strimzi 1.2.0's CRDs (v1) or
// 0.45.0's (v1beta2).
func start(t *testing.T, v testenv.Strimzi) *fixture {
	t.Helper()
	k := setup(t, v)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{ctx: ctx, ns: "sd-" + randomSuffix(), c: k.c, gv: schema.GroupVersion{Group: "kafka.strimzi.io", Version: string(v)}}
	if err := f.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}); err != nil {
		t.Fatal(err)
	}
	d, err := Start(ctx, Options{
		Config:    k.env.Config,
		Namespace: f.ns,
		Cluster:   testCluster,
		Bootstrap: os.Getenv(envBootstrap),
		Listeners: []Listener{
			{Name: "plain", Port: 9092, Type: "internal", BootstrapServers: os.Getenv(envBootstrap)},
			{Name: "scram", Port: 9094, Type: "internal", Authentication: "scram-sha-512", BootstrapServers: saslBootstrap(t)},
		},
		StrimziAPIVersion: f.gv.String(),
		Log:               testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return f
}

func saslBootstrap(t *testing.T) string {
	t.Helper()
	b := os.Getenv(envBootstrapSASL)
	if b == "" {
		t.Skipf("%s is unset", envBootstrapSASL)
	}
	return b
}

// testWriter sends the double's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("MILLRACE_TEST_LOG") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// kafkaTopic is a KafkaTopic of testCluster, changed by mods.
func (f *fixture) kafkaTopic(name string, mods ...func(*unstructured.Unstructured)) *unstructured.Unstructured {
	u := object(f.gv.WithKind("KafkaTopic"))
	u.SetNamespace(f.ns)
	u.SetName(name)
	u.SetLabels(map[string]string{labelCluster: testCluster})
	u.Object["spec"] = map[string]any{}
	for _, m := range mods {
		m(u)
	}
	return u
}

func partitions(n int64) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { _ = unstructured.SetNestedField(u.Object, n, "spec", "partitions") }
}

func topicConfig(c map[string]any) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { _ = unstructured.SetNestedMap(u.Object, c, "spec", "config") }
}

func specTopicName(n string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { _ = unstructured.SetNestedField(u.Object, n, "spec", "topicName") }
}

func unmanaged(u *unstructured.Unstructured) {
	u.SetAnnotations(map[string]string{annotationManaged: "false"})
}

func cluster(name string) func(*unstructured.Unstructured) {
	return func(u *unstructured.Unstructured) { u.SetLabels(map[string]string{labelCluster: name}) }
}

// eventually polls f until it returns nil.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %s: %v", what, waitTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (f *fixture) get(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	out := object(u.GroupVersionKind())
	return out, f.c.Get(f.ctx, client.ObjectKeyFromObject(u), out)
}

// cond returns a status condition of an object, nil when absent.
func cond(u *unstructured.Unstructured, typ string) map[string]any {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}

// waitCondition waits until the object reports a condition with the status and reason for its
// current generation, and returns the object.
func (f *fixture) waitCondition(t *testing.T, u *unstructured.Unstructured, typ, status, reason string) *unstructured.Unstructured {
	t.Helper()
	var got *unstructured.Unstructured
	eventually(t, fmt.Sprintf("%s %s has %s=%s %s", u.GetKind(), u.GetName(), typ, status, reason), func() error {
		var err error
		if got, err = f.get(u); err != nil {
			return err
		}
		og, _, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration")
		c := cond(got, typ)
		if og != got.GetGeneration() || c == nil || c["status"] != status || (reason != "" && c["reason"] != reason) {
			return fmt.Errorf("generation %d, status %v", got.GetGeneration(), got.Object["status"])
		}
		return nil
	})
	return got
}

// update applies a change to the live object, retrying on conflicts.
func (f *fixture) update(t *testing.T, u *unstructured.Unstructured, mods ...func(*unstructured.Unstructured)) {
	t.Helper()
	eventually(t, "update "+u.GetName(), func() error {
		live, err := f.get(u)
		if err != nil {
			return err
		}
		for _, m := range mods {
			m(live)
		}
		return f.c.Update(f.ctx, live)
	})
}

func (f *fixture) waitGone(t *testing.T, u client.Object) {
	t.Helper()
	eventually(t, fmt.Sprintf("%T %s is gone", u, u.GetName()), func() error {
		err := f.c.Get(f.ctx, client.ObjectKeyFromObject(u), u)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("still there (finalizers %v)", u.GetFinalizers())
		}
		return err
	})
}

// kafkaTopicState is a topic as Kafka has it.
type kafkaTopicState struct {
	Partitions int
	Config     map[string]string // dynamic (topic-level) config only
	ID         string
}

// describe returns the topic as Kafka has it, or an error wrapping kerr.UnknownTopicOrPartition.
func describe(ctx context.Context, name string) (kafkaTopicState, error) {
	td, err := describeTopic(ctx, suite.kcl, name)
	if err != nil {
		return kafkaTopicState{}, err
	}
	if !td.exists {
		return kafkaTopicState{}, kerr.UnknownTopicOrPartition
	}
	rcs, err := suite.adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return kafkaTopicState{}, err
	}
	rc, err := rcs.On(name, nil)
	if err != nil {
		return kafkaTopicState{}, err
	}
	return kafkaTopicState{Partitions: int(td.partitions), Config: dynamicConfig(rc.Configs), ID: td.id}, nil
}

// waitTopic waits until Kafka has the topic as wanted.
func waitTopic(t *testing.T, ctx context.Context, name string, partitions int, config map[string]string) kafkaTopicState {
	t.Helper()
	var got kafkaTopicState
	eventually(t, "topic "+name+" in Kafka", func() error {
		var err error
		if got, err = describe(ctx, name); err != nil {
			return err
		}
		if got.Partitions != partitions || !cmp.Equal(got.Config, config) {
			return fmt.Errorf("partitions %d, config %v; want %d, %v", got.Partitions, got.Config, partitions, config)
		}
		return nil
	})
	return got
}

func createKafkaTopic(t *testing.T, ctx context.Context, name string, partitions int32, config map[string]string) {
	t.Helper()
	configs := map[string]*string{}
	for k, v := range config {
		configs[k] = &v
	}
	if _, err := suite.adm.CreateTopic(ctx, partitions, 1, configs, name); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), name) })
	// A busy broker takes a moment before the new topic shows in metadata and configs.
	eventually(t, "topic "+name+" created", func() error { _, err := describe(ctx, name); return err })
}

func TestKafkaCRListsListeners(t *testing.T) {
	for _, v := range []testenv.Strimzi{testenv.StrimziV1, testenv.StrimziV1beta2} {
		t.Run(string(v), func(t *testing.T) { testKafkaCRListsListeners(t, v) })
	}
}

func testKafkaCRListsListeners(t *testing.T, v testenv.Strimzi) {
	f := start(t, v)
	ctx, ns := f.ctx, f.ns
	k := object(f.gv.WithKind("Kafka"))
	k.SetNamespace(ns)
	k.SetName(testCluster)
	got := f.waitCondition(t, k, "Ready", "True", "")

	md, err := suite.adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if og, _, _ := unstructured.NestedInt64(got.Object, "status", "observedGeneration"); og != got.GetGeneration() {
		t.Errorf("status.observedGeneration = %d, want %d", og, got.GetGeneration())
	}
	if id, _, _ := unstructured.NestedString(got.Object, "status", "clusterId"); id != md.Cluster || id == "" {
		t.Errorf("status.clusterId = %q, want the broker's %q", id, md.Cluster)
	}
	statusListeners, _, _ := unstructured.NestedSlice(got.Object, "status", "listeners")
	wantStatus := []any{
		map[string]any{"name": "plain", "bootstrapServers": os.Getenv(envBootstrap), "addresses": []any{address(t, os.Getenv(envBootstrap))}},
		map[string]any{"name": "scram", "bootstrapServers": saslBootstrap(t), "addresses": []any{address(t, saslBootstrap(t))}},
	}
	if d := cmp.Diff(wantStatus, statusListeners); d != "" {
		t.Errorf("status.listeners (-want +got):\n%s", d)
	}
	specListeners, _, _ := unstructured.NestedSlice(got.Object, "spec", "kafka", "listeners")
	wantSpec := []any{
		map[string]any{"name": "plain", "port": int64(9092), "type": "internal", "tls": false},
		map[string]any{"name": "scram", "port": int64(9094), "type": "internal", "tls": false, "authentication": map[string]any{"type": "scram-sha-512"}},
	}
	if d := cmp.Diff(wantSpec, specListeners); d != "" {
		t.Errorf("spec.kafka.listeners (-want +got):\n%s", d)
	}
}

func address(t *testing.T, hostPort string) map[string]any {
	t.Helper()
	i := strings.LastIndex(hostPort, ":")
	var port int64
	if _, err := fmt.Sscan(hostPort[i+1:], &port); err != nil {
		t.Fatal(err)
	}
	return map[string]any{"host": hostPort[:i], "port": port}
}

func TestTopicCreatedUpdatedAndDeleted(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	name := "sd-create-" + randomSuffix()
	kt := f.kafkaTopic(name, partitions(2), topicConfig(map[string]any{"retention.ms": int64(3600000), "cleanup.policy": "delete"}))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	got := f.waitCondition(t, kt, "Ready", "True", "")
	inKafka := waitTopic(t, ctx, name, 2, map[string]string{"retention.ms": "3600000", "cleanup.policy": "delete"})
	if !cmp.Equal(got.GetFinalizers(), []string{TopicFinalizer}) {
		t.Errorf("finalizers = %v, want [%s]", got.GetFinalizers(), TopicFinalizer)
	}
	status, _, _ := unstructured.NestedMap(got.Object, "status")
	if status["topicName"] != name || status["topicId"] != inKafka.ID || inKafka.ID == "" {
		t.Errorf("status topicName %v topicId %v; want %s and Kafka's id %s", status["topicName"], status["topicId"], name, inKafka.ID)
	}

	// Raise partitions, change one config, drop one (reverted to the broker default), add one.
	f.update(t, kt, partitions(3), topicConfig(map[string]any{"retention.ms": "7200000", "max.message.bytes": int64(2000000)}))
	f.waitCondition(t, kt, "Ready", "True", "")
	waitTopic(t, ctx, name, 3, map[string]string{"retention.ms": "7200000", "max.message.bytes": "2000000"})

	if err := f.c.Delete(ctx, kt); err != nil {
		t.Fatal(err)
	}
	f.waitGone(t, kt)
	eventually(t, "topic "+name+" deleted from Kafka", func() error {
		if _, err := describe(ctx, name); !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("describe: %v", err)
		}
		return nil
	})
}

func TestTopicPartitionDecreaseNotSupported(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	name := "sd-decrease-" + randomSuffix()
	kt := f.kafkaTopic(name, partitions(3), topicConfig(map[string]any{"retention.ms": "3600000"}))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), name) })
	f.waitCondition(t, kt, "Ready", "True", "")
	waitTopic(t, ctx, name, 3, map[string]string{"retention.ms": "3600000"})

	// A decrease together with a config change: neither reaches Kafka.
	f.update(t, kt, partitions(1), topicConfig(map[string]any{"retention.ms": "60000"}))
	got := f.waitCondition(t, kt, "Ready", "False", ReasonNotSupported)
	if msg := cond(got, "Ready")["message"]; msg != "Decreasing partitions not supported" {
		t.Errorf("message = %q", msg)
	}
	after, err := describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if after.Partitions != 3 || after.Config["retention.ms"] != "3600000" {
		t.Errorf("Kafka changed: %+v", after)
	}

	// A replication factor change is refused too (Strimzi needs Cruise Control for it).
	f.update(t, kt, partitions(3), func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedField(u.Object, int64(2), "spec", "replicas")
	})
	got = f.waitCondition(t, kt, "Ready", "False", ReasonNotSupported)
	if msg, _ := cond(got, "Ready")["message"].(string); !strings.HasPrefix(msg, "Replication factor change not supported") {
		t.Errorf("message = %q", msg)
	}
}

func TestTopicAdoptionRaisesPartitionsAndRevertsConfig(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	name := "sd-adopt-" + randomSuffix()
	createKafkaTopic(t, ctx, name, 1, map[string]string{"retention.ms": "1234567", "cleanup.policy": "compact"})
	before, err := describe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}

	kt := f.kafkaTopic(name, partitions(2), topicConfig(map[string]any{"cleanup.policy": "compact"}))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	got := f.waitCondition(t, kt, "Ready", "True", "")
	after := waitTopic(t, ctx, name, 2, map[string]string{"cleanup.policy": "compact"})
	if after.ID != before.ID {
		t.Errorf("topic id changed from %s to %s: the topic was recreated, not adopted", before.ID, after.ID)
	}
	if id, _, _ := unstructured.NestedString(got.Object, "status", "topicId"); id != before.ID {
		t.Errorf("status.topicId = %s, want %s", id, before.ID)
	}
}

func TestTopicUnmanagedKeepsTopic(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	name := "sd-unmanaged-" + randomSuffix()
	createKafkaTopic(t, ctx, name, 1, map[string]string{"retention.ms": "1234567"})

	kt := f.kafkaTopic(name, unmanaged, partitions(4))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	got := f.waitCondition(t, kt, "Unmanaged", "True", "")
	if c := cond(got, "Ready"); c != nil {
		t.Errorf("an unmanaged KafkaTopic reports Ready: %v", c)
	}
	if st, err := describe(ctx, name); err != nil || st.Partitions != 1 || st.Config["retention.ms"] != "1234567" {
		t.Errorf("an unmanaged KafkaTopic changed Kafka: %+v, %v", st, err)
	}
	if err := f.c.Delete(ctx, kt); err != nil {
		t.Fatal(err)
	}
	f.waitGone(t, kt)
	if _, err := describe(ctx, name); err != nil {
		t.Errorf("deleting an unmanaged KafkaTopic deleted the topic: %v", err)
	}
}

func TestTopicOfAnotherClusterIgnored(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	foreign := f.kafkaTopic("sd-foreign-"+randomSuffix(), cluster("other-cluster"))
	if err := f.c.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), foreign.GetName()) })
	// A KafkaTopic of our cluster created after it is handled; the foreign one must not be.
	ours := f.kafkaTopic("sd-ours-" + randomSuffix())
	if err := f.c.Create(ctx, ours); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), ours.GetName()) })
	f.waitCondition(t, ours, "Ready", "True", "")
	time.Sleep(2 * resyncPeriod) // a periodic reconcile, too, must leave it alone

	got, err := f.get(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetFinalizers()) > 0 || got.Object["status"] != nil {
		t.Errorf("a KafkaTopic of another cluster was reconciled: finalizers %v, status %v", got.GetFinalizers(), got.Object["status"])
	}
	if _, err := describe(ctx, foreign.GetName()); !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("a KafkaTopic of another cluster reached Kafka: %v", err)
	}
}

func TestTopicConflict(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx, ns := f.ctx, f.ns
	name := "sd-conflict-" + randomSuffix()
	first := f.kafkaTopic("first", specTopicName(name), partitions(1))
	if err := f.c.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), name) })
	f.waitCondition(t, first, "Ready", "True", "")
	waitTopic(t, ctx, name, 1, map[string]string{})

	second := f.kafkaTopic("second", specTopicName(name), partitions(5))
	if err := f.c.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	got := f.waitCondition(t, second, "Ready", "False", ReasonResourceConflict)
	if msg, _ := cond(got, "Ready")["message"].(string); !strings.Contains(msg, ns+"/first") {
		t.Errorf("message %q does not name the managing KafkaTopic", msg)
	}
	// The first stays the manager through periodic reconciles, and the second's spec never
	// reaches Kafka.
	time.Sleep(2 * resyncPeriod)
	f.waitCondition(t, first, "Ready", "True", "")
	if st, err := describe(ctx, name); err != nil || st.Partitions != 1 {
		t.Errorf("the conflicting KafkaTopic changed Kafka: %+v, %v", st, err)
	}

	// Deleting the conflicting one keeps the topic.
	if err := f.c.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	f.waitGone(t, second)
	if _, err := describe(ctx, name); err != nil {
		t.Errorf("deleting the conflicting KafkaTopic deleted the topic: %v", err)
	}
}

func TestTopicPeriodicReconcileReappliesSpec(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	name := "sd-periodic-" + randomSuffix()
	kt := f.kafkaTopic(name, partitions(1), topicConfig(map[string]any{"retention.ms": "3600000"}))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), name) })
	f.waitCondition(t, kt, "Ready", "True", "")
	waitTopic(t, ctx, name, 1, map[string]string{"retention.ms": "3600000"})

	// Someone changes the topic behind the KafkaTopic's back; nothing changes in Kubernetes.
	v := "42"
	resp, err := suite.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: &v},
		{Op: kadm.SetConfig, Name: "segment.ms", Value: &v},
	}, name)
	if err == nil {
		err = resp[0].Err
	}
	if err != nil {
		t.Fatal(err)
	}
	waitTopic(t, ctx, name, 1, map[string]string{"retention.ms": "3600000"})
}

func TestUserScramCredentialSecretAndACLs(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx, ns := f.ctx, f.ns
	sasl := saslBootstrap(t)
	user := "sd-user-" + randomSuffix()
	allowed, other := "sd-allowed-"+randomSuffix(), "sd-other-"+randomSuffix()
	createKafkaTopic(t, ctx, allowed, 1, nil)
	createKafkaTopic(t, ctx, other, 1, nil)

	ku := object(f.gv.WithKind("KafkaUser"))
	ku.SetNamespace(ns)
	ku.SetName(user)
	ku.SetLabels(map[string]string{labelCluster: testCluster})
	acls := []any{
		map[string]any{"resource": map[string]any{"type": "topic", "name": allowed, "patternType": "literal"}, "operations": []any{"Write", "Describe"}},
		map[string]any{"resource": map[string]any{"type": "group", "name": user, "patternType": "prefix"}, "operations": []any{"Read"}},
		map[string]any{"resource": map[string]any{"type": "cluster"}, "operations": []any{"IdempotentWrite"}},
	}
	ku.Object["spec"] = map[string]any{
		"authentication": map[string]any{"type": "scram-sha-512"},
		"authorization":  map[string]any{"type": "simple", "acls": acls},
	}
	if err := f.c.Create(ctx, ku); err != nil {
		t.Fatal(err)
	}
	got := f.waitCondition(t, ku, "Ready", "True", "")
	status, _, _ := unstructured.NestedMap(got.Object, "status")
	if status["username"] != user || status["secret"] != user {
		t.Errorf("status username %v secret %v, want %s", status["username"], status["secret"], user)
	}

	secret := &corev1.Secret{}
	if err := f.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: user}, secret); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range secret.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if d := cmp.Diff([]string{SecretKeyPassword, SecretKeyJAAS}, keys); d != "" {
		t.Errorf("Secret keys (-want +got):\n%s", d)
	}
	password := string(secret.Data[SecretKeyPassword])
	wantJAAS := `org.apache.kafka.common.security.scram.ScramLoginModule required username="` + user + `" password="` + password + `";`
	if password == "" || string(secret.Data[SecretKeyJAAS]) != wantJAAS {
		t.Errorf("sasl.jaas.config = %q, want %q", secret.Data[SecretKeyJAAS], wantJAAS)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.UID != got.GetUID() || ref.Kind != "KafkaUser" {
		t.Errorf("Secret controller = %+v, want the KafkaUser %s", ref, got.GetUID())
	}

	// The user, with the Secret's password, can write its topic and not another.
	produce := func(topic string) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(sasl),
			kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
			kgo.RecordRetries(3), kgo.RequestRetries(3))
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return cl.ProduceSync(pctx, &kgo.Record{Topic: topic, Value: []byte("hello")}).FirstErr()
	}
	// Retried: the broker applies new credentials and ACLs from its metadata log, a moment after
	// the controller accepted them.
	eventually(t, "produce to "+allowed+" as "+user, func() error { return produce(allowed) })
	if err := produce(other); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Errorf("produce to %s as %s: %v, want TopicAuthorizationException", other, user, err)
	}
	// Its groups (by prefix) and no other.
	fetchOffsets := func(group string) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(sasl), kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = kadm.NewClient(cl).FetchOffsets(ctx, group)
		return err
	}
	// Retried: the broker creates its offsets topic on the first group request.
	eventually(t, "fetch offsets of its group", func() error { return fetchOffsets(user + "-app") })
	if err := fetchOffsets("sd-other-group"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("fetch offsets of another group: %v, want GroupAuthorizationException", err)
	}

	// Dropping the group ACL from the spec removes it from Kafka.
	f.update(t, ku, func(u *unstructured.Unstructured) {
		_ = unstructured.SetNestedSlice(u.Object, []any{acls[0], acls[2]}, "spec", "authorization", "acls")
	})
	f.waitCondition(t, ku, "Ready", "True", "")
	eventually(t, "its group denied once its ACL is dropped", func() error {
		if err := fetchOffsets(user + "-app"); !errors.Is(err, kerr.GroupAuthorizationFailed) {
			return fmt.Errorf("fetch offsets: %v, want GroupAuthorizationException", err)
		}
		return nil
	})
	eventually(t, "ACLs of "+user, func() error {
		got, err := userACLs(ctx, user)
		if err != nil {
			return err
		}
		want := []string{"CLUSTER kafka-cluster LITERAL IDEMPOTENT_WRITE ALLOW *", "TOPIC " + allowed + " LITERAL DESCRIBE ALLOW *", "TOPIC " + allowed + " LITERAL WRITE ALLOW *"}
		if d := cmp.Diff(want, got); d != "" {
			return fmt.Errorf("(-want +got):\n%s", d)
		}
		return nil
	})

	// Deleting the user removes its credential and ACLs; the garbage collector deletes the Secret.
	if err := f.c.Delete(ctx, ku); err != nil {
		t.Fatal(err)
	}
	f.waitGone(t, ku)
	eventually(t, "credential and ACLs of "+user+" removed", func() error {
		described, err := suite.adm.DescribeUserSCRAMs(ctx, user)
		if err != nil {
			return err
		}
		if d, ok := described[user]; ok && d.Err == nil && len(d.CredInfos) > 0 {
			return fmt.Errorf("credential left: %+v", d.CredInfos)
		}
		if left, err := userACLs(ctx, user); err != nil || len(left) > 0 {
			return fmt.Errorf("ACLs left: %v, %v", left, err)
		}
		return nil
	})
	f.waitGone(t, secret)
}

// userACLs lists a user's ACLs in Kafka, one line each, sorted.
func userACLs(ctx context.Context, user string) ([]string, error) {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType = kmsg.ACLResourceTypeAny
	req.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
	req.Principal = kmsg.StringPtr("User:" + user)
	req.Operation = kmsg.ACLOperationAny
	req.PermissionType = kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, suite.kcl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.Resources {
		for _, a := range r.ACLs {
			out = append(out, fmt.Sprintf("%s %s %s %s %s %s", r.ResourceType, r.ResourceName, r.ResourcePatternType, a.Operation, a.PermissionType, a.Host))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Strimzi 0.45.0 serves only v1beta2, where an ACL may still name its single operation.
func TestV1beta2TopicAndUser(t *testing.T) {
	f := start(t, testenv.StrimziV1beta2)
	ctx := f.ctx
	name := "sd-v1beta2-" + randomSuffix()
	kt := f.kafkaTopic(name, partitions(2), topicConfig(map[string]any{"retention.ms": "3600000"}))
	if err := f.c.Create(ctx, kt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = suite.adm.DeleteTopic(context.Background(), name) })
	f.waitCondition(t, kt, "Ready", "True", "")
	waitTopic(t, ctx, name, 2, map[string]string{"retention.ms": "3600000"})

	user := "sd-v1beta2-" + randomSuffix()
	ku := object(f.gv.WithKind("KafkaUser"))
	ku.SetNamespace(f.ns)
	ku.SetName(user)
	ku.SetLabels(map[string]string{labelCluster: testCluster})
	ku.Object["spec"] = map[string]any{
		"authentication": map[string]any{"type": "scram-sha-512"},
		"authorization": map[string]any{"type": "simple", "acls": []any{
			map[string]any{"resource": map[string]any{"type": "topic", "name": name}, "operation": "Read"},
		}},
	}
	if err := f.c.Create(ctx, ku); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.c.Delete(context.Background(), ku) })
	f.waitCondition(t, ku, "Ready", "True", "")
	eventually(t, "ACLs of "+user, func() error {
		got, err := userACLs(ctx, user)
		if err != nil {
			return err
		}
		if d := cmp.Diff([]string{"TOPIC " + name + " LITERAL READ ALLOW *"}, got); d != "" {
			return fmt.Errorf("(-want +got):\n%s", d)
		}
		return nil
	})
	secret := &corev1.Secret{}
	if err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: user}, secret); err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(secret); ref == nil || ref.APIVersion != V1beta2 {
		t.Errorf("Secret controller = %+v, want the v1beta2 KafkaUser", ref)
	}
}

// A double asked for an API version the cluster does not serve fails at Start instead of
// waiting for objects that can never come.
func TestStartFailsWhenTheVersionIsNotServed(t *testing.T) {
	k := setup(t, testenv.StrimziV1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := Start(ctx, Options{Config: k.env.Config, Namespace: "default", Cluster: testCluster,
		Bootstrap: os.Getenv(envBootstrap), StrimziAPIVersion: V1beta2})
	if err == nil || !strings.Contains(err.Error(), V1beta2) {
		t.Errorf("Start against Strimzi 1.2.0's CRDs with %s: %v, want an error naming the version", V1beta2, err)
	}
	if _, err := Start(ctx, Options{Config: k.env.Config, Cluster: testCluster, Bootstrap: os.Getenv(envBootstrap), StrimziAPIVersion: "kafka.strimzi.io/v2"}); err == nil {
		t.Error("Start accepted an unknown Strimzi API version")
	}
}
