package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/conditions"
	"github.com/millrace-dev/millrace/controllers/render"
)

// writeStatus computes the status from the scope and writes it when it differs from what was
// read. Events mark the transitions the status reveals.
func (r *Reconciler) writeStatus(ctx context.Context, s *scope) error {
	st := computeStatus(s)
	recordPhase(client.ObjectKeyFromObject(s.p), st.Phase)
	r.emitEvents(s, st)
	if equality.Semantic.DeepEqual(s.before, st) {
		return nil
	}
	updated := s.p.DeepCopy()
	updated.Status = *st
	if err := r.client.Status().Patch(ctx, updated, client.MergeFrom(s.p), client.FieldOwner(FieldManager)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("write status of %s/%s: %w", s.p.Namespace, s.p.Name, err))
	}
	s.p.Status = *st
	return nil
}

func (r *Reconciler) emitEvents(s *scope, st *v1alpha1.PipelineStatus) {
	p := s.p
	if s.created > 0 {
		r.recorder.Eventf(p, nil, corev1.EventTypeNormal, EventCreated, "Apply", "created %d objects", s.created)
	}
	before := map[string]int32{}
	for _, e := range s.before.Entities {
		before[e.Name] = e.Replicas
	}
	for _, e := range st.Entities {
		if old, ok := before[e.Name]; ok && old != e.Replicas {
			r.recorder.Eventf(p, nil, corev1.EventTypeNormal, EventScaled, "Scale", "entity %s scaled from %d to %d replicas", e.Name, old, e.Replicas)
		}
	}
	switch {
	case st.Phase == v1alpha1.PhaseDegraded && s.before.Phase != v1alpha1.PhaseDegraded:
		msg := ""
		if c := conditions.Get(st.Conditions, v1alpha1.ConditionDegraded); c != nil {
			msg = c.Message
		}
		r.recorder.Eventf(p, nil, corev1.EventTypeWarning, EventDegraded, "Reconcile", "pipeline is degraded: %s", msg)
	case st.Phase == v1alpha1.PhaseRunning && s.before.Phase == v1alpha1.PhaseDegraded:
		r.recorder.Eventf(p, nil, corev1.EventTypeNormal, EventRecovered, "Reconcile", "pipeline runs as specified again")
	}
}

// computeStatus derives the whole status from what the reconcile observed and did. It reads no
// clock: transition times come from the conditions helper, and only when a status changes.
func computeStatus(s *scope) *v1alpha1.PipelineStatus {
	p := s.p
	gen := p.Generation
	st := s.before.DeepCopy()
	st.ObservedGeneration = gen
	conds := &st.Conditions

	if s.invalid != "" {
		conditions.False(conds, gen, v1alpha1.ConditionReady, v1alpha1.ReasonInvalidSpec, "the spec is invalid, fix it: "+s.invalid)
		conditions.True(conds, gen, v1alpha1.ConditionDegraded, v1alpha1.ReasonInvalidSpec, "nothing is applied while the spec is invalid")
		st.Phase = v1alpha1.PhaseFailed
		return st
	}

	st.EntityCount = int32(len(p.Spec.Entities))
	st.UpdateRevision = s.updateRevision
	st.Entities = entityStatuses(s)
	st.Streams = streamStatuses(s)
	st.ReadyEntities = 0
	var notReady []string
	for _, e := range st.Entities {
		if e.ReadyReplicas >= e.Replicas && s.statefulSets[e.Name] != nil && rolledOut(s, e.Name) {
			st.ReadyEntities++
		} else if sts := s.statefulSets[e.Name]; sts != nil && e.ReadyReplicas >= e.Replicas {
			notReady = append(notReady, fmt.Sprintf("%s (rolling out: %d/%d updated)", e.Name, sts.Status.UpdatedReplicas, e.Replicas))
		} else {
			notReady = append(notReady, fmt.Sprintf("%s (%d/%d ready)", e.Name, e.ReadyReplicas, e.Replicas))
		}
	}

	topics := topicsCondition(s)
	conditions.Set(conds, gen, v1alpha1.ConditionTopicsReady, topics.Status, topics.Reason, topics.Message)

	switch {
	case p.Spec.Suspend:
		conditions.False(conds, gen, v1alpha1.ConditionExecutorsReady, v1alpha1.ReasonSuspended,
			"the pipeline is suspended: executors are scaled to zero, topics, offsets and state are kept; set spec.suspend to false to resume")
	case len(notReady) == 0:
		conditions.True(conds, gen, v1alpha1.ConditionExecutorsReady, v1alpha1.ReasonReconciled,
			fmt.Sprintf("all %d entities have their executors ready", len(st.Entities)))
	default:
		conditions.False(conds, gen, v1alpha1.ConditionExecutorsReady, v1alpha1.ReasonExecutorsPending,
			"waiting for executors of "+strings.Join(notReady, ", ")+"; `kubectl describe statefulset` shows why pods are not ready")
	}

	auto := autoscalingCondition(s)
	conditions.Set(conds, gen, v1alpha1.ConditionAutoscalingReady, auto.Status, auto.Reason, auto.Message)
	mon := monitoringCondition(s)
	conditions.Set(conds, gen, v1alpha1.ConditionMonitoringReady, mon.Status, mon.Reason, mon.Message)
	if s.entityConfig != nil {
		cfg := configCondition(s)
		conditions.Set(conds, gen, v1alpha1.ConditionConfigApplied, cfg.Status, cfg.Reason, cfg.Message)
	}

	if s.retireObserved {
		st.Retiring = s.retiringStatus
		if len(st.Retiring) > 0 || conditions.Get(*conds, v1alpha1.ConditionRetiring) != nil {
			rc := retiringCondition(s)
			conditions.Set(conds, gen, v1alpha1.ConditionRetiring, rc.Status, rc.Reason, rc.Message)
		}
	}

	var degraded []string
	switch auto.Reason {
	case v1alpha1.ReasonKEDANotInstalled:
		degraded = append(degraded, "autoscaling is off (KEDA is not installed)")
	case v1alpha1.ReasonKEDANotRunning:
		degraded = append(degraded, "autoscaling is off (KEDA is installed but its metrics server is not Available)")
	}
	if mon.Reason == v1alpha1.ReasonPrometheusNotFound {
		degraded = append(degraded, "monitoring is off (the Prometheus Operator is not installed)")
	}
	var failure error
	if !waitingForBootstrap(s) {
		failure = s.renderErr
	}
	if failure == nil {
		failure = s.applyErr
	}
	switch {
	case failure != nil:
		conditions.True(conds, gen, v1alpha1.ConditionDegraded, v1alpha1.ReasonApplyFailed, "applying the pipeline failed: "+failure.Error())
	case len(degraded) > 0:
		conditions.True(conds, gen, v1alpha1.ConditionDegraded, v1alpha1.ReasonDependenciesDegraded,
			"the pipeline runs with less than it asks for: "+strings.Join(degraded, "; "))
	default:
		conditions.False(conds, gen, v1alpha1.ConditionDegraded, v1alpha1.ReasonAsExpected, "the pipeline runs as specified")
	}

	ready := metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: "topics and executors are ready"}
	switch {
	case failure != nil:
		ready = metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonApplyFailed, Message: failure.Error()}
	case p.Spec.Suspend:
		ready = metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonSuspended, Message: "the pipeline is suspended; set spec.suspend to false to resume"}
	default:
		for _, t := range []string{v1alpha1.ConditionTopicsReady, v1alpha1.ConditionExecutorsReady, v1alpha1.ConditionAutoscalingReady, v1alpha1.ConditionMonitoringReady} {
			if c := conditions.Get(*conds, t); c != nil && c.Status != metav1.ConditionTrue {
				ready = metav1.Condition{Status: metav1.ConditionFalse, Reason: c.Reason, Message: c.Message}
				break
			}
		}
	}
	conditions.Set(conds, gen, v1alpha1.ConditionReady, ready.Status, ready.Reason, ready.Message)

	switch {
	case p.Spec.Suspend:
		st.Phase = v1alpha1.PhaseSuspended
	case ready.Status == metav1.ConditionTrue:
		st.Phase = v1alpha1.PhaseRunning
	case conditions.IsTrue(*conds, v1alpha1.ConditionDegraded):
		st.Phase = v1alpha1.PhaseDegraded
	default:
		st.Phase = v1alpha1.PhasePending
	}
	if conditions.IsTrue(*conds, v1alpha1.ConditionExecutorsReady) || p.Spec.Suspend {
		st.CurrentRevision = s.updateRevision
	}
	return st
}

// waitingForBootstrap: render cannot configure executors before the Kafka address is known (the
// named Strimzi Kafka has no listener in its status yet). That is a wait, not a failure.
func waitingForBootstrap(s *scope) bool {
	return s.renderErr != nil && s.facts.BootstrapServers == "" && s.p.Spec.Kafka.BootstrapServers == ""
}

// rolledOut reports whether an entity's StatefulSet has finished its rollout, decided as
// `kubectl rollout status` decides it: a matching observedGeneration only says that the
// StatefulSet controller saw the new spec, while pods of the old revision may still run. So
// every replica must be ready and, for a RollingUpdate, run the update revision (or, with a
// partition, every ordinal at or above it must).
func rolledOut(s *scope, entity string) bool {
	return statefulSetRolledOut(s.statefulSets[entity])
}

func statefulSetRolledOut(sts *appsv1.StatefulSet) bool {
	if sts == nil || sts.Status.ObservedGeneration < sts.Generation {
		return false
	}
	replicas := ptr.Deref(sts.Spec.Replicas, 1)
	if sts.Status.ReadyReplicas < replicas {
		return false
	}
	if sts.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		// Pods change only when deleted: there is no rollout to wait for.
		return true
	}
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition > 0 {
		return sts.Status.UpdatedReplicas >= replicas-*ru.Partition
	}
	return sts.Status.UpdateRevision == sts.Status.CurrentRevision
}

func entityStatuses(s *scope) []v1alpha1.EntityStatus {
	p := s.p
	partitions := map[string]int32{}
	for _, st := range p.Spec.Streams {
		partitions[st.Name] = max(st.Partitions, 1)
	}
	out := make([]v1alpha1.EntityStatus, 0, len(p.Spec.Entities))
	for _, e := range p.Spec.Entities {
		es := v1alpha1.EntityStatus{Name: e.Name}
		for _, in := range e.Inputs {
			es.Partitions += partitions[in]
		}
		if sts := s.statefulSets[e.Name]; sts != nil {
			es.Replicas = 1
			if sts.Spec.Replicas != nil {
				es.Replicas = *sts.Spec.Replicas
			}
			es.ReadyReplicas = sts.Status.ReadyReplicas
		}
		if a := e.Autoscaling; a != nil {
			var minR int32
			if a.MinReplicas != nil {
				minR = *a.MinReplicas
			}
			es.Autoscaling = fmt.Sprintf("%d-%d", minR, a.MaxReplicas)
			if so := s.child(gvkScaledObject, render.ScaledObjectName(p, e.Name)); so != nil {
				if c, ok := condition(so, "Active"); ok {
					active := c == "True"
					es.Active = &active
				}
			}
		}
		es.Config = s.entityConfig[e.Name]
		out = append(out, es)
	}
	return out
}

func streamStatuses(s *scope) []v1alpha1.StreamStatus {
	p := s.p
	direct := map[string]bool{}
	for _, t := range s.topicStates {
		direct[t.Name] = t.Err == nil
	}
	out := make([]v1alpha1.StreamStatus, 0, len(p.Spec.Streams))
	for _, st := range p.Spec.Streams {
		ss := v1alpha1.StreamStatus{Name: st.Name, TopicName: render.TopicName(p, st.Name)}
		switch p.Spec.Kafka.Topics {
		case v1alpha1.TopicsDirect:
			ss.Ready = direct[ss.TopicName]
		case v1alpha1.TopicsUnmanaged:
			ss.Ready = true
		default:
			if s.caps.strimzi != "" {
				if kt := s.child(s.caps.strimziGVK("KafkaTopic"), render.KafkaTopicName(p, st.Name)); kt != nil {
					c, _ := condition(kt, "Ready")
					adopted := kt.GetAnnotations()[AnnotationStrimziManaged] == "false"
					ss.Ready = c == "True" || (adopted && c != "False")
				}
			}
		}
		out = append(out, ss)
	}
	return out
}

func topicsCondition(s *scope) metav1.Condition {
	p := s.p
	switch p.Spec.Kafka.Topics {
	case v1alpha1.TopicsUnmanaged:
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTopicsNotManaged,
			Message: "spec.kafka.topics is Unmanaged: the topics must exist already"}
	case v1alpha1.TopicsDirect:
		if s.kafkaMissing {
			return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonKafkaNotFound,
				Message: fmt.Sprintf("the Strimzi Kafka %q does not exist in namespace %s: create it or fix spec.kafka.strimziCluster", p.Spec.Kafka.StrimziCluster, p.Namespace)}
		}
		if s.listenerProblem != "" {
			return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonBootstrapUnknown, Message: s.listenerProblem}
		}
		if s.facts.BootstrapServers == "" {
			return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonBootstrapUnknown,
				Message: "no Kafka bootstrap address: set spec.kafka.bootstrapServers, or name a Strimzi Kafka whose status lists its listeners"}
		}
		if s.topicsErr != nil && adminRefused(s.topicsErr) {
			return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonKafkaAdminFailed,
				Message: "the operator's Kafka admin client cannot create the topics: fix the Secret in spec.kafka.authentication.adminSecretName " +
					"(else secretName) or the ACLs of its user (Create, Alter, Describe, Delete on the topics); retrying: " + s.topicsErr.Error()}
		}
		if s.topicsErr != nil {
			return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTopicsPending,
				Message: "creating topics through the Kafka admin API failed, retrying: " + s.topicsErr.Error()}
		}
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: fmt.Sprintf("%d topics exist", len(s.topicStates))}
	}
	if s.caps.strimzi == "" {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonStrimziNotInstalled,
			Message: "Strimzi is not installed (no kafka.strimzi.io KafkaTopic CRD): install the Strimzi operator, or set spec.kafka.topics to Direct or Unmanaged"}
	}
	if s.kafkaMissing {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonKafkaNotFound,
			Message: fmt.Sprintf("the Strimzi Kafka %q does not exist in namespace %s: create it or fix spec.kafka.strimziCluster", p.Spec.Kafka.StrimziCluster, p.Namespace)}
	}
	if s.listenerProblem != "" {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonBootstrapUnknown, Message: s.listenerProblem}
	}
	if s.desired == nil {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTopicsPending, Message: "topics are not applied yet"}
	}
	gvk := s.caps.strimziGVK("KafkaTopic")
	var pending, failed []string
	total := 0
	for _, o := range s.desired.Objects {
		if o.GetObjectKind().GroupVersionKind().Kind != "KafkaTopic" {
			continue
		}
		total++
		kt := s.child(gvk, o.GetName())
		if kt == nil {
			pending = append(pending, o.GetName())
			continue
		}
		c := fullCondition(kt, "Ready")
		switch {
		case c.Status == metav1.ConditionFalse:
			// The Topic Operator's own words: NotSupported (partitions cannot decrease), a
			// conflict with another KafkaTopic, an invalid config.
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", o.GetName(), c.Reason, c.Message))
		case o.GetAnnotations()[AnnotationStrimziManaged] == "false":
			// An adopted topic: the Topic Operator leaves it alone, there is nothing to wait for.
		case c.Status != metav1.ConditionTrue:
			pending = append(pending, o.GetName())
		}
	}
	if s.caps.strimziUser {
		// The pipeline's KafkaUser: its ACLs cover the topics, so its refusal belongs here.
		for _, o := range s.desired.Objects {
			if o.GetObjectKind().GroupVersionKind().Kind != "KafkaUser" {
				continue
			}
			if ku := s.child(s.caps.strimziGVK("KafkaUser"), o.GetName()); ku != nil {
				if c := fullCondition(ku, "Ready"); c.Status == metav1.ConditionFalse {
					failed = append(failed, fmt.Sprintf("KafkaUser %s (%s: %s)", o.GetName(), c.Reason, c.Message))
				}
			}
		}
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTopicsFailed,
			Message: "Strimzi refuses: " + strings.Join(failed, "; ") + "; fix the stream in the spec (or the topic in Kafka)"}
	}
	if len(pending) > 0 {
		sort.Strings(pending)
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonTopicsPending,
			Message: "waiting for Strimzi's Topic Operator to make KafkaTopics ready: " + strings.Join(pending, ", ")}
	}
	return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: fmt.Sprintf("all %d KafkaTopics are ready", total)}
}

func autoscalingCondition(s *scope) metav1.Condition {
	p := s.p
	var scaled []string
	for _, e := range p.Spec.Entities {
		if e.Autoscaling != nil {
			scaled = append(scaled, e.Name)
		}
	}
	if len(scaled) == 0 {
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonAutoscalingNotUsed, Message: "no entity is autoscaled"}
	}
	if !s.caps.keda {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonKEDANotInstalled,
			Message: "KEDA is not installed (no keda.sh ScaledObject CRD): " + strings.Join(scaled, ", ") +
				" run with fixed replicas (autoscaling.minReplicas, at least 1); install KEDA v2 to autoscale them"}
	}
	if s.keda.problem != "" {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonKEDANotRunning,
			Message: "KEDA is installed but not running: " + s.keda.problem + "; until then " + strings.Join(scaled, ", ") + " keep their current replicas"}
	}
	if len(s.waitingForTopics) > 0 {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAutoscalingPending,
			Message: "the ScaledObjects of " + strings.Join(s.waitingForTopics, ", ") + " are created once their input topics are ready (see TopicsReady)"}
	}
	var pending, failed []string
	for _, e := range scaled {
		so := s.child(gvkScaledObject, render.ScaledObjectName(p, e))
		if so == nil {
			pending = append(pending, e)
			continue
		}
		switch c := fullCondition(so, "Ready"); c.Status {
		case metav1.ConditionTrue:
		case metav1.ConditionFalse:
			// KEDA's own words, e.g. a scaler that cannot reach Kafka or authenticate.
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", e, c.Reason, c.Message))
		default:
			pending = append(pending, e)
		}
	}
	if len(failed) > 0 {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAutoscalingPending,
			Message: "KEDA reports the ScaledObjects of " + strings.Join(failed, "; ") + " not ready; `kubectl describe scaledobject` has the scaler's events"}
	}
	if len(pending) > 0 {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAutoscalingPending,
			Message: "waiting for KEDA to make the ScaledObjects of " + strings.Join(pending, ", ") + " ready"}
	}
	return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: "KEDA scales " + strings.Join(scaled, ", ")}
}

func monitoringCondition(s *scope) metav1.Condition {
	m := s.p.Spec.Monitoring
	if m == nil || !m.Enabled {
		return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonMonitoringDisabled, Message: "spec.monitoring is not enabled"}
	}
	if !s.caps.prometheus || !s.caps.promRules {
		return metav1.Condition{Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonPrometheusNotFound,
			Message: "the Prometheus Operator is not installed (no monitoring.coreos.com ServiceMonitor CRD): install it to get the ServiceMonitor and alert rules; executors still serve /metrics"}
	}
	return metav1.Condition{Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReconciled, Message: "the ServiceMonitor and alert rules are applied"}
}

// fullCondition returns a condition of an unstructured object's status.conditions; its Status is
// "" when there is none.
func fullCondition(u *unstructured.Unstructured, condType string) metav1.Condition {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != condType {
			continue
		}
		out := metav1.Condition{Type: condType}
		if v, ok := m["status"].(string); ok {
			out.Status = metav1.ConditionStatus(v)
		}
		out.Reason, _ = m["reason"].(string)
		out.Message, _ = m["message"].(string)
		return out
	}
	return metav1.Condition{Type: condType}
}

// condition returns the status of a condition in an unstructured object's status.conditions.
func condition(u *unstructured.Unstructured, condType string) (string, bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		if m["type"] == condType {
			s, _ := m["status"].(string)
			return s, true
		}
	}
	return "", false
}
