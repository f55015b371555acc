//go:build cluster

package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// repoRoot is the checkout this test file is in.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// namespace creates a namespace of its own for one scenario and deletes it (with everything in
// it) when the scenario ends. labels are added to it (for example Pod Security levels).
func namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("e2e-%s-%d", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), time.Now().UnixNano()%100000)
	if len(name) > 63 {
		name = name[len(name)-63:]
		name = "e" + strings.TrimLeft(name[1:], "-")
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := env.c.Create(context.Background(), ns); err != nil {
		t.Fatalf("namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if t.Failed() {
			dumpNamespace(t, name)
		}
		// Pipelines first, so that the operator's finalizer runs while it still can.
		var pls v1alpha1.PipelineList
		if err := env.c.List(ctx, &pls, client.InNamespace(name)); err == nil {
			for i := range pls.Items {
				_ = env.c.Delete(ctx, &pls.Items[i])
			}
		}
		waitFor(t, 2*time.Minute, "pipelines deleted", func(ctx context.Context) error {
			var pls v1alpha1.PipelineList
			if err := env.c.List(ctx, &pls, client.InNamespace(name)); err != nil {
				return err
			}
			if len(pls.Items) > 0 {
				return fmt.Errorf("%d pipelines left", len(pls.Items))
			}
			return nil
		})
		runAfterNamespace(name)
		_ = env.c.Delete(ctx, ns)
	})
	return name
}

// dumpNamespace logs what a failed scenario left: pipelines' conditions, pods and their logs.
func dumpNamespace(t *testing.T, ns string) {
	ctx := context.Background()
	var pls v1alpha1.PipelineList
	if env.c.List(ctx, &pls, client.InNamespace(ns)) == nil {
		for _, p := range pls.Items {
			for _, c := range p.Status.Conditions {
				t.Logf("pipeline %s: %s=%s %s: %s", p.Name, c.Type, c.Status, c.Reason, c.Message)
			}
		}
	}
	pods, err := env.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range pods.Items {
		t.Logf("pod %s phase %s", p.Name, p.Status.Phase)
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			tail := int64(30)
			b, err := env.cs.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: &tail}).DoRaw(ctx)
			if err == nil {
				t.Logf("--- %s/%s:\n%s", p.Name, c.Name, b)
			}
		}
	}
}

// waitFor polls cond until it returns nil, failing the test after timeout with cond's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not after %s: %v", what, timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// pipelineFromFile reads a Pipeline manifest of the repository.
func pipelineFromFile(t *testing.T, path string) *v1alpha1.Pipeline {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var p v1alpha1.Pipeline
	if err := yaml.NewYAMLOrJSONDecoder(bufio.NewReader(f), 4096).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// strimziKafka points a Pipeline at the suite's Strimzi Kafka cluster in its namespace.
func strimziKafka(t *testing.T, ns string, p *v1alpha1.Pipeline) {
	t.Helper()
	strimziFor(t, ns)
	p.Spec.Kafka = v1alpha1.KafkaSpec{StrimziCluster: env.cluster}
}

// directKafka points a Pipeline at the broker with topics managed by the operator itself.
func directKafka(p *v1alpha1.Pipeline) {
	p.Spec.Kafka = v1alpha1.KafkaSpec{BootstrapServers: env.kafka, Topics: v1alpha1.TopicsDirect}
}

func create(t *testing.T, ns string, p *v1alpha1.Pipeline) *v1alpha1.Pipeline {
	t.Helper()
	p.Namespace = ns
	p.ResourceVersion = ""
	if err := env.c.Create(context.Background(), p); err != nil {
		t.Fatalf("create pipeline %s: %v", p.Name, err)
	}
	return p
}

func getPipeline(t *testing.T, ns, name string) *v1alpha1.Pipeline {
	t.Helper()
	var p v1alpha1.Pipeline
	if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// update applies mutate to the live Pipeline, retrying on conflicts.
func update(t *testing.T, ns, name string, mutate func(*v1alpha1.Pipeline)) {
	t.Helper()
	waitFor(t, 30*time.Second, "update pipeline "+name, func(ctx context.Context) error {
		var p v1alpha1.Pipeline
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		mutate(&p)
		return env.c.Update(ctx, &p)
	})
}

// waitReady waits until the Pipeline's Ready condition is True for its current generation.
func waitReady(t *testing.T, ns, name string, timeout time.Duration) *v1alpha1.Pipeline {
	t.Helper()
	var out v1alpha1.Pipeline
	waitFor(t, timeout, "pipeline "+name+" Ready", func(ctx context.Context) error {
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &out); err != nil {
			return err
		}
		c := meta.FindStatusCondition(out.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || out.Status.ObservedGeneration != out.Generation {
			return fmt.Errorf("ready condition %+v, observed generation %d of %d", c, out.Status.ObservedGeneration, out.Generation)
		}
		return nil
	})
	return &out
}

// topicOf is the Kafka topic of a stream, from the Pipeline's status.
func topicOf(t *testing.T, p *v1alpha1.Pipeline, stream string) string {
	t.Helper()
	for _, s := range p.Status.Streams {
		if s.Name == stream {
			return s.TopicName
		}
	}
	t.Fatalf("pipeline %s has no stream %q in its status: %+v", p.Name, stream, p.Status.Streams)
	return ""
}

// groupOf is the consumer group of an entity: the StatefulSet's ConfigMap says it to the
// executors; the suite reads the same place.
func statefulSet(t *testing.T, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &sts); err != nil {
		t.Fatal(err)
	}
	return &sts
}

func kafkaClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(strings.Split(env.kafka, ",")...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce writes records (key i, value prefix-i) synchronously and returns when all are acked.
func produce(t *testing.T, topic string, records []*kgo.Record) {
	t.Helper()
	cl := kafkaClient(t, kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("produce to %s: %v", topic, err)
	}
}

func lines(values ...string) []*kgo.Record {
	out := make([]*kgo.Record, len(values))
	for i, v := range values {
		out[i] = &kgo.Record{Value: []byte(v)}
	}
	return out
}

// consumeUntil reads the topic from the start with read_committed until done says the records
// read so far are enough, and returns them.
func consumeUntil(t *testing.T, topic string, timeout time.Duration, done func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []*kgo.Record
	for !done(got) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: %d records after %s, not yet what the scenario waits for", topic, len(got), timeout)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r) })
	}
	return got
}

// consumeIdle reads the whole topic with read_committed, until no record arrived for idle.
func consumeIdle(t *testing.T, topic string, idle time.Duration) []*kgo.Record {
	t.Helper()
	cl := kafkaClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))
	var got []*kgo.Record
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), idle)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { got = append(got, r); n++ })
		if n == 0 && ctx.Err() != nil {
			return got
		}
	}
	t.Fatalf("consume %s: records kept coming for 5 minutes", topic)
	return nil
}

// endOffsets sums the committed-visible end offsets of a topic (read_committed high watermarks).
func endOffsets(t *testing.T, topic string) int64 {
	t.Helper()
	adm := kadm.NewClient(kafkaClient(t))
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// groupLag is the total lag of a consumer group on a topic: end offsets less the group's
// committed offsets (a partition without a commit counts from 0). It reads offsets rather than
// describing the group, so it works for classic and KIP-848 groups alike.
func groupLag(ctx context.Context, t *testing.T, group, topic string) (int64, error) {
	adm := kadm.NewClient(kafkaClient(t))
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var total int64
	var ferr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			ferr = o.Err
			return
		}
		c, ok := committed.Lookup(topic, o.Partition)
		switch {
		case ok && c.Err != nil:
			ferr = c.Err
		case ok && c.At >= 0:
			total += o.Offset - c.At
		default:
			total += o.Offset
		}
	})
	return total, ferr
}

// pods lists the running pods of an entity's StatefulSet.
func pods(t *testing.T, ns string, sts *appsv1.StatefulSet) []corev1.Pod {
	t.Helper()
	sel := metav1.FormatLabelSelector(sts.Spec.Selector)
	list, err := env.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// restarts sums the restart counts of every container of the pods.
func restarts(ps []corev1.Pod) map[string]int32 {
	out := map[string]int32{}
	for _, p := range ps {
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			out[p.Name+"/"+s.Name] = s.RestartCount
		}
	}
	return out
}

// podMetrics reads a pod's Prometheus metrics through the API server's pod proxy.
func podMetrics(ctx context.Context, ns, pod string, port int) (string, error) {
	b, err := env.cs.CoreV1().RESTClient().Get().Namespace(ns).Resource("pods").
		Name(fmt.Sprintf("%s:%d", pod, port)).SubResource("proxy").Suffix("metrics").DoRaw(ctx)
	return string(b), err
}

func notFound(err error) bool { return apierrors.IsNotFound(err) }
