package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/operator-framework/api/pkg/encoding"
	"github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	"github.com/operator-framework/api/pkg/validation"
	validationerrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// root is the repository root, seen from this package.
const root = "../.."

// acceptedWarnings are validator warnings that say nothing about this bundle, each with the
// reason it is accepted. Any other warning fails the test, like an error: a warning that is not
// worth fixing belongs here, with its reason.
var acceptedWarnings = map[*regexp.Regexp]string{
	// We run the deprecated validator because OperatorHub's pipeline still does; its successors
	// run too.
	regexp.MustCompile(`The "operatorhub" validator is deprecated; for equivalent validation use "operatorhub/v2", "standardcapabilities" and "standardcategories" validators$`): "OperatorHub's checks still run it; its successors run here too",
	// RBAC rules name a group and resource but no version. The validator flags every rule on
	// events.k8s.io events because events.k8s.io/v1beta1 went in 1.25, though events.k8s.io/v1,
	// which the operator's event recorder uses, is served since 1.19.
	regexp.MustCompile(`Migrate the API\(s\) for events: \(\[("ClusterServiceVersion\.Spec\.InstallStrategy\.StrategySpec\.(Cluster)?Permissions\[\d+\]\.Rules\[\d+\]" ?)+\]\)$`): "false positive on RBAC rules for events.k8s.io/v1",
}

// warningsUntilSamples are accepted only while config/samples holds no Pipeline: the generator
// then warns, and `make bundle` is to be run again once samples exist.
var warningsUntilSamples = []string{
	"provided API should have an example annotation",
}

// TestBundleValidates runs the operator-framework validators that OperatorHub runs on the
// committed bundle: the default bundle suite, the OperatorHub suites (with the Kubernetes version
// the CRD needs, so removed APIs are errors) and good practices. Any error fails.
func TestBundleValidates(t *testing.T) {
	bundle, err := loadBundle(filepath.Join(root, "bundle"))
	if err != nil {
		t.Fatalf("load bundle/ (run `make bundle`): %v", err)
	}
	results := validate(bundle)

	noSamples := strings.TrimSpace(bundle.CSV.Annotations["alm-examples"]) == "[]"
	for _, r := range results {
		for _, e := range r.Errors {
			t.Errorf("%s: error: %s", r.Name, e.Error())
		}
		for _, w := range r.Warnings {
			if accepted(w, noSamples) {
				t.Logf("%s: accepted warning: %s", r.Name, w.Error())
				continue
			}
			t.Errorf("%s: warning: %s", r.Name, w.Error())
		}
	}
}

// validate runs the validators OperatorHub runs: the default bundle suite, the OperatorHub suites
// (with the Kubernetes version the CRD needs, so that removed APIs are errors) and good practices.
func validate(bundle *manifests.Bundle) []validationerrors.ManifestResult {
	validators := append(interfaces.Validators{}, validation.DefaultBundleValidators...)
	validators = append(validators,
		validation.OperatorHubValidator,
		validation.OperatorHubV2Validator,
		validation.StandardCapabilitiesValidator,
		validation.StandardCategoriesValidator,
		validation.GoodPracticesValidator,
		validation.AlphaDeprecatedAPIsValidator,
	)
	objs := append(bundle.ObjectsToValidate(), bundle, map[string]string{"k8s-version": "1.34"})
	return validators.Validate(objs...)
}

// TestValidatorsCatchBrokenBundles guards the test above: a bundle with known defects must
// produce errors, or the validators are not running.
func TestValidatorsCatchBrokenBundles(t *testing.T) {
	cases := map[string]struct {
		reason string
		break_ func(b *manifests.Bundle)
	}{
		"BadMaintainerEmail": {
			reason: "OperatorHub requires a valid maintainer email",
			break_: func(b *manifests.Bundle) { b.CSV.Spec.Maintainers[0].Email = "not-an-email" },
		},
		"UnknownCapability": {
			reason: "the capability level must be one of OperatorHub's",
			break_: func(b *manifests.Bundle) { b.CSV.Annotations["capabilities"] = "Somewhat Capable" },
		},
		"NoInstallModes": {
			reason: "a CSV without install modes cannot be installed",
			break_: func(b *manifests.Bundle) { b.CSV.Spec.InstallModes = nil },
		},
		"ExampleOfUnknownKind": {
			reason: "alm-examples may only hold owned kinds",
			break_: func(b *manifests.Bundle) {
				b.CSV.Annotations["alm-examples"] = `[{"apiVersion":"example.com/v1","kind":"Other","metadata":{"name":"x"}}]`
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			bundle, err := loadBundle(filepath.Join(root, "bundle"))
			if err != nil {
				t.Fatal(err)
			}
			tc.break_(bundle)
			n := 0
			for _, r := range validate(bundle) {
				n += len(r.Errors)
			}
			if n == 0 {
				t.Errorf("%s: the validators found no error", tc.reason)
			}
		})
	}
}

func accepted(w validationerrors.Error, noSamples bool) bool {
	msg := w.Error()
	for re := range acceptedWarnings {
		if re.MatchString(msg) {
			return true
		}
	}
	if noSamples {
		for _, s := range warningsUntilSamples {
			if strings.Contains(msg, s) {
				return true
			}
		}
	}
	return false
}

// TestBundleUpToDate regenerates the bundle with the version, images and channels the committed
// one declares, and fails when config/ has changed since `make bundle` last ran.
func TestBundleUpToDate(t *testing.T) {
	opts, err := committedOptions()
	if err != nil {
		t.Fatalf("read the committed bundle (run `make bundle`): %v", err)
	}
	files, err := Generate(opts, "bundle", "bundle.Dockerfile")
	if err != nil {
		t.Fatalf("generate: %v", err)
	}
	var committed []string
	for _, dir := range []string{"bundle/manifests", "bundle/metadata"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		for _, e := range entries {
			committed = append(committed, dir+"/"+e.Name())
		}
	}
	committed = append(committed, "bundle.Dockerfile")
	var generated []string
	for p := range files.Paths {
		generated = append(generated, p)
	}
	sort.Strings(committed)
	sort.Strings(generated)
	if diff := cmp.Diff(generated, committed); diff != "" {
		t.Fatalf("bundle files differ from what `make bundle` writes (-generated +committed):\n%s", diff)
	}
	for _, p := range generated {
		got, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, files.Paths[p]) {
			t.Errorf("%s is out of date: run `make bundle`\n%s", p, cmp.Diff(string(files.Paths[p]), string(got)))
		}
	}
}

// TestGenerateDeterministic: two runs write the same bytes, so that `make verify` can diff.
func TestGenerateDeterministic(t *testing.T) {
	opts := DefaultOptions()
	opts.Root = root
	a, err := Generate(opts, "bundle", "bundle.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(opts, "bundle", "bundle.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a.Paths, b.Paths); diff != "" {
		t.Fatalf("two runs differ:\n%s", diff)
	}
}

// committedOptions reads back the options the committed bundle was generated with.
func committedOptions() (Options, error) {
	opts := DefaultOptions()
	opts.Root = root
	raw, err := os.ReadFile(filepath.Join(root, "bundle/manifests", opts.Package+".clusterserviceversion.yaml"))
	if err != nil {
		return opts, err
	}
	var csv struct {
		Spec struct {
			Version       string `json:"version"`
			Replaces      string `json:"replaces"`
			RelatedImages []struct {
				Name  string `json:"name"`
				Image string `json:"image"`
			} `json:"relatedImages"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &csv); err != nil {
		return opts, err
	}
	opts.Version = csv.Spec.Version
	opts.Replaces = csv.Spec.Replaces
	for _, ri := range csv.Spec.RelatedImages {
		switch ri.Name {
		case "millrace-operator":
			opts.Image = ri.Image
		case "io-sidecar":
			opts.IOSidecarImage = ri.Image
		case "state-sidecar":
			opts.StateSidecarImage = ri.Image
		}
	}
	raw, err = os.ReadFile(filepath.Join(root, "bundle/metadata/annotations.yaml"))
	if err != nil {
		return opts, err
	}
	var ann struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := yaml.Unmarshal(raw, &ann); err != nil {
		return opts, err
	}
	opts.Package = ann.Annotations["operators.operatorframework.io.bundle.package.v1"]
	opts.Channels = ann.Annotations["operators.operatorframework.io.bundle.channels.v1"]
	opts.DefaultChannel = ann.Annotations["operators.operatorframework.io.bundle.channel.default.v1"]
	return opts, nil
}

// loadBundle reads a bundle directory into what the validators take, as
// manifests.GetBundleFromDir does. That function cannot be used with the apimachinery this module
// builds with: it decodes each file twice with one YAMLOrJSONDecoder, seeking the file back in
// between, and since apimachinery v0.33 that decoder buffers the stream itself, so the second,
// typed decode of the CSV and the CRDs reads EOF.
func loadBundle(dir string) (*manifests.Bundle, error) {
	bundle := &manifests.Bundle{}
	entries, err := os.ReadDir(filepath.Join(dir, "manifests"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return nil, fmt.Errorf("bundle manifests hold %s, which OLM rejects", e.Name())
		}
		raw, err := os.ReadFile(filepath.Join(dir, "manifests", e.Name()))
		if err != nil {
			return nil, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
			return nil, fmt.Errorf("decode %s: %w", e.Name(), err)
		}
		bundle.Objects = append(bundle.Objects, obj)
		switch obj.GetKind() {
		case operatorsv1alpha1.ClusterServiceVersionKind:
			if bundle.CSV != nil {
				return nil, errors.New("bundle holds two ClusterServiceVersions")
			}
			bundle.CSV = &operatorsv1alpha1.ClusterServiceVersion{}
			if err := yaml.UnmarshalStrict(raw, bundle.CSV); err != nil {
				return nil, fmt.Errorf("decode %s: %w", e.Name(), err)
			}
			bundle.Name = bundle.CSV.Name
		case "CustomResourceDefinition":
			if obj.GetAPIVersion() != apiextensionsv1.SchemeGroupVersion.String() {
				return nil, fmt.Errorf("%s: CRD of %s", e.Name(), obj.GetAPIVersion())
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(raw, crd); err != nil {
				return nil, fmt.Errorf("decode %s: %w", e.Name(), err)
			}
			bundle.V1CRDs = append(bundle.V1CRDs, crd)
		}
	}
	if bundle.CSV == nil {
		return nil, errors.New("bundle holds no ClusterServiceVersion")
	}
	raw, err := os.ReadFile(filepath.Join(dir, "metadata", "annotations.yaml"))
	if err != nil {
		return nil, err
	}
	var ann manifests.AnnotationsFile
	if err := yaml.Unmarshal(raw, &ann); err != nil {
		return nil, fmt.Errorf("decode annotations.yaml: %w", err)
	}
	bundle.Package = ann.Annotations.PackageName
	bundle.Channels = strings.Split(ann.Annotations.Channels, ",")
	bundle.DefaultChannel = ann.Annotations.DefaultChannelName
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		gz, err := encoding.GzipBase64Encode(data)
		if err != nil {
			return err
		}
		bundle.Size += int64(len(data))
		bundle.CompressedSize += int64(len(gz))
		return nil
	})
	return bundle, err
}

// TestBundleDeclaresNoHardDependencies: every composed operator is optional (a Pipeline reports
// a missing one in its conditions), so the bundle makes OLM install none of them: no
// dependencies.yaml and no required CRDs in the CSV. A hard dependency would also install a
// second Strimzi, KEDA or Prometheus Operator next to one the platform already runs.
func TestBundleDeclaresNoHardDependencies(t *testing.T) {
	if _, err := os.Stat(filepath.Join(root, "bundle", "metadata", "dependencies.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bundle/metadata/dependencies.yaml exists (err %v): OLM would install the composed operators as hard dependencies", err)
	}
	bundle, err := loadBundle(filepath.Join(root, "bundle"))
	if err != nil {
		t.Fatalf("load bundle/ (run `make bundle`): %v", err)
	}
	if req := bundle.CSV.Spec.CustomResourceDefinitions.Required; len(req) > 0 {
		t.Errorf("the CSV requires CRDs %v: OLM would refuse to install Millrace without them", req)
	}
	// OLM fails the whole install when an object's CRD is missing: no object of a composed
	// operator's kind may ride in the bundle.
	entries, err := os.ReadDir(filepath.Join(root, "bundle", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), "monitoring.coreos.com") || strings.Contains(e.Name(), "keda.sh") || strings.Contains(e.Name(), "strimzi.io") {
			t.Errorf("bundle/manifests/%s is an object of a composed operator: OLM could not install Millrace without that operator", e.Name())
		}
	}
}
