package pipeline

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestStripUnread(t *testing.T) {
	replicas := int32(2)
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Name: "wc-split", Namespace: "ns", Generation: 3,
			Labels:        map[string]string{"a": "b"},
			Annotations:   map[string]string{AnnotationAppliedHash: "h", annotationLastApplied: "{}"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: FieldManager}},
		}
	}
	keptMeta := map[string]any{
		"name": "x", "namespace": "ns",
		"labels":      map[string]any{"a": "b"},
		"annotations": map[string]any{AnnotationAppliedHash: "h"},
	}
	withMeta := func(o map[string]any) map[string]any {
		m := map[string]any{
			"name": "x", "namespace": "ns",
			"labels":        map[string]any{"a": "b"},
			"annotations":   map[string]any{AnnotationAppliedHash: "h", annotationLastApplied: "{}"},
			"managedFields": []any{map[string]any{"manager": FieldManager}},
		}
		o["metadata"] = m
		return o
	}
	conditions := []any{map[string]any{"type": "Ready", "status": "True"}}
	listeners := []any{map[string]any{"name": "plain", "bootstrapServers": "k:9092"}}
	cases := []struct {
		reason string
		in     any
		want   any
	}{
		{
			reason: "a StatefulSet keeps its spec and the status fields status.go reads",
			in: &appsv1.StatefulSet{
				ObjectMeta: meta(),
				Spec:       appsv1.StatefulSetSpec{Replicas: &replicas},
				Status: appsv1.StatefulSetStatus{ObservedGeneration: 3, Replicas: 2, ReadyReplicas: 1,
					CurrentRevision: "r1", UpdateRevision: "r2", Conditions: []appsv1.StatefulSetCondition{{Type: "x"}}},
			},
			want: &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "wc-split", Namespace: "ns", Generation: 3,
					Labels: map[string]string{"a": "b"}, Annotations: map[string]string{AnnotationAppliedHash: "h"}},
				Spec: appsv1.StatefulSetSpec{Replicas: &replicas},
				Status: appsv1.StatefulSetStatus{ObservedGeneration: 3, Replicas: 2, ReadyReplicas: 1,
					CurrentRevision: "r1", UpdateRevision: "r2"},
			},
		},
		{
			reason: "a composed kind keeps its spec and status conditions",
			in: &unstructured.Unstructured{Object: withMeta(map[string]any{
				"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic",
				"spec":   map[string]any{"partitions": int64(6)},
				"status": map[string]any{"conditions": conditions, "topicId": "abc", "observedGeneration": int64(1)},
			})},
			want: &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaTopic", "metadata": keptMeta,
				"spec":   map[string]any{"partitions": int64(6)},
				"status": map[string]any{"conditions": conditions},
			}},
		},
		{
			reason: "a Strimzi Kafka keeps only its status listeners and conditions",
			in: &unstructured.Unstructured{Object: withMeta(map[string]any{
				"apiVersion": "kafka.strimzi.io/v1", "kind": "Kafka",
				"spec":   map[string]any{"kafka": map[string]any{"replicas": int64(3)}},
				"status": map[string]any{"listeners": listeners, "clusterId": "c"},
			})},
			want: &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "kafka.strimzi.io/v1", "kind": "Kafka", "metadata": keptMeta,
				"status": map[string]any{"listeners": listeners},
			}},
		},
		{
			reason: "what is not an object passes through",
			in:     "tombstone",
			want:   "tombstone",
		},
	}
	for _, c := range cases {
		got, err := stripUnread(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.reason, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s: -want +got:\n%s", c.reason, diff)
		}
	}
}
