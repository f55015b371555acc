package render

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

const wordCountSample = "../../config/samples/streaming_v1alpha1_pipeline_wordcount.yaml"

// TestWordCountSample keeps the published sample and the word-count fixture of the golden files
// the same Pipeline, so the golden file shows what the sample renders to.
func TestWordCountSample(t *testing.T) {
	b, err := os.ReadFile(wordCountSample)
	if err != nil {
		t.Fatal(err)
	}
	var sample v1alpha1.Pipeline
	if err := yaml.UnmarshalStrict(b, &sample); err != nil {
		t.Fatalf("decode %s: %v", wordCountSample, err)
	}
	// The sample names no namespace and has no UID: it has not been applied yet.
	want := wordCount(withNamespace(""), func(p *v1alpha1.Pipeline) { p.UID = "" })
	if diff := cmp.Diff(want, &sample); diff != "" {
		t.Errorf("%s differs from the wordCount fixture: -fixture, +sample:\n%s", wordCountSample, diff)
	}
	if _, err := Render(&sample, newFacts()); err != nil {
		t.Errorf("Render of the sample: %v", err)
	}
}
