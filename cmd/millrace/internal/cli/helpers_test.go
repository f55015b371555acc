package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata from the current output")

// repoRoot is the root of the checkout (tests run in cmd/millrace/internal/cli).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// samplePath is the word count sample Pipeline.
func samplePath(t testing.TB) string {
	return filepath.Join(repoRoot(t), "config", "samples", "streaming_v1alpha1_pipeline_wordcount.yaml")
}

type result struct {
	code        int
	out, errOut string
}

// run runs the command line as the program name and returns what it printed.
func run(t testing.TB, name, stdin string, args ...string) result {
	t.Helper()
	return runContext(context.Background(), t, name, stdin, args...)
}

func runContext(ctx context.Context, t testing.TB, name, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(ctx, name, args, IO{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./cmd/... -update to create it): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs from the golden file (-want +got; go test ./cmd/... -update rewrites it):\n%s", path, diff)
	}
}

// relativize replaces the checkout's absolute path, which differs between machines.
func relativize(t testing.TB, s string) string {
	return strings.ReplaceAll(s, repoRoot(t)+"/", "")
}
