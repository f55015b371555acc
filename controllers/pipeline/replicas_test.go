package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// startKCM runs a real kube-controller-manager with the StatefulSet controller (which creates
// and deletes pods) and the HPA controller, for the test.
func (e *env) startKCM(t *testing.T) {
	t.Helper()
	kcm, err := e.te.StartControllerManager("statefulset", "horizontalpodautoscaling")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log: %s", kcm.Log())
			return
		}
		_ = kcm.Stop()
	})
}

// controlledByName: the pod's controller is the StatefulSet of that name.
func controlledByName(p *corev1.Pod, sts string) bool {
	for _, r := range p.OwnerReferences {
		if r.Controller != nil && *r.Controller && r.Kind == "StatefulSet" && r.Name == sts {
			return true
		}
	}
	return false
}

// podsOf returns the UIDs of the StatefulSet's pods that are not being deleted, by name.
func (e *env) podsOf(ns, sts string) (map[string]types.UID, error) {
	var pods corev1.PodList
	if err := e.client.List(context.Background(), &pods, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	out := map[string]types.UID{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && controlledByName(p, sts) {
			out[p.Name] = p.UID
		}
	}
	return out, nil
}

// replicasManagers lists the field managers that own a StatefulSet's spec.replicas.
func replicasManagers(sts *appsv1.StatefulSet) []string {
	var out []string
	for _, mf := range sts.ManagedFields {
		var fields struct {
			Spec map[string]any `json:"f:spec"`
		}
		if mf.FieldsV1 == nil || json.Unmarshal(mf.FieldsV1.Raw, &fields) != nil {
			continue
		}
		if _, ok := fields.Spec["f:replicas"]; ok {
			out = append(out, mf.Manager+"/"+mf.Subresource)
		}
	}
	return out
}

// TestAutoscalingKeepsRunningPods: turning autoscaling on for an entity that runs 3 fixed
// replicas hands spec.replicas over to the autoscaler without a dip (the StatefulSet controller
// of a real kube-controller-manager would delete pods on one), a real HPA then owns the field
// through its own field manager and what it sets survives Pipeline updates, and turning
// autoscaling off again takes the field back at the count the spec asks for.
func TestAutoscalingKeepsRunningPods(t *testing.T) {
	e := envV1
	e.startKCM(t)
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withReplicas("count", 3))))
	stsName := render.StatefulSetName(p, "count")

	var pods map[string]types.UID
	eventually(t, "3 pods of count", func() error {
		var err error
		if pods, err = e.podsOf(ns, stsName); err != nil {
			return err
		}
		if len(pods) != 3 {
			return fmt.Errorf("%d pods", len(pods))
		}
		return nil
	})

	p = e.converged(t, e.update(t, p, withAutoscaling("count", 1, 3)))
	eventually(t, "the operator hands spec.replicas over", func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if ownsReplicas(sts) {
			return errors.New("the operator still owns spec.replicas")
		}
		return nil
	})
	keep := func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 3 {
			return fmt.Errorf("count has %d replicas, it ran 3 before autoscaling was turned on (owners %v)", replicasOf(sts), replicasManagers(sts))
		}
		now, err := e.podsOf(ns, stsName)
		if err != nil {
			return err
		}
		for name, uid := range pods {
			if now[name] != uid {
				return fmt.Errorf("pod %s was deleted", name)
			}
		}
		return nil
	}
	consistently(t, "the running pods stay", 3*time.Second, keep)

	// The HPA that KEDA would create: at most 2, so the HPA controller scales down through
	// /scale under its own field manager, without needing metrics.
	hpa := &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "keda-hpa-count"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: stsName},
			MinReplicas:    ptrTo[int32](1),
			MaxReplicas:    2,
		},
	}
	if err := e.client.Create(context.Background(), hpa); err != nil {
		t.Fatal(err)
	}
	var hpaManager []string
	eventually(t, "the HPA scales count to 2", func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 2 {
			return fmt.Errorf("count has %d replicas", replicasOf(sts))
		}
		hpaManager = replicasManagers(sts)
		return nil
	})
	if err := e.client.Delete(context.Background(), hpa); err != nil {
		t.Fatal(err)
	}
	p = e.converged(t, e.update(t, p, withImage("count", "example/count:2")))
	consistently(t, "the HPA's replicas survive an update", 2*time.Second, func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 2 {
			return fmt.Errorf("count has %d replicas, the HPA (owners %v) set 2", replicasOf(sts), hpaManager)
		}
		return nil
	})

	// Back to fixed: the operator takes the field back, at the spec's count.
	p = e.converged(t, e.update(t, p, withReplicas("count", 2), func(p *v1alpha1.Pipeline) { entity(p, "count").Autoscaling = nil }))
	eventually(t, "the operator owns spec.replicas again", func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if !ownsReplicas(sts) || replicasOf(sts) != 2 {
			return fmt.Errorf("count has %d replicas, owners %v", replicasOf(sts), replicasManagers(sts))
		}
		return nil
	})
}

// TestAutoscaledEntityStartsAtMinReplicas: a new autoscaled entity's StatefulSet starts at
// minReplicas, zero included (KEDA raises it on lag), not at the API server's default of one,
// and stays there once the field is handed over.
func TestAutoscaledEntityStartsAtMinReplicas(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 0, 3))))
	eventually(t, "the operator hands spec.replicas over", func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if ownsReplicas(sts) {
			return fmt.Errorf("the operator still owns spec.replicas (%d)", replicasOf(sts))
		}
		return nil
	})
	consistently(t, "count stays at zero", 2*time.Second, func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 0 {
			return fmt.Errorf("count has %d replicas, minReplicas is 0", replicasOf(sts))
		}
		return nil
	})
}

// TestLeavingAutoscalingKeepsPods: an entity that stops being autoscaled without stating
// replicas takes spec.replicas back at the count the autoscaler had set, not at the default of
// one, and keeps it on later reconciles until the spec states replicas.
func TestLeavingAutoscalingKeepsPods(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 1, 3))))
	eventually(t, "handed over", func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if ownsReplicas(sts) {
			return errNotYet
		}
		return nil
	})
	e.scaleAsHPA(t, p, "count", 3)
	wantReplicas := func(what string, n int32, owned bool) {
		t.Helper()
		eventually(t, what, func() error {
			sts, err := e.statefulSet(p, "count")
			if err != nil {
				return err
			}
			if replicasOf(sts) != n || ownsReplicas(sts) != owned {
				return fmt.Errorf("count has %d replicas (operator owns: %t), want %d (%t)", replicasOf(sts), ownsReplicas(sts), n, owned)
			}
			return nil
		})
	}

	p = e.converged(t, e.update(t, p, func(p *v1alpha1.Pipeline) { entity(p, "count").Autoscaling = nil }))
	wantReplicas("the operator takes spec.replicas back at the autoscaler's 3", 3, true)
	p = e.converged(t, e.update(t, p, withImage("count", "example/count:2")))
	consistently(t, "the kept count survives later reconciles", 2*time.Second, func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 3 {
			return fmt.Errorf("count has %d replicas, it kept 3", replicasOf(sts))
		}
		return nil
	})
	p = e.converged(t, e.update(t, p, withReplicas("count", 1)))
	wantReplicas("stated replicas win", 1, true)
}
