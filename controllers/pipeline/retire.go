package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Retiring a removed entity (spec.entities[].removal, issue 12). When an entity leaves the spec
// and the removal policy recorded on its StatefulSet (render.AnnotationRemoval) drains its
// inputs or deletes its consumer group, its children are not pruned at once:
//
//  1. its ScaledObject is pruned as usual (autoscaling stops) and its StatefulSet keeps at least
//     one replica;
//  2. its ConfigMap's executor.json gains a retire section, whose since is set once, by the
//     first reconcile that sees the removal, and kept: the pods drain their inputs up to the
//     offsets of that time and/or delete the group;
//  3. the KafkaUser keeps the entity's ACLs (render, Facts.Retiring) and prune keeps the
//     KafkaTopics it reads and writes, even of streams removed in the same change;
//  4. its pods' I/O sidecars are asked (GET /status, as for ConfigApplied); once one that runs
//     the retire configuration reports the final phase (Deleted with a group to delete, else
//     Drained), the StatefulSet, Service and ConfigMap are deleted, and the next reconcile
//     lets the deferred topics and ACLs go.

// retiring is one entity being retired.
type retiring struct {
	name   string
	policy v1alpha1.RemovalSpec
	sts    *appsv1.StatefulSet
	// cm is the ConfigMap as read from the API server (not the cache), cfg its executor.json.
	cm  *corev1.ConfigMap
	cfg *config.Executor
}

// finalPhase is the phase after which the entity's children go.
func (rt *retiring) finalPhase() string {
	if rt.policy.ConsumerGroup == v1alpha1.ConsumerGroupDelete {
		return v1alpha1.RetireDeleted
	}
	return v1alpha1.RetireDrained
}

// topics are the Kafka topics the retiring entity's pods use.
func (rt *retiring) topics() []string {
	var out []string
	for _, in := range rt.cfg.Inputs {
		out = append(out, in.Topic, in.DeadLetterTopic)
	}
	for _, o := range rt.cfg.Outputs {
		out = append(out, o.Topic)
	}
	if rt.cfg.State != nil {
		out = append(out, rt.cfg.State.ChangelogTopic)
	}
	return out
}

// removalPolicy is the policy recorded on a StatefulSet; nil when removing it retires nothing.
func removalPolicy(sts *appsv1.StatefulSet) (*v1alpha1.RemovalSpec, error) {
	raw := sts.Annotations[render.AnnotationRemoval]
	if raw == "" {
		return nil, nil
	}
	var r v1alpha1.RemovalSpec
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return nil, fmt.Errorf("read %s of StatefulSet %s/%s: %w", render.AnnotationRemoval, sts.Namespace, sts.Name, err)
	}
	if !r.Retires() {
		return nil, nil
	}
	return &r, nil
}

// observeRetiring finds the entities to retire: StatefulSets of entities no longer in the spec
// whose recorded removal policy retires them and whose ConfigMap still exists. The ConfigMap is
// read from the API server: the cache may hold ConfigMaps without their data.
func (r *Reconciler) observeRetiring(ctx context.Context, s *scope) error {
	s.retiring = nil
	s.facts.Retiring = nil
	for _, entity := range sortedKeys(s.statefulSets) {
		if slices.ContainsFunc(s.p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == entity }) {
			continue
		}
		sts := s.statefulSets[entity]
		if sts.DeletionTimestamp != nil || !metav1.IsControlledBy(sts, s.p) {
			continue
		}
		policy, err := removalPolicy(sts)
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("ignoring an unreadable removal policy: the entity's children are pruned", "statefulset", klog.KObj(sts), "error", err.Error())
			continue
		}
		if policy == nil {
			continue
		}
		cm := &corev1.ConfigMap{}
		key := client.ObjectKey{Namespace: s.p.Namespace, Name: render.ConfigMapName(s.p, entity)}
		if err := r.reader.Get(ctx, key, cm); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the retirement is over (or the ConfigMap went): prune as usual
			}
			return fmt.Errorf("read ConfigMap %s of retiring entity %s: %w", key, entity, err)
		}
		cfg, err := config.Parse([]byte(cm.Data[config.FileName]))
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("ignoring a retiring entity whose executor.json is unreadable: its children are pruned", "configmap", klog.KObj(cm), "error", err.Error())
			continue
		}
		rt := &retiring{name: entity, policy: *policy, sts: sts, cm: cm, cfg: cfg}
		s.retiring = append(s.retiring, rt)
		s.facts.Retiring = append(s.facts.Retiring, render.RetiringEntity{Name: entity, Executor: cfg})
	}
	return nil
}

// keptByRetirement reports whether prune must leave a live child alone because an entity is
// being retired: its StatefulSet, ConfigMap and Service, and the KafkaTopics of the topics its
// pods use.
func keptByRetirement(s *scope, live *unstructured.Unstructured) bool {
	if len(s.retiring) == 0 {
		return false
	}
	gvk := live.GroupVersionKind()
	switch {
	case gvk == gvkStatefulSet || gvk == gvkConfigMap || gvk == gvkService:
		e := live.GetLabels()[render.LabelEntity]
		return e != "" && slices.ContainsFunc(s.retiring, func(rt *retiring) bool { return rt.name == e })
	case gvk.Group == strimzi.Group && gvk.Kind == "KafkaTopic":
		topic, _, _ := unstructured.NestedString(live.Object, "spec", "topicName")
		if topic == "" {
			topic = live.GetName()
		}
		for _, rt := range s.retiring {
			if slices.Contains(rt.topics(), topic) {
				return true
			}
		}
	}
	return false
}

// retireEntities carries the retirements forward, after a successful apply (the KafkaUser has
// the ACLs the pods need, the ScaledObjects are pruned).
func (r *Reconciler) retireEntities(ctx context.Context, s *scope) error {
	s.retireObserved = true
	s.retiringStatus = nil
	var errs []error
	for _, rt := range s.retiring {
		st, err := r.retire(ctx, s, rt)
		if err != nil {
			errs = append(errs, err)
		}
		if st != nil {
			s.retiringStatus = append(s.retiringStatus, *st)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: retire: %w", errApply, errors.Join(errs...))
	}
	return nil
}

// retire does one reconcile's share of one entity's retirement. It returns the entity's status,
// nil once its children are deleted.
func (r *Reconciler) retire(ctx context.Context, s *scope, rt *retiring) (*v1alpha1.RetiringStatus, error) {
	log := ctrl.LoggerFrom(ctx)
	if rt.cfg.Retire == nil {
		// The first reconcile that sees the removal: since is now, and stays.
		rt.cfg.Retire = &config.Retire{
			Since:       r.clock().UTC().Truncate(time.Second).Format(time.RFC3339),
			Drain:       rt.policy.Drain,
			DeleteGroup: rt.policy.ConsumerGroup == v1alpha1.ConsumerGroupDelete,
		}
		b, err := config.Marshal(rt.cfg)
		if err != nil {
			return nil, fmt.Errorf("marshal the executor.json of retiring entity %s: %w", rt.name, err)
		}
		patched := rt.cm.DeepCopy()
		patched.Data[config.FileName] = string(b)
		// Optimistic: two reconciles never both set since.
		if err := r.client.Patch(ctx, patched, client.MergeFromWithOptions(rt.cm, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldManager)); err != nil {
			return nil, fmt.Errorf("write the retire section of ConfigMap %s/%s: %w", rt.cm.Namespace, rt.cm.Name, err)
		}
		rt.cm = patched
		r.recorder.Eventf(s.p, nil, corev1.EventTypeNormal, EventRetiring, "Retire", "entity %s was removed: %s", rt.name, reconfig.RetireSteps(rt.policy, rt.cfg.GroupID))
		log.Info("retiring a removed entity", "pipeline", klog.KObj(s.p), "entity", rt.name, "since", rt.cfg.Retire.Since)
	}
	since, err := rt.cfg.Retire.SinceTime()
	if err != nil {
		return nil, err
	}
	st := &v1alpha1.RetiringStatus{Entity: rt.name, Phase: v1alpha1.RetirePending, Since: metav1.Time{Time: since}}

	if rt.sts.Spec.Replicas != nil && *rt.sts.Spec.Replicas == 0 {
		// Scaled to zero (by the autoscaler, whose ScaledObject is gone now, or a suspend): a
		// pod must run to drain and delete the group.
		patch := []byte(`{"spec":{"replicas":1}}`)
		if err := r.client.Patch(ctx, rt.sts, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(FieldManager)); err != nil {
			return st, fmt.Errorf("scale retiring StatefulSet %s/%s to one replica: %w", rt.sts.Namespace, rt.sts.Name, err)
		}
	}

	digest := config.Digest([]byte(rt.cm.Data[config.FileName]))
	var pods corev1.PodList
	if err := r.client.List(ctx, &pods, client.InNamespace(s.p.Namespace), client.MatchingLabels(render.SelectorLabels(s.p, rt.name))); err != nil {
		return st, fmt.Errorf("list the pods of retiring entity %s: %w", rt.name, err)
	}
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
			continue
		}
		ps, err := r.prober.Probe(ctx, pod)
		// Only a sidecar that runs the retire configuration speaks for this retirement.
		if err != nil || ps.Retire == nil || ps.Config != digest {
			continue
		}
		if phaseRank(ps.Retire.Phase) > phaseRank(st.Phase) || (ps.Retire.Phase == st.Phase && ps.Retire.Remaining > st.Remaining) {
			st.Phase, st.Remaining = ps.Retire.Phase, ps.Retire.Remaining
		}
	}
	if st.Phase != rt.finalPhase() {
		return st, nil
	}
	for _, gvk := range []struct {
		gvk  schema.GroupVersionKind
		name string
	}{
		{gvkStatefulSet, rt.sts.Name},
		{gvkService, render.ServiceName(s.p, rt.name)},
		{gvkConfigMap, rt.cm.Name},
	} {
		if live := s.child(gvk.gvk, gvk.name); live != nil {
			if err := r.deleteChild(ctx, s.p, live); err != nil {
				return st, err
			}
		}
	}
	s.retired = append(s.retired, rt.name)
	r.recorder.Eventf(s.p, nil, corev1.EventTypeNormal, EventRetired, "Retire", "entity %s is retired (%s): its StatefulSet, Service and ConfigMap are deleted", rt.name, st.Phase)
	log.Info("retired a removed entity", "pipeline", klog.KObj(s.p), "entity", rt.name, "phase", st.Phase)
	return nil, nil
}

// phaseRank orders the phases of a retirement.
func phaseRank(phase string) int {
	return slices.Index([]string{v1alpha1.RetirePending, v1alpha1.RetireDraining, v1alpha1.RetireDrained, v1alpha1.RetireDeleted}, phase)
}

// retiringCondition is the Retiring condition, set once a retirement has been seen.
func retiringCondition(s *scope) metav1.Condition {
	if len(s.retiringStatus) == 0 {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonRetired,
			Message: "no removed entity is being retired; the Retired events name those that were"}
	}
	var what []string
	for _, st := range s.retiringStatus {
		what = append(what, fmt.Sprintf("%s (%s, %d records remaining)", st.Entity, st.Phase, st.Remaining))
	}
	return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRetiring,
		Message: "removed entities finish their removal policy before their children are deleted: " + strings.Join(what, "; ") +
			"; status.retiring says each one's phase; `kubectl logs -c io` of their pods says why one does not progress"}
}
