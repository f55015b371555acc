package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
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
