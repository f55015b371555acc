package cli

import (
	"context"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/controllers/testenv"
)

// TestRenderOutputApplies: what `millrace render` prints is, as it claims, what can be applied:
// every object is accepted by a real API server with the Strimzi, KEDA and Prometheus Operator
// CRDs installed (server-side apply, dry run), and carries no status.
func TestRenderOutputApplies(t *testing.T) {
	env, err := testenv.Start(testenv.Options{Strimzi: testenv.StrimziV1, KEDA: true, PrometheusOperator: true})
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	defer env.Stop()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"web", "team"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	cases := map[string][]string{
		"the word count sample with KEDA and monitoring": {"-f", wordcount, "-n", "team"},
		"autoscaling without KEDA":                       {"-f", "testdata/pipelines/fanout.yaml", "--keda=false"},
		"direct topics":                                  {"-f", "testdata/pipelines/direct-topics.yaml", "--strimzi-api-version", "none", "-n", "team"},
	}
	for reason, args := range cases {
		t.Run(reason, func(t *testing.T) {
			res := run(t, "millrace", "", append([]string{"render", "-o", "json"}, args...)...)
			if res.code != 0 {
				t.Fatalf("render: exit %d; stderr:\n%s", res.code, res.errOut)
			}
			var list struct {
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal([]byte(res.out), &list); err != nil {
				t.Fatalf("decode the List: %v", err)
			}
			if len(list.Items) == 0 {
				t.Fatal("render printed no objects")
			}
			for _, it := range list.Items {
				u := &unstructured.Unstructured{Object: it}
				if _, ok := it["status"]; ok {
					t.Errorf("%s %s carries a status block", u.GetKind(), u.GetName())
				}
				err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("millrace-render-test"), client.ForceOwnership, client.DryRunAll)
				if err != nil {
					t.Errorf("apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
		})
	}
}
