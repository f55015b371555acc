package pipeline

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestCreate: creating a Pipeline creates every child with the right fields and owner
// references, a revision, the finalizer and a status.
func TestCreate(t *testing.T) {
	bothEnvs(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.startOperator(t, ns)
		p := e.create(t, newPipeline(ns, withDeletionPolicy("words", v1alpha1.DeletionDelete)))
		p = e.converged(t, p)

		for _, ent := range []string{"split", "count"} {
			sts, err := e.statefulSet(p, ent)
			if err != nil {
				t.Fatal(err)
			}
			if !metav1.IsControlledBy(sts, p) {
				t.Errorf("StatefulSet %s is not controlled by the pipeline: %v", sts.Name, sts.OwnerReferences)
			}
			if sts.Labels[render.LabelManagedBy] != render.ValueManagedBy || sts.Labels[render.LabelEntity] != ent {
				t.Errorf("StatefulSet %s labels: %v", sts.Name, sts.Labels)
			}
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
				t.Errorf("StatefulSet %s replicas = %v, want 1", sts.Name, sts.Spec.Replicas)
			}
			cm, err := e.configMap(p, ent)
			if err != nil {
				t.Fatal(err)
			}
			if !metav1.IsControlledBy(cm, p) || cm.Data["executor.json"] == "" {
				t.Errorf("ConfigMap %s: owners %v, data keys %d", cm.Name, cm.OwnerReferences, len(cm.Data))
			}
		}

		lines, err := e.kafkaTopic(p, "lines")
		if err != nil {
			t.Fatalf("KafkaTopic of lines: %v", err)
		}
		if lines.GetAPIVersion() != strimzi.Group+"/"+e.strimzi {
			t.Errorf("KafkaTopic apiVersion %s, want version %s", lines.GetAPIVersion(), e.strimzi)
		}
		if len(lines.GetOwnerReferences()) != 0 {
			t.Errorf("a Retain KafkaTopic must have no owner reference (the garbage collector would delete the topic): %v", lines.GetOwnerReferences())
		}
		if lines.GetLabels()[strimzi.LabelCluster] != "kafka" {
			t.Errorf("KafkaTopic labels %v lack %s=kafka", lines.GetLabels(), strimzi.LabelCluster)
		}
		words, err := e.kafkaTopic(p, "words")
		if err != nil {
			t.Fatalf("KafkaTopic of words: %v", err)
		}
		if !metav1.IsControlledBy(words, p) {
			t.Errorf("a Delete KafkaTopic must be controlled by the pipeline: %v", words.GetOwnerReferences())
		}

		if !controllerutil.ContainsFinalizer(p, Finalizer) {
			t.Errorf("finalizers %v lack %s", p.Finalizers, Finalizer)
		}
		var revs appsv1.ControllerRevisionList
		if err := e.client.List(context.Background(), &revs, client.InNamespace(ns), client.MatchingLabels{render.LabelPipeline: p.Name}); err != nil {
			t.Fatal(err)
		}
		if len(revs.Items) != 1 || revs.Items[0].Revision != 1 || !metav1.IsControlledBy(&revs.Items[0], p) {
			t.Fatalf("want one revision numbered 1 controlled by the pipeline, got %+v", revs.Items)
		}
		if p.Status.UpdateRevision != revs.Items[0].Name {
			t.Errorf("updateRevision %q, want %q", p.Status.UpdateRevision, revs.Items[0].Name)
		}
		if p.Status.EntityCount != 2 || len(p.Status.Entities) != 2 || len(p.Status.Streams) != 2 {
			t.Errorf("status counts: %+v", p.Status)
		}
		for _, c := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionTopicsReady, v1alpha1.ConditionExecutorsReady,
			v1alpha1.ConditionAutoscalingReady, v1alpha1.ConditionMonitoringReady, v1alpha1.ConditionDegraded} {
			if cond := condOf(p, c); cond == nil || cond.ObservedGeneration != p.Generation {
				t.Errorf("condition %s missing or stale: %+v", c, cond)
			}
		}
		if p.Status.Phase != v1alpha1.PhasePending {
			t.Errorf("phase %s, want Pending before any child is ready", p.Status.Phase)
		}
		_ = fmt.Sprint()
	})
}
