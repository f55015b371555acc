package validate_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/validate"
	vt "github.com/millrace-dev/millrace/controllers/validate/validatetest"
)

func equalSpecs(t *testing.T, a, b v1alpha1.PipelineSpec) bool {
	t.Helper()
	if d := cmp.Diff(a, b); d != "" {
		t.Logf("spec diff (-a +b):\n%s", d)
		return false
	}
	return true
}

func TestTopology(t *testing.T) {
	addEntity := func(e v1alpha1.Entity) func(*v1alpha1.Pipeline) {
		return func(p *v1alpha1.Pipeline) { p.Spec.Entities = append(p.Spec.Entities, e) }
	}
	cases := []struct {
		reason string
		p      *v1alpha1.Pipeline
		want   string // "" when valid
	}{
		{reason: "a chain is acyclic", p: vt.Pipeline()},
		{
			reason: "a fan-in is acyclic",
			p:      vt.Pipeline(addEntity(v1alpha1.Entity{Name: "echo", Image: "x", Inputs: []string{"lines"}, Outputs: []string{"counts"}})),
		},
		{
			reason: "feeding counts back to lines is a cycle",
			p:      vt.Pipeline(addEntity(v1alpha1.Entity{Name: "feedback", Image: "x", Inputs: []string{"counts"}, Outputs: []string{"lines"}})),
			want:   `spec.entities: Invalid value: "split -> words -> sum -> counts -> feedback -> lines -> split": the stream graph must be acyclic: entities feed each other in a cycle`,
		},
		{
			reason: "two entities writing each other's input is a cycle",
			p: vt.Pipeline(
				addEntity(v1alpha1.Entity{Name: "ping", Image: "x", Inputs: []string{"counts"}, Outputs: []string{"lines2"}}),
				addEntity(v1alpha1.Entity{Name: "pong", Image: "x", Inputs: []string{"lines2"}, Outputs: []string{"counts"}}),
				func(p *v1alpha1.Pipeline) { p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "lines2"}) },
			),
			want: `spec.entities: Invalid value: "ping -> lines2 -> pong -> counts -> ping": the stream graph must be acyclic: entities feed each other in a cycle`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			errs := validate.Topology(tc.p)
			got := ""
			if agg := errs.ToAggregate(); agg != nil {
				got = agg.Error()
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("%s: Topology() (-want +got):\n%s", tc.reason, d)
			}
		})
	}
}
