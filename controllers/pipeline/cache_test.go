package pipeline

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/controllers/render"
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
