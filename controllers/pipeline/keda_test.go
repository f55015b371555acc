package pipeline

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// kedaMetricsAPIService is the APIService KEDA's metrics server registers, as its Helm chart
// writes it; without service it is "local", which the API server's availability controller
// reports Available at once.
func kedaMetricsAPIService(withService bool) *unstructured.Unstructured {
	u := apiServiceObject()
	u.SetName(kedaAPIService)
	spec := map[string]any{
		"group": "external.metrics.k8s.io", "version": "v1beta1",
		"groupPriorityMinimum": int64(100), "versionPriority": int64(100),
	}
	if withService {
		spec["service"] = map[string]any{"name": "keda-operator-metrics-apiserver", "namespace": "keda", "port": int64(443)}
		spec["insecureSkipTLSVerify"] = true
	}
	u.Object["spec"] = spec
	return u
}

// installKEDAMetrics makes the environment's KEDA "running": its external metrics APIService
// exists and is Available. It is removed when the test ends.
func (e *env) installKEDAMetrics(t *testing.T) {
	t.Helper()
	if err := e.client.Create(context.Background(), kedaMetricsAPIService(false)); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create APIService %s: %v", kedaAPIService, err)
	}
	t.Cleanup(func() { e.removeKEDAMetrics(t) })
}

func (e *env) removeKEDAMetrics(t *testing.T) {
	t.Helper()
	eventually(t, "delete APIService "+kedaAPIService, func() error {
		err := e.client.Delete(context.Background(), kedaMetricsAPIService(false))
		if err == nil || apierrors.IsNotFound(err) {
			_, err := e.get(gvkAPIService, "", kedaAPIService)
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there: %v", err)
		}
		return err
	})
}

// markScaledObjectReady does what KEDA's operator does with a valid ScaledObject.
func (e *env) markScaledObjectReady(t *testing.T, p *v1alpha1.Pipeline, ent string) {
	t.Helper()
	eventually(t, "KEDA reports the ScaledObject of "+ent+" ready", func() error {
		so, err := e.get(gvkScaledObject, p.Namespace, render.ScaledObjectName(p, ent))
		if err != nil {
			return err
		}
		_ = unstructured.SetNestedSlice(so.Object, []any{
			map[string]any{"type": "Ready", "status": "True"},
			map[string]any{"type": "Active", "status": "False"},
		}, "status", "conditions")
		return e.client.Status().Update(context.Background(), so)
	})
}

// TestKEDANotRunning: KEDA's CRDs alone (left by an uninstall, or an OLM install without a
// KedaController) are not a working KEDA. Until its metrics APIService is Available the Pipeline
// says precisely what is missing; once it is, autoscaling is reported ready, without a restart.
func TestKEDANotRunning(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 1, 3))))
	e.markTopicsReady(t, p) // the ScaledObject is created once its input topics are ready
	e.markScaledObjectReady(t, p, "count")

	p = e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionFalse, v1alpha1.ReasonKEDANotRunning)
	if msg := condOf(p, v1alpha1.ConditionAutoscalingReady).Message; !strings.Contains(msg, kedaAPIService+" that KEDA's metrics server registers does not exist") {
		t.Errorf("the message should say the APIService is missing: %q", msg)
	}
	e.wantCondition(t, p, v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonDependenciesDegraded)

	// Registered, but its Service does not exist: the API server's availability controller
	// says so, and the Pipeline passes that on.
	t.Cleanup(func() { e.removeKEDAMetrics(t) })
	if err := e.client.Create(context.Background(), kedaMetricsAPIService(true)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the condition carries the APIService's reason", func() error {
		cur := e.pipeline(t, p)
		c := condOf(cur, v1alpha1.ConditionAutoscalingReady)
		if c == nil || c.Reason != v1alpha1.ReasonKEDANotRunning || !strings.Contains(c.Message, "is not Available (ServiceNotFound") {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})

	e.removeKEDAMetrics(t)
	e.installKEDAMetrics(t)
	e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
}
