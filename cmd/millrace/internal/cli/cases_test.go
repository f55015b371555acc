package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	vt "github.com/millrace-dev/millrace/controllers/validate/validatetest"
)

// TestValidateRejectsTheAPIServersInvalidPipelines runs `millrace validate` on every Pipeline of
// the table that controllers/validate's suite applies to a real API server, written as the YAML
// a user would write, and checks the CLI exits 1 with the API server's message.
func TestValidateRejectsTheAPIServersInvalidPipelines(t *testing.T) {
	dir := t.TempDir()
	for i, c := range vt.InvalidCases() {
		t.Run(c.Reason, func(t *testing.T) {
			file := filepath.Join(dir, strings.Repeat("x", i+1)+".yaml")
			writePipelineYAML(t, file, c.Pipeline)
			res := run(t, "millrace", "", "validate", "-f", file)
			if res.code != 1 {
				t.Errorf("%s: exit code %d, want 1; output:\n%s%s", c.Reason, res.code, res.out, res.errOut)
			}
			if !strings.Contains(res.errOut, c.Want) {
				t.Errorf("%s: validate says\n  %s\nwhich lacks the API server's message\n  %s", c.Reason, res.errOut, c.Want)
			}
		})
	}
}

// TestValidateAcceptsValidPipelines: what the API server accepts, the CLI accepts.
func TestValidateAcceptsValidPipelines(t *testing.T) {
	dir := t.TempDir()
	for name, p := range vt.ValidPipelines() {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			writePipelineYAML(t, file, p)
			if res := run(t, "millrace", "", "validate", "-f", file); res.code != 0 {
				t.Errorf("%s: exit code %d, want 0; output:\n%s%s", name, res.code, res.out, res.errOut)
			}
		})
	}
}

func writePipelineYAML(t *testing.T, path string, p *v1alpha1.Pipeline) {
	t.Helper()
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
	if err != nil {
		t.Fatal(err)
	}
	delete(obj, "status")
	y, err := yaml.Marshal(clean(obj))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, y, 0o644); err != nil {
		t.Fatal(err)
	}
}
