package pipeline

// The API server's own limit, as the baseline of the operator benchmarks: the same children a
// 5-entity Pipeline has, created by a bare client (no cache, no reads, no client-side rate
// limit), as fast as the API server takes them.

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// baselineConcurrency is the bare client's requests in flight: what the operator may have in
// flight at most (its workers times the applies in flight per Pipeline).
const baselineConcurrency = defaultWorkers * applyConcurrency

// bareClient talks to e's API server without client-side rate limiting.
func bareClient(b *testing.B, e *env) client.Client {
	cfg := rest.CopyConfig(e.cfg)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// renderedChildren are the children the operator applies for fiveEntities(ns, name): rendered
// with the facts the operator observes on envtest (Strimzi v1, KEDA and the Prometheus Operator
// served), as applied configurations.
func renderedChildren(b *testing.B, ns, name string) []*unstructured.Unstructured {
	p := fiveEntities(ns, name)
	p.UID = types.UID("00000000-0000-0000-0000-" + fmt.Sprintf("%012d", len(name)))
	res, err := render.Render(p, render.Facts{
		StrimziAPIVersion: strimzi.V1.Version, KEDA: true, PrometheusOperator: true,
		Replicas: map[string]int32{}, KeptReplicas: map[string]int32{}, Assignments: map[string]config.Assignment{},
		Images: render.Images{IOSidecar: render.DefaultIOSidecarImage, StateSidecar: render.DefaultStateSidecarImage},
	})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]*unstructured.Unstructured, 0, len(res.Objects))
	for _, o := range res.Objects {
		u, err := applied(o)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

// childrenPerPipeline is what a fiveEntities Pipeline has: 11 KafkaTopics (6 streams, 5
// dead-letter topics) and a ConfigMap, a Service and a StatefulSet per entity.
const childrenPerPipeline = 26

// createConcurrently creates objs with n requests in flight (by server-side apply, as the
// operator's field manager, if apply) and returns how long it took.
func createConcurrently(ctx context.Context, b *testing.B, c client.Client, objs []client.Object, n int, apply bool) time.Duration {
	start := time.Now()
	work := make(chan client.Object)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				var err error
				if u, ok := o.(*unstructured.Unstructured); ok && apply {
					err = c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
				} else {
					err = c.Create(ctx, o)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("create %s %s: %w", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, o := range objs {
		work <- o
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return time.Since(start)
}

// baselineCreate creates the children of n fiveEntities Pipelines in a fresh namespace with a
// bare client (by server-side apply if apply) and returns how long it took.
func baselineCreate(ctx context.Context, b *testing.B, e *env, n int, apply bool) time.Duration {
	ns := e.namespace(&testing.T{})
	var objs []client.Object
	for j := range n {
		children := renderedChildren(b, ns, "p"+strconv.Itoa(j))
		if len(children) != childrenPerPipeline {
			b.Fatalf("a 5-entity Pipeline renders %d children, not %d", len(children), childrenPerPipeline)
		}
		for _, u := range children {
			objs = append(objs, u)
		}
	}
	return createConcurrently(ctx, b, bareClient(b, e), objs, baselineConcurrency, apply)
}

// createUnrelated creates perKind KafkaTopics, ConfigMaps and StatefulSets that Millrace does not
// manage in namespace ns.
func createUnrelated(ctx context.Context, b *testing.B, e *env, ns string, perKind int) time.Duration {
	var objs []client.Object
	for j := range perKind {
		objs = append(objs, unrelatedObjects(e, ns, "other-"+strconv.Itoa(j))...)
	}
	return createConcurrently(ctx, b, bareClient(b, e), objs, baselineConcurrency, false)
}
