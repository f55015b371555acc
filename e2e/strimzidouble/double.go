// Package strimzidouble is a test double of Strimzi's topic and user operators, for the e2e
// tier; not Strimzi.
//
// Strimzi's operators are not published on any registry the project's CI can reach, so the e2e
// suite runs this double instead, against a real Kafka broker. It follows what the real Strimzi
// 1.2.0 operators were observed to do (../shared/recipes/federation-keda-strimzi.md), and no more:
//
//   - a Kafka CR named after the cluster, whose status lists the broker's listeners, Ready=True;
//   - KafkaTopic → Kafka topic through the admin API: the finalizer strimzi.io/topic-operator,
//     Ready with observedGeneration, topicName and topicId; partitions raised and config changed on
//     update, config missing from the spec reverted to the broker default (also when adopting an
//     existing topic); a partition decrease (or a replication factor change) refused with
//     Ready=False reason NotSupported and Kafka left unchanged; strimzi.io/managed: "false" gives
//     Unmanaged=True and keeps the topic when the KafkaTopic is deleted; a second KafkaTopic for
//     the same topic is Ready=False reason ResourceConflict; every KafkaTopic is re-applied to
//     Kafka periodically;
//   - KafkaUser → a SCRAM-SHA-512 credential with a random password, a Secret named like the user
//     with only `password` and `sasl.jaas.config` (owned by the KafkaUser, so the garbage collector
//     deletes it), and simple ACLs (ACLs no longer in the spec are removed).
//
// Objects not labelled strimzi.io/cluster=<Cluster> are ignored, as Strimzi's entity operators do.
//
// Where it differs from Strimzi on purpose: the real user operator puts no finalizer on a
// KafkaUser and finds deleted users by listing Kafka's; the double puts its own finalizer
// (UserFinalizer) on each KafkaUser instead, so that once a KafkaUser is gone its credential and
// ACLs are gone from Kafka too, and it never touches Kafka users it did not create. Only
// scram-sha-512 authentication (or none) is supported; tls users are Ready=False NotSupported.
// Replica changes are refused (Strimzi needs Cruise Control for them).
package strimzidouble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

const (
	// FieldManager is the field owner of everything the double applies.
	FieldManager = "strimzi-test-double"
	// TopicFinalizer is the finalizer Strimzi's topic operator puts on each KafkaTopic.
	TopicFinalizer = "strimzi.io/topic-operator"
	// UserFinalizer is the double's own finalizer on each KafkaUser (the real user operator has
	// none, see the package doc).
	UserFinalizer = "e2e.millrace.dev/strimzi-test-double"

	labelCluster      = "strimzi.io/cluster"
	labelKind         = "strimzi.io/kind"
	annotationManaged = "strimzi.io/managed"

	// V1 is Strimzi 1.x's API version, V1beta2 the one of Strimzi before 0.49.
	V1      = "kafka.strimzi.io/v1"
	V1beta2 = "kafka.strimzi.io/v1beta2"
)

// resyncPeriod is how often every KafkaTopic and KafkaUser is applied to Kafka again, as
// Strimzi's operators do periodically; a variable so that tests can shorten it.
var resyncPeriod = 15 * time.Second

// retryPeriod is how soon a reconcile that failed against Kafka is tried again.
const retryPeriod = 2 * time.Second

// Options configure a Double.
type Options struct {
	Config            *rest.Config // cluster to watch
	Namespace         string       // namespace whose KafkaTopics/KafkaUsers it reconciles ("" = all); the Kafka CR goes here ("default" when "")
	Cluster           string       // Strimzi cluster name: only objects labelled strimzi.io/cluster=<Cluster>
	Bootstrap         string       // admin (PLAINTEXT, ANONYMOUS super user) bootstrap of the real broker
	Listeners         []Listener   // what the Kafka CR's spec and status list
	StrimziAPIVersion string       // V1 ("kafka.strimzi.io/v1", Strimzi 1.2.0) or V1beta2 (0.45.0); default V1
	Log               io.Writer    // the double's log; discarded when nil
}

// Listener is one listener of the Kafka CR.
type Listener struct {
	Name             string
	Port             int32
	Type             string // internal
	TLS              bool
	Authentication   string // "" or "scram-sha-512"
	BootstrapServers string
}

// Double is a running test double of Strimzi's topic and user operators.
type Double struct {
	cancel context.CancelFunc
	done   chan error
	kafka  *kgo.Client
	once   sync.Once
}

// Start applies the Kafka CR and starts reconciling KafkaTopics and KafkaUsers. It runs until ctx
// is done or Stop is called.
func Start(ctx context.Context, o Options) (*Double, error) {
	if o.Config == nil || o.Cluster == "" || o.Bootstrap == "" {
		return nil, errors.New("strimzi test double: Config, Cluster and Bootstrap are required")
	}
	if o.StrimziAPIVersion == "" {
		o.StrimziAPIVersion = V1
	}
	if o.StrimziAPIVersion != V1 && o.StrimziAPIVersion != V1beta2 {
		return nil, fmt.Errorf("strimzi test double: StrimziAPIVersion %q is neither %s nor %s", o.StrimziAPIVersion, V1, V1beta2)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	gv, _ := schema.ParseGroupVersion(o.StrimziAPIVersion)
	log := zap.New(zap.WriteTo(o.Log), zap.UseDevMode(true)).WithName("strimzi-test-double")

	kcl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(o.Bootstrap, ",")...))
	if err != nil {
		return nil, fmt.Errorf("strimzi test double: Kafka client for %s: %w", o.Bootstrap, err)
	}
	adm := kadm.NewClient(kcl)

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		kcl.Close()
		return nil, err
	}
	selector := labels.SelectorFromSet(labels.Set{labelCluster: o.Cluster})
	topicGVK, userGVK := gv.WithKind("KafkaTopic"), gv.WithKind("KafkaUser")
	cacheOpts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		object(topicGVK): {Label: selector},
		object(userGVK):  {Label: selector},
	}}
	if o.Namespace != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{o.Namespace: {}}
	}
	mgr, err := ctrl.NewManager(o.Config, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests start one double after another in one process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		kcl.Close()
		return nil, fmt.Errorf("strimzi test double: manager: %w", err)
	}

	kafkaNamespace := o.Namespace
	if kafkaNamespace == "" {
		kafkaNamespace = "default"
	}
	if err := applyKafka(ctx, mgr.GetClient(), adm, gv, kafkaNamespace, o); err != nil {
		kcl.Close()
		return nil, err
	}

	topics := &topicReconciler{client: mgr.GetClient(), kafka: kcl, adm: adm, gvk: topicGVK, cluster: o.Cluster}
	if err := topics.setup(mgr); err != nil {
		kcl.Close()
		return nil, err
	}
	users := &userReconciler{client: mgr.GetClient(), reader: mgr.GetAPIReader(), kafka: kcl, adm: adm, gvk: userGVK, cluster: o.Cluster}
	if err := users.setup(mgr); err != nil {
		kcl.Close()
		return nil, err
	}

	runCtx, cancel := context.WithCancel(ctx)
	d := &Double{cancel: cancel, done: make(chan error, 1), kafka: kcl}
	for _, gvk := range []schema.GroupVersionKind{topicGVK, userGVK} {
		if _, err := mgr.GetCache().GetInformer(runCtx, object(gvk)); err != nil {
			cancel()
			kcl.Close()
			return nil, fmt.Errorf("strimzi test double: watch %s: %w", gvk.Kind, err)
		}
	}
	exited := make(chan error, 1)
	go func() {
		err := mgr.Start(runCtx)
		if err != nil {
			log.Error(err, "stopped")
		}
		exited <- err
		d.done <- err
	}()
	// Return once both informers have synced, so that what a test creates next is seen.
	synced := make(chan bool, 1)
	go func() { synced <- mgr.GetCache().WaitForCacheSync(runCtx) }()
	select {
	case ok := <-synced:
		if !ok {
			d.Stop()
			return nil, fmt.Errorf("strimzi test double: caches did not sync: %w", context.Cause(runCtx))
		}
	case err := <-exited:
		cancel()
		kcl.Close()
		return nil, fmt.Errorf("strimzi test double: manager stopped: %v", err)
	}
	log.Info("started", "cluster", o.Cluster, "namespace", o.Namespace, "bootstrap", o.Bootstrap, "apiVersion", o.StrimziAPIVersion)
	return d, nil
}

// Stop stops reconciling and waits until the double has stopped. Objects stay as they are.
func (d *Double) Stop() {
	d.once.Do(func() {
		d.cancel()
		<-d.done
		d.kafka.Close()
	})
}

// object is an empty unstructured object of a kind.
func object(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// applyKafka applies the Kafka CR (spec.kafka.listeners) and then its status, as Strimzi's
// cluster operator reports a ready cluster.
func applyKafka(ctx context.Context, c client.Client, adm *kadm.Client, gv schema.GroupVersion, namespace string, o Options) error {
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("strimzi test double: read the cluster id from %s: %w", o.Bootstrap, err)
	}
	specListeners := make([]any, 0, len(o.Listeners))
	statusListeners := make([]any, 0, len(o.Listeners))
	for _, l := range o.Listeners {
		typ := l.Type
		if typ == "" {
			typ = "internal"
		}
		sl := map[string]any{"name": l.Name, "port": int64(l.Port), "type": typ, "tls": l.TLS}
		if l.Authentication != "" {
			sl["authentication"] = map[string]any{"type": l.Authentication}
		}
		specListeners = append(specListeners, sl)
		addresses := []any{}
		for _, hp := range strings.Split(l.BootstrapServers, ",") {
			host, port, err := net.SplitHostPort(strings.TrimSpace(hp))
			if err != nil {
				return fmt.Errorf("strimzi test double: listener %s: bootstrap %q: %w", l.Name, l.BootstrapServers, err)
			}
			p, err := strconv.ParseInt(port, 10, 32)
			if err != nil {
				return fmt.Errorf("strimzi test double: listener %s: port %q: %w", l.Name, port, err)
			}
			addresses = append(addresses, map[string]any{"host": host, "port": p})
		}
		statusListeners = append(statusListeners, map[string]any{
			"name": l.Name, "bootstrapServers": l.BootstrapServers, "addresses": addresses,
		})
	}
	k := object(gv.WithKind("Kafka"))
	k.SetName(o.Cluster)
	k.SetNamespace(namespace)
	k.Object["spec"] = map[string]any{"kafka": map[string]any{"listeners": specListeners}}
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(k), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("strimzi test double: apply Kafka %s/%s: %w", namespace, o.Cluster, err)
	}
	st := object(gv.WithKind("Kafka"))
	st.SetName(o.Cluster)
	st.SetNamespace(namespace)
	st.Object["status"] = map[string]any{
		"conditions": []any{map[string]any{
			"type": "Ready", "status": "True", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}},
		"observedGeneration": k.GetGeneration(),
		"clusterId":          md.Cluster,
		"listeners":          statusListeners,
	}
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(st), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("strimzi test double: apply the status of Kafka %s/%s: %w", namespace, o.Cluster, err)
	}
	return nil
}

// mine reports whether an object belongs to the double's cluster. The cache only holds such
// objects; this guards against a label changed since.
func mine(u *unstructured.Unstructured, cluster string) bool {
	return u.GetLabels()[labelCluster] == cluster
}

// condition is a Strimzi status condition.
type condition struct {
	Type, Status, Reason, Message string
}

// conditionsFor renders conditions in Strimzi's shape, keeping the lastTransitionTime of a
// condition whose status did not change.
func conditionsFor(old []any, now time.Time, conds ...condition) []any {
	prev := map[string]map[string]any{}
	for _, o := range old {
		if m, ok := o.(map[string]any); ok {
			if t, ok := m["type"].(string); ok {
				prev[t] = m
			}
		}
	}
	out := make([]any, 0, len(conds))
	for _, c := range conds {
		ltt := now.UTC().Format(time.RFC3339)
		if p := prev[c.Type]; p != nil && p["status"] == c.Status {
			if t, ok := p["lastTransitionTime"].(string); ok {
				ltt = t
			}
		}
		m := map[string]any{"type": c.Type, "status": c.Status, "lastTransitionTime": ltt}
		if c.Reason != "" {
			m["reason"] = c.Reason
		}
		if c.Message != "" {
			m["message"] = c.Message
		}
		out = append(out, m)
	}
	return out
}

// writeStatus replaces an object's status when it differs from the one observed.
func writeStatus(ctx context.Context, c client.Client, u *unstructured.Unstructured, status map[string]any) error {
	if old, ok := u.Object["status"].(map[string]any); ok && equalJSON(old, status) {
		return nil
	}
	orig := u.DeepCopy()
	u.Object["status"] = status
	if err := c.Status().Patch(ctx, u, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("write the status of %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err))
	}
	return nil
}

// equalJSON compares two JSON-like values, treating integer kinds alike (the API server's int64
// against the double's int).
func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, v := range a {
			w, ok := bm[k]
			if !ok || !equalJSON(v, w) {
				return false
			}
		}
		return true
	case []any:
		bs, ok := b.([]any)
		if !ok || len(a) != len(bs) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], bs[i]) {
				return false
			}
		}
		return true
	}
	if ai, ok := toInt64(a); ok {
		bi, ok := toInt64(b)
		return ok && ai == bi
	}
	return a == b
}

func toInt64(v any) (int64, bool) {
	switch v := v.(type) {
	case int:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

// addFinalizer adds a finalizer with an optimistic lock, so that other finalizers are kept.
func addFinalizer(ctx context.Context, c client.Client, u *unstructured.Unstructured, finalizer string) error {
	for _, f := range u.GetFinalizers() {
		if f == finalizer {
			return nil
		}
	}
	orig := u.DeepCopy()
	u.SetFinalizers(append(u.GetFinalizers(), finalizer))
	if err := c.Patch(ctx, u, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("add finalizer to %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// removeFinalizer removes a finalizer with an optimistic lock.
func removeFinalizer(ctx context.Context, c client.Client, u *unstructured.Unstructured, finalizer string) error {
	var kept []string
	for _, f := range u.GetFinalizers() {
		if f != finalizer {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(u.GetFinalizers()) {
		return nil
	}
	orig := u.DeepCopy()
	u.SetFinalizers(kept)
	if err := c.Patch(ctx, u, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("remove finalizer from %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err))
	}
	return nil
}

// controllerOf is a controller owner reference to an object.
func controllerOf(u *unstructured.Unstructured) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: u.GetAPIVersion(), Kind: u.GetKind(), Name: u.GetName(), UID: u.GetUID(),
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}
}
