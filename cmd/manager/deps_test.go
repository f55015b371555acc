package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestManagerLinksNoAPIServerValidation: the operator binary links neither the API server's
// schema and CEL libraries (the CLI's `millrace validate` uses them; the API server runs the
// CRD's own CEL, and the reconciler only needs the cycle check of controllers/validate/topology)
// nor client-go's typed clientset beyond what controller-runtime itself needs. Both made the
// binary larger and its resident code pages more (docs/benchmarks.md, issue 11).
func TestManagerLinksNoAPIServerValidation(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := map[string]bool{}
	for _, d := range strings.Fields(string(out)) {
		deps[d] = true
	}
	if !deps["sigs.k8s.io/controller-runtime/pkg/manager"] {
		t.Fatalf("go list -deps does not list controller-runtime: %s", out)
	}
	imports, err := exec.Command("go", "list", "-f", "{{range .Imports}}{{.}} {{end}}", "github.com/millrace-dev/millrace/controllers/pipeline").Output()
	if err != nil {
		t.Fatalf("go list controllers/pipeline: %v", err)
	}
	for _, imp := range strings.Fields(string(imports)) {
		if imp == "k8s.io/client-go/kubernetes" {
			t.Errorf("controllers/pipeline imports the typed clientset of every API group")
		}
	}
	for _, banned := range []string{
		"github.com/millrace-dev/millrace/controllers/validate",
		"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel",
		"k8s.io/apiextensions-apiserver/pkg/apiserver/validation",
		"github.com/google/cel-go/cel",
	} {
		if deps[banned] {
			t.Errorf("cmd/manager links %s", banned)
		}
	}
}
