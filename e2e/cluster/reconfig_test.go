//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
)

// planFor is the plan of mutate over the live Pipeline, as `kubectl millrace diff` computes it.
func planFor(t *testing.T, ns, name string, mutate func(*v1alpha1.Pipeline)) *reconfig.Plan {
	t.Helper()
	live := getPipeline(t, ns, name)
	next := live.DeepCopy()
	mutate(next)
	plan, err := reconfig.NewPlan(live, next, render.Facts{KEDA: true})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

func entityPlan(plan *reconfig.Plan, name string) reconfig.EntityPlan {
	for _, e := range plan.Entities {
		if e.Name == name {
			return e
		}
	}
	return reconfig.EntityPlan{}
}

// podUIDs are the pods of a StatefulSet, by name: a rollout replaces them (new UIDs), a hot
// reload keeps them.
func podUIDs(ps []corev1.Pod) map[string]types.UID {
	out := map[string]types.UID{}
	for _, p := range ps {
		out[p.Name] = p.UID
	}
	return out
}

// waitConfigApplied waits until every running pod of entity reports, through the operator's
// status (the sidecars asked through pods/proxy), the entity's current executor.json.
// It waits first for the operator to have observed the Pipeline's latest generation and for the
// entity's executor.json to contain want ("" for any), so that a status still describing the
// previous configuration cannot pass for the new one.
func waitConfigApplied(t *testing.T, ns, name, entity string, pods int32, want string) {
	t.Helper()
	waitFor(t, 3*time.Minute, "every pod of "+entity+" applied its configuration", func(ctx context.Context) error {
		p := getPipeline(t, ns, name)
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("status describes generation %d, the Pipeline is at %d", p.Status.ObservedGeneration, p.Generation)
		}
		var cm corev1.ConfigMap
		if err := env.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: render.ConfigMapName(p, entity)}, &cm); err != nil {
			return err
		}
		if !strings.Contains(cm.Data[config.FileName], want) {
			return fmt.Errorf("the ConfigMap's %s does not contain %q yet", config.FileName, want)
		}
		digest := config.Digest([]byte(cm.Data[config.FileName]))[:16]
		var cs *v1alpha1.EntityConfigStatus
		for _, es := range p.Status.Entities {
			if es.Name == entity {
				cs = es.Config
			}
		}
		if cs == nil || cs.Digest != digest || cs.AppliedPods != pods || cs.RunningPods != pods || cs.PendingRestart != 0 {
			return fmt.Errorf("config status %+v, want digest %s applied by %d pods", cs, digest, pods)
		}
		c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionConfigApplied)
		if c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("ConfigApplied %+v", c)
		}
		return nil
	})
}

// TestPlanPredictsRestarts checks the plan against what the operator then does on a real
// cluster, and the status the sidecars report through pods/proxy: a Hot change (the entity's
// config) restarts no container and replaces no pod, and every pod reports the new
// executor.json; a Rolling change (an env var) replaces exactly the pods the plan names.
func TestPlanPredictsRestarts(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("plan", 2, v1alpha1.Entity{
		Replicas: ptr.To[int32](2),
		Config:   map[string]string{identity.StampKey: "v1"},
	})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	sts := statefulSet(t, ns, render.StatefulSetName(p, "id"))
	waitConfigApplied(t, ns, p.Name, "id", 2, `"v1"`)

	hot := func(p *v1alpha1.Pipeline) { p.Spec.Entities[0].Config = map[string]string{identity.StampKey: "v2"} }
	plan := planFor(t, ns, p.Name, hot)
	if ep := entityPlan(plan, "id"); plan.Class != reconfig.Hot || ep.Restart || len(ep.Reload) == 0 {
		t.Fatalf("plan of the config change: class %s, entity %+v; want Hot, a reload, no restart", plan.Class, ep)
	}
	before := pods(t, ns, sts)
	start := time.Now()
	update(t, ns, p.Name, hot)
	waitConfigApplied(t, ns, p.Name, "id", 2, `"v2"`)
	record(t, "reconfiguration: Pipeline config change to every pod reporting the new executor.json in status", time.Since(start), "kubelet syncFrequency 1s")
	after := pods(t, ns, sts)
	if fmt.Sprint(restarts(before)) != fmt.Sprint(restarts(after)) || fmt.Sprint(podUIDs(before)) != fmt.Sprint(podUIDs(after)) {
		t.Errorf("the plan said no restart, but pods restarted or were replaced: restarts %v -> %v, pods %v -> %v",
			restarts(before), restarts(after), podUIDs(before), podUIDs(after))
	}

	rolling := func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}
	}
	plan = planFor(t, ns, p.Name, rolling)
	if ep := entityPlan(plan, "id"); plan.Class != reconfig.Rolling || !ep.Restart || ep.Pods != "2" {
		t.Fatalf("plan of the env change: class %s, entity %+v; want Rolling, 2 pods restart", plan.Class, ep)
	}
	update(t, ns, p.Name, rolling)
	waitFor(t, 5*time.Minute, "both pods replaced", func(context.Context) error {
		now := podUIDs(pods(t, ns, sts))
		for name, uid := range podUIDs(after) {
			if now[name] == uid {
				return fmt.Errorf("pod %s not replaced yet", name)
			}
		}
		return nil
	})
	waitReady(t, ns, p.Name, 3*time.Minute)
	waitConfigApplied(t, ns, p.Name, "id", 2, `"v2"`)
}
