package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestUpdateImage: changing one entity's image changes only that entity's StatefulSet.
func TestUpdateImage(t *testing.T) {
	bothEnvs(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.startOperator(t, ns)
		p := e.converged(t, e.create(t, newPipeline(ns)))
		countBefore, err := e.statefulSet(p, "count")
		if err != nil {
			t.Fatal(err)
		}
		splitBefore, _ := e.statefulSet(p, "split")

		p = e.converged(t, e.update(t, p, withImage("split", "example/split:2")))

		splitAfter, _ := e.statefulSet(p, "split")
		if splitAfter.Generation == splitBefore.Generation {
			t.Errorf("split's StatefulSet generation did not move")
		}
		consistently(t, "count's StatefulSet is untouched", 2*time.Second, func() error {
			countAfter, err := e.statefulSet(p, "count")
			if err != nil {
				return err
			}
			if countAfter.ResourceVersion != countBefore.ResourceVersion {
				return fmt.Errorf("count's StatefulSet was written: resourceVersion %s -> %s", countBefore.ResourceVersion, countAfter.ResourceVersion)
			}
			return nil
		})
	})
}

// TestAddRemoveEntityAndStream: a new entity and stream get their children; removing them
// deletes exactly those children. A removed Retain stream's KafkaTopic is released from Strimzi
// (strimzi.io/managed=false) before it is deleted, so the Kafka topic stays; a Delete stream's
// KafkaTopic is deleted as is, so Strimzi deletes the topic.
func TestAddRemoveEntityAndStream(t *testing.T) {
	bothEnvs(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.startOperator(t, ns)
		p := e.converged(t, e.create(t, newPipeline(ns)))

		p = e.converged(t, e.update(t, p, withSumEntity(), func(p *v1alpha1.Pipeline) {
			p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "audit", Partitions: 1})
			p.Spec.Entities[2].Outputs = append(p.Spec.Entities[2].Outputs, "audit")
		}))
		totals, err := e.kafkaTopic(p, "totals")
		if err != nil {
			t.Fatalf("KafkaTopic of the new stream: %v", err)
		}
		var audit = totals
		eventually(t, "KafkaTopic of audit", func() error { audit, err = e.kafkaTopic(p, "audit"); return err })
		e.holdWithFinalizer(t, totals)
		e.holdWithFinalizer(t, audit)
		defer e.release(t, totals.GroupVersionKind(), ns, totals.GetName())
		defer e.release(t, audit.GroupVersionKind(), ns, audit.GetName())

		p = e.update(t, p, func(p *v1alpha1.Pipeline) {
			p.Spec.Streams = p.Spec.Streams[:2]
			p.Spec.Entities = p.Spec.Entities[:2]
		})
		eventually(t, "sum's children are deleted", func() error {
			sts, err := e.statefulSet(p, "sum")
			if err := gone(sts, err); err != nil {
				return err
			}
			cm, err := e.configMap(p, "sum")
			return gone(cm, err)
		})
		eventually(t, "removed KafkaTopics are deleted", func() error {
			kt, err := e.kafkaTopic(p, "totals")
			if err := gone(kt, err); err != nil {
				return err
			}
			if kt.GetAnnotations()[AnnotationStrimziManaged] == "false" {
				return errors.New("a Delete stream's KafkaTopic must stay managed so Strimzi deletes the topic")
			}
			kt, err = e.kafkaTopic(p, "audit")
			if err := gone(kt, err); err != nil {
				return err
			}
			if kt.GetAnnotations()[AnnotationStrimziManaged] != "false" {
				return errors.New("a Retain stream's KafkaTopic must be released (strimzi.io/managed=false) before deletion")
			}
			return nil
		})
		for _, ent := range []string{"split", "count"} {
			if _, err := e.statefulSet(p, ent); err != nil {
				t.Errorf("entity %s lost its StatefulSet: %v", ent, err)
			}
		}
		if _, err := e.kafkaTopic(p, "lines"); err != nil {
			t.Errorf("stream lines lost its KafkaTopic: %v", err)
		}
	})
}

// TestStatusFromChildren: the status follows the children's readiness, as Strimzi and the
// StatefulSet controller would report it.
func TestStatusFromChildren(t *testing.T) {
	bothEnvs(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.startOperator(t, ns)
		p := e.converged(t, e.create(t, newPipeline(ns)))
		e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonTopicsPending)
		e.wantCondition(t, p, v1alpha1.ConditionExecutorsReady, metav1.ConditionFalse, v1alpha1.ReasonExecutorsPending)

		e.markTopicsReady(t, p)
		p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		for _, s := range p.Status.Streams {
			if !s.Ready {
				t.Errorf("stream %s not ready in status", s.Name)
			}
		}
		if p.Status.Phase != v1alpha1.PhasePending {
			t.Errorf("phase %s with executors not ready, want Pending", p.Status.Phase)
		}

		e.markExecutorsReady(t, p)
		p = e.wantCondition(t, p, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
		if p.Status.Phase != v1alpha1.PhaseRunning || p.Status.ReadyEntities != 2 || p.Status.EntityCount != 2 {
			t.Errorf("status %s %d/%d, want Running 2/2", p.Status.Phase, p.Status.ReadyEntities, p.Status.EntityCount)
		}
		if p.Status.CurrentRevision == "" || p.Status.CurrentRevision != p.Status.UpdateRevision {
			t.Errorf("currentRevision %q, updateRevision %q: want equal once rolled out", p.Status.CurrentRevision, p.Status.UpdateRevision)
		}
		for _, es := range p.Status.Entities {
			if es.ReadyReplicas != 1 || es.Replicas != 1 || es.Partitions != 3 {
				t.Errorf("entity status %+v", es)
			}
		}
		if c := condOf(p, v1alpha1.ConditionDegraded); c == nil || c.Status != metav1.ConditionFalse {
			t.Errorf("Degraded %+v, want False", c)
		}
	})
}

// TestNoWritesWhenUnchanged: once a Pipeline has converged, reconciling it again writes nothing.
func TestNoWritesWhenUnchanged(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	p := e.create(t, newPipeline(ns, withAutoscaling("count", 1, 3), withStatic("split"), withReplicas("split", 2), withMonitoring(),
		withDeletionPolicy("words", v1alpha1.DeletionDelete)))
	p = e.converged(t, p)
	e.markTopicsReady(t, p)
	e.markExecutorsReady(t, p)
	p = e.wantCondition(t, p, v1alpha1.ConditionExecutorsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)

	// Let the events of the last writes settle, then reconcile directly and count.
	waitQuiet(t, op, ns)
	before, _ := op.writes.writes(ns)
	for i := 0; i < 3; i++ {
		if _, err := op.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: p.Name}}); err != nil {
			t.Fatalf("reconcile: %v", err)
		}
	}
	after, log := op.writes.writes(ns)
	if after != before {
		t.Errorf("reconciling an unchanged pipeline made %d writes: %v", after-before, log[before:])
	}

	// The operator's own metrics saw it.
	if n := metricValue(childrenApplied.WithLabelValues("StatefulSet")); n < 2 {
		t.Errorf("millrace_children_applied_total{kind=StatefulSet} = %v", n)
	}
	phase := e.pipeline(t, p).Status.Phase
	if n := metricValue(pipelinesByPhase.WithLabelValues(string(phase))); n < 1 {
		t.Errorf("millrace_pipelines{phase=%s} = %v", phase, n)
	}
}

// TestNewPipelineIsWrittenOnce: a new Pipeline costs one apply per child and one status write.
// The status is computed from the API server's answers to the applies, and the watch events of
// the operator's own applies do not reconcile the Pipeline again (ownWrites); before, the second
// reconcile they caused wrote the status again (the StatefulSets now existed) and, when the cache
// lagged behind, applied again the children it did not see yet.
func TestNewPipelineIsWrittenOnce(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	p := e.create(t, newPipeline(ns, withMonitoring()))
	p = e.converged(t, p)
	waitQuiet(t, op, ns)
	_, log := op.writes.writes(ns)
	applies := map[string]int{}
	statusWrites := 0
	for _, w := range log {
		switch f := strings.Fields(w); f[0] {
		case "apply":
			applies[f[1]+" "+f[2]]++
		case "status-patch", "status-update":
			statusWrites++
		}
	}
	if statusWrites != 1 {
		t.Errorf("%d status writes for a new Pipeline, want 1: %v", statusWrites, log)
	}
	if len(applies) == 0 {
		t.Fatalf("no apply: %v", log)
	}
	for name, n := range applies {
		if n != 1 {
			t.Errorf("%s applied %d times: %v", name, n, log)
		}
	}
	// The status the one write made is the steady one: the StatefulSets it reports exist.
	for _, es := range e.pipeline(t, p).Status.Entities {
		if es.Replicas != 1 {
			t.Errorf("entity %s: status says %d replicas, want 1 (its StatefulSet's)", es.Name, es.Replicas)
		}
	}
	// Every own write's event was seen (and dropped), none is left waiting.
	eventually(t, "own writes seen", func() error {
		if n := op.r.ownWrites.pending(); n != 0 {
			return fmt.Errorf("%d own writes not seen: %v", n, op.r.ownWrites.keys())
		}
		return nil
	})
}

// waitQuiet waits until the operator has made no write in the namespace for a second.
func waitQuiet(t *testing.T, op *operator, ns string) {
	t.Helper()
	last, _ := op.writes.writes(ns)
	stable := time.Now()
	eventually(t, "operator quiet", func() error {
		n, log := op.writes.writes(ns)
		if n != last {
			last, stable = n, time.Now()
			return fmt.Errorf("still writing: %v", log[len(log)-1])
		}
		if time.Since(stable) < time.Second {
			return errNotYet
		}
		return nil
	})
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

// TestRolloutWaitsForOldPods: after a change of the pod template the StatefulSet controller
// observes the new generation at once, while pods of the old revision still run. The executors
// are ready only once every pod runs the update revision, as `kubectl rollout status` decides.
func TestRolloutWaitsForOldPods(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withReplicas("split", 3))))
	e.markTopicsReady(t, p)
	e.markExecutorsReady(t, p)
	p = e.wantCondition(t, p, v1alpha1.ConditionExecutorsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)

	// The rollout as the StatefulSet controller reports it midway: new generation observed, all
	// three pods ready, one of them already on the new revision.
	setStatus := func(updated int32, current string) {
		eventually(t, "set split's rollout status", func() error {
			sts, err := e.statefulSet(p, "split")
			if err != nil {
				return err
			}
			sts.Status = appsv1.StatefulSetStatus{
				ObservedGeneration: sts.Generation, Replicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
				CurrentReplicas: 3 - updated, UpdatedReplicas: updated, CurrentRevision: current, UpdateRevision: "split-new",
			}
			return e.client.Status().Update(context.Background(), sts)
		})
	}
	setStatus(1, "split-old")
	p = e.wantCondition(t, p, v1alpha1.ConditionExecutorsReady, metav1.ConditionFalse, v1alpha1.ReasonExecutorsPending)
	if c := condOf(p, v1alpha1.ConditionExecutorsReady); !strings.Contains(c.Message, "split (rolling out: 1/3 updated)") {
		t.Errorf("ExecutorsReady message %q does not say split is rolling out", c.Message)
	}

	// The controller finished: every pod on the new revision.
	setStatus(3, "split-new")
	e.wantCondition(t, p, v1alpha1.ConditionExecutorsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
}

// TestScaledObjectWaitsForItsTopics: KEDA polls the lag of an entity's input topics as soon as
// its ScaledObject exists, so the ScaledObject is created only once those KafkaTopics are Ready;
// until then AutoscalingReady says what it waits for.
func TestScaledObjectWaitsForItsTopics(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.installKEDAMetrics(t) // a running KEDA, so that only the topics hold the ScaledObject back
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 1, 3))))
	p = e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionFalse, v1alpha1.ReasonAutoscalingPending)
	if c := condOf(p, v1alpha1.ConditionAutoscalingReady); !strings.Contains(c.Message, "count are created once their input topics are ready") {
		t.Errorf("AutoscalingReady message %q does not say it waits for the topics", c.Message)
	}
	name := render.ScaledObjectName(p, "count")
	if _, err := e.get(gvkScaledObject, ns, name); !apierrors.IsNotFound(err) {
		t.Fatalf("ScaledObject %s before its topics are ready: %v, want NotFound", name, err)
	}

	e.markTopicsReady(t, p)
	eventually(t, "ScaledObject created once the topics are ready", func() error {
		_, err := e.get(gvkScaledObject, ns, name)
		return err
	})
	eventually(t, "AutoscalingReady no longer waits for topics", func() error {
		if c := condOf(e.pipeline(t, p), v1alpha1.ConditionAutoscalingReady); c == nil || strings.Contains(c.Message, "input topics") {
			return fmt.Errorf("AutoscalingReady %+v", c)
		}
		return nil
	})
}

// TestChildNameConflictBetweenPipelines: children are named <pipeline>-<entity>, so Pipeline
// "orders-v2" with entity "sum" and Pipeline "orders" with entity "v2-sum" name one StatefulSet
// (and ConfigMap, Service) alike. The second Pipeline must not take the first one's children
// over; it says what conflicts and what to rename.
func TestChildNameConflictBetweenPipelines(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	first := e.converged(t, e.create(t, newPipeline(ns, named("orders"), func(p *v1alpha1.Pipeline) { entity(p, "count").Name = "v2-sum" })))
	before, err := e.statefulSet(first, "v2-sum")
	if err != nil {
		t.Fatal(err)
	}
	cmBefore, err := e.configMap(first, "v2-sum")
	if err != nil {
		t.Fatal(err)
	}

	second := e.create(t, newPipeline(ns, named("orders-v2"), func(p *v1alpha1.Pipeline) { entity(p, "count").Name = "sum" }))
	if got, want := render.StatefulSetName(second, "sum"), before.Name; got != want {
		t.Fatalf("the fixture no longer collides: %s and %s", got, want)
	}
	second = e.wantCondition(t, second, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonApplyFailed)
	msg := condOf(second, v1alpha1.ConditionReady).Message
	if !strings.Contains(msg, "StatefulSet "+ns+"/orders-v2-sum belongs to Pipeline orders") {
		t.Errorf("Ready message %q does not name the conflict", msg)
	}
	// The first Pipeline's children are untouched: still its own, same spec.
	after, err := e.statefulSet(first, "v2-sum")
	if err != nil {
		t.Fatal(err)
	}
	if after.Labels[render.LabelPipeline] != "orders" || after.Generation != before.Generation || functionImage(after) != functionImage(before) {
		t.Errorf("the first Pipeline's StatefulSet was changed: labels %v, generation %d -> %d", after.Labels, before.Generation, after.Generation)
	}
	if ref := metav1.GetControllerOf(after); ref == nil || ref.UID != first.UID {
		t.Errorf("the first Pipeline's StatefulSet is controlled by %+v", ref)
	}
	cmAfter, err := e.configMap(first, "v2-sum")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cmBefore.Data, cmAfter.Data); diff != "" || cmAfter.Labels[render.LabelPipeline] != "orders" {
		t.Errorf("the first Pipeline's ConfigMap was changed (labels %v): %s", cmAfter.Labels, diff)
	}
	// The children that do not collide are applied.
	if _, err := e.statefulSet(second, "split"); err != nil {
		t.Errorf("the second Pipeline's split: %v", err)
	}
}
