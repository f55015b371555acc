//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
)

// replicaLog watches a StatefulSet's spec.replicas and remembers every value it took.
type replicaLog struct {
	mu     sync.Mutex
	values []int32
	stop   func()
}

func watchReplicas(t *testing.T, ns, name string) *replicaLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &replicaLog{stop: cancel}
	w, err := env.cs.AppsV1().StatefulSets(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			if sts, ok := ev.Object.(*appsv1.StatefulSet); ok {
				l.mu.Lock()
				l.values = append(l.values, ptr.Deref(sts.Spec.Replicas, 1))
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(cancel)
	return l
}

// min is the smallest spec.replicas seen since the last reset.
func (l *replicaLog) seen() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int32(nil), l.values...)
}

func (l *replicaLog) reset() {
	l.mu.Lock()
	l.values = nil
	l.mu.Unlock()
}

func below(vs []int32, n int32) bool {
	for _, v := range vs {
		if v < n {
			return true
		}
	}
	return false
}

// TestReplicasUnderALiveHPA: the replicas of an entity belong to whoever scales it. Editing an
// autoscaled entity never resets the replicas KEDA's HPA set; switching an entity from fixed
// replicas to autoscaling, and back, never drops its running pods to 1 on the way.
func TestReplicasUnderALiveHPA(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("hpa", 4, v1alpha1.Entity{Replicas: ptr.To[int32](3)})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	name := render.StatefulSetName(p, "id")
	l := watchReplicas(t, ns, name)

	ready := func(n int32) {
		waitFor(t, 3*time.Minute, fmt.Sprintf("%d replicas ready", n), func(ctx context.Context) error {
			sts := statefulSet(t, ns, name)
			if ptr.Deref(sts.Spec.Replicas, 1) != n || sts.Status.ReadyReplicas != n {
				return fmt.Errorf("spec %d, ready %d", ptr.Deref(sts.Spec.Replicas, 1), sts.Status.ReadyReplicas)
			}
			return nil
		})
	}
	ready(3)

	// 1. fixed 3 -> autoscaled with a minimum of 3: the HPA takes over at 3.
	l.reset()
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Replicas = nil
		p.Spec.Entities[0].Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: ptr.To[int32](3), MaxReplicas: 4, LagThreshold: 1000, PollingInterval: 5}
	})
	waitReady(t, ns, p.Name, 3*time.Minute)
	waitFor(t, 2*time.Minute, "KEDA's HPA in place", func(ctx context.Context) error {
		_, err := env.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+render.ScaledObjectName(p, "id"), metav1.GetOptions{})
		return err
	})
	time.Sleep(12 * time.Second) // two HPA syncs
	ready(3)
	if vs := l.seen(); below(vs, 3) {
		t.Errorf("switching to autoscaling: spec.replicas went %v, below 3", vs)
	}

	// 2. an edit of the autoscaled entity leaves the HPA's replicas alone.
	l.reset()
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Config = map[string]string{identity.StampKey: "edited"}
	})
	waitReady(t, ns, p.Name, 3*time.Minute)
	time.Sleep(5 * time.Second)
	ready(3)
	if vs := l.seen(); below(vs, 3) {
		t.Errorf("editing the autoscaled entity: spec.replicas went %v, below 3", vs)
	}

	// 3. back to fixed replicas: from the HPA's 3 to the Pipeline's 3, never 1 on the way.
	l.reset()
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Autoscaling = nil
		p.Spec.Entities[0].Replicas = ptr.To[int32](3)
	})
	waitReady(t, ns, p.Name, 3*time.Minute)
	waitFor(t, 2*time.Minute, "KEDA's HPA removed", func(ctx context.Context) error {
		_, err := env.cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "keda-hpa-"+render.ScaledObjectName(p, "id"), metav1.GetOptions{})
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	time.Sleep(5 * time.Second)
	ready(3)
	if vs := l.seen(); below(vs, 3) {
		t.Errorf("switching back to fixed replicas: spec.replicas went %v, below 3", vs)
	}
}
