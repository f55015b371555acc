//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// killContainer kills a container of a pod through the node's runtime (MILLRACE_E2E_CTR), as a
// crash or the OOM killer would: SIGKILL, no grace. It reports false when the suite has no
// runtime access (another cluster).
func killContainer(t *testing.T, ns, pod, container string) bool {
	t.Helper()
	if len(env.ctr) == 0 {
		t.Logf("MILLRACE_E2E_CTR unset: not killing %s/%s through the runtime", pod, container)
		return false
	}
	p, err := env.cs.CoreV1().Pods(ns).Get(context.Background(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if s.Name != container || s.ContainerID == "" {
			continue
		}
		id := s.ContainerID[strings.Index(s.ContainerID, "://")+3:]
		args := append(append([]string{}, env.ctr[1:]...), "tasks", "kill", "-s", "SIGKILL", id)
		if out, err := exec.Command(env.ctr[0], args...).CombinedOutput(); err != nil {
			t.Fatalf("kill %s/%s: %v: %s", pod, container, err, out)
		}
		return true
	}
	t.Fatalf("pod %s has no running container %s", pod, container)
	return false
}

// TestExactlyOnceUnderPodLoss: an ExactlyOnce entity with 2 replicas keeps every input exactly
// once in its output (read with read_committed) while its pods are deleted, force-deleted and
// their I/O sidecars killed, with records flowing the whole time.
func TestExactlyOnceUnderPodLoss(t *testing.T) {
	ns := namespace(t, nil)
	p := identityPipeline("eos", 4, v1alpha1.Entity{Replicas: ptr.To[int32](2), Guarantee: v1alpha1.ExactlyOnce})
	directKafka(p)
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	stsName := render.StatefulSetName(p, "id")

	const total = 6000
	var wg sync.WaitGroup
	wg.Add(1)
	errs := make(chan error, 1)
	go func() { // about 100 records/s for a minute, spread over the partitions by key
		defer wg.Done()
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.kafka, ",")...), kgo.DefaultProduceTopic(in))
		if err != nil {
			errs <- err
			return
		}
		defer cl.Close()
		for i := 0; i < total; i += 50 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err := cl.ProduceSync(ctx, numbered("r", i, 50)...).FirstErr()
			cancel()
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()

	ready := func(pod string) {
		waitFor(t, 2*time.Minute, pod+" Ready again", func(ctx context.Context) error {
			pp, err := env.cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pp.DeletionTimestamp != nil || !podReady(pp) {
				return fmt.Errorf("not ready")
			}
			return nil
		})
	}
	time.Sleep(8 * time.Second)
	// 1. a graceful deletion
	if err := env.cs.CoreV1().Pods(ns).Delete(context.Background(), stsName+"-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	ready(stsName + "-0")
	time.Sleep(5 * time.Second)
	// 2. a forced deletion: the API object goes at once, the old processes may still run
	if err := env.cs.CoreV1().Pods(ns).Delete(context.Background(), stsName+"-1",
		metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	ready(stsName + "-1")
	time.Sleep(5 * time.Second)
	// 3. the I/O sidecar killed in each pod in turn (the kubelet restarts it in place)
	for _, pod := range []string{stsName + "-0", stsName + "-1"} {
		if killContainer(t, ns, pod, render.ContainerIO) {
			time.Sleep(3 * time.Second)
			ready(pod)
			time.Sleep(4 * time.Second)
		}
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("producer: %v", err)
	default:
	}

	waitLagZero(t, render.GroupID(p, "id"), in, 4*time.Minute)
	want := map[string]bool{}
	for i := 0; i < total; i++ {
		want[fmt.Sprintf("r-%d", i)] = true
	}
	exactlyOnce(t, out, want)
	var restartsSeen int32
	for k, n := range restarts(pods(t, ns, statefulSet(t, ns, stsName))) {
		if strings.HasSuffix(k, "/"+render.ContainerIO) {
			restartsSeen += n
		}
	}
	if len(env.ctr) > 0 && restartsSeen < 2 {
		t.Errorf("the I/O sidecars restarted %d times; the kills did not happen as planned", restartsSeen)
	}
}
