package pipeline

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestUpToDate(t *testing.T) {
	desired := func() *appsv1.StatefulSet {
		return &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{Name: "wc-split", Namespace: "ns", Labels: map[string]string{"a": "b"}},
			Spec: appsv1.StatefulSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "fn", Image: "img:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
			}}}}},
		}
	}
	// live is what the API server returns: what was applied, plus defaults and others' fields.
	live := func(mod func(*appsv1.StatefulSet)) *unstructured.Unstructured {
		sts := desired()
		u, err := applied(sts)
		if err != nil {
			t.Fatal(err)
		}
		sts.Annotations = u.GetAnnotations()
		sts.Spec.Replicas = ptrTo[int32](3)
		sts.Spec.Template.Spec.Containers[0].TerminationMessagePath = "/dev/termination-log"
		sts.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		sts.Status.ReadyReplicas = 2
		if mod != nil {
			mod(sts)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(sts)
		if err != nil {
			t.Fatal(err)
		}
		return &unstructured.Unstructured{Object: m}
	}
	cases := []struct {
		reason string
		live   *unstructured.Unstructured
		want   bool
	}{
		{reason: "defaults and fields of other managers do not count as a change", live: live(nil), want: true},
		{reason: "a value changed behind the operator's back is a change", live: live(func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers[0].Image = "img:hacked"
		}), want: false},
		{reason: "a label removed behind the operator's back is a change", live: live(func(s *appsv1.StatefulSet) { s.Labels = nil }), want: false},
		{reason: "an object applied from another configuration is a change", live: live(func(s *appsv1.StatefulSet) {
			s.Annotations[AnnotationAppliedHash] = "other"
		}), want: false},
		{reason: "a container added by someone else is a change", live: live(func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, corev1.Container{Name: "injected"})
		}), want: false},
	}
	u, err := applied(desired())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Object["status"]; ok {
		t.Error("the applied configuration must not carry status")
	}
	for _, c := range cases {
		if got := upToDate(u, c.live); got != c.want {
			t.Errorf("%s: upToDate = %v, want %v", c.reason, got, c.want)
		}
	}
}
