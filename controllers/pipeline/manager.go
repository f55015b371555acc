package pipeline

import (
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Scheme holds the typed kinds the operator reads or writes, and no others: a smaller scheme is
// a smaller operator. Composed operators' kinds (ScaledObject, ServiceMonitor, KafkaTopic reads)
// are handled as unstructured objects, so the operator starts whether or not their CRDs exist.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme, coordinationv1.AddToScheme,
		apiextensionsv1.AddToScheme, v1alpha1.AddToScheme, strimzi.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// CacheOptions make the cache hold only Millrace's own objects, selected by the managed-by
// label: every kind is filtered by default (StatefulSets, ConfigMaps, Services,
// ControllerRevisions, and the composed operators' kinds, KafkaTopics, ScaledObjects,
// ServiceMonitors and the rest, whose CRDs may be installed after the operator starts), so the
// operator's memory grows with its Pipelines rather than with the cluster. The few kinds read
// whole are exceptions: Pipelines, the composed operators' CRDs (metadata only) and KEDA's
// APIService. Strimzi Kafkas, which Millrace reads but does not own, have a cache of their own
// (UnownedCacheOptions). An empty namespace watches all namespaces.
func CacheOptions(namespace string) cache.Options {
	o := cache.Options{
		DefaultTransform:     stripUnread,
		DefaultLabelSelector: ownedSelector(),
		ByObject: map[client.Object]cache.ByObject{
			&v1alpha1.Pipeline{}: {Label: labels.Everything()},
			// Watched as metadata only (WatchesMetadata), by name in the controller's predicate.
			&apiextensionsv1.CustomResourceDefinition{}: {Label: labels.Everything()},
		},
	}
	// KEDA's external metrics APIService, the one APIService the operator reads.
	apiService := &unstructured.Unstructured{}
	apiService.SetGroupVersionKind(gvkAPIService)
	o.ByObject[apiService] = cache.ByObject{Label: labels.Everything(), Field: fields.OneTermEqualSelector("metadata.name", kedaAPIService)}
	if namespace != "" {
		o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	return o
}

// ownedSelector selects the objects Millrace manages.
func ownedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ValueManagedBy})
}

// UnownedCacheOptions are the options of the second, unfiltered cache, which holds the objects
// the operator reads without owning them and that carry no label of its: Strimzi Kafkas (their
// bootstrap addresses). Its informers start only for the kinds read through it.
func UnownedCacheOptions(namespace string) cache.Options {
	o := cache.Options{DefaultTransform: stripUnread}
	if namespace != "" {
		o.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	return o
}

// annotationLastApplied is what `kubectl apply` stores on an object: a copy of the whole applied
// object, which the operator never reads.
const annotationLastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// stripUnread removes from every cached object what neither apply (upToDate/covers compares the
// spec, labels, annotations and owners that render sets), status.go, observe.go nor history.go
// reads, so that it is not held in memory for as long as the object exists:
//
//   - managed fields, often the larger part of an object: server-side apply computes ownership
//     on the server. The one ownership fact the operator needs, whether it owns a StatefulSet's
//     spec.replicas (to hand the field over to an autoscaler), is kept as a cache-only
//     annotation (see markReplicasOwner);
//
//   - kubectl's last-applied-configuration annotation, which render never sets;
//
//   - a StatefulSet's status except observedGeneration, replicas, readyReplicas and what a
//     rollout's end is read from (updatedReplicas, currentRevision, updateRevision);
//
//   - a composed kind's status except conditions (ScaledObject "Active", KafkaTopic readiness)
//     and listeners (a Strimzi Kafka's bootstrap addresses), and a Strimzi Kafka's spec except
//     its listeners' name, type, tls and authentication type (which listener fits a Pipeline).
//
//   - of a child the operator applied, what only the change detection read: it keeps instead a
//     digest of the values the operator's field manager owns (markOwnedDigest, ownedDigest),
//     which upToDate compares with the configuration about to be applied. So a StatefulSet
//     keeps of its spec only the replicas and the update strategy, a Service no spec, a composed kind's child (KafkaTopic, ScaledObject,
//     ServiceMonitor, ...) no spec (a KafkaTopic its spec.topicName only), and each only the labels that select and index it;
//
//     An executor's ConfigMap keeps of its executor.json only the assignment, which observe
//     reads back (the status's configuration digests come from render; the retirement of an
//     entity reads its ConfigMap live).
//
// Labels and annotations stay whole.
func stripUnread(in any) (any, error) {
	o, ok := in.(client.Object)
	if !ok {
		return in, nil
	}
	if sts, ok := o.(*appsv1.StatefulSet); ok {
		markReplicasOwner(sts)
	}
	digested := markOwnedDigest(o)
	o.SetManagedFields(nil)
	if digested {
		// The labels read: the cache's selection and index, and the entity; the rest are in
		// the owned digest.
		o.SetLabels(keep(o.GetLabels(), render.LabelManagedBy, render.LabelPipeline, render.LabelEntity, render.LabelStream))
	}
	if ann := o.GetAnnotations(); ann[annotationLastApplied] != "" {
		delete(ann, annotationLastApplied)
		o.SetAnnotations(ann)
	}
	switch t := o.(type) {
	case *corev1.Pod:
		// observeConfig reads the labels, the pod template hash, the phase and whether the pod
		// is terminating: executor pods are many, their specs stay out of memory.
		t.Spec = corev1.PodSpec{}
		t.Status = corev1.PodStatus{Phase: t.Status.Phase}
	case *appsv1.StatefulSet:
		if digested {
			// What status.go and observe.go read: the replicas and the update strategy. The
			// rest of the spec, the pod template above all, is in the owned digest (the pod
			// template hash that configstatus compares pods with comes from render).
			t.Spec = appsv1.StatefulSetSpec{Replicas: t.Spec.Replicas, UpdateStrategy: t.Spec.UpdateStrategy}
		}
		t.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: t.Status.ObservedGeneration,
			Replicas:           t.Status.Replicas,
			ReadyReplicas:      t.Status.ReadyReplicas,
			UpdatedReplicas:    t.Status.UpdatedReplicas,
			CurrentRevision:    t.Status.CurrentRevision,
			UpdateRevision:     t.Status.UpdateRevision,
		}
	case *corev1.ConfigMap:
		if digested {
			// Of an executor's configuration, observe reads the assignment only (to keep a
			// Static assignment stable); the rest is in the owned digest.
			t.Data, t.BinaryData = assignmentOnly(t.Data), nil
		}
	case *corev1.Service:
		if digested {
			t.Spec = corev1.ServiceSpec{} // read by nobody: in the owned digest
		}
	case *unstructured.Unstructured:
		if digested {
			// A composed kind's child (KafkaTopic, ScaledObject, ServiceMonitor, ...): only
			// its metadata and status conditions are read, and a KafkaTopic's topic name
			// (retire.go keeps the KafkaTopics of the topics a retiring entity's pods use).
			spec, _ := t.Object["spec"].(map[string]any)
			delete(t.Object, "spec")
			if name, ok := spec["topicName"].(string); ok && t.GetKind() == "KafkaTopic" && t.GroupVersionKind().Group == strimzi.Group {
				t.Object["spec"] = map[string]any{"topicName": name}
			}
		}
		if t.GetKind() == "Kafka" && t.GroupVersionKind().Group == strimzi.Group {
			// Only the listeners' name, type, tls and authentication type: observe chooses the
			// listener that fits a Pipeline's authentication from them.
			listeners, _, _ := unstructured.NestedSlice(t.Object, "spec", "kafka", "listeners")
			var kept []any
			for _, raw := range listeners {
				l, ok := raw.(map[string]any)
				if !ok {
					continue
				}
				k := map[string]any{}
				for _, f := range []string{"name", "type", "tls"} {
					if v, ok := l[f]; ok {
						k[f] = v
					}
				}
				if a, ok := l["authentication"].(map[string]any); ok {
					k["authentication"] = map[string]any{"type": a["type"]}
				}
				kept = append(kept, k)
			}
			delete(t.Object, "spec")
			if kept != nil {
				t.Object["spec"] = map[string]any{"kafka": map[string]any{"listeners": kept}}
			}
		}
		if st, ok := t.Object["status"].(map[string]any); ok {
			for k := range st {
				if k != "conditions" && k != "listeners" {
					delete(st, k)
				}
			}
		}
	}
	return o, nil
}

// markOwnedDigest sets cachedOwnedDigest on a child the operator applied (it carries the
// applied hash and the operator's apply entry in its managed fields) and reports whether it did.
func markOwnedDigest(o client.Object) bool {
	if o.GetAnnotations()[AnnotationAppliedHash] == "" {
		return false
	}
	var content map[string]any
	if u, ok := o.(*unstructured.Unstructured); ok {
		content = u.Object
	} else {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return false
		}
		content = m
	}
	d, leaves := ownedDigest(content, o.GetManagedFields(), FieldManager)
	if d == "" {
		return false
	}
	ann := o.GetAnnotations()
	ann[cachedOwnedDigest] = d
	if len(leaves) > 0 {
		raw, err := json.Marshal(leaves)
		if err != nil {
			delete(ann, cachedOwnedDigest)
			return false
		}
		ann[cachedOwnedLeaves] = string(raw)
	}
	o.SetAnnotations(ann)
	return true
}

// assignmentOnly is the data of an executor's ConfigMap reduced to the configuration's
// assignment, nil when it holds no readable configuration.
func assignmentOnly(data map[string]string) map[string]string {
	var ex struct {
		Assignment json.RawMessage `json:"assignment"`
	}
	if err := json.Unmarshal([]byte(data[config.FileName]), &ex); err != nil || ex.Assignment == nil {
		return nil
	}
	return map[string]string{config.FileName: `{"assignment":` + string(ex.Assignment) + `}`}
}

// keep returns the entries of m under keys, nil if none.
func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// cachedOwnsReplicas is an annotation that exists only on cached StatefulSets, never on the
// server: "true" when the operator's field manager owns spec.replicas. stripUnread sets it from
// the managed fields it then drops.
const cachedOwnsReplicas = "cache.streaming.millrace.dev/owns-replicas"

func markReplicasOwner(sts *appsv1.StatefulSet) {
	if !managerOwns(sts.ManagedFields, FieldManager, "f:spec", "f:replicas") {
		return
	}
	ann := sts.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[cachedOwnsReplicas] = "true"
	sts.SetAnnotations(ann)
}

// managerOwns reports whether manager's apply entry (not a subresource's) owns the field at path.
func managerOwns(entries []metav1.ManagedFieldsEntry, manager string, path ...string) bool {
	for _, mf := range entries {
		if mf.Manager != manager || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		var node any = fields
		for _, k := range path {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node, ok = m[k]
			if !ok {
				node = nil
				break
			}
		}
		if node != nil {
			return true
		}
	}
	return false
}
