package pipeline

import (
	"context"
	"fmt"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
)

// The API groups of the operators Millrace composes.
const (
	groupKEDA       = "keda.sh"
	groupMonitoring = "monitoring.coreos.com"
)

// composedCRDs are the CustomResourceDefinitions whose appearance (or removal) changes what the
// operator can do. The controller watches them by name, metadata only.
var composedCRDs = map[string]bool{
	"kafkatopics.kafka.strimzi.io":          true,
	"kafkausers.kafka.strimzi.io":           true,
	"kafkas.kafka.strimzi.io":               true,
	"scaledobjects.keda.sh":                 true,
	"triggerauthentications.keda.sh":        true,
	"servicemonitors.monitoring.coreos.com": true,
	"prometheusrules.monitoring.coreos.com": true,
}

// snapshot is what the cluster served at the last discovery.
type snapshot struct {
	// strimzi is the served version of kafka.strimzi.io KafkaTopic: "v1", "v1beta2" or "".
	strimzi      string
	strimziKafka bool
	strimziUser  bool
	keda         bool
	kedaAuth     bool // TriggerAuthentication, for the kafka scaler's credentials
	prometheus   bool // ServiceMonitor
	promRules    bool // PrometheusRule
}

func (s snapshot) strimziGVK(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: strimzi.Group, Version: s.strimzi, Kind: kind}
}

var (
	gvkScaledObject   = schema.GroupVersionKind{Group: groupKEDA, Version: "v1alpha1", Kind: "ScaledObject"}
	gvkTriggerAuth    = schema.GroupVersionKind{Group: groupKEDA, Version: "v1alpha1", Kind: "TriggerAuthentication"}
	gvkServiceMonitor = schema.GroupVersionKind{Group: groupMonitoring, Version: "v1", Kind: "ServiceMonitor"}
	gvkPrometheusRule = schema.GroupVersionKind{Group: groupMonitoring, Version: "v1", Kind: "PrometheusRule"}
	gvkAPIService     = schema.GroupVersionKind{Group: "apiregistration.k8s.io", Version: "v1", Kind: "APIService"}
)

// kedaAPIService is the APIService that KEDA's metrics server registers. The HPAs that KEDA
// creates read their metrics through it, so KEDA scales nothing unless it is Available: a
// ScaledObject CRD alone (left behind by an uninstall, or an OLM install of the keda package
// without its KedaController) is KEDA installed, not KEDA running.
const kedaAPIService = "v1beta1.external.metrics.k8s.io"

// kedaHealth is what the cluster says about KEDA's metrics server.
type kedaHealth struct {
	// problem is "" when the APIService is Available, else what is missing, for the condition.
	problem string
}

// observeKEDA reads KEDA's external metrics APIService from the cache (which holds that one
// APIService, see CacheOptions).
func (r *Reconciler) observeKEDA(ctx context.Context) (kedaHealth, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkAPIService)
	if err := r.cache.Get(ctx, client.ObjectKey{Name: kedaAPIService}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return kedaHealth{problem: "the APIService " + kedaAPIService + " that KEDA's metrics server registers does not exist, so KEDA's HPAs get no metrics: install KEDA completely (with OLM, create the KedaController)"}, nil
		}
		return kedaHealth{}, fmt.Errorf("read APIService %s: %w", kedaAPIService, err)
	}
	return kedaHealth{problem: apiServiceProblem(u)}, nil
}

// apiServiceProblem says why an APIService is not Available, or "" when it is.
func apiServiceProblem(u *unstructured.Unstructured) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		if m["status"] == "True" {
			return ""
		}
		reason, _ := m["reason"].(string)
		msg, _ := m["message"].(string)
		return fmt.Sprintf("the APIService %s of KEDA's metrics server is not Available (%s: %s), so KEDA's HPAs get no metrics: check the keda-operator-metrics-apiserver pods and Service",
			u.GetName(), reason, msg)
	}
	return "the APIService " + u.GetName() + " of KEDA's metrics server reports no Available condition yet"
}

// thirdParty lists the composed kinds the snapshot serves, which the operator lists, applies,
// prunes and watches.
func (s snapshot) thirdParty() []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	if s.strimzi != "" {
		out = append(out, s.strimziGVK("KafkaTopic"))
		if s.strimziUser {
			out = append(out, s.strimziGVK("KafkaUser"))
		}
	}
	if s.keda {
		out = append(out, gvkScaledObject)
	}
	if s.kedaAuth {
		out = append(out, gvkTriggerAuth)
	}
	if s.prometheus {
		out = append(out, gvkServiceMonitor)
	}
	if s.promRules {
		out = append(out, gvkPrometheusRule)
	}
	return out
}

// capabilities caches discovery. It is refreshed when a composed CRD changes (and at start), not
// on every reconcile: discovery is a few API calls, and a thousand Pipelines reconcile often.
type capabilities struct {
	mu    sync.Mutex
	disc  discovery.DiscoveryInterface
	stale bool
	snap  snapshot
}

func newCapabilities(d discovery.DiscoveryInterface) *capabilities {
	return &capabilities{disc: d, stale: true}
}

func (c *capabilities) invalidate() {
	c.mu.Lock()
	c.stale = true
	c.mu.Unlock()
}

// get returns the snapshot, refreshing it first when stale.
func (c *capabilities) get() (snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stale {
		return c.snap, nil
	}
	snap, err := discover(c.disc)
	if err != nil {
		return c.snap, err
	}
	c.snap, c.stale = snap, false
	return snap, nil
}

func discover(d discovery.DiscoveryInterface) (snapshot, error) {
	var s snapshot
	groups, err := d.ServerGroups()
	if err != nil {
		return s, fmt.Errorf("discover API groups: %w", err)
	}
	served := map[string]bool{}
	for _, g := range groups.Groups {
		for _, v := range g.Versions {
			served[v.GroupVersion] = true
		}
	}
	kinds := func(gv string) map[string]bool {
		out := map[string]bool{}
		if !served[gv] {
			return out
		}
		list, err := d.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return out
		}
		for _, r := range list.APIResources {
			out[r.Kind] = true
		}
		return out
	}
	// Prefer v1: Strimzi 1.x serves only v1; 0.49-0.51 serve both; older only v1beta2.
	for _, v := range []string{strimzi.V1.Version, strimzi.V1beta2.Version} {
		k := kinds(strimzi.Group + "/" + v)
		if k["KafkaTopic"] {
			s.strimzi, s.strimziKafka, s.strimziUser = v, k["Kafka"], k["KafkaUser"]
			break
		}
	}
	keda := kinds(gvkScaledObject.GroupVersion().String())
	s.keda, s.kedaAuth = keda["ScaledObject"], keda["TriggerAuthentication"]
	mon := kinds(gvkServiceMonitor.GroupVersion().String())
	s.prometheus, s.promRules = mon["ServiceMonitor"], mon["PrometheusRule"]
	return s, nil
}

// pending reports whether a composed CRD exists, was created recently, and is not served yet:
// the API server is establishing it. Only recent CRDs count, so a broken CRD cannot make the
// operator spin.
func (c *capabilities) pending(ctx context.Context, cache client.Reader) bool {
	snap, _ := c.get()
	served := map[string]bool{
		"kafkatopics.kafka.strimzi.io":          snap.strimzi != "",
		"kafkausers.kafka.strimzi.io":           snap.strimziUser,
		"kafkas.kafka.strimzi.io":               snap.strimziKafka,
		"scaledobjects.keda.sh":                 snap.keda,
		"servicemonitors.monitoring.coreos.com": snap.prometheus,
		"prometheusrules.monitoring.coreos.com": snap.promRules,
	}
	for name, ok := range served {
		if ok {
			continue
		}
		crd := &metav1.PartialObjectMetadata{}
		crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
		if err := cache.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			continue
		}
		if time.Since(crd.CreationTimestamp.Time) < time.Minute {
			return true
		}
	}
	return false
}

// crdChanged marks discovery stale and reconciles every Pipeline: each may now render more (or
// less) and must say so in its conditions.
func (r *Reconciler) crdChanged(ctx context.Context, o client.Object) []reconcile.Request {
	r.caps.invalidate()
	var list v1alpha1.PipelineList
	if err := r.cache.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list pipelines after a CRD change")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return out
}

// dynamicWatches starts watches for composed kinds once the cluster serves them. Watches added
// to a running controller start at once.
type dynamicWatches struct {
	mu      sync.Mutex
	ctrl    controller.Controller
	cache   cache.Cache
	unowned cache.Cache
	r       *Reconciler
	started map[schema.GroupVersionKind]bool
}

func newDynamicWatches(c controller.Controller, ca, unowned cache.Cache, r *Reconciler) *dynamicWatches {
	return &dynamicWatches{ctrl: c, cache: ca, unowned: unowned, r: r, started: map[schema.GroupVersionKind]bool{}}
}

// ensure starts the watches the snapshot allows and that are not running yet.
func (d *dynamicWatches) ensure(snap snapshot) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := snap.thirdParty()
	if snap.strimziKafka {
		want = append(want, snap.strimziGVK("Kafka"))
	}
	for _, gvk := range want {
		if d.started[gvk] {
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		h, from := handler.EnqueueRequestsFromMapFunc(mapChildToPipeline), d.cache
		preds := []predicate.Predicate{d.r.ownWrites.predicate(gvk.GroupKind())}
		if gvk.Kind == "Kafka" {
			// Not Millrace's, so not labelled: from the unfiltered cache.
			h, from, preds = handler.EnqueueRequestsFromMapFunc(d.r.mapKafkaToPipelines), d.unowned, nil
		}
		if err := d.ctrl.Watch(source.Kind[client.Object](from, u, h, preds...)); err != nil {
			return fmt.Errorf("watch %s: %w", gvk, err)
		}
		d.started[gvk] = true
	}
	return nil
}

// mapChildToPipeline finds the Pipeline of a child by its labels. Labels rather than owner
// references, because a Retain KafkaTopic deliberately has no owner.
func mapChildToPipeline(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[render.LabelManagedBy] != render.ValueManagedBy || l[render.LabelPipeline] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: l[render.LabelPipeline]}}}
}

// mapKafkaToPipelines finds the Pipelines that name a Strimzi Kafka, whose bootstrap address
// they read from its status.
func (r *Reconciler) mapKafkaToPipelines(ctx context.Context, o client.Object) []reconcile.Request {
	var list v1alpha1.PipelineList
	if err := r.cache.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexStrimziCluster: o.GetName()}); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
	}
	return out
}
