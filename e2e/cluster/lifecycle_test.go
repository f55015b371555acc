//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
)

// waitLagZero waits until the entity's group has consumed and committed everything of topic.
func waitLagZero(t *testing.T, group, topic string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, "lag of "+group+" back to 0", func(ctx context.Context) error {
		lag, err := groupLag(ctx, t, group, topic)
		if err != nil {
			return err
		}
		if lag != 0 {
			return fmt.Errorf("lag %d", lag)
		}
		return nil
	})
}

// exactlyOnce checks that out holds each of the values exactly once.
func exactlyOnce(t *testing.T, out string, values map[string]bool) {
	t.Helper()
	rs := consumeIdle(t, out, 5*time.Second)
	count := map[string]int{}
	for _, r := range rs {
		count[string(r.Value)]++
	}
	var missing, dup int
	for v := range values {
		switch count[v] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	if missing > 0 || dup > 0 || len(rs) != len(values) {
		t.Errorf("output: %d records for %d inputs, %d missing, %d duplicated", len(rs), len(values), missing, dup)
	}
}

func valuesOf(rs []*kgo.Record) map[string]bool {
	m := map[string]bool{}
	for _, r := range rs {
		m[string(r.Value)] = true
	}
	return m
}

// TestGracefulTermination deletes an executor pod while records flow. The kubelet stops the
// function first and the native sidecars after it; the pod drains and commits within its grace
// period: every container exits 0 (none is killed at the end of the grace period), the function
// stops before the I/O sidecar, and the output holds every input exactly once.
func TestGracefulTermination(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("term", 2, v1alpha1.Entity{Guarantee: v1alpha1.ExactlyOnce})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	pod := render.StatefulSetName(p, "id") + "-0"

	first := numbered("g", 0, 500)
	produce(t, in, first)
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool { return len(rs) > 0 })
	second := numbered("g", 500, 500)
	produce(t, in, second)

	live, err := env.cs.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := env.cs.CoreV1().Pods(ns).Watch(context.Background(), metav1.ListOptions{
		FieldSelector: "metadata.name=" + pod, ResourceVersion: live.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Follow the function's and the I/O sidecar's logs until their containers exit.
	logs := map[string]*followed{}
	for _, c := range []string{render.ContainerFunction, render.ContainerIO} {
		logs[c] = follow(ns, pod, c)
	}
	start := time.Now()
	if err := env.cs.CoreV1().Pods(ns).Delete(context.Background(), pod, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &live.UID}}); err != nil {
		t.Fatal(err)
	}
	last := live
	var took time.Duration
	timeout := time.After(2 * time.Minute)
watching:
	for {
		select {
		case ev := <-w.ResultChan():
			if pp, ok := ev.Object.(*corev1.Pod); ok && pp.UID == live.UID {
				last = pp
				if ev.Type == watch.Deleted {
					took = time.Since(start)
					break watching
				}
			}
		case <-timeout:
			t.Fatalf("pod %s not gone 2 minutes after its deletion", pod)
		}
	}
	// The StatefulSet controller makes the pod anew: the time from its creation to Ready.
	var created time.Time
readying:
	for {
		select {
		case ev := <-w.ResultChan():
			pp, ok := ev.Object.(*corev1.Pod)
			if !ok || pp.UID == live.UID {
				continue
			}
			if created.IsZero() {
				created = time.Now()
			}
			if podReady(pp) {
				record(t, "executor pod: created to Ready (function, I/O and state sidecars)", time.Since(created), "watch events, ExactlyOnce identity")
				break readying
			}
		case <-timeout:
			t.Fatalf("pod %s not made anew and Ready within 2 minutes", pod)
		}
	}
	grace := ptr.Deref(live.Spec.TerminationGracePeriodSeconds, 30)
	record(t, "graceful termination: pod deletion to pod gone", took, fmt.Sprintf("terminationGracePeriodSeconds %d", grace))

	finished := map[string]time.Time{}
	for _, s := range append(last.Status.InitContainerStatuses, last.Status.ContainerStatuses...) {
		term := s.State.Terminated
		if term == nil {
			t.Errorf("container %s: no terminated state in the pod's last status", s.Name)
			continue
		}
		if term.ExitCode != 0 {
			t.Errorf("container %s exited %d (%s): not a clean drain within the grace period", s.Name, term.ExitCode, term.Reason)
		}
		finished[s.Name] = term.FinishedAt.Time
	}
	if f, io := finished[render.ContainerFunction], finished[render.ContainerIO]; !f.IsZero() && !io.IsZero() && io.Before(f) {
		t.Errorf("the I/O sidecar finished (%s) before the function (%s)", io, f)
	}
	// The function's SDK did not have to cut the session off at its hard stop: the pair drained.
	if fn := logs[render.ContainerFunction].text(); strings.Contains(fn, "stopping hard") {
		t.Errorf("the function hit its hard stop instead of draining with the I/O sidecar:\n%s", fn)
	}
	if io := logs[render.ContainerIO].text(); strings.Contains(io, "drain exceeded") {
		t.Errorf("the I/O sidecar's drain exceeded its timeout:\n%s", io)
	}
	waitReady(t, ns, p.Name, 2*time.Minute)
	waitLagZero(t, render.GroupID(p, "id"), in, 3*time.Minute)
	exactlyOnce(t, out, valuesOf(append(first, second...)))
}

// followed is the log of a container, followed until the container exits.
type followed struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func follow(ns, pod, container string) *followed {
	f := &followed{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		since := int64(1)
		rc, err := env.cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, SinceSeconds: &since}).Stream(context.Background())
		if err != nil {
			f.mu.Lock()
			fmt.Fprintf(&f.buf, "(log stream: %v)", err)
			f.mu.Unlock()
			return
		}
		defer rc.Close()
		b := make([]byte, 4096)
		for {
			n, err := rc.Read(b)
			f.mu.Lock()
			f.buf.Write(b[:n])
			f.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return f
}

// text waits (a little) for the container's log to end and returns it.
func (f *followed) text() string {
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.buf.String()
}

// TestSuspendResume: a suspended Pipeline runs no executor pods and consumes nothing, keeping its
// topics, offsets and what was produced meanwhile; resumed, it processes all of it, exactly once.
func TestSuspendResume(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("susp", 2, v1alpha1.Entity{Replicas: ptr.To[int32](2), Guarantee: v1alpha1.ExactlyOnce})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	group := render.GroupID(p, "id")
	sts := render.StatefulSetName(p, "id")
	before := numbered("s", 0, 300)
	produce(t, in, before)
	waitLagZero(t, group, in, 2*time.Minute)

	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) { p.Spec.Suspend = true })
	waitFor(t, 2*time.Minute, "no executor pod while suspended", func(ctx context.Context) error {
		if n := len(pods(t, ns, statefulSet(t, ns, sts))); n != 0 {
			return fmt.Errorf("%d pods", n)
		}
		return nil
	})
	during := numbered("s", 300, 300)
	produce(t, in, during)
	time.Sleep(5 * time.Second)
	if lag, err := groupLag(context.Background(), t, group, in); err != nil || lag != int64(len(during)) {
		t.Fatalf("while suspended: lag %d (%v), want %d: nothing may be consumed", lag, err, len(during))
	}
	if n := len(pods(t, ns, statefulSet(t, ns, sts))); n != 0 {
		t.Fatalf("%d pods while suspended", n)
	}

	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) { p.Spec.Suspend = false })
	waitReady(t, ns, p.Name, 3*time.Minute)
	waitLagZero(t, group, in, 3*time.Minute)
	exactlyOnce(t, out, valuesOf(append(before, during...)))
}

// TestRollback: after an update, the rollback annotation (what `kubectl millrace rollback` sets)
// restores the previous revision's spec, and the running pods apply it.
func TestRollback(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("rb", 2, v1alpha1.Entity{Config: map[string]string{identity.StampKey: "rev1"}})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	rev1 := p.Status.CurrentRevision
	if rev1 == "" {
		t.Fatalf("no current revision in the status")
	}

	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) { p.Spec.Entities[0].Config[identity.StampKey] = "rev2" })
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	stampSeen(t, in, out, "rev2")

	// The revision number of rev1 from its ControllerRevision.
	var revs appsv1.ControllerRevisionList
	if err := env.c.List(context.Background(), &revs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var number int64
	for _, r := range revs.Items {
		if r.Name == rev1 {
			number = r.Revision
		}
	}
	if number == 0 {
		t.Fatalf("revision %s not among the ControllerRevisions %d", rev1, len(revs.Items))
	}
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[v1alpha1.AnnotationRollbackTo] = fmt.Sprint(number)
	})
	waitFor(t, time.Minute, "spec restored from revision "+fmt.Sprint(number), func(ctx context.Context) error {
		var live v1alpha1.Pipeline
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Name}, &live); err != nil {
			return err
		}
		if got := live.Spec.Entities[0].Config[identity.StampKey]; got != "rev1" {
			return fmt.Errorf("stamp %q", got)
		}
		return nil
	})
	waitReady(t, ns, p.Name, 3*time.Minute)
	stampSeen(t, in, out, "rev1")
}

// stampSeen produces records until an output carries the stamp.
func stampSeen(t *testing.T, in, out, stamp string) {
	t.Helper()
	next := 0
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool {
		for _, r := range rs {
			if stampOf(r) == stamp {
				return true
			}
		}
		produce(t, in, numbered("st-"+stamp, next, 2))
		next += 2
		time.Sleep(200 * time.Millisecond)
		return false
	})
}

// TestDeletionPolicy: deleting a Pipeline removes its executors (through the garbage
// collector) and the Kafka topics of streams with deletionPolicy Delete, and keeps the topics of
// Retain streams with their data.
func TestDeletionPolicy(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("del", 2, v1alpha1.Entity{})
	p.Spec.Streams[0].DeletionPolicy = v1alpha1.DeletionRetain
	p.Spec.Streams[1].DeletionPolicy = v1alpha1.DeletionDelete
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	produce(t, in, numbered("d", 0, 20))
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool { return len(rs) >= 20 })

	if err := env.c.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "pipeline and its StatefulSet gone", func(ctx context.Context) error {
		var live v1alpha1.Pipeline
		if err := env.c.Get(ctx, client.ObjectKeyFromObject(p), &live); !notFound(err) {
			return fmt.Errorf("pipeline still there (%v)", err)
		}
		var sts appsv1.StatefulSet
		if err := env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.StatefulSetName(p, "id")}, &sts); !notFound(err) {
			return fmt.Errorf("statefulset still there (%v)", err)
		}
		return nil
	})
	adm := kadm.NewClient(kafkaClient(t))
	waitFor(t, time.Minute, "the Delete stream's topic gone", func(ctx context.Context) error {
		td, err := adm.ListTopics(ctx, in, out)
		if err != nil {
			return err
		}
		if td.Has(out) {
			return fmt.Errorf("topic %s (Delete) still exists", out)
		}
		if !td.Has(in) {
			t.Fatalf("topic %s (Retain) was deleted", in)
		}
		return nil
	})
	if n := endOffsets(t, in); n < 20 {
		t.Errorf("the Retain topic %s holds %d records, want its 20", in, n)
	}
	_, _ = adm.DeleteTopics(context.Background(), in)
}

// TestOperatorKilledMidReconcile force-kills the operator's pod right after a Pipeline is
// created; the Deployment's next pod takes the leader lease and converges the Pipeline.
func TestOperatorKilledMidReconcile(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("opkill", 3, v1alpha1.Entity{Replicas: ptr.To[int32](2)})
	p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "second", Image: identityImage, Command: []string{"identity"},
		Inputs: []string{"out"}, Outputs: []string{"final"}})
	p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "final", Partitions: 3})
	directKafka(p)
	ops, err := env.cs.CoreV1().Pods(env.operatorN).List(context.Background(), metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	if err != nil || len(ops.Items) == 0 {
		t.Fatalf("operator pods: %v (%d)", err, len(ops.Items))
	}
	start := time.Now()
	create(t, ns, p)
	time.Sleep(300 * time.Millisecond)
	for _, op := range ops.Items {
		if err := env.cs.CoreV1().Pods(env.operatorN).Delete(context.Background(), op.Name,
			metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
			t.Fatal(err)
		}
	}
	p = waitReady(t, ns, p.Name, 4*time.Minute)
	record(t, "operator killed 0.3 s into a reconcile: create to Ready", time.Since(start), "leader lease 15 s")
	produce(t, topicOf(t, p, "in"), numbered("o", 0, 10))
	consumeUntil(t, topicOf(t, p, "final"), 2*time.Minute, func(rs []*kgo.Record) bool { return len(rs) >= 10 })
}
