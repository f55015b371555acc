package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
)

var (
	errApply  = errors.New("apply children")
	errTopics = errors.New("ensure kafka topics")
)

// applyConcurrency bounds the applies in flight for one Pipeline: a new 5-entity Pipeline's 26
// children go in two rounds rather than seven, so that a reconcile waits for the API server
// about as long as two requests take, not seven (docs/benchmarks.md, issue 11).
const applyConcurrency = 16

// AnnotationStrimziManaged set to "false" makes Strimzi's (unidirectional) Topic Operator stop
// managing a KafkaTopic: deleting the KafkaTopic then removes only the resource and keeps the
// Kafka topic and its data. See finalize.go for how Millrace uses it.
const AnnotationStrimziManaged = strimzi.AnnotationManaged

// apply makes the cluster match s.desired: Direct-mode topics through the Kafka admin API, every
// object by server-side apply, and the children no longer desired deleted. Nothing is pruned
// unless every apply succeeded, so a partial failure never removes what still runs.
func (r *Reconciler) apply(ctx context.Context, s *scope) error {
	log := ctrl.LoggerFrom(ctx)
	if s.p.Spec.Kafka.Topics == v1alpha1.TopicsDirect {
		var states []topics.State
		err := s.adminErr
		if err == nil {
			states, err = r.kafka.Ensure(ctx, s.admin, directSpecs(s.desired.Topics))
		}
		s.topicStates = states
		if err != nil {
			s.topicsErr = fmt.Errorf("%w of pipeline %s/%s: %w", errTopics, s.p.Namespace, s.p.Name, err)
		}
	}

	desired := map[schema.GroupVersionKind]map[string]bool{}
	var todo []*unstructured.Unstructured
	var errs []error
	inputsReady := inputsReadyOf(s)
	s.desiredHashes = make([]string, len(s.desired.Objects))
	for i, obj := range s.desired.Objects {
		u, err := applied(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.desiredHashes[i] = u.GetAnnotations()[AnnotationAppliedHash]
		gvk := u.GroupVersionKind()
		if desired[gvk] == nil {
			desired[gvk] = map[string]bool{}
		}
		desired[gvk][u.GetName()] = true
		live := s.child(gvk, u.GetName())
		if entity := u.GetLabels()[render.LabelEntity]; gvk == gvkScaledObject && live == nil && !inputsReady(entity) {
			// Still desired (never pruned), created by the reconcile that the KafkaTopic's
			// status change brings once it is Ready.
			s.waitingForTopics = append(s.waitingForTopics, entity)
			continue
		}
		if live == nil || !upToDate(u, live) {
			todo = append(todo, u)
		}
	}

	// The objects are independent (a pod waits for its ConfigMap to be mounted), so they are
	// applied a few at a time: a new 5-entity Pipeline is some 30 writes.
	var mu sync.Mutex
	var wg sync.WaitGroup
	// The API server's answers to the applies: the children as they are now, which the status
	// is computed from (merged once all applies are done; the goroutines read s.children).
	var answers []*unstructured.Unstructured
	sem := make(chan struct{}, applyConcurrency)
	for _, u := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			gvk := u.GroupVersionKind()
			live := s.child(gvk, u.GetName())
			do := func() error {
				r.ownWrites.expect(gvk.GroupKind(), u)
				err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
				if !r.ownWrites.wrote(gvk.GroupKind(), u, err) {
					// An event dropped meanwhile was somebody else's write: look again.
					s.requeue.Store(true)
				}
				return err
			}
			var err error
			if live == nil {
				// Not a child of this Pipeline: it must not be another's (child names join the
				// Pipeline's name and an entity's or stream's, so "orders-v2"/"sum" and
				// "orders"/"v2-sum" make the same name), which forced ownership would take over.
				// Checked here, with the applies in flight, not one after another before them.
				err = r.notAnothers(ctx, s.p, u)
			}
			if err == nil {
				err = r.handOverReplicas(ctx, u, live)
			}
			if err == nil {
				err = do()
			}
			if errors.Is(err, errNameConflict) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err))
				return
			}
			childrenApplied.WithLabelValues(gvk.Kind).Inc()
			s.applied++
			if s.child(gvk, u.GetName()) == nil {
				s.created++
			}
			// u is now the API server's answer.
			answers = append(answers, u)
			log.V(1).Info("applied", "kind", gvk.Kind, "object", klog.KObj(u))
		}()
	}
	wg.Wait()
	for _, u := range answers {
		if err := s.addApplied(u); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// In a stable order, so that the condition that reports them does not change with the
		// order the applies finished in.
		sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
		return fmt.Errorf("%w: %w", errApply, errors.Join(errs...))
	}
	return r.prune(ctx, s, desired)
}

// errNameConflict: a child's name is taken by an object this Pipeline does not control.
var errNameConflict = errors.New("name conflict")

// notAnothers checks that no object of u's kind and name exists that belongs to something else:
// another Pipeline (by label or controller) or nobody Millrace knows. A live read, done only for
// objects this Pipeline has not created yet.
func (r *Reconciler) notAnothers(ctx context.Context, p *v1alpha1.Pipeline, u *unstructured.Unstructured) error {
	if r.reader == nil {
		return nil
	}
	existing := &metav1.PartialObjectMetadata{}
	existing.SetGroupVersionKind(u.GroupVersionKind())
	// From the API server's watch cache (resourceVersion 0) rather than a quorum read of etcd:
	// a new Pipeline makes 26 of these, and the check races with the apply that follows it
	// either way; the cache is behind by the time a watch event takes.
	err := r.reader.Get(ctx, client.ObjectKeyFromObject(u), existing, &client.GetOptions{Raw: &metav1.GetOptions{ResourceVersion: "0"}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check that %s %s/%s is free: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	owner := existing.GetLabels()[render.LabelPipeline]
	ref := metav1.GetControllerOf(existing)
	if owner == p.Name && (ref == nil || ref.UID == p.UID) {
		return nil
	}
	who := "an object Millrace does not manage"
	switch {
	case ref != nil && ref.UID != p.UID:
		who = fmt.Sprintf("%s %s", ref.Kind, ref.Name)
	case owner != "":
		who = "Pipeline " + owner
	}
	return fmt.Errorf("%w: %s %s/%s belongs to %s; rename an entity or stream of this Pipeline, or the Pipeline, so that its children's names differ",
		errNameConflict, u.GetKind(), u.GetNamespace(), u.GetName(), who)
}

// inputsReadyOf returns whether every input topic of an entity is ready (see streamStatuses):
// the ScaledObject of an entity is created only then.
func inputsReadyOf(s *scope) func(entity string) bool {
	ready := map[string]bool{}
	for _, st := range streamStatuses(s) {
		ready[st.Name] = st.Ready
	}
	return func(entity string) bool {
		for _, e := range s.p.Spec.Entities {
			if e.Name != entity {
				continue
			}
			for _, in := range e.Inputs {
				if !ready[in] {
					return false
				}
			}
		}
		return true
	}
}

// FieldManagerHandover is the field manager that holds a StatefulSet's spec.replicas while it
// passes from the operator to an autoscaler.
const FieldManagerHandover = "millrace-replicas-handover"

// handOverReplicas transfers spec.replicas of a StatefulSet that the operator is about to apply
// without that field (its entity became autoscaled) and still owns. Dropping a field one is the
// only owner of removes it, and the StatefulSet would fall back to one replica before the HPA
// acts. So, as the server-side apply documentation describes for handing a field to a
// controller, a second field manager first applies the live value, and only then the operator
// applies without the field: the value stays, owned by the handover manager until the HPA's next
// scale takes it. The handover apply is not forced: a conflict means the cached value is stale.
func (r *Reconciler) handOverReplicas(ctx context.Context, u, live *unstructured.Unstructured) error {
	if u.GetKind() != "StatefulSet" || live == nil || live.GetAnnotations()[cachedOwnsReplicas] != "true" {
		return nil
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "replicas"); found {
		return nil
	}
	replicas, found, err := unstructured.NestedInt64(live.Object, "spec", "replicas")
	if err != nil || !found {
		return nil
	}
	h := &unstructured.Unstructured{}
	h.SetGroupVersionKind(u.GroupVersionKind())
	h.SetNamespace(u.GetNamespace())
	h.SetName(u.GetName())
	if err := unstructured.SetNestedField(h.Object, replicas, "spec", "replicas"); err != nil {
		return err
	}
	if err := r.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(h), client.FieldOwner(FieldManagerHandover)); err != nil {
		// A conflict means the cached value is stale: retry with a fresh one rather than drop
		// a field that may still be the operator's alone.
		return fmt.Errorf("hand spec.replicas of StatefulSet %s/%s over to the autoscaler: %w", u.GetNamespace(), u.GetName(), err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("handed spec.replicas over to the autoscaler", "statefulset", klog.KObj(u), "replicas", replicas)
	return nil
}

// prune deletes the children that render no longer wants. It deletes only objects this Pipeline
// controls; a Retain KafkaTopic (deliberately without owner) is first released from Strimzi's
// management so that deleting it keeps the Kafka topic.
func (r *Reconciler) prune(ctx context.Context, s *scope, desired map[schema.GroupVersionKind]map[string]bool) error {
	var errs []error
	for gvk, objs := range s.children {
		for _, name := range sortedKeys(objs) {
			live := objs[name]
			if desired[gvk][name] || keptByRetirement(s, live) {
				continue
			}
			if err := r.deleteChild(ctx, s.p, live); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: prune: %w", errApply, errors.Join(errs...))
	}
	return nil
}

// deleteChild deletes one child of p according to who controls it.
func (r *Reconciler) deleteChild(ctx context.Context, p *v1alpha1.Pipeline, live *unstructured.Unstructured) error {
	log := ctrl.LoggerFrom(ctx)
	gvk := live.GroupVersionKind()
	controlled := metav1.IsControlledBy(live, p)
	retainTopic := gvk.Group == strimzi.Group && gvk.Kind == "KafkaTopic" && !controlled &&
		live.GetLabels()[render.LabelPipeline] == p.Name && live.GetLabels()[render.LabelManagedBy] == render.ValueManagedBy
	if !controlled && !retainTopic {
		return nil
	}
	if controlled && gvk.Group == strimzi.Group && gvk.Kind == "KafkaTopic" {
		if done, err := r.handBackAdoptedTopic(ctx, live); !done {
			return err
		}
	}
	if retainTopic && live.GetAnnotations()[AnnotationStrimziManaged] != "false" {
		patch := []byte(`{"metadata":{"annotations":{"` + AnnotationStrimziManaged + `":"false"}}}`)
		if err := r.client.Patch(ctx, live, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldManager)); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("release KafkaTopic %s/%s from Strimzi: %w", live.GetNamespace(), live.GetName(), err)
		}
	}
	uid := live.GetUID()
	if err := r.client.Delete(ctx, live, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s/%s: %w", gvk.Kind, live.GetNamespace(), live.GetName(), err)
	}
	log.Info("deleted child that is no longer desired", "kind", gvk.Kind, "object", klog.KObj(live), "retainedTopic", retainTopic)
	return nil
}

// errTopicHandBack: an adopted topic is being handed back to Strimzi's Topic Operator before its
// KafkaTopic is deleted; the deletion continues at the next reconcile.
var errTopicHandBack = errors.New("waiting for Strimzi's Topic Operator to manage the adopted topic before deleting it")

// annotationHandBack records when an adopted topic was handed back for deletion.
const annotationHandBack = "streaming.millrace.dev/delete-requested"

// handBackTimeout bounds the wait for the Topic Operator: without one running, the KafkaTopic is
// deleted anyway (the Kafka topic then stays, which the Pipeline's deletion cannot prevent).
const handBackTimeout = 5 * time.Minute

// handBackAdoptedTopic prepares the deletion of an adopted topic (a stream with topicName and
// deletionPolicy: Delete). Its KafkaTopic says strimzi.io/managed: "false", so that the Topic
// Operator leaves the topic's configuration alone, but then deleting the KafkaTopic would keep the
// topic. So the topic is first handed back (managed: "true"), and the KafkaTopic is deleted only
// once the Topic Operator has put its finalizer on it, which makes the deletion delete the topic.
// done reports whether the deletion may proceed now.
func (r *Reconciler) handBackAdoptedTopic(ctx context.Context, live *unstructured.Unstructured) (done bool, err error) {
	ann := live.GetAnnotations()
	switch {
	case ann[annotationHandBack] == "" && ann[AnnotationStrimziManaged] != "false":
		return true, nil // not an adopted topic
	case ann[annotationHandBack] == "":
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true",%q:%q}}}`, AnnotationStrimziManaged, annotationHandBack, time.Now().UTC().Format(time.RFC3339))
		if err := r.client.Patch(ctx, live, client.RawPatch(types.MergePatchType, []byte(patch)), client.FieldOwner(FieldManager)); err != nil {
			return false, client.IgnoreNotFound(fmt.Errorf("hand KafkaTopic %s/%s back to Strimzi: %w", live.GetNamespace(), live.GetName(), err))
		}
		return false, fmt.Errorf("%w: KafkaTopic %s/%s", errTopicHandBack, live.GetNamespace(), live.GetName())
	case slices.Contains(live.GetFinalizers(), strimzi.FinalizerTopicOperator):
		return true, nil
	}
	since, err := time.Parse(time.RFC3339, ann[annotationHandBack])
	if err == nil && time.Since(since) < handBackTimeout {
		return false, fmt.Errorf("%w: KafkaTopic %s/%s has no %s finalizer yet", errTopicHandBack, live.GetNamespace(), live.GetName(), strimzi.FinalizerTopicOperator)
	}
	ctrl.LoggerFrom(ctx).Info("the Topic Operator did not take the adopted topic back; deleting its KafkaTopic keeps the Kafka topic",
		"kafkatopic", klog.KObj(live), "waited", handBackTimeout)
	return true, nil
}

// applied turns a rendered object into the configuration to apply: unstructured, without status
// or null fields, with a hash of itself in an annotation.
func applied(obj client.Object) (*unstructured.Unstructured, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		return nil, fmt.Errorf("rendered %T %s has no kind", obj, obj.GetName())
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	delete(m, "status")
	pruneNulls(m)
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("hash %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	sum := sha256.Sum256(raw)
	u := &unstructured.Unstructured{Object: m}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[AnnotationAppliedHash] = hex.EncodeToString(sum[:8])
	u.SetAnnotations(ann)
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// upToDate reports whether applying u would change nothing: the live object carries the hash of
// the same applied configuration (so no field was added or removed from it) and still holds
// every value of it (so nobody changed one behind the operator's back). A cached child is
// compared by the digest of the values the operator still owns (cachedOwnedDigest), an API
// server's answer value by value (covers).
func upToDate(u, live *unstructured.Unstructured) bool {
	if live.GetAnnotations()[AnnotationAppliedHash] != u.GetAnnotations()[AnnotationAppliedHash] {
		return false
	}
	if d := live.GetAnnotations()[cachedOwnedDigest]; d != "" {
		// A cached child, trimmed by stripUnread: the values the operator still owns.
		var leaves []ownedLeaf
		if raw := live.GetAnnotations()[cachedOwnedLeaves]; raw != "" {
			if err := json.Unmarshal([]byte(raw), &leaves); err != nil {
				return false
			}
		}
		rest, ok := withoutLeaves(u.Object, leaves)
		return ok && d == appliedDigest(rest)
	}
	return covers(live.Object, u.Object)
}

// covers reports whether live holds every value of desired. Maps may hold more keys (defaults,
// other managers' fields); lists must match element by element; empty desired values match
// absent ones.
func covers(live, desired any) bool {
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return len(d) == 0 && live == nil
		}
		for k, dv := range d {
			lv, ok := l[k]
			if !ok {
				if isEmpty(dv) {
					continue
				}
				return false
			}
			if !covers(lv, dv) {
				return false
			}
		}
		return true
	case []any:
		l, ok := live.([]any)
		if !ok {
			return len(d) == 0 && live == nil
		}
		if len(l) != len(d) {
			return false
		}
		for i := range d {
			if !covers(l[i], d[i]) {
				return false
			}
		}
		return true
	case nil:
		return true
	default:
		if df, ok := number(desired); ok {
			lf, ok := number(live)
			return ok && lf == df
		}
		if live == nil {
			return isEmpty(desired)
		}
		return live == desired
	}
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	case string:
		return t == ""
	case bool:
		return !t
	}
	if f, ok := number(v); ok {
		return f == 0
	}
	return false
}

// pruneNulls removes null values, which typed objects produce for unset timestamps and which
// server-side apply would read as "remove this field".
func pruneNulls(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			pruneNulls(t)
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					pruneNulls(em)
				}
			}
		}
	}
}

// directSpecs converts render's topics for the Kafka admin API.
func directSpecs(ts []render.Topic) []topics.Spec {
	out := make([]topics.Spec, 0, len(ts))
	for _, t := range ts {
		spec := topics.Spec{Name: t.Name, Partitions: t.Partitions, Configs: t.Config}
		if t.Replicas != nil {
			spec.Replicas = int16(*t.Replicas)
		}
		out = append(out, spec)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
