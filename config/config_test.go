// Package config_test checks the kustomize layout users install Millrace with: that every
// kustomization builds, that the operator's Deployment passes the restricted Pod Security
// Standard as the API server would judge it, and that the monitoring shipped once is consistent
// with the metrics the binaries export.
package config_test

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			t.Fatal(err)
		}
		out = append(out, u)
	}
	return out
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
				t.Fatalf("decode %s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s", kind, name)
}

func TestKustomizationsBuild(t *testing.T) {
	for _, dir := range []string{"crd", "rbac", "manager", "default", "prometheus", "grafana", "manifests"} {
		t.Run(dir, func(t *testing.T) {
			if objs := build(t, dir); len(objs) == 0 {
				t.Errorf("kustomize build %s produced nothing", dir)
			}
		})
	}
}

// TestOperatorDeployment judges the operator's pod with the Pod Security Admission library, the
// code the API server runs for a namespace labelled pod-security.kubernetes.io/enforce=restricted,
// and checks the rest of what the issue asks of the Deployment.
func TestOperatorDeployment(t *testing.T) {
	objs := build(t, "default")
	var d appsv1.Deployment
	find(t, objs, "Deployment", "millrace-controller-manager", &d)

	for _, v := range restrictedViolations(t, &d.Spec.Template) {
		t.Errorf("restricted Pod Security: %s", v)
	}
	// Guard the check itself: the same pod without its security context must fail it.
	bare := d.Spec.Template.DeepCopy()
	bare.Spec.SecurityContext = nil
	bare.Spec.Containers[0].SecurityContext = nil
	if len(restrictedViolations(t, bare)) == 0 {
		t.Error("the Pod Security evaluator accepted a pod without a security context")
	}

	var ns corev1.Namespace
	find(t, objs, "Namespace", "millrace-system", &ns)
	if got := ns.Labels[psaapi.EnforceLevelLabel]; got != string(psaapi.LevelRestricted) {
		t.Errorf("namespace millrace-system enforces %q, want restricted", got)
	}

	if d.Namespace != "millrace-system" {
		t.Errorf("deployment in namespace %q", d.Namespace)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want the manager container alone, got %d containers", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("manager has no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("manager has no %s limit", res)
		}
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("manager's liveness probe must GET /healthz, got %+v", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("manager's readiness probe must GET /readyz, got %+v", c.ReadinessProbe)
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("manager must run with a read-only root filesystem")
	}
	wantArgs := []string{"--leader-elect", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081"}
	for _, a := range wantArgs {
		if !contains(c.Args, a) {
			t.Errorf("manager args %q lack %s", c.Args, a)
		}
	}
	// Every $(VAR) in the args is a variable of the container, or Kubernetes passes it literally.
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, a := range c.Args {
		for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(a, -1) {
			if !env[m[1]] {
				t.Errorf("arg %s refers to %s, which the container does not define", a, m[1])
			}
		}
	}

	var sa corev1.ServiceAccount
	find(t, objs, "ServiceAccount", d.Spec.Template.Spec.ServiceAccountName, &sa)

	// The metrics Service selects the operator's pods.
	var svc corev1.Service
	find(t, objs, "Service", "millrace-controller-manager-metrics-service", &svc)
	sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labelSet(d.Spec.Template.Labels)) {
		t.Errorf("metrics Service selector %v does not select the operator's pods %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
}

func restrictedViolations(t *testing.T, pod *corev1.PodTemplateSpec) []string {
	t.Helper()
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	level := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for _, r := range evaluator.EvaluatePod(level, &pod.ObjectMeta, &pod.Spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return out
}

type labelSet map[string]string

func (l labelSet) Has(k string) bool              { _, ok := l[k]; return ok }
func (l labelSet) Get(k string) string            { return l[k] }
func (l labelSet) Lookup(k string) (string, bool) { v, ok := l[k]; return v, ok }

// Metrics the shipped dashboard and alerts may use: those the I/O sidecar and the operator export,
// and kube-state-metrics' StatefulSet replicas.
var knownMetrics = map[string]bool{
	"millrace_records_in_total":                true,
	"millrace_records_out_total":               true,
	"millrace_records_dead_lettered_total":     true,
	"millrace_consumer_lag":                    true,
	"millrace_batch_latency_seconds_bucket":    true,
	"millrace_function_latency_seconds_bucket": true,
	"millrace_pipelines":                       true,
	"millrace_reconcile_errors_total":          true,
	"kube_statefulset_replicas":                true,
	"kube_statefulset_status_replicas_ready":   true,
	"up":                                       true,
}

var metricName = regexp.MustCompile(`\b(millrace_[a-z_]+|kube_[a-z_]+|up)\{`)

func TestGrafanaDashboard(t *testing.T) {
	objs := build(t, "grafana")
	var cm corev1.ConfigMap
	find(t, objs, "ConfigMap", "millrace-grafana-dashboard", &cm)
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap must be labelled grafana_dashboard: \"1\" for Grafana's sidecar, got %v", cm.Labels)
	}
	raw, ok := cm.Data["millrace-dashboard.json"]
	if !ok {
		t.Fatalf("ConfigMap has no millrace-dashboard.json")
	}
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(raw), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("the dashboard needs a fixed uid, so that links to it survive re-imports")
	}
	var vars []string
	for _, v := range dash.Templating.List {
		vars = append(vars, v.Name)
	}
	if diff := cmp.Diff([]string{"datasource", "namespace", "pipeline", "entity"}, vars); diff != "" {
		t.Errorf("dashboard variables (-want +got):\n%s", diff)
	}

	// Each of the views has a panel, and every query names known metrics only.
	used := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced query %s", p.Title, tg.Expr)
			}
			for _, m := range metricName.FindAllStringSubmatch(tg.Expr, -1) {
				if !knownMetrics[m[1]] {
					t.Errorf("panel %q queries %s, which nothing exports", p.Title, m[1])
				}
				used[m[1]] = true
			}
		}
	}
	for _, m := range []string{"millrace_records_in_total", "millrace_records_out_total", "millrace_consumer_lag",
		"millrace_batch_latency_seconds_bucket", "kube_statefulset_replicas", "millrace_records_dead_lettered_total"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}

func TestOperatorAlerts(t *testing.T) {
	objs := build(t, "prometheus")
	var rule monitoringv1.PrometheusRule
	find(t, objs, "PrometheusRule", "millrace-operator", &rule)
	var alerts []string
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			expr := r.Expr.String()
			for _, name := range regexp.MustCompile(`\b(millrace_[a-z_]+)\b`).FindAllString(expr, -1) {
				if !knownMetrics[name] {
					t.Errorf("alert %s uses %s, which nothing exports", r.Alert, name)
				}
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s needs a summary and a description that says what to do", r.Alert)
			}
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity", r.Alert)
			}
		}
	}
	sort.Strings(alerts)
	want := []string{"MillraceOperatorDown", "MillracePipelinesDegraded", "MillracePipelinesFailed", "MillraceReconcileErrors"}
	if diff := cmp.Diff(want, alerts); diff != "" {
		t.Errorf("operator alerts (-want +got):\n%s", diff)
	}

	var sm monitoringv1.ServiceMonitor
	find(t, objs, "ServiceMonitor", "millrace-controller-manager-metrics-monitor", &sm)
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" {
		t.Errorf("the operator's ServiceMonitor must scrape the metrics port, got %+v", sm.Spec.Endpoints)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
