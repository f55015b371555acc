package pipeline

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestBootstrapFromStrimziKafka: the Kafka address comes from the named Strimzi Kafka's status
// listeners; the Pipeline waits (KafkaNotFound, then BootstrapAddressUnknown) until it is there
// and proceeds by itself when the Kafka's status changes.
func TestBootstrapFromStrimziKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bootstrap := strings.Join(cluster.ListenAddrs(), ",")

	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.create(t, newPipeline(ns, func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka = v1alpha1.KafkaSpec{StrimziCluster: "kafka", Topics: v1alpha1.TopicsDirect}
	}))
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonKafkaNotFound)

	kafka := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"kafka": map[string]any{"listeners": []any{
			map[string]any{"name": "plain", "port": int64(9092), "type": "internal", "tls": false},
		}}},
	}}
	kafka.SetGroupVersionKind(e.gvk("Kafka"))
	kafka.SetNamespace(ns)
	kafka.SetName("kafka")
	if err := e.client.Create(context.Background(), kafka); err != nil {
		t.Fatal(err)
	}
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapUnknown)

	_ = unstructured.SetNestedSlice(kafka.Object, []any{
		map[string]any{"name": "tls", "bootstrapServers": "wrong:9093"},
		map[string]any{"name": "plain", "bootstrapServers": bootstrap},
	}, "status", "listeners")
	if err := e.client.Status().Update(context.Background(), kafka); err != nil {
		t.Fatal(err)
	}
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	admin := topics.NewAdmin()
	defer admin.Close()
	got, err := admin.Exists(context.Background(), bootstrap, render.TopicName(p, "lines"))
	if err != nil || got[render.TopicName(p, "lines")] != 3 {
		t.Errorf("topic of lines on the Kafka from the status: %v %v", got, err)
	}
}
