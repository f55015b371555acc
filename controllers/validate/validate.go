// Package validate is the one place that decides whether a Pipeline is valid. It serves three
// callers with the same rules and the same messages:
//
//   - the API server, through the CRD's OpenAPI bounds and CEL rules (generated from the markers in
//     apis/streaming/v1alpha1);
//   - the CLI (`millrace validate`, `millrace run`), which has no API server: Schema runs the
//     generated CRD's own schema and CEL rules with the API server's own libraries, so a Pipeline
//     the CLI accepts is one `kubectl apply` accepts;
//   - the reconciler, for what CEL cannot express (Topology: cycles in the stream graph), surfaced
//     as a condition.
package validate

import (
	"context"
	"fmt"
	"sync"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/config/crd"
	"github.com/millrace-dev/millrace/controllers/validate/topology"
)

// schema is the Pipeline CRD's served version compiled once.
type schema struct {
	structural *structuralschema.Structural
	openapi    apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

var (
	compileOnce sync.Once
	compiled    *schema
	compileErr  error
)

func pipelineSchema() (*schema, error) {
	compileOnce.Do(func() { compiled, compileErr = compile(crd.Pipeline) })
	return compiled, compileErr
}

func compile(crdYAML []byte) (*schema, error) {
	var def apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(crdYAML, &def); err != nil {
		return nil, fmt.Errorf("decode the Pipeline CRD: %w", err)
	}
	var version *apiextensionsv1.CustomResourceDefinitionVersion
	for i := range def.Spec.Versions {
		if def.Spec.Versions[i].Name == v1alpha1.GroupVersion.Version {
			version = &def.Spec.Versions[i]
		}
	}
	if version == nil || version.Schema == nil || version.Schema.OpenAPIV3Schema == nil {
		return nil, fmt.Errorf("the Pipeline CRD has no schema for %s", v1alpha1.GroupVersion.Version)
	}
	var internal apiextensionsinternal.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(version.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
		return nil, fmt.Errorf("convert the Pipeline schema: %w", err)
	}
	structural, err := structuralschema.NewStructural(&internal)
	if err != nil {
		return nil, fmt.Errorf("build the structural Pipeline schema: %w", err)
	}
	openapi, _, err := apiservervalidation.NewSchemaValidator(&internal)
	if err != nil {
		return nil, fmt.Errorf("build the Pipeline schema validator: %w", err)
	}
	return &schema{
		structural: structural,
		openapi:    openapi,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// ToUnstructured turns a typed Pipeline into the JSON object the API server would see.
func ToUnstructured(p *v1alpha1.Pipeline) (map[string]any, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		return nil, err
	}
	obj["apiVersion"] = v1alpha1.GroupVersion.String()
	obj["kind"] = "Pipeline"
	// status is a subresource: the main resource's validation never sees it.
	delete(obj, "status")
	return obj, nil
}

// Default applies the CRD's defaults to a Pipeline, as the API server does when it stores one.
func Default(p *v1alpha1.Pipeline) (*v1alpha1.Pipeline, error) {
	s, err := pipelineSchema()
	if err != nil {
		return nil, err
	}
	obj, err := ToUnstructured(p)
	if err != nil {
		return nil, err
	}
	structuraldefaulting.Default(obj, s.structural)
	var out v1alpha1.Pipeline
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &out); err != nil {
		return nil, fmt.Errorf("decode the defaulted Pipeline: %w", err)
	}
	out.Status = p.Status
	return &out, nil
}

// Schema checks a Pipeline against the CRD's OpenAPI schema and CEL rules after defaulting, in the
// API server's order and with its messages. old, when not nil, is the stored Pipeline an update
// replaces, so that transition rules (partitions never decrease, topicName never changes) run.
//
// A typed Pipeline has lost the zero values its omitempty fields dropped (partitions: 0 is no
// field at all once it went through Go): to check a manifest as written, use SchemaObject.
func Schema(ctx context.Context, p, old *v1alpha1.Pipeline) field.ErrorList {
	obj, err := ToUnstructured(p)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	var oldObj map[string]any
	if old != nil {
		if oldObj, err = ToUnstructured(old); err != nil {
			return field.ErrorList{field.InternalError(nil, err)}
		}
	}
	return SchemaObject(ctx, obj, oldObj)
}

// SchemaObject is Schema for a Pipeline as the API server receives it: the JSON object of the
// manifest (integers as int64, as k8s.io/apimachinery/pkg/util/json decodes them), and the
// stored object an update replaces, or nil. Neither is modified.
func SchemaObject(ctx context.Context, obj, old map[string]any) field.ErrorList {
	s, err := pipelineSchema()
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	obj = asReceived(obj)
	structuraldefaulting.Default(obj, s.structural)
	var oldObj map[string]any
	if old != nil {
		oldObj = asReceived(old)
		structuraldefaulting.Default(oldObj, s.structural)
	}

	u := &unstructured.Unstructured{Object: obj}
	errs := validation.ValidateObjectMetaAccessor(u, true, validation.NameIsDNSSubdomain, field.NewPath("metadata"))
	if old != nil {
		errs = append(errs, apiservervalidation.ValidateCustomResourceUpdate(nil, obj, oldObj, s.openapi)...)
	} else {
		errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, s.openapi)...)
	}
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, s.structural, obj)...)
	if blocking(errs) {
		return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
	}
	var oldArg any
	if oldObj != nil {
		oldArg = oldObj
	}
	celErrs, _ := s.cel.Validate(ctx, nil, s.structural, obj, oldArg, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// asReceived is a copy of obj without status, which is a subresource: the main resource's
// validation never sees it.
func asReceived(obj map[string]any) map[string]any {
	out := runtime.DeepCopyJSON(obj)
	delete(out, "status")
	return out
}

// blocking mirrors the API server: after these errors, CEL rules are not evaluated.
func blocking(errs field.ErrorList) bool {
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return true
		}
	}
	return false
}

// Pipeline runs every check: the API server's schema and rules, then the topology checks.
func Pipeline(ctx context.Context, p, old *v1alpha1.Pipeline) field.ErrorList {
	errs := Schema(ctx, p, old)
	if len(errs) > 0 {
		return errs
	}
	return Topology(p)
}

// Object runs every check on a Pipeline as written (see SchemaObject): the API server's schema and
// rules, then the topology checks on the Pipeline it decodes to.
func Object(ctx context.Context, obj, old map[string]any) field.ErrorList {
	if errs := SchemaObject(ctx, obj, old); len(errs) > 0 {
		return errs
	}
	var p v1alpha1.Pipeline
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &p); err != nil {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("decode the Pipeline: %w", err))}
	}
	return Topology(&p)
}

// Topology checks what CEL cannot: the stream graph of a Pipeline must be acyclic, since a cycle
// feeds an entity its own output forever. It is topology.Check, which the operator calls
// without linking this package's schema and CEL libraries.
func Topology(p *v1alpha1.Pipeline) field.ErrorList { return topology.Check(p) }
