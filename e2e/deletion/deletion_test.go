//go:build e2e

// Scenario: deleting a Pipeline removes everything it runs, through the real garbage collector,
// and deletes Kafka data only for streams that say deletionPolicy: Delete.
//
// Strimzi's topic operator is not running here, so a small stand-in plays its documented part
// (strimzi-kafka-operator, topic-operator BatchingTopicController): it puts its finalizer on
// every KafkaTopic, and when one is deleted it deletes the Kafka topic unless the KafkaTopic is
// annotated strimzi.io/managed: "false", in which case the topic and its data stay.
package deletion

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/testenv"
	"github.com/millrace-dev/millrace/e2e/framework"
)

const strimziFinalizer = "strimzi.io/topic-operator"

// topicOperator is the stand-in for Strimzi's Unidirectional Topic Operator.
type topicOperator struct {
	c  client.Client
	ns string

	mu sync.Mutex
	// fate records, per Kafka topic, what Strimzi would have done on deletion.
	fate map[string]string
}

func (o *topicOperator) run(ctx context.Context) {
	for ctx.Err() == nil {
		list := kafkaTopicList()
		if err := o.c.List(ctx, list, client.InNamespace(o.ns)); err == nil {
			for i := range list.Items {
				o.handle(ctx, &list.Items[i])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (o *topicOperator) handle(ctx context.Context, kt *strimzi.KafkaTopic) {
	kt.SetGroupVersionKind(strimzi.V1.WithKind("KafkaTopic"))
	if kt.DeletionTimestamp == nil {
		if controllerutil.AddFinalizer(kt, strimziFinalizer) {
			_ = o.c.Update(ctx, kt)
		}
		return
	}
	fate := "deleted"
	if kt.Annotations["strimzi.io/managed"] == "false" {
		fate = "retained"
	}
	if controllerutil.RemoveFinalizer(kt, strimziFinalizer) {
		if err := o.c.Update(ctx, kt); err == nil {
			o.mu.Lock()
			o.fate[kt.Spec.TopicName] = fate
			o.mu.Unlock()
		}
	}
}

// kafkaTopicList is an empty list of v1 KafkaTopics: the typed subset is registered under v1 and
// v1beta2, so the version must be named.
func kafkaTopicList() *strimzi.KafkaTopicList {
	l := &strimzi.KafkaTopicList{}
	l.SetGroupVersionKind(strimzi.V1.WithKind("KafkaTopicList"))
	return l
}

func (o *topicOperator) fateOf(topic string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fate[topic]
}

func TestDeletePipeline(t *testing.T) {
	// Setup.
	cluster := framework.Setup(t, framework.Options{
		Options:     testenv.Options{Strimzi: testenv.StrimziV1},
		Controllers: []string{"garbagecollector", "statefulset"},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "deletion"}}
	if err := cluster.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	uto := &topicOperator{c: cluster.Client, ns: ns.Name, fate: map[string]string{}}
	go uto.run(ctx)

	p := &v1alpha1.Pipeline{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: ns.Name},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "my-cluster", BootstrapServers: "my-cluster-kafka-bootstrap:9092"},
			Streams: []v1alpha1.Stream{
				{Name: "kept", Partitions: 2, DeletionPolicy: v1alpha1.DeletionRetain},
				{Name: "dropped", Partitions: 2, DeletionPolicy: v1alpha1.DeletionDelete},
			},
			Entities: []v1alpha1.Entity{{
				Name: "enrich", Image: "example.com/enrich:v1", Inputs: []string{"kept"}, Outputs: []string{"dropped"},
				Replicas: ptr.To[int32](1),
			}},
		},
	}
	if err := cluster.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	sts := client.ObjectKey{Namespace: ns.Name, Name: render.StatefulSetName(p, "enrich")}
	cm := client.ObjectKey{Namespace: ns.Name, Name: render.ConfigMapName(p, "enrich")}
	svc := client.ObjectKey{Namespace: ns.Name, Name: render.ServiceName(p, "enrich")}
	pod := client.ObjectKey{Namespace: ns.Name, Name: sts.Name + "-0"}
	keptTopic, droppedTopic := render.TopicName(p, "kept"), render.TopicName(p, "dropped")

	// Assess: the operator runs the Pipeline, and the real StatefulSet controller makes its pod.
	framework.Eventually(t, 2*time.Minute, "the executor pod is created", func(ctx context.Context) error {
		if err := cluster.OperatorRunning(); err != nil {
			return err
		}
		return cluster.Client.Get(ctx, pod, &corev1.Pod{})
	})
	framework.Eventually(t, time.Minute, "Strimzi's stand-in holds every KafkaTopic", func(ctx context.Context) error {
		list := kafkaTopicList()
		if err := cluster.Client.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			return err
		}
		if len(list.Items) < 3 { // kept, dropped, and kept's dead-letter topic
			return fmt.Errorf("%d KafkaTopics", len(list.Items))
		}
		for _, kt := range list.Items {
			if !controllerutil.ContainsFinalizer(&kt, strimziFinalizer) {
				return fmt.Errorf("KafkaTopic %s has no finalizer yet", kt.Name)
			}
		}
		return nil
	})

	// Assess: delete the Pipeline.
	if err := cluster.Client.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 2*time.Minute, "the Pipeline is gone", func(ctx context.Context) error {
		err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.Pipeline{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
	gone := func(key client.ObjectKey, obj client.Object) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			err := cluster.Client.Get(ctx, key, obj)
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("%T %s still exists (err %v)", obj, key, err)
		}
	}
	// The garbage collector, not the operator, removes these: they are owned by the Pipeline.
	framework.Eventually(t, 2*time.Minute, "the garbage collector deletes the StatefulSet", gone(sts, &appsv1.StatefulSet{}))
	framework.Eventually(t, time.Minute, "the garbage collector deletes the ConfigMap", gone(cm, &corev1.ConfigMap{}))
	framework.Eventually(t, time.Minute, "the garbage collector deletes the Service", gone(svc, &corev1.Service{}))
	framework.Eventually(t, time.Minute, "the garbage collector deletes the pod", gone(pod, &corev1.Pod{}))
	framework.Eventually(t, time.Minute, "the garbage collector deletes the revisions", func(ctx context.Context) error {
		var revs appsv1.ControllerRevisionList
		if err := cluster.Client.List(ctx, &revs, client.InNamespace(ns.Name)); err != nil {
			return err
		}
		if len(revs.Items) > 0 {
			return fmt.Errorf("%d ControllerRevisions left", len(revs.Items))
		}
		return nil
	})

	// Assess: Kafka data goes only where the stream said Delete.
	framework.Eventually(t, time.Minute, "Strimzi's stand-in released every KafkaTopic", func(ctx context.Context) error {
		for _, topic := range []string{keptTopic, droppedTopic, render.DeadLetterTopicName(keptTopic)} {
			if uto.fateOf(topic) == "" {
				return fmt.Errorf("topic %s not released yet", topic)
			}
		}
		return nil
	})
	if got := uto.fateOf(keptTopic); got != "retained" {
		t.Errorf("stream kept (deletionPolicy Retain): Strimzi would have %s topic %s; want retained", got, keptTopic)
	}
	if got := uto.fateOf(render.DeadLetterTopicName(keptTopic)); got != "retained" {
		t.Errorf("dead-letter topic of kept (Retain): Strimzi would have %s it; want retained", got)
	}
	if got := uto.fateOf(droppedTopic); got != "deleted" {
		t.Errorf("stream dropped (deletionPolicy Delete): Strimzi would have %s topic %s; want deleted", got, droppedTopic)
	}
	if err := cluster.OperatorRunning(); err != nil {
		t.Error(err)
	}
	// Teardown runs through t.Cleanup.
}
