package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// retireSidecars answers for the I/O sidecars of pods envtest does not run, with whatever
// status the test sets per pod.
type retireSidecars struct {
	mu     sync.Mutex
	status map[string]SidecarStatus
}

func (f *retireSidecars) set(pod string, st SidecarStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[pod] = st
}

func (f *retireSidecars) Probe(_ context.Context, pod *corev1.Pod) (SidecarStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.status[pod.Name]
	if !ok {
		return SidecarStatus{}, errors.New("connection refused")
	}
	return st, nil
}

func withRemoval(ent string, drain bool, group v1alpha1.ConsumerGroupPolicy) modifier {
	return func(p *v1alpha1.Pipeline) {
		entity(p, ent).Removal = &v1alpha1.RemovalSpec{Drain: drain, ConsumerGroup: group}
	}
}

func withScram(p *v1alpha1.Pipeline) {
	p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
}

// userACL returns the operations the Pipeline's KafkaUser grants on a resource, nil if none.
func (e *env) userACL(t *testing.T, p *v1alpha1.Pipeline, kind, name string) ([]string, error) {
	t.Helper()
	u, err := e.get(e.gvk("KafkaUser"), p.Namespace, render.KafkaUserName(p))
	if err != nil {
		return nil, err
	}
	acls, _, _ := unstructured.NestedSlice(u.Object, "spec", "authorization", "acls")
	for _, a := range acls {
		m, _ := a.(map[string]any)
		res, _ := m["resource"].(map[string]any)
		if res["type"] == kind && res["name"] == name {
			ops, _, _ := unstructured.NestedStringSlice(m, "operations")
			return ops, nil
		}
	}
	return nil, nil
}

// retireSection reads the retire section of an entity's executor.json.
func (e *env) retireSection(p *v1alpha1.Pipeline, ent string) (*config.Retire, string, error) {
	cm, err := e.configMap(p, ent)
	if err != nil {
		return nil, "", err
	}
	cfg, err := config.Parse([]byte(cm.Data[config.FileName]))
	if err != nil {
		return nil, "", err
	}
	return cfg.Retire, config.Digest([]byte(cm.Data[config.FileName])), nil
}

// TestRetireRemovedEntity: an entity removed with removal {drain: true, consumerGroup: Delete}
// is retired before its children go. Its ScaledObject goes and its StatefulSet is scaled to one
// pod; its ConfigMap gains a retire section whose since is set once; the KafkaTopic of the
// stream it wrote (removed in the same change) and its ACLs stay; the children stay while the
// sidecars report Draining and Drained, and go once one reports Deleted, the topic and ACLs
// after them.
func TestRetireRemovedEntity(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	sidecars := &retireSidecars{status: map[string]SidecarStatus{}}
	clock := &fakeClock{now: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	e.startOperator(t, ns, func(o *Options) { o.ConfigProber, o.Clock = sidecars, clock.Now })
	p := e.converged(t, e.create(t, newPipeline(ns, withScram, withSumEntity(), withAutoscaling("sum", 0, 2),
		withRemoval("sum", true, v1alpha1.ConsumerGroupDelete))))
	e.markTopicsReady(t, p)
	eventually(t, "sum's ScaledObject exists", func() error {
		_, err := e.get(gvkScaledObject, ns, render.ScaledObjectName(p, "sum"))
		return err
	})
	sts, err := e.statefulSet(p, "sum")
	if err != nil {
		t.Fatal(err)
	}
	if sts.Annotations[render.AnnotationRemoval] == "" || sts.Spec.Template.Annotations[render.AnnotationRemoval] != "" {
		t.Fatalf("the removal policy is not recorded on the StatefulSet (only): %v / %v", sts.Annotations, sts.Spec.Template.Annotations)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 0 {
		t.Fatalf("sum starts at %v replicas, want KEDA's minimum 0 (the test checks the retirement scales it up)", sts.Spec.Replicas)
	}
	pod := e.runPod(t, p, "sum", 0)
	_, before, err := e.retireSection(p, "sum")
	if err != nil {
		t.Fatal(err)
	}
	sidecars.set(pod.Name, SidecarStatus{Config: before, Ready: true})
	group, totals := render.GroupID(p, "sum"), render.TopicName(p, "totals")

	removedAt := clock.Now()
	p = e.update(t, p, withoutSumEntity())
	var digest string
	eventually(t, "sum is retiring", func() error {
		r, d, err := e.retireSection(p, "sum")
		if err != nil {
			return err
		}
		if r == nil {
			return errors.New("no retire section in sum's executor.json yet")
		}
		if want := (config.Retire{Since: removedAt.Format(time.RFC3339), Drain: true, DeleteGroup: true}); *r != want {
			return fmt.Errorf("retire section %+v, want %+v", *r, want)
		}
		digest = d
		cur := e.pipeline(t, p)
		want := []v1alpha1.RetiringStatus{{Entity: "sum", Phase: v1alpha1.RetirePending, Since: metav1.Time{Time: removedAt}}}
		if !retiringEqual(cur.Status.Retiring, want) {
			return fmt.Errorf("status.retiring %+v, want %+v", cur.Status.Retiring, want)
		}
		if c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRetiring); c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "sum (Pending") {
			return fmt.Errorf("Retiring condition %+v", c)
		}
		return nil
	})
	// What the retirement needs stays; the ScaledObject goes and a pod runs.
	kept := func() error {
		if _, err := e.statefulSet(p, "sum"); err != nil {
			return fmt.Errorf("StatefulSet: %w", err)
		}
		if _, err := e.configMap(p, "sum"); err != nil {
			return fmt.Errorf("ConfigMap: %w", err)
		}
		svc := &corev1.Service{}
		if err := e.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: render.ServiceName(p, "sum")}, svc); err != nil {
			return fmt.Errorf("Service: %w", err)
		}
		if _, err := e.kafkaTopic(p, "totals"); err != nil {
			return fmt.Errorf("the KafkaTopic of totals, which sum writes: %w", err)
		}
		if ops, err := e.userACL(t, p, "group", group); err != nil || !slices.Contains(ops, "Delete") || !slices.Contains(ops, "Read") {
			return fmt.Errorf("sum's group ACL %v (%v), want Read and Delete", ops, err)
		}
		if ops, err := e.userACL(t, p, "topic", totals); err != nil || !slices.Contains(ops, "Write") {
			return fmt.Errorf("totals' ACL %v (%v), want Write", ops, err)
		}
		return nil
	}
	eventually(t, "the retiring entity keeps its children, topics and ACLs, loses its ScaledObject, runs a pod", func() error {
		if err := kept(); err != nil {
			return err
		}
		if err := gone(e.get(gvkScaledObject, ns, render.ScaledObjectName(p, "sum"))); err != nil {
			return fmt.Errorf("ScaledObject: %w", err)
		}
		sts, err := e.statefulSet(p, "sum")
		if err != nil {
			return err
		}
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 1 {
			return fmt.Errorf("retiring StatefulSet has %v replicas, want at least 1", sts.Spec.Replicas)
		}
		return nil
	})

	// Later reconciles keep since.
	clock.advance(time.Hour)
	e.poke(t, p)
	sidecars.set(pod.Name, SidecarStatus{Config: digest, Ready: true, Retire: &SidecarRetireStatus{Phase: v1alpha1.RetireDraining, Remaining: 42}})
	e.poke(t, p)
	eventually(t, "the pod reports Draining", func() error {
		cur := e.pipeline(t, p)
		want := []v1alpha1.RetiringStatus{{Entity: "sum", Phase: v1alpha1.RetireDraining, Remaining: 42, Since: metav1.Time{Time: removedAt}}}
		if !retiringEqual(cur.Status.Retiring, want) {
			return fmt.Errorf("status.retiring %+v, want %+v", cur.Status.Retiring, want)
		}
		return nil
	})
	if r, d, err := e.retireSection(p, "sum"); err != nil || r.Since != removedAt.Format(time.RFC3339) || d != digest {
		t.Fatalf("the retire section changed: %+v, digest %s (was %s), %v", r, d, digest, err)
	}

	// Drained is not the end when the group is to be deleted.
	sidecars.set(pod.Name, SidecarStatus{Config: digest, Ready: true, Retire: &SidecarRetireStatus{Phase: v1alpha1.RetireDrained}})
	e.poke(t, p)
	eventually(t, "the pod reports Drained", func() error {
		cur := e.pipeline(t, p)
		if len(cur.Status.Retiring) != 1 || cur.Status.Retiring[0].Phase != v1alpha1.RetireDrained {
			return fmt.Errorf("status.retiring %+v, want Drained", cur.Status.Retiring)
		}
		return nil
	})
	if err := kept(); err != nil {
		t.Fatalf("Drained, with the group still to delete: %v", err)
	}

	// Deleted: the children go, then the topic and ACLs they kept.
	sidecars.set(pod.Name, SidecarStatus{Config: digest, Ready: true, Retire: &SidecarRetireStatus{Phase: v1alpha1.RetireDeleted}})
	e.poke(t, p)
	eventually(t, "sum's children, topic and ACLs are gone", func() error {
		if err := gone(e.statefulSet(p, "sum")); err != nil {
			return err
		}
		if err := gone(e.configMap(p, "sum")); err != nil {
			return err
		}
		svc := &corev1.Service{}
		if err := gone(svc, e.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: render.ServiceName(p, "sum")}, svc)); err != nil {
			return err
		}
		if err := gone(e.kafkaTopic(p, "totals")); err != nil {
			return err
		}
		if ops, err := e.userACL(t, p, "group", group); err != nil || ops != nil {
			return fmt.Errorf("sum's group ACL %v (%v), want none", ops, err)
		}
		cur := e.pipeline(t, p)
		if len(cur.Status.Retiring) != 0 {
			return fmt.Errorf("status.retiring %+v, want none", cur.Status.Retiring)
		}
		if c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRetiring); c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonRetired {
			return fmt.Errorf("Retiring condition %+v", c)
		}
		return nil
	})
	// The other entities were not touched.
	if _, err := e.statefulSet(p, "count"); err != nil {
		t.Fatal(err)
	}
}

// TestRemoveEntityWithoutRetirement: an entity removed without drain and with consumerGroup
// Keep is pruned at once, as before the removal policy existed, and nothing is retiring.
func TestRemoveEntityWithoutRetirement(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	sidecars := &retireSidecars{status: map[string]SidecarStatus{}}
	e.startOperator(t, ns, func(o *Options) { o.ConfigProber = sidecars })
	p := e.converged(t, e.create(t, newPipeline(ns, withScram, withSumEntity(), withRemoval("sum", false, v1alpha1.ConsumerGroupKeep))))
	e.runPod(t, p, "sum", 0)
	p = e.update(t, p, withoutSumEntity())
	eventually(t, "sum's children and topic are pruned at once", func() error {
		if err := gone(e.statefulSet(p, "sum")); err != nil {
			return err
		}
		if err := gone(e.configMap(p, "sum")); err != nil {
			return err
		}
		if err := gone(e.kafkaTopic(p, "totals")); err != nil {
			return err
		}
		if ops, err := e.userACL(t, p, "group", render.GroupID(p, "sum")); err != nil || ops != nil {
			return fmt.Errorf("sum's group ACL %v (%v), want none", ops, err)
		}
		cur := e.pipeline(t, p)
		if cur.Status.ObservedGeneration != cur.Generation || len(cur.Status.Retiring) != 0 || condOf(cur, v1alpha1.ConditionRetiring) != nil {
			return fmt.Errorf("status: generation %d/%d, retiring %+v, Retiring condition %+v", cur.Status.ObservedGeneration, cur.Generation, cur.Status.Retiring, condOf(cur, v1alpha1.ConditionRetiring))
		}
		return nil
	})
}

func retiringEqual(a, b []v1alpha1.RetiringStatus) bool {
	return slices.EqualFunc(a, b, func(x, y v1alpha1.RetiringStatus) bool {
		return x.Entity == y.Entity && x.Phase == y.Phase && x.Remaining == y.Remaining && x.Since.Equal(&y.Since)
	})
}
