//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

const identityImage = "ghcr.io/millrace-dev/millrace-example-identity:v0.1.0"

// identityPipeline is one identity entity from `in` to `out`.
func identityPipeline(name string, partitions int32, e v1alpha1.Entity) *v1alpha1.Pipeline {
	e.Name = valueOr(e.Name, "id")
	e.Image = identityImage
	e.Command = []string{"identity"}
	e.Inputs = []string{"in"}
	e.Outputs = []string{"out"}
	p := &v1alpha1.Pipeline{}
	p.Name = name
	p.Spec.Streams = []v1alpha1.Stream{{Name: "in", Partitions: partitions}, {Name: "out", Partitions: partitions}}
	p.Spec.Entities = []v1alpha1.Entity{e}
	return p
}

func numbered(prefix string, from, n int) []*kgo.Record {
	rs := make([]*kgo.Record, n)
	for i := range rs {
		v := fmt.Sprintf("%s-%d", prefix, from+i)
		rs[i] = &kgo.Record{Key: []byte(v), Value: []byte(v)}
	}
	return rs
}

// TestKEDAScaleFromZero: an entity autoscaled from zero. KEDA's ScaledObject, rendered by the
// operator, lets KEDA's HPA and its own activation take the StatefulSet from 0 to pods when lag
// appears, the pods consume it, the lag returns to 0, and after the cooldown the entity returns to
// 0 replicas. Three lag steps; the time from each step to its first output record is recorded.
func TestKEDAScaleFromZero(t *testing.T) {
	ns := namespace(t, nil)
	const polling, cooldown = 5, 10
	p := identityPipeline("keda", 2, v1alpha1.Entity{Autoscaling: &v1alpha1.AutoscalingSpec{
		MinReplicas: ptr.To[int32](0), MaxReplicas: 2, LagThreshold: 20,
		PollingInterval: polling, CooldownPeriod: ptr.To[int32](cooldown),
	}})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	stsName := render.StatefulSetName(p, "id")
	group := render.GroupID(p, "id")

	atZero := func(what string) {
		waitFor(t, 3*time.Minute, what, func(ctx context.Context) error {
			sts := statefulSet(t, ns, stsName)
			if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 0 || sts.Status.Replicas != 0 {
				return fmt.Errorf("spec.replicas %v, status.replicas %d", ptr.Deref(sts.Spec.Replicas, -1), sts.Status.Replicas)
			}
			return nil
		})
	}
	atZero("entity at its minimum of 0 before any lag")

	var latencies []time.Duration
	const perStep = 200
	for step := 0; step < 3; step++ {
		start := time.Now()
		produce(t, in, numbered(fmt.Sprintf("s%d", step), 0, perStep))
		consumeUntil(t, out, 4*time.Minute, func(rs []*kgo.Record) bool {
			n := 0
			for _, r := range rs {
				if len(r.Value) > 2 && string(r.Value[:2]) == fmt.Sprintf("s%d", step) {
					n++
				}
			}
			return n > 0
		})
		latencies = append(latencies, time.Since(start))
		record(t, "keda: lag step to first output record, from 0 replicas", time.Since(start),
			fmt.Sprintf("step %d, pollingInterval %ds, HPA sync 5s", step+1, polling))

		sts := statefulSet(t, ns, stsName)
		if ptr.Deref(sts.Spec.Replicas, 0) < 1 {
			t.Fatalf("output appeared but the StatefulSet asks for %d replicas", ptr.Deref(sts.Spec.Replicas, 0))
		}
		// All of the step consumed and committed: lag 0.
		waitLagZero(t, group, in, 3*time.Minute)
		atZero("entity back at 0 after the cooldown")
	}
	rs := consumeIdle(t, out, 3*time.Second)
	seen := map[string]int{}
	for _, r := range rs {
		seen[string(r.Value)]++
	}
	if len(seen) != 3*perStep {
		t.Errorf("%d distinct outputs, want %d", len(seen), 3*perStep)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	record(t, "keda: lag step to first output record, median of 3", latencies[1], fmt.Sprintf("pollingInterval %ds", polling))
}
