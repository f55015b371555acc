package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// unrelatedObjects are a KafkaTopic, a ConfigMap and a StatefulSet that Millrace does not manage,
// in namespace ns.
func unrelatedObjects(e *env, ns, name string) []client.Object {
	kt := &unstructured.Unstructured{}
	kt.SetGroupVersionKind(e.gvk("KafkaTopic"))
	kt.SetNamespace(ns)
	kt.SetName(name)
	kt.SetLabels(map[string]string{"strimzi.io/cluster": "kafka"})
	_ = unstructured.SetNestedField(kt.Object, int64(3), "spec", "partitions")
	labels := map[string]string{"app": name}
	return []client.Object{
		kt,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string]string{"k": "v"}},
		&appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: appsv1.StatefulSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}}},
				},
			},
		},
	}
}

// The operator's cache holds Millrace's objects only: KafkaTopics, ConfigMaps and StatefulSets
// that it does not manage stay out of its memory, while its own children are cached (and a
// Pipeline converges as before).
func TestCacheHoldsOnlyMillracesObjects(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	ctx := context.Background()
	for _, o := range unrelatedObjects(e, ns, "unrelated") {
		if err := e.client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	op := e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns)))

	topics := &unstructured.UnstructuredList{}
	topics.SetGroupVersionKind(e.gvk("KafkaTopicList"))
	var cms corev1.ConfigMapList
	var stss appsv1.StatefulSetList
	for _, l := range []client.ObjectList{topics, &cms, &stss} {
		if err := op.r.cache.List(ctx, l, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for _, o := range topics.Items {
		names = append(names, "KafkaTopic "+o.GetName())
		if o.GetLabels()[render.LabelManagedBy] != render.ValueManagedBy {
			t.Errorf("cached KafkaTopic %s is not Millrace's", o.GetName())
		}
	}
	for _, o := range cms.Items {
		names = append(names, "ConfigMap "+o.GetName())
		if o.Labels[render.LabelManagedBy] != render.ValueManagedBy {
			t.Errorf("cached ConfigMap %s is not Millrace's", o.GetName())
		}
	}
	for _, o := range stss.Items {
		names = append(names, "StatefulSet "+o.GetName())
		if o.Labels[render.LabelManagedBy] != render.ValueManagedBy {
			t.Errorf("cached StatefulSet %s is not Millrace's", o.GetName())
		}
	}
	// The Pipeline's own: a KafkaTopic per stream, a ConfigMap and a StatefulSet per entity.
	if len(topics.Items) < len(p.Spec.Streams) || len(cms.Items) != len(p.Spec.Entities) || len(stss.Items) != len(p.Spec.Entities) {
		t.Errorf("the cache misses the Pipeline's children: %v", names)
	}
	if t.Failed() {
		t.Log(fmt.Sprint(names))
	}
}

// The cache keeps of the operator's children only what its readers use (stripUnread): a
// StatefulSet without its pod template, a ConfigMap with only the executor's assignment, a
// KafkaTopic without its spec, each with the digest of the values the operator owns. A value changed behind the
// operator's back, in what the cache no longer holds, is still noticed and applied again.
func TestTrimmedCacheStillRepairsDrift(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	ctx := context.Background()
	op := e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withReplicas("split", 2))))

	cached := &appsv1.StatefulSet{}
	if err := op.r.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.StatefulSetName(p, "split")}, cached); err != nil {
		t.Fatal(err)
	}
	if len(cached.Spec.Template.Spec.Containers) != 0 || cached.Annotations[cachedOwnedDigest] == "" {
		t.Errorf("cached StatefulSet keeps its pod template (%d containers) or has no owned digest (%q)",
			len(cached.Spec.Template.Spec.Containers), cached.Annotations[cachedOwnedDigest])
	}
	if cached.Spec.Replicas == nil || *cached.Spec.Replicas != 2 || cached.Labels[render.LabelEntity] != "split" {
		t.Errorf("cached StatefulSet lost what is read: replicas %v, labels %v", cached.Spec.Replicas, cached.Labels)
	}
	cachedCM := &corev1.ConfigMap{}
	if err := op.r.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.ConfigMapName(p, "split")}, cachedCM); err != nil {
		t.Fatal(err)
	}
	var executor map[string]any
	if err := json.Unmarshal([]byte(cachedCM.Data[config.FileName]), &executor); err != nil || len(executor) != 1 || executor["assignment"] == nil {
		t.Errorf("cached ConfigMap keeps more than the assignment: %v (%v)", cachedCM.Data, err)
	}
	kt := &unstructured.Unstructured{}
	kt.SetGroupVersionKind(e.gvk("KafkaTopic"))
	if err := op.r.cache.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.KafkaTopicName(p, "lines")}, kt); err != nil {
		t.Fatal(err)
	}
	// Of its spec, a cached KafkaTopic keeps the topic name only (a retiring entity's topics
	// are kept by it).
	if spec, _ := kt.Object["spec"].(map[string]any); len(spec) != 1 || spec["topicName"] == nil || kt.GetAnnotations()[cachedOwnedDigest] == "" {
		t.Errorf("cached KafkaTopic keeps more of its spec than its topic name, or has no owned digest: %v", kt.Object)
	}

	// Somebody else changes the function's image and the replicas (an update, as kubectl edit
	// does), a value of the ConfigMap, and the KafkaTopic's partitions.
	sts, err := e.statefulSet(p, "split")
	if err != nil {
		t.Fatal(err)
	}
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Image == "example/split:1" {
			c.Image = "example/hacked:1"
		}
	}
	sts.Spec.Replicas = ptrTo[int32](5)
	if err := e.client.Update(ctx, sts, client.FieldOwner("someone")); err != nil {
		t.Fatal(err)
	}
	if functionImage(sts) != "example/hacked:1" {
		t.Fatalf("the test did not change the image: %s", functionImage(sts))
	}
	cm, err := e.configMap(p, "count")
	if err != nil {
		t.Fatal(err)
	}
	want := cm.Data
	cm.Data = map[string]string{}
	for k := range want {
		cm.Data[k] = "{}"
	}
	if err := e.client.Update(ctx, cm, client.FieldOwner("someone")); err != nil {
		t.Fatal(err)
	}
	live, err := e.kafkaTopic(p, "lines")
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedField(live.Object, int64(7), "spec", "partitions"); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Update(ctx, live, client.FieldOwner("someone")); err != nil {
		t.Fatal(err)
	}

	eventually(t, "the changes undone", func() error {
		sts, err := e.statefulSet(p, "split")
		if err != nil {
			return err
		}
		if img := functionImage(sts); img != "example/split:1" {
			return fmt.Errorf("split runs %s", img)
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 2 {
			return fmt.Errorf("split has %v replicas", sts.Spec.Replicas)
		}
		cm, err := e.configMap(p, "count")
		if err != nil {
			return err
		}
		for k, v := range want {
			if cm.Data[k] != v {
				return fmt.Errorf("ConfigMap %s holds %s=%q", cm.Name, k, cm.Data[k])
			}
		}
		kt, err := e.kafkaTopic(p, "lines")
		if err != nil {
			return err
		}
		if n, _, _ := unstructured.NestedInt64(kt.Object, "spec", "partitions"); n != 3 {
			return fmt.Errorf("KafkaTopic %s has %d partitions", kt.GetName(), n)
		}
		return nil
	})
}
