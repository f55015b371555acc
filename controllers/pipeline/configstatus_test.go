package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// fakeSidecars answers for the I/O sidecars of pods that envtest does not run: each pod reports
// the executor.json digest the test sets for it.
type fakeSidecars struct {
	mu      sync.Mutex
	applied map[string]string // by pod name: the full digest
}

func (f *fakeSidecars) set(pod, digest string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[pod] = digest
}

func (f *fakeSidecars) Probe(_ context.Context, pod *corev1.Pod) (SidecarStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.applied[pod.Name]
	if !ok {
		return SidecarStatus{}, errors.New("connection refused")
	}
	return SidecarStatus{Config: d, Ready: true}, nil
}

// fakeClock is the operator's clock, moved by the test only.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// runPod creates the running pod an entity's StatefulSet would have, with its current pod
// template hash.
func (e *env) runPod(t *testing.T, p *v1alpha1.Pipeline, entity string, ordinal int) *corev1.Pod {
	t.Helper()
	sts, err := e.statefulSet(p, entity)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", sts.Name, ordinal), Namespace: p.Namespace,
			Labels:      sts.Spec.Template.Labels,
			Annotations: sts.Spec.Template.Annotations,
		},
		Spec: *sts.Spec.Template.Spec.DeepCopy(),
	}
	ctx := context.Background()
	if err := e.client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := e.client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// poke makes the operator reconcile now (an annotation change is an event of the Pipeline).
func (e *env) poke(t *testing.T, p *v1alpha1.Pipeline) {
	t.Helper()
	e.update(t, p, func(p *v1alpha1.Pipeline) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["test/poke"] = time.Now().Format(time.RFC3339Nano)
	})
}

func (e *env) waitConfig(t *testing.T, p *v1alpha1.Pipeline, what string, check func(st *v1alpha1.PipelineStatus, cfg *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error) {
	t.Helper()
	eventually(t, what, func() error {
		cur := e.pipeline(t, p)
		var cfg *v1alpha1.EntityConfigStatus
		for _, es := range cur.Status.Entities {
			if es.Name == "count" {
				cfg = es.Config
			}
		}
		if cfg == nil {
			return fmt.Errorf("no status.entities[count].config: %+v", cur.Status.Entities)
		}
		cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionConfigApplied)
		if cond == nil {
			return errors.New("no ConfigApplied condition")
		}
		return check(&cur.Status, cfg, cond)
	})
}

// TestConfigStatus: the status says, per entity, which configuration each running pod applied
// (as its sidecar reports it), which pods wait for a restart and why, and ConfigApplied turns
// ConfigPending then ConfigNotApplied when a hot change does not reach a pod within the bound.
func TestConfigStatus(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	sidecars := &fakeSidecars{applied: map[string]string{}}
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	const bound = 5 * time.Minute
	e.startOperator(t, ns, func(o *Options) {
		o.ConfigProber, o.Clock, o.ConfigApplyBound = sidecars, clock.Now, bound
	})
	p := e.converged(t, e.create(t, newPipeline(ns)))
	e.markExecutorsReady(t, p)
	digest := func() string {
		cm, err := e.configMap(p, "count")
		if err != nil {
			t.Fatal(err)
		}
		return config.Digest([]byte(cm.Data[config.FileName]))
	}
	pod := e.runPod(t, p, "count", 0)
	first := digest()
	sidecars.set(pod.Name, first)
	e.poke(t, p)
	e.waitConfig(t, p, "the pod applied the configuration", func(st *v1alpha1.PipelineStatus, cfg *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error {
		if cfg.Digest != first[:16] || cfg.AppliedPods != 1 || cfg.RunningPods != 1 || cfg.PendingRestart != 0 {
			return fmt.Errorf("config status %+v, want digest %s applied by 1 of 1 pods", cfg, first[:16])
		}
		if len(cfg.Pods) != 1 || cfg.Pods[0] != (v1alpha1.PodConfigStatus{Name: pod.Name, Applied: first[:16], Ready: true}) {
			return fmt.Errorf("pods %+v", cfg.Pods)
		}
		if cond.Status != metav1.ConditionTrue || cond.Reason != v1alpha1.ReasonConfigApplied {
			return fmt.Errorf("ConfigApplied %s/%s: %s", cond.Status, cond.Reason, cond.Message)
		}
		return nil
	})

	// A hot change: the ConfigMap changes, the pod's sidecar still runs the old file.
	p = e.converged(t, e.update(t, p, func(p *v1alpha1.Pipeline) { entity(p, "count").Config = map[string]string{"window": "5m"} }))
	second := digest()
	e.waitConfig(t, p, "the hot change is pending", func(_ *v1alpha1.PipelineStatus, cfg *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error {
		if cfg.Digest != second[:16] || cfg.AppliedPods != 0 || cfg.Pods[0].Applied != first[:16] || cfg.PendingRestart != 0 {
			return fmt.Errorf("config status %+v, want digest %s applied by none, the pod on %s, no restart", cfg, second[:16], first[:16])
		}
		if cond.Status != metav1.ConditionFalse || cond.Reason != v1alpha1.ReasonConfigPending || !strings.Contains(cond.Message, "count ("+pod.Name+")") {
			return fmt.Errorf("ConfigApplied %s/%s: %s", cond.Status, cond.Reason, cond.Message)
		}
		return nil
	})
	clock.advance(bound)
	e.poke(t, p)
	e.waitConfig(t, p, "the hot change is late", func(_ *v1alpha1.PipelineStatus, _ *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error {
		if cond.Status != metav1.ConditionFalse || cond.Reason != v1alpha1.ReasonConfigNotApplied || !strings.Contains(cond.Message, "count ("+pod.Name+")") {
			return fmt.Errorf("ConfigApplied %s/%s: %s", cond.Status, cond.Reason, cond.Message)
		}
		return nil
	})
	sidecars.set(pod.Name, second)
	e.poke(t, p)
	e.waitConfig(t, p, "the pod reloaded", func(_ *v1alpha1.PipelineStatus, cfg *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error {
		if cfg.AppliedPods != 1 || cond.Status != metav1.ConditionTrue {
			return fmt.Errorf("config status %+v, ConfigApplied %s/%s", cfg, cond.Status, cond.Reason)
		}
		return nil
	})

	// A rolling change: the pod runs the old template until the StatefulSet replaces it.
	p = e.converged(t, e.update(t, p, withImage("count", "example/count:2")))
	e.waitConfig(t, p, "the pod waits for its restart", func(st *v1alpha1.PipelineStatus, cfg *v1alpha1.EntityConfigStatus, cond *metav1.Condition) error {
		if cfg.PendingRestart != 1 || !cfg.Pods[0].PendingRestart || cfg.PendingRestartReason != "spec.entities[count].image (Rolling)" {
			return fmt.Errorf("config status %+v, want 1 pod pending restart for the image (revisions: current %s, update %s)", cfg, st.CurrentRevision, st.UpdateRevision)
		}
		// The image changed the pod template, not executor.json: the pod applied it already.
		if cond.Status != metav1.ConditionTrue {
			return fmt.Errorf("ConfigApplied %s/%s: %s", cond.Status, cond.Reason, cond.Message)
		}
		return nil
	})
}
