//go:build cluster

// Package cluster is the cluster tier: Millrace as its users run it, on a real Kubernetes cluster
// with real pods, the operator deployed by `make deploy`, the real KEDA and a real Kafka broker.
//
// The suite runs against the cluster of KUBECONFIG, whichever it is: hack/e2e.sh (make test-e2e)
// boots the project's single-node cluster (hack/cluster.sh), loads the images, installs KEDA,
// starts the broker and deploys the operator, then runs `go test -tags cluster ./e2e/cluster/`.
// Nothing here depends on that node. What the suite needs is given by the environment:
//
//	KUBECONFIG                    the cluster; the operator and KEDA are running in it
//	MILLRACE_E2E_KAFKA            bootstrap (PLAINTEXT, a super user) reachable from pods and from here
//	MILLRACE_E2E_KAFKA_SCRAM      bootstrap of a SASL_PLAINTEXT SCRAM-SHA-512 listener (authentication scenario)
//	MILLRACE_E2E_STRIMZI          "double" (default): run the project's Strimzi test double in this
//	                              process; "real": Strimzi's operators run in the cluster
//	MILLRACE_E2E_STRIMZI_CLUSTER  the Strimzi Kafka cluster name (default e2e-kafka)
//	MILLRACE_E2E_CTR              a command that runs ctr against the node's containerd (for example
//	                              "hack/cluster.sh ctr"); the scenarios that kill a container through
//	                              the runtime skip that step without it
//	MILLRACE_E2E_REPORT           a file the measured figures are appended to (docs/benchmarks.md)
//
// Each scenario makes its own namespace and deletes it at the end, so the suite runs again
// against the same cluster.
package cluster

import (
	"context"
	"fmt"
	"github.com/go-logr/logr"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
)

// env is what the whole suite shares.
var env struct {
	cfg       *rest.Config
	c         client.Client
	cs        *kubernetes.Clientset
	kafka     string
	scram     string
	strimzi   string
	cluster   string
	ctr       []string
	report    string
	operatorN string // the operator's namespace
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The Strimzi doubles log through their own logger; controller-runtime's global one is unused
	// here, and set so that its informers do not print a stack about it.
	log.SetLogger(logr.Discard())
	kc := os.Getenv("KUBECONFIG")
	env.kafka = os.Getenv("MILLRACE_E2E_KAFKA")
	if kc == "" || env.kafka == "" {
		fmt.Fprintln(os.Stderr, "the cluster tier needs KUBECONFIG and MILLRACE_E2E_KAFKA: run `make test-e2e` (see README)")
		return 1
	}
	var err error
	if env.cfg, err = clientcmd.BuildConfigFromFlags("", kc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.cfg.QPS, env.cfg.Burst = 50, 100
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, strimzi.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if env.c, err = client.New(env.cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env.cs, err = kubernetes.NewForConfig(env.cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.scram = os.Getenv("MILLRACE_E2E_KAFKA_SCRAM")
	env.strimzi = valueOr(os.Getenv("MILLRACE_E2E_STRIMZI"), "double")
	env.cluster = valueOr(os.Getenv("MILLRACE_E2E_STRIMZI_CLUSTER"), "e2e-kafka")
	env.ctr = strings.Fields(os.Getenv("MILLRACE_E2E_CTR"))
	env.report = os.Getenv("MILLRACE_E2E_REPORT")
	env.operatorN = valueOr(os.Getenv("MILLRACE_E2E_OPERATOR_NAMESPACE"), "millrace-system")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, err := startStrimzi(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "strimzi:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

func valueOr(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// record appends one measured figure to the report file (and the test log).
func record(t *testing.T, what string, d time.Duration, detail string) {
	t.Helper()
	t.Logf("measured: %s = %s %s", what, d.Round(time.Millisecond), detail)
	if env.report == "" {
		return
	}
	f, err := os.OpenFile(env.report, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("report: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s\t%s\t%.3f\t%s\n", time.Now().UTC().Format(time.RFC3339), what, d.Seconds(), detail)
}
