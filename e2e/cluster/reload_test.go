//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
)

var assignedRe = regexp.MustCompile(`(?m)^millrace_assigned_partitions\{topic="([^"]+)"\} (\S+)$`)

// assigned is the number of partitions of topic each pod reports it consumes.
func assigned(ctx context.Context, ns string, podNames []string, topic string) (map[string]int, error) {
	out := map[string]int{}
	for _, pod := range podNames {
		m, err := podMetrics(ctx, ns, pod, config.DefaultMetricsPort)
		if err != nil {
			return nil, fmt.Errorf("metrics of %s: %w", pod, err)
		}
		out[pod] = 0
		for _, g := range assignedRe.FindAllStringSubmatch(m, -1) {
			if g[1] == topic {
				f, _ := strconv.ParseFloat(g[2], 64)
				out[pod] = int(f)
			}
		}
	}
	return out, nil
}

// stampOf is the config stamp identity put on an output record, "" without one.
func stampOf(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == identity.StampHeader {
			return string(h.Value)
		}
	}
	return ""
}

// TestHotReload changes a running entity's config and its Static assignment. The operator
// updates the ConfigMap, the kubelet updates the mounted file, and the running processes apply
// both without any container restarting: outputs carry the new config, and each pod consumes
// the partitions of the new assignment. The time from the Pipeline update to each effect is
// recorded.
func TestHotReload(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("reload", 4, v1alpha1.Entity{
		Replicas:   ptr.To[int32](2),
		Config:     map[string]string{identity.StampKey: "v1"},
		Assignment: &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic, Partitions: []v1alpha1.PartitionList{{0, 1}, {2, 3}}},
	})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	sts := statefulSet(t, ns, render.StatefulSetName(p, "id"))
	names := []string{sts.Name + "-0", sts.Name + "-1"}

	waitFor(t, 2*time.Minute, "assignment [[0 1] [2 3]] applied", func(ctx context.Context) error {
		got, err := assigned(ctx, ns, names, in)
		if err != nil {
			return err
		}
		if got[names[0]] != 2 || got[names[1]] != 2 {
			return fmt.Errorf("assigned %v", got)
		}
		return nil
	})
	produce(t, in, numbered("a", 0, 40))
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool {
		return len(rs) >= 40 && stampOf(rs[len(rs)-1]) == "v1"
	})
	before := restarts(pods(t, ns, sts))

	start := time.Now()
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Config = map[string]string{identity.StampKey: "v2"}
		p.Spec.Entities[0].Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3}}
	})

	// New config: outputs of records produced after the change carry v2.
	next := 0
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool {
		for _, r := range rs {
			if stampOf(r) == "v2" {
				return true
			}
		}
		produce(t, in, numbered("b", next, 4))
		next += 4
		time.Sleep(100 * time.Millisecond)
		return false
	})
	record(t, "hot reload: Pipeline config change to first output with the new config", time.Since(start), "kubelet syncFrequency 1s")

	waitFor(t, 2*time.Minute, "assignment [[0 1 2] [3]] applied", func(ctx context.Context) error {
		got, err := assigned(ctx, ns, names, in)
		if err != nil {
			return err
		}
		if got[names[0]] != 3 || got[names[1]] != 1 {
			return fmt.Errorf("assigned %v", got)
		}
		return nil
	})
	record(t, "hot reload: Pipeline assignment change to every pod consuming its new partitions", time.Since(start), "Static, 2 pods, 4 partitions")

	if after := restarts(pods(t, ns, sts)); !equality.Semantic.DeepEqual(before, after) {
		t.Errorf("containers restarted during the reload: before %v, after %v", before, after)
	}
	// Every record produced reached the output (at least once, here).
	total := 40 + next
	rs := consumeIdle(t, out, 3*time.Second)
	seen := map[string]bool{}
	for _, r := range rs {
		seen[string(r.Value)] = true
	}
	if len(seen) != total {
		t.Errorf("%d distinct outputs, want %d", len(seen), total)
	}
}
