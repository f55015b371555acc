package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/controllers/testenv"
)

// crdSchema is one served version of a third-party CRD, ready to validate and prune against.
type crdSchema struct {
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
}

// loadCRDs reads every CRD under dir, keyed by group/version/kind.
func loadCRDs(t *testing.T, dir string) map[schema.GroupVersionKind]crdSchema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[schema.GroupVersionKind]crdSchema{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := dec.Decode(&crd); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decode %s: %v", file, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				var internal apiextensions.JSONSchemaProps
				if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
					t.Fatalf("convert schema of %s %s: %v", crd.Name, v.Name, err)
				}
				validator, _, err := validation.NewSchemaValidator(&internal)
				if err != nil {
					t.Fatalf("schema validator of %s %s: %v", crd.Name, v.Name, err)
				}
				structural, err := structuralschema.NewStructural(&internal)
				if err != nil {
					t.Fatalf("structural schema of %s %s: %v", crd.Name, v.Name, err)
				}
				gvk := schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
				out[gvk] = crdSchema{validator: validator, structural: structural}
			}
		}
	}
	return out
}

// TestSchemaConformance validates every rendered third-party object against the real CRD of
// the version it claims, as the API server would: OpenAPI validation, and pruning, which must
// drop nothing (a dropped field is a field the operator sets and the cluster silently ignores).
func TestSchemaConformance(t *testing.T) {
	crdDir := testenv.SharedCRDs()
	if crdDir == "" {
		t.Skip("the real third-party CRDs are not at hand (../shared/crds next to the checkout, or $MILLRACE_SHARED_CRDS)")
	}
	crds := loadCRDs(t, crdDir)
	checked := map[string]bool{}
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			res := mustRender(t, tc.pipeline, tc.facts)
			for _, o := range res.Objects {
				gvk := o.GetObjectKind().GroupVersionKind()
				s, ok := crds[gvk]
				if !ok {
					continue // a built-in kind
				}
				checked[gvk.String()] = true
				u := toUnstructured(t, o)
				if errs := validation.ValidateCustomResource(nil, u, s.validator); len(errs) > 0 {
					t.Errorf("%s %s does not validate: %v", gvk.Kind, o.GetName(), errs.ToAggregate())
				}
				if dropped := pruning.PruneWithOptions(u, s.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(dropped) > 0 {
					t.Errorf("%s %s has fields the CRD prunes: %v", gvk.Kind, o.GetName(), dropped)
				}
			}
		})
	}
	for _, want := range []string{
		"kafka.strimzi.io/v1, Kind=KafkaTopic", "kafka.strimzi.io/v1beta2, Kind=KafkaTopic",
		"kafka.strimzi.io/v1, Kind=KafkaUser", "kafka.strimzi.io/v1beta2, Kind=KafkaUser",
		"keda.sh/v1alpha1, Kind=ScaledObject", "keda.sh/v1alpha1, Kind=TriggerAuthentication",
		"monitoring.coreos.com/v1, Kind=ServiceMonitor", "monitoring.coreos.com/v1, Kind=PrometheusRule",
	} {
		if !checked[want] {
			t.Errorf("no golden case renders %s: conformance is not tested for it", want)
		}
	}
}

func toUnstructured(t *testing.T, o client.Object) map[string]any {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	// Read-only fields the API server manages; a create never sends them.
	delete(u, "status")
	if md, ok := u["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return u
}

// TestPodSecurityRestricted runs the Pod Security Admission library over every rendered pod
// template, at the restricted level of the newest policy version.
func TestPodSecurityRestricted(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	level := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			for _, o := range mustRender(t, tc.pipeline, tc.facts).Objects {
				sts, ok := o.(*appsv1.StatefulSet)
				if !ok {
					continue
				}
				tmpl := sts.Spec.Template
				result := policy.AggregateCheckResults(evaluator.EvaluatePod(level, &tmpl.ObjectMeta, &tmpl.Spec))
				if !result.Allowed {
					t.Errorf("StatefulSet %s violates the restricted Pod Security Standard: %s", sts.Name, result.ForbiddenDetail())
				}
			}
		})
	}
}

// restrictedV2 is what OpenShift's restricted-v2 SecurityContextConstraints admit, for a
// namespace whose openshift.io/sa.scc.uid-range and supplemental-groups are uidMin/size: users
// and fsGroups must lie in that range (MustRunAsRange, MustRunAs), so a pod may leave them unset
// (the SCC assigns them) but not fix its own; no privilege, no escalation, every capability
// dropped, the runtime's seccomp profile, and only these volume types.
func restrictedV2(spec *corev1.PodSpec, uidMin, size int64) []string {
	var out []string
	inRange := func(what string, id *int64) {
		if id != nil && (*id < uidMin || *id >= uidMin+size) {
			out = append(out, fmt.Sprintf("%s %d is outside the namespace's range [%d, %d)", what, *id, uidMin, uidMin+size))
		}
	}
	if sc := spec.SecurityContext; sc != nil {
		inRange("pod runAsUser", sc.RunAsUser)
		inRange("pod fsGroup", sc.FSGroup)
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			out = append(out, "pod seccomp profile is not runtime/default")
		}
	}
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			out = append(out, c.Name+": no securityContext")
			continue
		}
		inRange(c.Name+" runAsUser", sc.RunAsUser)
		if sc.Privileged != nil && *sc.Privileged {
			out = append(out, c.Name+": privileged")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			out = append(out, c.Name+": allowPrivilegeEscalation is not false")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			out = append(out, c.Name+": capabilities are not dropped")
		}
		if sc.Capabilities != nil {
			for _, add := range sc.Capabilities.Add {
				if add != "NET_BIND_SERVICE" {
					out = append(out, fmt.Sprintf("%s: adds capability %s", c.Name, add))
				}
			}
		}
	}
	for _, v := range spec.Volumes {
		vs := v.VolumeSource
		if vs.ConfigMap == nil && vs.Secret == nil && vs.EmptyDir == nil && vs.Projected == nil &&
			vs.DownwardAPI == nil && vs.PersistentVolumeClaim == nil && vs.CSI == nil && vs.Ephemeral == nil {
			out = append(out, "volume "+v.Name+" is of a type restricted-v2 does not allow")
		}
	}
	return out
}

// TestOpenShiftRestrictedV2: every rendered pod template is admitted by OpenShift's default
// restricted-v2 SCC, in a namespace with a typical OpenShift range, as well as by the restricted
// Pod Security Standard (TestPodSecurityRestricted).
func TestOpenShiftRestrictedV2(t *testing.T) {
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			for _, o := range mustRender(t, tc.pipeline, tc.facts).Objects {
				sts, ok := o.(*appsv1.StatefulSet)
				if !ok {
					continue
				}
				if problems := restrictedV2(&sts.Spec.Template.Spec, 1000660000, 10000); len(problems) > 0 {
					t.Errorf("StatefulSet %s is rejected by restricted-v2: %s", sts.Name, strings.Join(problems, "; "))
				}
				if sc := sts.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
					t.Errorf("StatefulSet %s: the pod must still require a non-root user", sts.Name)
				}
			}
		})
	}
}
