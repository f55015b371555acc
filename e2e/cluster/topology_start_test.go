//go:build cluster

package cluster

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// TestLiveAddEntityAtLatest adds a branch that starts at the latest offset of the stream it
// reads (spec.entities[].start): the running entity keeps its pods and its output every input
// exactly once; the new branch's output holds nothing produced before the change, everything
// produced once its pods were Ready, each exactly once.
func TestLiveAddEntityAtLatest(t *testing.T) {
	addEntityAt(t, "latest", func(e *v1alpha1.Entity, _ metav1.Time) {
		e.Start = []v1alpha1.InputStart{{Stream: "in", Position: v1alpha1.StartLatest}}
	})
}

// TestLiveAddEntityAtTimestamp adds a branch that starts at a timestamp a few seconds before the
// change: its output holds nothing produced before the timestamp, and everything from it on,
// each exactly once (records written while the entity did not exist yet included).
func TestLiveAddEntityAtTimestamp(t *testing.T) {
	addEntityAt(t, "timestamp", func(e *v1alpha1.Entity, at metav1.Time) {
		e.Start = []v1alpha1.InputStart{{Stream: "in", Position: v1alpha1.StartTimestamp, Timestamp: &at}}
	})
}

func addEntityAt(t *testing.T, position string, start func(*v1alpha1.Entity, metav1.Time)) {
	ns := namespace(t, nil)
	p := create(t, ns, topologyPipeline("at-"+position, 2, []string{"in", "out", "out2"},
		identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"})))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	started := time.Now()
	prod := startProducer(t, topicOf(t, p, "in"), "r", liveRate)
	out, out2 := startVerifier(t, topicOf(t, p, "out")), startVerifier(t, topicOf(t, p, "out2"))
	time.Sleep(liveSteady / 2)
	// The timestamp: records produced before the first mark are older than it (by a second at
	// least), records produced after the second are not.
	prod.mark("a second before the timestamp")
	time.Sleep(time.Second)
	at := metav1.NewTime(time.Now().Truncate(time.Second))
	prod.mark("the timestamp")
	time.Sleep(liveSteady / 2)

	what := "add entity tap (in -> out2) at " + position
	c := applyLive(t, ns, p.Name, what, func(p *v1alpha1.Pipeline) {
		tap := identityEntity("tap", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out2"})
		start(&tap, at)
		p.Spec.Entities = append(p.Spec.Entities, tap)
	}, prod)
	if prediction(c.plan, "id") != "keep" || prediction(c.plan, "tap") != "create" {
		t.Errorf("plan: id %s, tap %s; want keep, create", prediction(c.plan, "id"), prediction(c.plan, "tap"))
	}
	var planned string
	for _, g := range c.plan.Groups {
		if strings.HasSuffix(g.Name, ".tap") {
			planned = g.Detail
		}
	}
	if !strings.Contains(planned, position) {
		t.Errorf("plan of the tap's group: %q, does not say it starts at %s", planned, position)
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in"}, "tap": {"in"}}, prod)[prod]
	v := out.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)

	// The new branch: everything from its start on exactly once, nothing from before.
	var from, notBefore string
	if position == "latest" {
		from, notBefore = what+": done", "update: "+what
	} else {
		from, notBefore = "the timestamp", "a second before the timestamp"
	}
	out2.mayHold(prod.ids(notBefore, from))
	out2.verify(t, prod.ids(from, ""), v1alpha1.ExactlyOnce, time.Minute, prod)
	older := prod.ids("", notBefore)
	if n, some := out2.seen(older); n > 0 {
		t.Errorf("out2 holds %d of the %d inputs produced before %q, which the tap must skip: %v", n, len(older), notBefore, some)
	}
	recordVerdict(t, "add an entity at "+position, started, v, c.check(t, ns, p))
}
