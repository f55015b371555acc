package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
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
	got, err := admin.Exists(context.Background(), topics.Cluster{Bootstrap: bootstrap}, render.TopicName(p, "lines"))
	if err != nil || got[render.TopicName(p, "lines")] != 3 {
		t.Errorf("topic of lines on the Kafka from the status: %v %v", got, err)
	}
}

// TestListenerByAuthentication: the listener of a Strimzi Kafka is chosen by its authentication
// and TLS, not by its name. A scram-sha-512 Pipeline on a Kafka with a plain listener without
// authentication and a SCRAM listener over TLS gets the SCRAM listener, with TLS trusting the
// cluster CA (KEDA too); a Pipeline whose authentication no listener offers says so.
func TestListenerByAuthentication(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	kafka := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"kafka": map[string]any{"listeners": []any{
			map[string]any{"name": "plain", "port": int64(9092), "type": "internal", "tls": false},
			map[string]any{"name": "secure", "port": int64(9094), "type": "internal", "tls": true,
				"authentication": map[string]any{"type": "scram-sha-512"}},
			map[string]any{"name": "external", "port": int64(9095), "type": "route", "tls": true,
				"authentication": map[string]any{"type": "scram-sha-512"}},
		}}},
	}}
	kafka.SetGroupVersionKind(e.gvk("Kafka"))
	kafka.SetNamespace(ns)
	kafka.SetName("kafka")
	if err := e.client.Create(context.Background(), kafka); err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedSlice(kafka.Object, []any{
		map[string]any{"name": "plain", "bootstrapServers": "kafka-kafka-bootstrap:9092"},
		map[string]any{"name": "secure", "bootstrapServers": "kafka-kafka-bootstrap:9094"},
		map[string]any{"name": "external", "bootstrapServers": "kafka.apps.example.com:443"},
	}, "status", "listeners")
	if err := e.client.Status().Update(context.Background(), kafka); err != nil {
		t.Fatal(err)
	}

	scram := func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka = v1alpha1.KafkaSpec{StrimziCluster: "kafka", Authentication: &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}}
	}
	p := e.converged(t, e.create(t, newPipeline(ns, scram, withAutoscaling("count", 0, 3))))
	e.markTopicsReady(t, p) // the ScaledObject is created once its input topics are ready
	eventually(t, "executors use the SCRAM listener over TLS", func() error {
		cm, err := e.configMap(p, "split")
		if err != nil {
			return err
		}
		var ex config.Executor
		if err := json.Unmarshal([]byte(cm.Data[config.FileName]), &ex); err != nil {
			return err
		}
		if got := strings.Join(ex.Kafka.BootstrapServers, ","); got != "kafka-kafka-bootstrap:9094" {
			return fmt.Errorf("bootstrap %s, want the SCRAM listener kafka-kafka-bootstrap:9094", got)
		}
		if ex.Kafka.TLS == nil || ex.Kafka.TLS.CAFile == "" || ex.Kafka.SASL == nil {
			return fmt.Errorf("want SASL over TLS with the cluster CA: tls %+v sasl %+v", ex.Kafka.TLS, ex.Kafka.SASL)
		}
		so, err := e.get(gvkScaledObject, ns, render.ScaledObjectName(p, "count"))
		if err != nil {
			return err
		}
		triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
		if len(triggers) == 0 {
			return errors.New("no triggers")
		}
		md, _, _ := unstructured.NestedStringMap(triggers[0].(map[string]any), "metadata")
		if md["bootstrapServers"] != "kafka-kafka-bootstrap:9094" || md["tls"] != "enable" || md["sasl"] != "scram_sha512" {
			return fmt.Errorf("KEDA's trigger: %v", md)
		}
		return nil
	})

	tlsAuth := e.create(t, newPipeline(ns, named("certs"), func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka = v1alpha1.KafkaSpec{StrimziCluster: "kafka", Authentication: &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthTLS}}
	}))
	tlsAuth = e.wantCondition(t, tlsAuth, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonBootstrapUnknown)
	if msg := condOf(tlsAuth, v1alpha1.ConditionTopicsReady).Message; !strings.Contains(msg, `no listener with authentication "tls"`) {
		t.Errorf("the condition should say no listener fits: %q", msg)
	}
}
