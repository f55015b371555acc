package pipeline

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestChildNameTakenByAnUnmanagedObject: a child's name taken by an object Millrace does not
// manage is reported, and the object is left as it was (not taken over by a forced apply).
func TestChildNameTakenByAnUnmanagedObject(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := newPipeline(ns)
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.ConfigMapName(p, "split")},
		Data:       map[string]string{"theirs": "yes"},
	}
	if err := e.client.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	p = e.wantCondition(t, e.create(t, p), v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonApplyFailed)
	msg := condOf(p, v1alpha1.ConditionReady).Message
	if want := "ConfigMap " + ns + "/" + foreign.Name + " belongs to an object Millrace does not manage"; !strings.Contains(msg, want) {
		t.Errorf("Ready message %q does not say %q", msg, want)
	}
	var after corev1.ConfigMap
	if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(foreign), &after); err != nil {
		t.Fatal(err)
	}
	if len(after.Labels) != 0 || len(after.Data) != 1 || after.Data["theirs"] != "yes" || len(after.OwnerReferences) != 0 {
		t.Errorf("the unmanaged ConfigMap was changed: labels %v, data %v, owners %v", after.Labels, after.Data, after.OwnerReferences)
	}
}
