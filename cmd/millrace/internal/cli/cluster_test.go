package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/pipeline/revision"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/testenv"
)

var (
	envOnce    sync.Once
	env        *testenv.Env
	envErr     error
	kubeconfig string
	apiClient  client.Client
)

// cluster starts one API server (with the Pipeline and KEDA CRDs) for the package's tests, and
// writes a kubeconfig for it whose current context defaults to namespace team-a; context
// "other" defaults to namespace other.
func cluster(t *testing.T) (string, client.Client) {
	t.Helper()
	envOnce.Do(func() {
		if env, envErr = testenv.Start(testenv.Options{KEDA: true}); envErr != nil {
			return
		}
		cfg := env.Config
		kc := clientcmdapi.NewConfig()
		kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
		kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
		kc.Contexts["team-a"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "team-a"}
		kc.Contexts["other"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "other"}
		kc.CurrentContext = "team-a"
		dir, err := os.MkdirTemp("", "millrace-kubeconfig-")
		if err != nil {
			envErr = err
			return
		}
		kubeconfig = filepath.Join(dir, "config")
		if envErr = clientcmd.WriteToFile(*kc, kubeconfig); envErr != nil {
			return
		}
		scheme := runtime.NewScheme()
		for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, kedav1alpha1.AddToScheme} {
			if envErr = add(scheme); envErr != nil {
				return
			}
		}
		apiClient, envErr = client.New(cfg, client.Options{Scheme: scheme})
	})
	if envErr != nil {
		t.Fatalf("start envtest: %v", envErr)
	}
	return kubeconfig, apiClient
}

func stopEnvtest() {
	if env != nil {
		_ = env.Stop()
		os.RemoveAll(filepath.Dir(kubeconfig))
	}
}

// kubectl runs the plugin as kubectl would, with KUBECONFIG set.
func kubectl(t *testing.T, args ...string) result {
	t.Helper()
	kc, _ := cluster(t)
	t.Setenv("KUBECONFIG", kc)
	return run(t, DisplayName("kubectl-millrace"), "", args...)
}

func mustSucceed(t *testing.T, res result, contains ...string) {
	t.Helper()
	if res.code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", res.code, res.out, res.errOut)
	}
	for _, c := range contains {
		if !strings.Contains(res.out, c) {
			t.Errorf("output lacks %q:\n%s", c, res.out)
		}
	}
}

func mustFail(t *testing.T, res result, contains string) {
	t.Helper()
	if res.code == 0 || !strings.Contains(res.errOut, contains) {
		t.Errorf("want a failure saying %q; exit %d, stdout %q, stderr %q", contains, res.code, res.out, res.errOut)
	}
}

func TestClusterCommands(t *testing.T) {
	_, c := cluster(t)
	ctx := context.Background()
	for _, ns := range []string{"team-a", "other"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	// The sample with an autoscaled split, so status has a lag to show.
	p, err := manifest.ReadOne(samplePath(t), nil, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	p.Spec.Entities[0].Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 6}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	t.Run("status before the operator reconciled", func(t *testing.T) {
		mustSucceed(t, kubectl(t, "status"), "Pipeline team-a/wordcount: Unknown", "No conditions yet")
	})

	t.Run("status with entities, KEDA's lag and conditions", func(t *testing.T) {
		so := &kedav1alpha1.ScaledObject{
			ObjectMeta: metav1.ObjectMeta{Name: render.ScaledObjectName(p, "split"), Namespace: "team-a"},
			Spec:       kedav1alpha1.ScaledObjectSpec{ScaleTargetRef: &kedav1alpha1.ScaleTarget{Name: render.StatefulSetName(p, "split")}, Triggers: []kedav1alpha1.ScaleTriggers{{Type: "kafka", Metadata: map[string]string{"topic": "x"}}}},
		}
		if err := c.Create(ctx, so); err != nil {
			t.Fatal(err)
		}
		so.Status.HpaName = "keda-hpa-split-custom"
		if err := c.Status().Update(ctx, so); err != nil {
			t.Fatal(err)
		}
		hpa := &autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Name: "keda-hpa-split-custom", Namespace: "team-a"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "StatefulSet", Name: render.StatefulSetName(p, "split")},
				MinReplicas:    ptr.To[int32](1), MaxReplicas: 6,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "s0-kafka-x"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(100, resource.DecimalSI)},
				}}},
			},
		}
		if err := c.Create(ctx, hpa); err != nil {
			t.Fatal(err)
		}
		hpa.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 3, DesiredReplicas: 3,
			CurrentMetrics: []autoscalingv2.MetricStatus{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricStatus{
				Metric:  autoscalingv2.MetricIdentifier{Name: "s0-kafka-x"},
				Current: autoscalingv2.MetricValueStatus{AverageValue: resource.NewQuantity(150, resource.DecimalSI)},
			}}},
		}
		if err := c.Status().Update(ctx, hpa); err != nil {
			t.Fatal(err)
		}
		now := metav1.NewTime(time.Now().Add(-90 * time.Second))
		p.Status = v1alpha1.PipelineStatus{
			ObservedGeneration: p.Generation, Phase: v1alpha1.PhaseDegraded,
			CurrentRevision: "wordcount-abc", UpdateRevision: "wordcount-def",
			Entities: []v1alpha1.EntityStatus{
				{Name: "split", Replicas: 3, ReadyReplicas: 3, Partitions: 6, Autoscaling: "1-6"},
				{Name: "sum", Replicas: 2, ReadyReplicas: 1, Partitions: 6, Config: &v1alpha1.EntityConfigStatus{
					Digest: "0439e5c8aee2affa", AppliedPods: 1, RunningPods: 2, PendingRestart: 1,
					PendingRestartReason: "spec.entities[sum].image (Rolling)",
				}},
			},
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ConditionExecutorsReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonExecutorsPending, Message: "entity sum: 1 of 2 replicas ready; see kubectl describe pod", LastTransitionTime: now, ObservedGeneration: p.Generation},
				{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonExecutorsPending, Message: "executors are starting", LastTransitionTime: now, ObservedGeneration: p.Generation},
			},
		}
		if err := c.Status().Update(ctx, p); err != nil {
			t.Fatal(err)
		}
		res := kubectl(t, "status", "wordcount")
		mustSucceed(t, res, "Pipeline team-a/wordcount: Degraded", "revision: current wordcount-abc, update wordcount-def",
			"entity sum: 1 of 2 replicas ready; see kubectl describe pod",
			"  sum: configuration 0439e5c8aee2affa applied by 1 of 2 running pods; 1 pods wait for a restart: spec.entities[sum].image (Rolling)\n")
		// Lag is KEDA's average per replica times the replicas: 150 * 3.
		lines := strings.Split(res.out, "\n")
		var split, sum, ready string
		for _, l := range lines {
			switch f := strings.Fields(l); {
			case len(f) > 0 && f[0] == "split":
				split = strings.Join(f, " ")
			case len(f) > 0 && f[0] == "sum":
				sum = strings.Join(f, " ")
			case len(f) > 0 && f[0] == "Ready":
				ready = strings.Join(f, " ")
			}
		}
		if split != "split 3 3 1-6 6 450 lines words" {
			t.Errorf("split row %q, want replicas 3, ready 3, autoscaling 1-6, partitions 6, lag 450", split)
		}
		if sum != "sum 2 1 - 6 - words counts" {
			t.Errorf("sum row %q, want replicas 2, ready 1, no autoscaling, partitions 6, no lag", sum)
		}
		if !strings.HasPrefix(ready, "Ready False ExecutorsPending") || strings.Index(res.out, "Ready ") > strings.Index(res.out, "ExecutorsReady") {
			t.Errorf("Ready row %q should come first among the conditions:\n%s", ready, res.out)
		}
	})

	t.Run("the kubeconfig context's namespace and --context, -n, -A", func(t *testing.T) {
		mustSucceed(t, kubectl(t, "status", "--context", "other"), "No Pipelines found in namespace other.")
		mustSucceed(t, kubectl(t, "status", "-n", "other"), "No Pipelines found in namespace other.")
		mustSucceed(t, kubectl(t, "status", "--context", "other", "-A"), "Pipeline team-a/wordcount")
		mustFail(t, kubectl(t, "status", "nosuch"), "pipeline team-a/nosuch not found")
	})

	get := func(t *testing.T) *v1alpha1.Pipeline {
		t.Helper()
		got := &v1alpha1.Pipeline{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	t.Run("suspend and resume", func(t *testing.T) {
		mustSucceed(t, kubectl(t, "suspend", "wordcount"), "pipeline team-a/wordcount suspended")
		if !get(t).Spec.Suspend {
			t.Fatal("spec.suspend is not true after suspend")
		}
		mustSucceed(t, kubectl(t, "suspend", "wordcount"), "already suspended")
		mustSucceed(t, kubectl(t, "resume", "wordcount"), "pipeline team-a/wordcount resumed")
		if get(t).Spec.Suspend {
			t.Fatal("spec.suspend is still true after resume")
		}
	})

	t.Run("scale", func(t *testing.T) {
		mustSucceed(t, kubectl(t, "scale", "wordcount", "sum", "--replicas", "3"), "entity sum scaled to 3 replicas")
		if r := get(t).Spec.Entities[1].Replicas; r == nil || *r != 3 {
			t.Fatalf("sum replicas %v after scale, want 3", r)
		}
		// Without the Pipeline's name: the one Pipeline of the namespace with that entity.
		mustSucceed(t, kubectl(t, "scale", "sum", "--replicas", "4"), "entity sum scaled to 4 replicas")
		if r := get(t).Spec.Entities[1].Replicas; r == nil || *r != 4 {
			t.Fatalf("sum replicas %v after scale, want 4", r)
		}
		mustFail(t, kubectl(t, "scale", "wordcount", "split", "--replicas", "2"), "is autoscaled by KEDA (autoscaled 1-6)")
		mustFail(t, kubectl(t, "scale", "wordcount", "nosuch", "--replicas", "2"), `has no entity "nosuch"; its entities are split, sum`)
		mustFail(t, kubectl(t, "scale", "wordcount", "sum"), "--replicas is required")
		// The API server's own rules still apply: more replicas than partitions is fine for
		// Static; a negative count is refused before it is sent.
		mustFail(t, kubectl(t, "scale", "wordcount", "sum", "--replicas=-1"), "must not be negative")
	})

	t.Run("history and rollback", func(t *testing.T) {
		mustSucceed(t, kubectl(t, "history", "wordcount"), "has no revisions yet")
		current := get(t)
		var names []string
		for i, image := range []string{"millrace/wordcount-sum:1", "millrace/wordcount-sum:2"} {
			spec := current.Spec.DeepCopy()
			spec.Entities[1].Image = image
			d, err := revision.For(spec)
			if err != nil {
				t.Fatal(err)
			}
			cr := revision.New(current, d, int64(i+1), map[string]string{v1alpha1.LabelPipeline: p.Name})
			if err := c.Create(ctx, cr); err != nil {
				t.Fatal(err)
			}
			names = append(names, cr.Name)
		}
		// A namesake's revision that this Pipeline does not control is not its history.
		stray := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "wordcount-stray", Namespace: "team-a",
			Labels: map[string]string{v1alpha1.LabelPipeline: p.Name}}, Data: runtime.RawExtension{Raw: []byte("{}")}, Revision: 7}
		if err := c.Create(ctx, stray); err != nil {
			t.Fatal(err)
		}
		current.Status.CurrentRevision, current.Status.UpdateRevision = names[1], names[1]
		if err := c.Status().Update(ctx, current); err != nil {
			t.Fatal(err)
		}
		res := kubectl(t, "history", "wordcount")
		mustSucceed(t, res, names[0], names[1], "sum=millrace/wordcount-sum:1 (4 replicas)", "current")
		if strings.Contains(res.out, "wordcount-stray") {
			t.Errorf("history lists a revision the Pipeline does not control:\n%s", res.out)
		}
		mustSucceed(t, kubectl(t, "history", "wordcount", "--revision", "1"), "image: millrace/wordcount-sum:1", "# pipeline team-a/wordcount revision 1 ("+names[0]+")")

		mustFail(t, kubectl(t, "rollback", "wordcount", "--to-revision", "7"), "pipeline team-a/wordcount has no revision 7; its revisions are 1, 2")
		mustFail(t, kubectl(t, "rollback", "wordcount"), "--to-revision is required")
		mustSucceed(t, kubectl(t, "rollback", "wordcount", "--to-revision", "1"), "rollback to revision 1 requested")
		if got := get(t).Annotations[v1alpha1.AnnotationRollbackTo]; got != "1" {
			t.Errorf("annotation %s = %q after rollback, want \"1\"", v1alpha1.AnnotationRollbackTo, got)
		}
	})
}
