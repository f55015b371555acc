package main

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestReferenceUpToDate fails when the API types changed and `make api-docs` was not run.
func TestReferenceUpToDate(t *testing.T) {
	want, err := Render("../../apis/streaming/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/api-reference.md")
	if err != nil {
		t.Fatalf("read docs/api-reference.md (run `make api-docs`): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("docs/api-reference.md is out of date: run `make api-docs` (-want +got):\n%s", diff)
	}
}

// TestRenderDeterministic: map iteration must not leak into the output.
func TestRenderDeterministic(t *testing.T) {
	a, err := Render("../../apis/streaming/v1alpha1")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		b, err := Render("../../apis/streaming/v1alpha1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(a), string(b)); diff != "" {
			t.Fatalf("run %d differs:\n%s", i, diff)
		}
	}
}
