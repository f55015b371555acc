package pipeline

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestAutoscalingWithAuthentication: on a cluster that requires scram-sha-512, KEDA can only read
// the consumer lag with the executors' credentials, so an autoscaled entity gets a
// TriggerAuthentication (and the ConfigMap with the KafkaUser's name it reads), both owned by the
// Pipeline and pruned once nothing is autoscaled.
func TestAutoscalingWithAuthentication(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	scram := func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
	}
	p := e.create(t, newPipeline(ns, scram, withAutoscaling("split", 0, 2)))
	p = e.converged(t, p)
	e.markTopicsReady(t, p) // the ScaledObject waits for its input topics

	gvkAuth := schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}
	auth, err := e.get(gvkAuth, ns, render.TriggerAuthenticationName(p))
	if err != nil {
		t.Fatalf("TriggerAuthentication: %v", err)
	}
	if !metav1.IsControlledBy(auth, p) {
		t.Errorf("TriggerAuthentication owners: %v", auth.GetOwnerReferences())
	}
	// Created by the reconcile that sees the topics ready.
	var so *unstructured.Unstructured
	eventually(t, "ScaledObject created once its input topics are ready", func() error {
		var err error
		so, err = e.get(gvkScaledObject, ns, render.ScaledObjectName(p, "split"))
		return err
	})
	triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
	if len(triggers) == 0 {
		t.Fatalf("ScaledObject has no triggers")
	}
	for _, tr := range triggers {
		m := tr.(map[string]any)
		ref, _ := m["authenticationRef"].(map[string]any)
		if ref["name"] != auth.GetName() {
			t.Errorf("trigger %v does not reference the TriggerAuthentication %s", m["name"], auth.GetName())
		}
		if md, _ := m["metadata"].(map[string]any); md["sasl"] != "scram_sha512" {
			t.Errorf("trigger metadata sasl = %v, want scram_sha512", md["sasl"])
		}
	}
	var cm corev1.ConfigMap
	if err := e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: render.KafkaClientConfigMapName(p)}, &cm); err != nil {
		t.Fatalf("kafka-client ConfigMap: %v", err)
	}
	if cm.Data["username"] != render.KafkaUserName(p) {
		t.Errorf("kafka-client username = %q, want the KafkaUser's name %q", cm.Data["username"], render.KafkaUserName(p))
	}

	// Back to fixed replicas: KEDA no longer needs credentials, and both objects are pruned.
	p = e.update(t, p, func(p *v1alpha1.Pipeline) {
		ent := entity(p, "split")
		ent.Autoscaling, ent.Replicas = nil, ptrTo[int32](1)
	})
	eventually(t, "the TriggerAuthentication is pruned", func() error {
		return gone(e.get(gvkAuth, ns, render.TriggerAuthenticationName(p)))
	})
	eventually(t, "the kafka-client ConfigMap is pruned", func() error {
		cm := &corev1.ConfigMap{}
		return gone(cm, e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: render.KafkaClientConfigMapName(p)}, cm))
	})
}
