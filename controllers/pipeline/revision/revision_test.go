package revision

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

func rev(name string, n int64) appsv1.ControllerRevision {
	return appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name}, Revision: n}
}

func names(rs []appsv1.ControllerRevision) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestExcess(t *testing.T) {
	revs := []appsv1.ControllerRevision{rev("c", 3), rev("a", 1), rev("d", 4), rev("b", 2)}
	cases := []struct {
		reason string
		limit  int
		keep   []string
		want   []string
	}{
		{reason: "under the limit nothing goes", limit: 4},
		{reason: "the oldest go first", limit: 2, want: []string{"a", "b"}},
		{reason: "a kept revision survives even when old", limit: 2, keep: []string{"a"}, want: []string{"b", "c"}},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			if diff := cmp.Diff(c.want, names(Excess(revs, c.limit, c.keep...))); diff != "" {
				t.Errorf("%s: -want +got:\n%s", c.reason, diff)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	p := &v1alpha1.Pipeline{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "ns"}}
	p.Spec.Streams = []v1alpha1.Stream{{Name: "in", Partitions: 3}}
	p.Spec.Entities = []v1alpha1.Entity{{Name: "e", Image: "img", Inputs: []string{"in"}}}
	d, err := For(&p.Spec)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := For(&p.Spec)
	if d.Hash != d2.Hash {
		t.Fatalf("hash is not stable: %s != %s", d.Hash, d2.Hash)
	}
	cr := New(p, d, 7, nil)
	if cr.Name != "demo-"+d.Hash || cr.Revision != 7 || !metav1.IsControlledBy(cr, p) {
		t.Fatalf("unexpected revision %+v", cr.ObjectMeta)
	}
	got, err := Spec(cr)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&p.Spec, got); diff != "" {
		t.Errorf("spec does not round-trip: -want +got:\n%s", diff)
	}
	if Next([]appsv1.ControllerRevision{rev("x", 2), rev("y", 5)}) != 6 {
		t.Error("Next must be one past the highest number")
	}
}
