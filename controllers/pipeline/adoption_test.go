package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// withAdoptedLines points the stream lines at an existing topic.
func withAdoptedLines(topic string) modifier {
	return func(p *v1alpha1.Pipeline) {
		s := streamOf(p, "lines")
		s.TopicName = topic
		s.Partitions = 0 // the CRD default (1) applies: the user did not restate the topic's size
	}
}

// executorInputs reads the inputs executor.json gives an entity.
func (e *env) executorInputs(p *v1alpha1.Pipeline, ent string) ([]config.Input, error) {
	cm, err := e.configMap(p, ent)
	if err != nil {
		return nil, err
	}
	var ex config.Executor
	if err := json.Unmarshal([]byte(cm.Data[config.FileName]), &ex); err != nil {
		return nil, err
	}
	return ex.Inputs, nil
}

func (e *env) setKafkaTopicReady(t *testing.T, ns, name string, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	eventually(t, "set Ready of KafkaTopic "+name, func() error {
		kt, err := e.get(e.gvk("KafkaTopic"), ns, name)
		if err != nil {
			return err
		}
		_ = unstructured.SetNestedSlice(kt.Object, []any{map[string]any{
			"type": "Ready", "status": string(status), "reason": reason, "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z",
		}}, "status", "conditions")
		return e.client.Status().Update(context.Background(), kt)
	})
}

// TestAdoptStrimziTopic: a stream pointed at an existing topic under Strimzi. The topic has 8
// partitions, managed by a KafkaTopic of its own. The Pipeline's KafkaTopic for it tells the
// Topic Operator to leave it alone (so its configuration is not reset to an empty spec), its
// dead-letter topic and the executors get the 8 partitions, the Topic Operator's refusal of a
// KafkaTopic reaches the Pipeline's condition with its reason, and deletionPolicy: Delete still
// deletes the topic: the KafkaTopic is handed back to the Topic Operator first, and deleted once
// the Topic Operator holds it with its finalizer.
func TestAdoptStrimziTopic(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)

	legacy := &unstructured.Unstructured{}
	legacy.SetGroupVersionKind(e.gvk("KafkaTopic"))
	legacy.SetNamespace(ns)
	legacy.SetName("legacy-events")
	legacy.SetLabels(map[string]string{strimzi.LabelCluster: "kafka"})
	legacy.Object["spec"] = map[string]any{
		"topicName": "legacy.events", "partitions": int64(8),
		"config": map[string]any{"cleanup.policy": "compact", "retention.ms": "1234"},
	}
	if err := e.client.Create(context.Background(), legacy); err != nil {
		t.Fatal(err)
	}

	p := e.converged(t, e.create(t, newPipeline(ns, withAdoptedLines("legacy.events"), withDeletionPolicy("lines", v1alpha1.DeletionDelete))))
	eventually(t, "the adopted topic's size reaches the dead-letter topic and the executors", func() error {
		kt, err := e.kafkaTopic(p, "lines")
		if err != nil {
			return err
		}
		if kt.GetAnnotations()[strimzi.AnnotationManaged] != "false" {
			return fmt.Errorf("the adopted topic's KafkaTopic is managed by Strimzi: %v", kt.GetAnnotations())
		}
		dlq, err := e.get(e.gvk("KafkaTopic"), ns, render.DeadLetterKafkaTopicName(p, "lines"))
		if err != nil {
			return err
		}
		if n, _, _ := unstructured.NestedInt64(dlq.Object, "spec", "partitions"); n != 8 {
			return fmt.Errorf("dead-letter topic has %d partitions, the adopted topic 8", n)
		}
		in, err := e.executorInputs(p, "split")
		if err != nil {
			return err
		}
		if len(in) != 1 || in[0].Partitions != 8 {
			return fmt.Errorf("executor.json inputs %+v, want 8 partitions", in)
		}
		return nil
	})

	e.setKafkaTopicReady(t, ns, render.DeadLetterKafkaTopicName(p, "lines"), metav1.ConditionFalse, "NotSupported", "Decreasing partitions not supported")
	p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonTopicsFailed)
	if msg := condOf(p, v1alpha1.ConditionTopicsReady).Message; !strings.Contains(msg, "NotSupported: Decreasing partitions not supported") {
		t.Errorf("TopicsReady should carry the Topic Operator's reason: %q", msg)
	}

	// Deleting: the adopted topic's KafkaTopic is handed back, and kept until the Topic
	// Operator's finalizer would make its deletion delete the topic.
	if err := e.client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	ktName := render.KafkaTopicName(p, "lines")
	eventually(t, "the adopted topic is handed back to the Topic Operator", func() error {
		kt, err := e.get(e.gvk("KafkaTopic"), ns, ktName)
		if err != nil {
			return err
		}
		if kt.GetAnnotations()[strimzi.AnnotationManaged] != "true" {
			return fmt.Errorf("annotations %v", kt.GetAnnotations())
		}
		if kt.GetDeletionTimestamp() != nil {
			return fmt.Errorf("deleted before the Topic Operator manages it: the Kafka topic would be kept")
		}
		return nil
	})
	// The Topic Operator takes it: its finalizer.
	eventually(t, "add the Topic Operator's finalizer", func() error {
		kt, err := e.get(e.gvk("KafkaTopic"), ns, ktName)
		if err != nil {
			return err
		}
		kt.SetFinalizers(append(kt.GetFinalizers(), strimzi.FinalizerTopicOperator))
		return e.client.Update(context.Background(), kt)
	})
	eventually(t, "the adopted KafkaTopic is deleted", func() error {
		kt, err := e.get(e.gvk("KafkaTopic"), ns, ktName)
		if err != nil {
			return err
		}
		if kt.GetDeletionTimestamp() == nil {
			return errNotYet
		}
		return nil
	})
	e.releaseFinalizer(t, ns, ktName, strimzi.FinalizerTopicOperator)
	if _, err := e.get(e.gvk("KafkaTopic"), ns, legacy.GetName()); err != nil {
		t.Errorf("the user's own KafkaTopic must stay: %v", err)
	}
}

func (e *env) releaseFinalizer(t *testing.T, ns, name, finalizer string) {
	t.Helper()
	eventually(t, "remove finalizer "+finalizer, func() error {
		kt, err := e.get(e.gvk("KafkaTopic"), ns, name)
		if err != nil {
			return gone(kt, err)
		}
		var keep []string
		for _, f := range kt.GetFinalizers() {
			if f != finalizer {
				keep = append(keep, f)
			}
		}
		kt.SetFinalizers(keep)
		return e.client.Update(context.Background(), kt)
	})
}

// TestAdoptDirectTopic: in Direct mode the operator reads an adopted topic's partitions from
// Kafka, creates its dead-letter topic with as many, tells the executors, and leaves the topic's
// configuration as it was.
func TestAdoptDirectTopic(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bootstrap := strings.Join(cluster.ListenAddrs(), ",")
	testAdoptDirectTopic(t, bootstrap)
}

// TestAdoptDirectTopicRealBroker is TestAdoptDirectTopic against the real broker in
// MILLRACE_KAFKA_BOOTSTRAP (hack/test.sh starts one); skipped when it is unset.
func TestAdoptDirectTopicRealBroker(t *testing.T) {
	bootstrap := os.Getenv("MILLRACE_KAFKA_BOOTSTRAP")
	if bootstrap == "" {
		t.Skip("MILLRACE_KAFKA_BOOTSTRAP is unset: no real broker (run hack/kafka.sh start)")
	}
	testAdoptDirectTopic(t, bootstrap)
}

func testAdoptDirectTopic(t *testing.T, bootstrap string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	e := envV1
	ns := e.namespace(t)
	// Unique per run: a real broker keeps topics between runs.
	topic := "legacy.events." + ns
	retention := "1234"
	if resp, err := adm.CreateTopic(context.Background(), 8, -1, map[string]*string{"retention.ms": &retention}, topic); err != nil || resp.Err != nil {
		t.Fatalf("create topic %s: %v %v", topic, err, resp.Err)
	}
	admin := topics.NewAdmin()
	defer admin.Close()

	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withDirect(bootstrap), withAdoptedLines(topic))))
	eventually(t, "dead-letter topic and executors get the adopted topic's 8 partitions", func() error {
		got, err := admin.Exists(context.Background(), topics.Cluster{Bootstrap: bootstrap}, render.DeadLetterTopicName(topic))
		if err != nil {
			return err
		}
		if n := got[render.DeadLetterTopicName(topic)]; n != 8 {
			return fmt.Errorf("dead-letter topic has %d partitions", n)
		}
		in, err := e.executorInputs(p, "split")
		if err != nil {
			return err
		}
		if len(in) != 1 || in[0].Partitions != 8 {
			return fmt.Errorf("executor.json inputs %+v", in)
		}
		return nil
	})
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	rc, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := rc.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Configs {
		if c.Key == "retention.ms" && (c.Value == nil || *c.Value != retention) {
			t.Errorf("the adopted topic's retention.ms changed to %v", c.MaybeValue())
		}
	}
}
