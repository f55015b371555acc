//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/testenv"
	"github.com/millrace-dev/millrace/e2e/strimzidouble"
)

// startDouble installs Strimzi's CRDs (the real ones of Strimzi 1.2.0 when ../shared/crds is
// next to the checkout, else the project's stand-ins) so that the operator finds Strimzi. The
// double itself runs per scenario namespace (strimziFor), since a Pipeline's Kafka cluster lives
// in its own namespace.
func startDouble(ctx context.Context) (func(), error) {
	paths, err := testenv.StrimziCRDs(testenv.StrimziV1)
	if err != nil {
		return nil, err
	}
	if _, err := envtest.InstallCRDs(env.cfg, envtest.CRDInstallOptions{Paths: paths}); err != nil {
		return nil, fmt.Errorf("install Strimzi CRDs: %w", err)
	}
	return func() {}, nil
}

// strimziFor gives the namespace a Strimzi Kafka cluster named env.cluster: in double mode it
// runs the test double for the namespace until the scenario ends; with real Strimzi the cluster
// is expected to exist already.
func strimziFor(t *testing.T, ns string) {
	t.Helper()
	if env.strimzi != "double" {
		return
	}
	listeners := []strimzidouble.Listener{{Name: "plain", Port: port(t, env.kafka), Type: "internal", BootstrapServers: env.kafka}}
	if env.scram != "" {
		listeners = append(listeners, strimzidouble.Listener{Name: "scram", Port: port(t, env.scram), Type: "internal",
			Authentication: "scram-sha-512", BootstrapServers: env.scram})
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := strimzidouble.Start(ctx, strimzidouble.Options{
		Config: env.cfg, Namespace: ns, Cluster: env.cluster, Bootstrap: env.kafka, Listeners: listeners,
		StrimziAPIVersion: strimzidouble.V1, Log: logWriter(t),
	})
	if err != nil {
		cancel()
		t.Fatalf("strimzi test double: %v", err)
	}
	// Stopped by the namespace's cleanup once its Pipelines are gone, so that the double still
	// serves the KafkaTopic finalizers while they are deleted.
	// Before it stops, the KafkaTopics and KafkaUsers left in the namespace (the garbage
	// collector's, and Retain topics, which nothing deletes) go while it still serves their
	// finalizers; otherwise the namespace stays Terminating for good.
	afterNamespace(ns, func() {
		deleteStrimziChildren(t, ns)
		d.Stop()
		cancel()
	})
}

// deleteStrimziChildren deletes the namespace's KafkaTopics and KafkaUsers and waits until they are
// gone. Unstructured, with the served version: the typed kinds are registered under two versions.
func deleteStrimziChildren(t *testing.T, ns string) {
	t.Helper()
	for _, kind := range []string{"KafkaTopic", "KafkaUser"} {
		gvk := strimzi.V1.WithKind(kind)
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(gvk)
		if err := env.c.DeleteAllOf(context.Background(), obj, client.InNamespace(ns)); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %ss in %s: %v", kind, ns, err)
			continue
		}
		waitFor(t, 2*time.Minute, kind+"s deleted", func(ctx context.Context) error {
			list := &unstructured.UnstructuredList{}
			list.SetGroupVersionKind(gvk.GroupVersion().WithKind(kind + "List"))
			if err := env.c.List(ctx, list, client.InNamespace(ns)); err != nil {
				return err
			}
			if n := len(list.Items); n > 0 {
				return fmt.Errorf("%d %ss left, first %s (finalizers %v)", n, kind, list.Items[0].GetName(), list.Items[0].GetFinalizers())
			}
			return nil
		})
	}
}

var (
	afterMu sync.Mutex
	after   = map[string][]func(){}
)

// afterNamespace runs fn when the scenario's namespace has been emptied of Pipelines.
func afterNamespace(ns string, fn func()) {
	afterMu.Lock()
	defer afterMu.Unlock()
	after[ns] = append(after[ns], fn)
}

func runAfterNamespace(ns string) {
	afterMu.Lock()
	fns := after[ns]
	delete(after, ns)
	afterMu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

func port(t *testing.T, addr string) int32 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return int32(n)
}

// logWriter sends the double's log to a file beside the report, so a failure can be read.
func logWriter(t *testing.T) *os.File {
	f, err := os.CreateTemp("", "strimzi-double-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("strimzi test double log: %s", f.Name())
	t.Cleanup(func() { f.Close() })
	return f
}
