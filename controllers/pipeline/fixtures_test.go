package pipeline

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
)

// Fixtures are built by small functional modifiers over one word-count Pipeline:
// lines -> split -> words -> count.
type modifier func(*v1alpha1.Pipeline)

func newPipeline(ns string, mods ...modifier) *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{
		ObjectMeta: metav1.ObjectMeta{Name: "wc", Namespace: ns},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "kafka", BootstrapServers: "kafka-bootstrap:9092"},
			Streams: []v1alpha1.Stream{
				{Name: "lines", Partitions: 3},
				{Name: "words", Partitions: 3},
			},
			Entities: []v1alpha1.Entity{
				{Name: "split", Image: "example/split:1", Inputs: []string{"lines"}, Outputs: []string{"words"}},
				{Name: "count", Image: "example/count:1", Inputs: []string{"words"}},
			},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func named(name string) modifier { return func(p *v1alpha1.Pipeline) { p.Name = name } }

func entity(p *v1alpha1.Pipeline, name string) *v1alpha1.Entity {
	for i := range p.Spec.Entities {
		if p.Spec.Entities[i].Name == name {
			return &p.Spec.Entities[i]
		}
	}
	panic("no entity " + name)
}

func streamOf(p *v1alpha1.Pipeline, name string) *v1alpha1.Stream {
	for i := range p.Spec.Streams {
		if p.Spec.Streams[i].Name == name {
			return &p.Spec.Streams[i]
		}
	}
	panic("no stream " + name)
}

func withImage(e, image string) modifier {
	return func(p *v1alpha1.Pipeline) { entity(p, e).Image = image }
}

func withReplicas(e string, n int32) modifier {
	return func(p *v1alpha1.Pipeline) { entity(p, e).Replicas = &n }
}

func withAutoscaling(e string, minR, maxR int32) modifier {
	return func(p *v1alpha1.Pipeline) {
		entity(p, e).Replicas = nil
		entity(p, e).Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: &minR, MaxReplicas: maxR}
	}
}

func withStatic(e string) modifier {
	return func(p *v1alpha1.Pipeline) {
		entity(p, e).Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic}
	}
}

func withDeletionPolicy(stream string, d v1alpha1.DeletionPolicy) modifier {
	return func(p *v1alpha1.Pipeline) { streamOf(p, stream).DeletionPolicy = d }
}

func withMonitoring() modifier {
	return func(p *v1alpha1.Pipeline) { p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: true} }
}

func withDirect(bootstrap string) modifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka = v1alpha1.KafkaSpec{BootstrapServers: bootstrap, Topics: v1alpha1.TopicsDirect}
	}
}

func withSumEntity() modifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "totals", Partitions: 3, DeletionPolicy: v1alpha1.DeletionDelete})
		p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "sum", Image: "example/sum:1", Inputs: []string{"words"}, Outputs: []string{"totals"}})
	}
}

func withoutSumEntity() modifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Streams = p.Spec.Streams[:2]
		p.Spec.Entities = p.Spec.Entities[:2]
	}
}

// create creates p and returns it as stored.
func (e *env) create(t *testing.T, p *v1alpha1.Pipeline) *v1alpha1.Pipeline {
	t.Helper()
	if err := e.client.Create(context.Background(), p); err != nil {
		t.Fatalf("create pipeline: %v", err)
	}
	return p
}

// update changes the stored Pipeline with mods, retrying on conflicts.
func (e *env) update(t *testing.T, p *v1alpha1.Pipeline, mods ...modifier) *v1alpha1.Pipeline {
	t.Helper()
	var out *v1alpha1.Pipeline
	eventually(t, "update pipeline", func() error {
		cur := e.pipeline(t, p)
		for _, m := range mods {
			m(cur)
		}
		if err := e.client.Update(context.Background(), cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	return out
}

func (e *env) pipeline(t *testing.T, p *v1alpha1.Pipeline) *v1alpha1.Pipeline {
	t.Helper()
	cur := &v1alpha1.Pipeline{}
	if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), cur); err != nil {
		t.Fatalf("get pipeline: %v", err)
	}
	return cur
}

func (e *env) statefulSet(p *v1alpha1.Pipeline, ent string) (*appsv1.StatefulSet, error) {
	sts := &appsv1.StatefulSet{}
	err := e.client.Get(context.Background(), client.ObjectKey{Namespace: p.Namespace, Name: render.StatefulSetName(p, ent)}, sts)
	return sts, err
}

func (e *env) configMap(p *v1alpha1.Pipeline, ent string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := e.client.Get(context.Background(), client.ObjectKey{Namespace: p.Namespace, Name: render.ConfigMapName(p, ent)}, cm)
	return cm, err
}

func (e *env) gvk(kind string) schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: strimzi.Group, Version: e.strimzi, Kind: kind}
}

func (e *env) get(gvk schema.GroupVersionKind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	err := e.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)
	return u, err
}

func (e *env) kafkaTopic(p *v1alpha1.Pipeline, stream string) (*unstructured.Unstructured, error) {
	return e.get(e.gvk("KafkaTopic"), p.Namespace, render.KafkaTopicName(p, stream))
}

// gone reports nil when the object no longer exists, or is being deleted (held by a finalizer).
func gone(u client.Object, err error) error {
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	return fmt.Errorf("%s still exists", u.GetName())
}

// converged waits until the operator has applied the current generation: status observed it
// and every entity has its StatefulSet with the entity's current image.
func (e *env) converged(t *testing.T, p *v1alpha1.Pipeline) *v1alpha1.Pipeline {
	t.Helper()
	var cur *v1alpha1.Pipeline
	eventually(t, "pipeline converged", func() error {
		cur = e.pipeline(t, p)
		if cur.Status.ObservedGeneration != cur.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", cur.Status.ObservedGeneration, cur.Generation)
		}
		for _, ent := range cur.Spec.Entities {
			sts, err := e.statefulSet(cur, ent.Name)
			if err != nil {
				return err
			}
			if img := functionImage(sts); img != ent.Image {
				return fmt.Errorf("entity %s runs %s, want %s", ent.Name, img, ent.Image)
			}
		}
		return nil
	})
	return cur
}

// functionImage is the image of the user's function container: the one container that is not
// a Millrace sidecar.
func functionImage(sts *appsv1.StatefulSet) string {
	for _, c := range append(sts.Spec.Template.Spec.InitContainers, sts.Spec.Template.Spec.Containers...) {
		if c.Image != "example/io:test" && c.Image != "example/state:test" {
			return c.Image
		}
	}
	return ""
}

// markExecutorsReady simulates the StatefulSet controller: every pod of every entity is ready.
func (e *env) markExecutorsReady(t *testing.T, p *v1alpha1.Pipeline) {
	t.Helper()
	for _, ent := range e.pipeline(t, p).Spec.Entities {
		eventually(t, "mark "+ent.Name+" ready", func() error {
			sts, err := e.statefulSet(p, ent.Name)
			if err != nil {
				return err
			}
			n := int32(1)
			if sts.Spec.Replicas != nil {
				n = *sts.Spec.Replicas
			}
			sts.Status = appsv1.StatefulSetStatus{
				ObservedGeneration: sts.Generation, Replicas: n, ReadyReplicas: n,
				CurrentReplicas: n, UpdatedReplicas: n, AvailableReplicas: n,
			}
			return e.client.Status().Update(context.Background(), sts)
		})
	}
}

// markTopicsReady simulates Strimzi's Topic Operator: every KafkaTopic of p is Ready.
func (e *env) markTopicsReady(t *testing.T, p *v1alpha1.Pipeline) {
	t.Helper()
	eventually(t, "mark topics ready", func() error {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(e.gvk("KafkaTopicList"))
		if err := e.client.List(context.Background(), list, client.InNamespace(p.Namespace), client.MatchingLabels{render.LabelPipeline: p.Name}); err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no KafkaTopics yet")
		}
		for i := range list.Items {
			kt := &list.Items[i]
			if c, _ := condition(kt, "Ready"); c == "True" {
				continue
			}
			_ = unstructured.SetNestedSlice(kt.Object, []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}}, "status", "conditions")
			if err := e.client.Status().Update(context.Background(), kt); err != nil {
				return err
			}
		}
		return nil
	})
}

// condOf returns a condition of the Pipeline's status.
func condOf(p *v1alpha1.Pipeline, t string) *metav1.Condition {
	return meta.FindStatusCondition(p.Status.Conditions, t)
}

// wantCondition waits for a condition with the given status and reason.
func (e *env) wantCondition(t *testing.T, p *v1alpha1.Pipeline, condType string, status metav1.ConditionStatus, reason string) *v1alpha1.Pipeline {
	t.Helper()
	var cur *v1alpha1.Pipeline
	eventually(t, fmt.Sprintf("condition %s=%s (%s)", condType, status, reason), func() error {
		cur = e.pipeline(t, p)
		c := condOf(cur, condType)
		if c == nil {
			return fmt.Errorf("no %s condition", condType)
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != cur.Generation {
			return fmt.Errorf("%s is %s (%s): %s", condType, c.Status, c.Reason, c.Message)
		}
		return nil
	})
	return cur
}

// holdWithFinalizer adds a finalizer to an object, standing in for the finalizer that Strimzi's
// Topic Operator puts on each KafkaTopic, so a test can see how the operator deleted it.
func (e *env) holdWithFinalizer(t *testing.T, u *unstructured.Unstructured) {
	t.Helper()
	eventually(t, "add test finalizer", func() error {
		cur, err := e.get(u.GroupVersionKind(), u.GetNamespace(), u.GetName())
		if err != nil {
			return err
		}
		cur.SetFinalizers(append(cur.GetFinalizers(), testFinalizer))
		return e.client.Update(context.Background(), cur)
	})
}

const testFinalizer = "test.millrace.dev/hold"

func (e *env) release(t *testing.T, gvk schema.GroupVersionKind, ns, name string) {
	t.Helper()
	eventually(t, "remove test finalizer", func() error {
		cur, err := e.get(gvk, ns, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		cur.SetFinalizers(nil)
		return client.IgnoreNotFound(e.client.Update(context.Background(), cur))
	})
}
