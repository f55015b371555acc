package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestComputeStatus covers the decisions of the status computation without an API server.
func TestComputeStatus(t *testing.T) {
	type want struct {
		phase             v1alpha1.Phase
		ready, topics     string // reasons
		autoscaling, mon  string
		degradedStatus    metav1.ConditionStatus
		readyMessageHints string
	}
	cases := []struct {
		reason string
		p      *v1alpha1.Pipeline
		scope  func(*scope)
		want   want
	}{
		{
			reason: "Strimzi topics without Strimzi installed say what to install and stay Pending",
			p:      newPipeline("ns"),
			want: want{phase: v1alpha1.PhasePending, ready: v1alpha1.ReasonStrimziNotInstalled, topics: v1alpha1.ReasonStrimziNotInstalled,
				autoscaling: v1alpha1.ReasonAutoscalingNotUsed, mon: v1alpha1.ReasonMonitoringDisabled, degradedStatus: metav1.ConditionFalse},
		},
		{
			reason: "an autoscaled entity without KEDA degrades the pipeline",
			p:      newPipeline("ns", withAutoscaling("count", 1, 3), withMonitoring()),
			scope:  func(s *scope) { s.caps, s.facts.StrimziAPIVersion = snapshot{strimzi: "v1"}, "v1" },
			want: want{phase: v1alpha1.PhaseDegraded, ready: v1alpha1.ReasonTopicsPending, topics: v1alpha1.ReasonTopicsPending,
				autoscaling: v1alpha1.ReasonKEDANotInstalled, mon: v1alpha1.ReasonPrometheusNotFound, degradedStatus: metav1.ConditionTrue},
		},
		{
			reason: "KEDA's CRD without its metrics server is not KEDA running: the pipeline degrades and says what is missing",
			p:      newPipeline("ns", withAutoscaling("count", 1, 3)),
			scope: func(s *scope) {
				s.caps, s.facts.StrimziAPIVersion, s.facts.KEDA = snapshot{strimzi: "v1", keda: true}, "v1", true
				s.keda = kedaHealth{problem: "the APIService is missing"}
			},
			want: want{phase: v1alpha1.PhaseDegraded, ready: v1alpha1.ReasonTopicsPending, topics: v1alpha1.ReasonTopicsPending,
				autoscaling: v1alpha1.ReasonKEDANotRunning, mon: v1alpha1.ReasonMonitoringDisabled, degradedStatus: metav1.ConditionTrue},
		},
		{
			reason: "Unmanaged topics are ready by definition",
			p:      newPipeline("ns", func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Topics = v1alpha1.TopicsUnmanaged }),
			want: want{phase: v1alpha1.PhasePending, ready: v1alpha1.ReasonExecutorsPending, topics: v1alpha1.ReasonTopicsNotManaged,
				autoscaling: v1alpha1.ReasonAutoscalingNotUsed, mon: v1alpha1.ReasonMonitoringDisabled, degradedStatus: metav1.ConditionFalse},
		},
		{
			reason: "Direct topics without a bootstrap address say where to set it",
			p:      newPipeline("ns", withDirect("")),
			want: want{phase: v1alpha1.PhasePending, ready: v1alpha1.ReasonBootstrapUnknown, topics: v1alpha1.ReasonBootstrapUnknown,
				autoscaling: v1alpha1.ReasonAutoscalingNotUsed, mon: v1alpha1.ReasonMonitoringDisabled, degradedStatus: metav1.ConditionFalse},
		},
		{
			reason: "a suspended pipeline is Suspended whatever else holds",
			p:      newPipeline("ns", func(p *v1alpha1.Pipeline) { p.Spec.Suspend = true }),
			scope:  func(s *scope) { s.caps, s.facts.StrimziAPIVersion = snapshot{strimzi: "v1"}, "v1" },
			want: want{phase: v1alpha1.PhaseSuspended, ready: v1alpha1.ReasonSuspended, topics: v1alpha1.ReasonTopicsPending,
				autoscaling: v1alpha1.ReasonAutoscalingNotUsed, mon: v1alpha1.ReasonMonitoringDisabled, degradedStatus: metav1.ConditionFalse},
		},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			c.p.Generation = 3
			s := newScope(c.p)
			if c.scope != nil {
				c.scope(s)
			}
			if res, err := render.Render(c.p, s.facts); err != nil {
				s.renderErr = err
			} else {
				s.desired = res
			}
			s.facts.BootstrapServers = c.p.Spec.Kafka.BootstrapServers
			st := computeStatus(s)
			reason := func(ct string) string {
				if c := condOf(&v1alpha1.Pipeline{Status: *st}, ct); c != nil {
					if c.ObservedGeneration != 3 {
						t.Errorf("%s: condition %s has observedGeneration %d", c.Reason, ct, c.ObservedGeneration)
					}
					return c.Reason
				}
				return ""
			}
			got := want{
				phase: st.Phase, ready: reason(v1alpha1.ConditionReady), topics: reason(v1alpha1.ConditionTopicsReady),
				autoscaling: reason(v1alpha1.ConditionAutoscalingReady), mon: reason(v1alpha1.ConditionMonitoringReady),
				degradedStatus: condOf(&v1alpha1.Pipeline{Status: *st}, v1alpha1.ConditionDegraded).Status,
			}
			if diff := cmp.Diff(c.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("%s: -want +got:\n%s", c.reason, diff)
			}
			// Computing again from the computed status changes nothing: conditions never flap.
			s.before = st.DeepCopy()
			if again := computeStatus(s); !equality.Semantic.DeepEqual(st, again) {
				t.Errorf("%s: status is not stable: %s", c.reason, cmp.Diff(st, again))
			}
		})
	}
}

// TestInvalidTopology: a cycle CEL cannot see is reported as InvalidSpec, phase Failed, and
// nothing is applied.
func TestInvalidTopology(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.create(t, newPipeline(ns, func(p *v1alpha1.Pipeline) {
		// count writes lines, which split reads: lines -> split -> words -> count -> lines.
		entity(p, "count").Outputs = []string{"lines"}
	}))
	p = e.wantCondition(t, p, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec)
	if p.Status.Phase != v1alpha1.PhaseFailed {
		t.Errorf("phase %s, want Failed", p.Status.Phase)
	}
	if _, err := e.statefulSet(p, "split"); err == nil {
		t.Error("an invalid pipeline must not be applied")
	}
	_ = context.Background()
}

// TestStatefulSetRolledOut: a rollout ends as `kubectl rollout status` says it does.
func TestStatefulSetRolledOut(t *testing.T) {
	sts := func(mods ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Generation: 2},
			Spec:       appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3)},
			Status: appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 3,
				CurrentRevision: "r2", UpdateRevision: "r2"},
		}
		for _, m := range mods {
			m(s)
		}
		return s
	}
	oldPods := func(s *appsv1.StatefulSet) { s.Status.CurrentRevision, s.Status.UpdatedReplicas = "r1", 1 }
	cases := []struct {
		reason string
		sts    *appsv1.StatefulSet
		want   bool
	}{
		{"no StatefulSet yet", nil, false},
		{"every pod ready on the update revision", sts(), true},
		{"the controller has not seen the new spec", sts(func(s *appsv1.StatefulSet) { s.Status.ObservedGeneration = 1 }), false},
		{"a pod is not ready", sts(func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 2 }), false},
		{"pods of the old revision still run, all ready", sts(oldPods), false},
		{"OnDelete has no rollout to wait for", sts(oldPods, func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
		}), true},
		{"a partitioned rollout ends when the ordinals above the partition are updated", sts(oldPods, func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](2)}
		}), true},
		{"a partitioned rollout waits for the ordinals above the partition", sts(oldPods, func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](1)}
		}), false},
		{"no replicas field means one", sts(func(s *appsv1.StatefulSet) { s.Spec.Replicas, s.Status.ReadyReplicas = nil, 1 }), true},
	}
	for _, c := range cases {
		if got := statefulSetRolledOut(c.sts); got != c.want {
			t.Errorf("%s: rolled out %v, want %v", c.reason, got, c.want)
		}
	}
}

// TestComposedOperatorsReasons: when a composed operator refuses an object, the Pipeline's
// condition carries that operator's reason and message, not only "pending".
func TestComposedOperatorsReasons(t *testing.T) {
	withReady := func(u *unstructured.Unstructured, status, reason, message string) *unstructured.Unstructured {
		_ = unstructured.SetNestedSlice(u.Object, []any{map[string]any{"type": "Ready", "status": status, "reason": reason, "message": message}}, "status", "conditions")
		return u
	}
	cases := []struct {
		reason   string
		p        *v1alpha1.Pipeline
		children func(s *scope, p *v1alpha1.Pipeline)
		condType string
		want     string // reason
		contains string
	}{
		{
			reason: "KEDA's ScaledObject Ready=False message reaches AutoscalingReady",
			p:      newPipeline("ns", withAutoscaling("count", 1, 3)),
			children: func(s *scope, p *v1alpha1.Pipeline) {
				so := &unstructured.Unstructured{}
				so.SetGroupVersionKind(gvkScaledObject)
				so.SetName(render.ScaledObjectName(p, "count"))
				s.addChild(gvkScaledObject, withReady(so, "False", "ScaledObjectCheckFailed", "client has run out of available brokers"))
			},
			condType: v1alpha1.ConditionAutoscalingReady, want: v1alpha1.ReasonAutoscalingPending,
			contains: "count (ScaledObjectCheckFailed: client has run out of available brokers)",
		},
		{
			reason: "Strimzi's KafkaUser Ready=False message reaches TopicsReady",
			p: newPipeline("ns", func(p *v1alpha1.Pipeline) {
				p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			}),
			children: func(s *scope, p *v1alpha1.Pipeline) {
				ku := &unstructured.Unstructured{}
				ku.SetGroupVersionKind(s.caps.strimziGVK("KafkaUser"))
				ku.SetName(render.KafkaUserName(p))
				s.addChild(s.caps.strimziGVK("KafkaUser"), withReady(ku, "False", "InvalidResourceException", "authorization needs simple authorization in the Kafka"))
			},
			condType: v1alpha1.ConditionTopicsReady, want: v1alpha1.ReasonTopicsFailed,
			contains: "(InvalidResourceException: authorization needs simple authorization in the Kafka)",
		},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			c.p.Generation = 1
			s := newScope(c.p)
			s.caps = snapshot{strimzi: "v1", strimziUser: true, keda: true}
			s.facts = render.Facts{StrimziAPIVersion: "v1", KEDA: true, BootstrapServers: c.p.Spec.Kafka.BootstrapServers}
			res, err := render.Render(c.p, s.facts)
			if err != nil {
				t.Fatal(err)
			}
			s.desired = res
			c.children(s, c.p)
			st := computeStatus(s)
			got := condOf(&v1alpha1.Pipeline{Status: *st}, c.condType)
			if got == nil || got.Reason != c.want || !strings.Contains(got.Message, c.contains) {
				t.Errorf("%s: %s is %+v, want reason %s with %q", c.reason, c.condType, got, c.want, c.contains)
			}
		})
	}
}
