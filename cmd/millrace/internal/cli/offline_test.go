package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wordcount is a copy of the word count sample, so that the golden files change when render
// does, not when the sample is edited.
const wordcount = "testdata/pipelines/wordcount.yaml"

// pipelines are the manifests of the golden tests.
var pipelines = []string{
	wordcount,
	"testdata/pipelines/fanout.yaml",
	"testdata/pipelines/direct-topics.yaml",
}

func TestValidateGolden(t *testing.T) {
	cases := []struct {
		reason string
		args   []string
		golden string
		code   int
	}{
		{reason: "the word count sample is valid", args: []string{"-f", samplePath(t)}, golden: "validate/wordcount.txt"},
		{reason: "the copy of the sample is valid", args: []string{"-f", wordcount}, golden: "validate/wordcount-copy.txt"},
		{reason: "several files and documents are each reported", args: []string{"-f", "testdata/pipelines/fanout.yaml,testdata/pipelines/direct-topics.yaml"}, golden: "validate/valid-several.txt"},
		{reason: "errors are the API server's, in kubectl's format", args: []string{"-f", "testdata/pipelines/invalid-several.yaml"}, golden: "validate/invalid-several.txt", code: 1},
		{reason: "a cycle is rejected as the reconciler rejects it", args: []string{"-f", "testdata/pipelines/cycle.yaml"}, golden: "validate/cycle.txt", code: 1},
		{reason: "an update must not decrease partitions", args: []string{"-f", "testdata/pipelines/fewer-partitions.yaml", "--old", wordcount}, golden: "validate/fewer-partitions.txt", code: 1},
		{reason: "a misspelt field is an error, as kubectl's strict field validation", args: []string{"-f", "testdata/pipelines/unknown-field.yaml"}, golden: "validate/unknown-field.txt", code: 1},
		{reason: "a zero value is checked as written, not dropped by a Go round trip", args: []string{"-f", "testdata/pipelines/zero-partitions.yaml"}, golden: "validate/zero-partitions.txt", code: 1},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			res := run(t, "millrace", "", append([]string{"validate"}, tc.args...)...)
			if res.code != tc.code {
				t.Errorf("%s: exit code %d, want %d; stderr:\n%s", tc.reason, res.code, tc.code, res.errOut)
			}
			golden(t, tc.golden, relativize(t, res.out+res.errOut))
		})
	}
}

func TestRenderGolden(t *testing.T) {
	cases := []struct {
		reason string
		args   []string
		golden string
	}{
		{reason: "the sample on a cluster with Strimzi v1, KEDA and the Prometheus Operator", args: []string{"-f", wordcount}, golden: "render/wordcount.yaml"},
		{reason: "Strimzi v1beta2 and no monitoring", args: []string{"-f", wordcount, "--strimzi-api-version", "v1beta2", "--prometheus-operator=false", "-n", "streams"}, golden: "render/wordcount-v1beta2.yaml"},
		{reason: "autoscaling without KEDA, observed replicas and custom images", args: []string{"-f", "testdata/pipelines/fanout.yaml", "--keda=false", "--replicas", "enrich=3", "--io-image", "example.com/io:1", "--state-image", "example.com/state:1"}, golden: "render/fanout-no-keda.yaml"},
		{reason: "Direct topics are listed as comments", args: []string{"-f", "testdata/pipelines/direct-topics.yaml", "--strimzi-api-version", "none"}, golden: "render/direct-topics.yaml"},
		{reason: "JSON output is a List", args: []string{"-f", "testdata/pipelines/direct-topics.yaml", "--strimzi-api-version", "none", "-o", "json"}, golden: "render/direct-topics.json"},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			res := run(t, "millrace", "", append([]string{"render"}, tc.args...)...)
			if res.code != 0 {
				t.Fatalf("%s: exit code %d; stderr:\n%s", tc.reason, res.code, res.errOut)
			}
			golden(t, tc.golden, res.out)
		})
	}
}

func TestRenderRefusesInvalidPipelines(t *testing.T) {
	res := run(t, "millrace", "", "render", "-f", "testdata/pipelines/cycle.yaml")
	if res.code == 0 || !strings.Contains(res.errOut, "the stream graph must be acyclic") {
		t.Errorf("render of a cyclic Pipeline: exit %d, stderr %q; want an error naming the cycle", res.code, res.errOut)
	}
	if res.out != "" {
		t.Errorf("render of an invalid Pipeline printed objects:\n%s", res.out)
	}
}

func TestGraphGolden(t *testing.T) {
	for _, format := range []string{"ascii", "dot", "mermaid"} {
		for _, file := range pipelines {
			name := strings.TrimSuffix(filepath.Base(file), ".yaml")
			t.Run(format+"/"+name, func(t *testing.T) {
				res := run(t, "millrace", "", "graph", "-f", file, "-o", format)
				if res.code != 0 {
					t.Fatalf("exit code %d; stderr:\n%s", res.code, res.errOut)
				}
				golden(t, "graph/"+name+"."+format, res.out)
			})
		}
	}
}

func TestGraphRejectsUnknownFormat(t *testing.T) {
	res := run(t, "millrace", "", "graph", "-f", samplePath(t), "-o", "png")
	if res.code == 0 || !strings.Contains(res.errOut, `unknown graph format "png"`) {
		t.Errorf("exit %d, stderr %q; want an unknown format error", res.code, res.errOut)
	}
}

func TestFileFromStdin(t *testing.T) {
	sample, err := os.ReadFile(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, "millrace", string(sample), "validate", "-f", "-")
	if res.code != 0 || res.out != "-: Pipeline default/wordcount is valid\n" {
		t.Errorf("validate -f - : exit %d, stdout %q, stderr %q", res.code, res.out, res.errOut)
	}
}

func TestPluginName(t *testing.T) {
	cases := []struct {
		argv0, want string
	}{
		{"/usr/local/bin/kubectl-millrace", "kubectl millrace"},
		{"kubectl-millrace", "kubectl millrace"},
		{"./bin/millrace", "millrace"},
		{"millrace", "millrace"},
	}
	for _, tc := range cases {
		if got := DisplayName(tc.argv0); got != tc.want {
			t.Errorf("DisplayName(%q) = %q, want %q", tc.argv0, got, tc.want)
		}
	}
	res := run(t, DisplayName("/usr/local/bin/kubectl-millrace"), "", "status", "--help")
	if !strings.Contains(res.out, "Usage:\n  kubectl millrace status [PIPELINE] [flags]") {
		t.Errorf("usage as a kubectl plugin does not say `kubectl millrace status`:\n%s", res.out)
	}
	for _, flag := range []string{"--kubeconfig", "--context", "-n, --namespace"} {
		if !strings.Contains(res.out, flag) {
			t.Errorf("status --help lacks kubectl's %s flag", flag)
		}
	}
	res = run(t, "millrace", "", "--help")
	if !strings.Contains(res.out, "Usage:\n  millrace [command]") {
		t.Errorf("usage as millrace does not say `millrace`:\n%s", res.out)
	}
}
