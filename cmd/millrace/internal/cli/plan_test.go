package cli

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
)

func TestPlanGolden(t *testing.T) {
	cases := []struct {
		reason string
		file   string
		old    string
		args   []string
		golden string
		code   int
	}{
		{reason: "the same Pipeline: no changes, exit 0", file: wordcount, golden: "plan/same.txt"},
		{reason: "hot changes: ConfigMaps only, no restart", file: "plan-hot.yaml", golden: "plan/hot.txt", code: 1},
		{reason: "a new image restarts one entity, replicas scale another", file: "plan-rolling.yaml", golden: "plan/rolling.txt", code: 1},
		{reason: "partitions raised, a stream and an entity added", file: "plan-structural.yaml", golden: "plan/structural.txt", code: 1},
		{reason: "an entity added at a timestamp, a start position for an input already read", file: "plan-start.yaml", golden: "plan/start.txt", code: 1},
		{reason: "a stage inserted in front of sum takes its input over", file: "plan-insert.yaml", golden: "plan/insert.txt", code: 1},
		{reason: "an input dropped without an heir: the group's offsets on it are deleted once no member reads it", file: "plan-rewire.yaml", golden: "plan/rewire.txt", code: 1},
		{reason: "an entity removed: its group's offsets stay", file: "plan-removed.yaml", golden: "plan/removed.txt", code: 1},
		{reason: "an entity removed with drain and consumerGroup Delete: retired, then deleted", file: "plan-removed.yaml", old: "testdata/pipelines/plan-retire-old.yaml", golden: "plan/retire.txt", code: 1},
		{reason: "more partitions for a stateful entity's input are refused, exit 2", file: "plan-refused-stateful.yaml", golden: "plan/refused-stateful.txt", code: 2},
		{reason: "fewer partitions are refused, exit 2", file: "plan-refused.yaml", golden: "plan/refused.txt", code: 2},
		{reason: "JSON output", file: "plan-rolling.yaml", args: []string{"-o", "json"}, golden: "plan/rolling.json", code: 1},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			file := tc.file
			if !strings.Contains(file, "/") {
				file = "testdata/pipelines/" + file
			}
			old := wordcount
			if tc.old != "" {
				old = tc.old
			}
			res := run(t, "millrace", "", append([]string{"plan", "-f", file, "--old", old}, tc.args...)...)
			if res.code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", res.code, tc.code, res.errOut)
			}
			golden(t, tc.golden, res.out+res.errOut)
		})
	}
}

func TestPlanErrors(t *testing.T) {
	res := run(t, "millrace", "", "plan", "-f", "testdata/pipelines/cycle.yaml", "--old", wordcount)
	if res.code != 2 || !strings.Contains(res.errOut, "acyclic") {
		t.Errorf("an invalid new Pipeline: exit %d, stderr %q; want exit 2 and the validation error", res.code, res.errOut)
	}
	res = run(t, "millrace", "", "plan", "-f", "testdata/pipelines/fanout.yaml", "--old", wordcount)
	if res.code != 2 || !strings.Contains(res.errOut, "two versions of one Pipeline") {
		t.Errorf("another Pipeline: exit %d, stderr %q; want exit 2", res.code, res.errOut)
	}
	res = run(t, "millrace", "", "plan", "-f", wordcount, "--old", "testdata/pipelines/missing.yaml")
	if res.code != 2 {
		t.Errorf("a missing file: exit %d, want 2", res.code)
	}
}

// TestDiffAgainstAPIServer runs `kubectl millrace diff` against a Pipeline stored by a real API
// server: defaulted by it, not by the CLI, so "no changes" proves the two default alike; and the
// updates the plan calls valid or refused are then applied, and the API server agrees.
func TestDiffAgainstAPIServer(t *testing.T) {
	_, c := cluster(t)
	ctx := context.Background()
	const ns = "plan-diff"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	res := kubectl(t, "diff", "-n", ns, "-f", wordcount)
	if res.code != 1 || !strings.Contains(res.out, "Pipeline plan-diff/wordcount does not exist: applying creates it") {
		t.Errorf("diff of a Pipeline not yet applied: exit %d, stdout %q, stderr %q", res.code, res.out, res.errOut)
	}
	p, err := manifest.ReadOne(wordcount, nil, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatal(err)
	}

	res = kubectl(t, "diff", "-n", ns, "-f", wordcount)
	if res.code != 0 || res.out != "Pipeline plan-diff/wordcount: no changes\n" {
		t.Errorf("diff of the applied file: exit %d, stdout %q, stderr %q; want no changes (the API server's defaults and the CLI's must agree)", res.code, res.out, res.errOut)
	}

	res = kubectl(t, "diff", "-n", ns, "-f", "testdata/pipelines/plan-rolling.yaml")
	if res.code != 1 {
		t.Errorf("diff of a rolling change: exit %d, want 1; stderr:\n%s", res.code, res.errOut)
	}
	golden(t, "plan/diff-rolling.txt", res.out+res.errOut)

	res = kubectl(t, "diff", "-n", ns, "-f", "testdata/pipelines/plan-refused.yaml")
	if res.code != 2 || !strings.Contains(res.out, "spec.streams[].partitions cannot decrease") {
		t.Errorf("diff of a refused change: exit %d, stdout %q; want exit 2 naming the rule", res.code, res.out)
	}
	refused, err := manifest.ReadOne("testdata/pipelines/plan-refused.yaml", nil, ns)
	if err != nil {
		t.Fatal(err)
	}
	live := &v1alpha1.Pipeline{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "wordcount"}, live); err != nil {
		t.Fatal(err)
	}
	refused.ResourceVersion = live.ResourceVersion
	if err := c.Update(ctx, refused); err == nil || !strings.Contains(err.Error(), "spec.streams[].partitions cannot decrease") {
		t.Errorf("the API server accepts the update the plan refuses: %v", err)
	}

	res = kubectl(t, "diff", "-n", ns, "-f", "testdata/pipelines/plan-missing.yaml")
	if res.code != 2 {
		t.Errorf("diff of a missing file: exit %d, want 2", res.code)
	}
}
