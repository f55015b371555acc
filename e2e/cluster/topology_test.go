//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
)

// The live topology scenarios (issue 12, item 5): each changes the topology of a running
// Pipeline while a producer writes to its input the whole time, and a verifier reading the final
// outputs checks the guarantee for every acknowledged input; the plan computed before the change
// (what `kubectl millrace diff` prints) is compared with what the pods then did.

const (
	liveRate   = 40               // records a second from each producer
	liveSteady = 10 * time.Second // traffic before the first change and after each
)

// identityEntity is the identity function from inputs to outputs.
func identityEntity(name string, g v1alpha1.Guarantee, inputs, outputs []string) v1alpha1.Entity {
	return v1alpha1.Entity{Name: name, Image: identityImage, Command: []string{"identity"}, Guarantee: g,
		Inputs: inputs, Outputs: outputs, Replicas: ptr.To[int32](1)}
}

func topologyPipeline(name string, partitions int32, streams []string, entities ...v1alpha1.Entity) *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{}
	p.Name = name
	for _, s := range streams {
		p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: s, Partitions: partitions})
	}
	p.Spec.Entities = entities
	directKafka(p)
	return p
}

func entityIndex(p *v1alpha1.Pipeline, name string) int {
	return slices.IndexFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == name })
}

// liveChange is one change applied to the running Pipeline while producers run.
type liveChange struct {
	what     string
	plan     *reconfig.Plan
	entities []string
	before   entityPods // just before the update
	done     entityPods // when the plan's pod changes had happened
	took     time.Duration
}

// applyLive computes the plan of change over the live Pipeline, updates it, and waits until it
// is Ready at its new generation and the pods did what the plan said would happen to them (as far
// as waiting goes: whether they did only that is checked by check). The producers' ids are
// marked "update: what" and "what: done".
func applyLive(t *testing.T, ns, name, what string, change func(*v1alpha1.Pipeline), ps ...*producer) *liveChange {
	t.Helper()
	live := getPipeline(t, ns, name)
	next := live.DeepCopy()
	change(next)
	c := &liveChange{what: what, plan: planFor(t, ns, name, change), entities: entityNames(live, next)}
	var planned []string
	for _, e := range c.entities {
		planned = append(planned, e+"="+prediction(c.plan, e))
	}
	t.Logf("plan of %q: class %s; pods %s; topics %+v; groups %+v; steps %q", what, c.plan.Class,
		strings.Join(planned, ", "), c.plan.Topics, c.plan.Groups, c.plan.Steps)
	c.before = snapshotPods(t, ns, live, c.entities...)
	for _, p := range ps {
		p.mark("update: " + what)
	}
	start := time.Now()
	update(t, ns, name, change)
	waitReady(t, ns, name, 5*time.Minute)
	c.done = waitPlanDone(t, ns, next, c.plan, c.before, c.entities)
	c.took = time.Since(start)
	for _, p := range ps {
		p.mark(what + ": done")
	}
	record(t, "live topology: "+what+", update to the plan's pod changes done", c.took, "producers running")
	return c
}

// check compares the plan with the pods from before the change to now (call it before the next
// change, or at the end), and that nothing changed after the change had converged.
func (c *liveChange) check(t *testing.T, ns string, p *v1alpha1.Pipeline) string {
	t.Helper()
	now := snapshotPods(t, ns, p, c.entities...)
	summary := checkPlan(t, c.plan, c.before, now, c.entities)
	for _, e := range c.entities {
		if got := observed(c.done[e], now[e]); got != "keep" && !(len(c.done[e]) == 0 && len(now[e]) == 0) {
			t.Errorf("entity %s: its pods changed after %q had converged: %s (%v -> %v)", e, c.what, got, c.done[e], now[e])
		}
	}
	t.Logf("restarts of %q: %s", c.what, summary)
	return summary
}

// drain stops the producers and waits until each group has consumed its inputs to the end.
func drain(t *testing.T, p *v1alpha1.Pipeline, groups map[string][]string, ps ...*producer) map[*producer][]string {
	t.Helper()
	out := map[*producer][]string{}
	for _, pr := range ps {
		out[pr] = pr.finish(t)
	}
	for entity, streams := range groups {
		for _, s := range streams {
			waitLagZero(t, render.GroupID(p, entity), topicOf(t, p, s), 4*time.Minute)
		}
	}
	return out
}

func recordVerdict(t *testing.T, scenario string, started time.Time, v verdict, restarts string) {
	t.Helper()
	record(t, "live topology: "+scenario+", producer start to verdict", time.Since(started),
		fmt.Sprintf("%s; %s", v, restarts))
}

// TestLiveAddEntity adds an entity reading an existing stream (a new branch) to a running
// ExactlyOnce Pipeline: the running entity keeps its pods, the new one starts, and both outputs
// hold every input exactly once (the new group reads its input from the earliest offset).
func TestLiveAddEntity(t *testing.T) {
	ns := namespace(t, nil)
	p := create(t, ns, topologyPipeline("add", 2, []string{"in", "out", "out2"},
		identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"})))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	started := time.Now()
	prod := startProducer(t, topicOf(t, p, "in"), "r", liveRate)
	out, out2 := startVerifier(t, topicOf(t, p, "out")), startVerifier(t, topicOf(t, p, "out2"))
	time.Sleep(liveSteady)

	c := applyLive(t, ns, p.Name, "add entity tap (in -> out2)", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities = append(p.Spec.Entities, identityEntity("tap", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out2"}))
	}, prod)
	if prediction(c.plan, "id") != "keep" || prediction(c.plan, "tap") != "create" {
		t.Errorf("plan: id %s, tap %s; want keep, create", prediction(c.plan, "id"), prediction(c.plan, "tap"))
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in"}, "tap": {"in"}}, prod)[prod]
	v := out.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)
	out2.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)
	recordVerdict(t, "add an entity", started, v, c.check(t, ns, p))
}

// TestLiveRemoveEntity removes one of two branches from a running ExactlyOnce Pipeline: the
// other keeps its pods and its output every input exactly once; the removed entity's pods go,
// and what it wrote before holds no duplicate.
func TestLiveRemoveEntity(t *testing.T) {
	ns := namespace(t, nil)
	p := create(t, ns, topologyPipeline("remove", 2, []string{"in", "out", "out2"},
		identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"}),
		identityEntity("tap", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out2"})))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	started := time.Now()
	prod := startProducer(t, topicOf(t, p, "in"), "r", liveRate)
	out, out2 := startVerifier(t, topicOf(t, p, "out")), startVerifier(t, topicOf(t, p, "out2"))
	time.Sleep(liveSteady)

	c := applyLive(t, ns, p.Name, "remove entity tap", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities = slices.DeleteFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == "tap" })
	}, prod)
	if prediction(c.plan, "id") != "keep" || prediction(c.plan, "tap") != "delete" {
		t.Errorf("plan: id %s, tap %s; want keep, delete", prediction(c.plan, "id"), prediction(c.plan, "tap"))
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in"}}, prod)[prod]
	v := out.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)
	tapped := out2.atMostOnce(t, ids, prod)
	if tapped.Seen == 0 {
		t.Errorf("the removed entity wrote nothing before it went")
	}
	// What happens to the removed entity's consumer group, as the documentation says today.
	offs, err := kadm.NewClient(kafkaClient(t)).FetchOffsets(context.Background(), render.GroupID(p, "tap"))
	t.Logf("removed entity's group %s: %d committed partitions (err %v)", render.GroupID(p, "tap"), len(offs.Sorted()), err)
	recordVerdict(t, "remove an entity", started, v, c.check(t, ns, p))
}

// TestLiveRemoveEntityDrained removes an ExactlyOnce branch with removal {drain: true,
// consumerGroup: Delete} while the producer writes. The branch was scaled to zero first, so that
// it has a backlog when it is removed: the operator must start a pod for it, which processes the
// backlog up to the removal time. Its output then holds every input record from before the
// removal time (status.retiring[].since) exactly once (and later ones at most once), its consumer
// group is gone, its pods are gone, and the other entity keeps its pods and its output every
// input exactly once.
func TestLiveRemoveEntityDrained(t *testing.T) {
	ns := namespace(t, nil)
	tap := identityEntity("tap", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out2"})
	tap.Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupDelete}
	p := create(t, ns, topologyPipeline("retire", 2, []string{"in", "out", "out2"},
		identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"}), tap))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	group := render.GroupID(p, "tap")
	started := time.Now()
	prod := startProducer(t, topicOf(t, p, "in"), "r", liveRate)
	out, out2 := startVerifier(t, topicOf(t, p, "out")), startVerifier(t, topicOf(t, p, "out2"))
	time.Sleep(liveSteady)

	// A backlog: tap runs no pod while the producer writes.
	update(t, ns, p.Name, func(p *v1alpha1.Pipeline) { p.Spec.Entities[entityIndex(p, "tap")].Replicas = ptr.To[int32](0) })
	waitFor(t, 3*time.Minute, "tap scaled to zero", func(ctx context.Context) error {
		if n := len(snapshotPods(t, ns, p, "tap")["tap"]); n > 0 {
			return fmt.Errorf("%d pods of tap", n)
		}
		return nil
	})
	time.Sleep(liveSteady)
	backlog, err := groupLag(context.Background(), t, group, topicOf(t, p, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tap's backlog when it is removed: lag %d", backlog)

	// status.retiring exists only while the retirement runs: watch it from the side, with the
	// pods the retiring entity runs.
	var mu sync.Mutex
	var since time.Time
	var phases []string
	tapPods := map[string]bool{}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			var cur v1alpha1.Pipeline
			if err := env.c.Get(watchCtx, client.ObjectKey{Namespace: ns, Name: p.Name}, &cur); err == nil {
				mu.Lock()
				for _, r := range cur.Status.Retiring {
					if r.Entity == "tap" {
						if since.IsZero() {
							since = r.Since.Time
						}
						if ph := fmt.Sprintf("%s(%d)", r.Phase, r.Remaining); len(phases) == 0 || phases[len(phases)-1] != ph {
							phases = append(phases, ph)
						}
					}
				}
				sel := labels.SelectorFromSet(render.SelectorLabels(p, "tap")).String()
				if pods, err := env.cs.CoreV1().Pods(ns).List(watchCtx, metav1.ListOptions{LabelSelector: sel}); err == nil {
					for _, pod := range pods.Items {
						tapPods[pod.Name+" "+string(pod.UID)] = true
					}
				}
				mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	removing := time.Now()
	c := applyLive(t, ns, p.Name, "remove entity tap, drained, its group deleted", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities = slices.DeleteFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == "tap" })
	}, prod)
	// tap ran no pod before the change, so the plan's "delete" held at once: wait for the
	// retirement to end.
	waitFor(t, 5*time.Minute, "tap retired", func(ctx context.Context) error {
		if _, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, render.StatefulSetName(p, "tap"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("tap's StatefulSet: %v", err)
		}
		if n := len(snapshotPods(t, ns, p, "tap")["tap"]); n > 0 {
			return fmt.Errorf("%d pods of tap left", n)
		}
		return nil
	})
	retireTook := time.Since(removing)
	stopWatch()
	<-watched
	if prediction(c.plan, "id") != "keep" || prediction(c.plan, "tap") != "delete" {
		t.Errorf("plan: id %s, tap %s; want keep, delete", prediction(c.plan, "id"), prediction(c.plan, "tap"))
	}
	if !slices.ContainsFunc(c.plan.Steps, func(s string) bool {
		return strings.Contains(s, "tap: drain inputs up to the removal time, then delete group "+group)
	}) {
		t.Errorf("the plan's steps do not say how tap is retired: %q", c.plan.Steps)
	}
	mu.Lock()
	t.Logf("tap's retirement: since %s, phases %v, pods %v", since.Format(time.RFC3339), phases, slices.Sorted(maps.Keys(tapPods)))
	if since.IsZero() {
		mu.Unlock()
		t.Fatal("status.retiring never named tap")
	}
	if len(tapPods) == 0 {
		t.Errorf("the retiring entity ran no pod: the operator did not scale it up from zero")
	}
	removedAt := since
	mu.Unlock()

	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in"}}, prod)[prod]
	v := out.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)

	// The records of in from before the removal time, by their timestamps, as the sidecar's
	// ListOffsets by timestamp sees them.
	before, after := recordsAround(t, topicOf(t, p, "in"), removedAt)
	out2.mayHold(after)
	drained := out2.verify(t, before, v1alpha1.ExactlyOnce, time.Minute, prod)
	if len(before) == 0 {
		t.Errorf("no input record before the removal time %s: the scenario checks nothing", removedAt)
	}
	t.Logf("tap's output: %d records of in before the removal time %s, %d after it (of which it may hold any, at most once)", len(before), removedAt.Format(time.RFC3339), len(after))

	adm := kadm.NewClient(kafkaClient(t))
	groups, err := adm.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(groups.Groups(), group) {
		t.Errorf("the removed entity's group %s still exists", group)
	}
	offs, err := adm.FetchOffsets(context.Background(), group)
	if err == nil && len(offs.Sorted()) > 0 {
		t.Errorf("the removed entity's group %s still has %d committed partitions", group, len(offs.Sorted()))
	}
	for _, kind := range []string{"statefulset", "configmap", "service"} {
		var err error
		switch kind {
		case "statefulset":
			_, err = env.cs.AppsV1().StatefulSets(ns).Get(context.Background(), render.StatefulSetName(p, "tap"), metav1.GetOptions{})
		case "configmap":
			_, err = env.cs.CoreV1().ConfigMaps(ns).Get(context.Background(), render.ConfigMapName(p, "tap"), metav1.GetOptions{})
		case "service":
			_, err = env.cs.CoreV1().Services(ns).Get(context.Background(), render.ServiceName(p, "tap"), metav1.GetOptions{})
		}
		if !apierrors.IsNotFound(err) {
			t.Errorf("tap's %s: %v, want it deleted", kind, err)
		}
	}
	record(t, "live topology: remove an entity with a backlog, update to its children deleted", retireTook,
		fmt.Sprintf("its output holds the %d input records before the removal time (its backlog was %d when removed)", len(before), backlog))
	// tap's pods went from none (scaled to zero) to none (retired): the plan is checked for id.
	c.entities = []string{"id"}
	recordVerdict(t, "remove an entity, drained, its group deleted", started,
		v, fmt.Sprintf("%s; tap: pods %d during the retirement, none after; tap's output: %s", c.check(t, ns, p), len(tapPods), drained))
}

// recordsAround reads topic from its start to its end and returns the ids of its records with
// a timestamp before at, and of the others.
func recordsAround(t *testing.T, topic string, at time.Time) (before, after []string) {
	t.Helper()
	adm := kadm.NewClient(kafkaClient(t))
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	cl := kafkaClient(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s to its end: %d partitions left", topic, len(remaining))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Timestamp.Before(at) {
				before = append(before, string(r.Value))
			} else {
				after = append(after, string(r.Value))
			}
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return before, after
}

// TestLiveRewire rewires a running ExactlyOnce entity: first its output moves to another
// stream, then it reads a second input (which had been written to from the start), then it
// stops reading the first (once that input's producer stopped and the entity read it to the end).
// Every input of both producers is in the outputs (old and new together) exactly once.
func TestLiveRewire(t *testing.T) {
	ns := namespace(t, nil)
	p := create(t, ns, topologyPipeline("rewire", 2, []string{"in", "in2", "out", "out2"},
		identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"})))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	started := time.Now()
	pa := startProducer(t, topicOf(t, p, "in"), "a", liveRate)
	pb := startProducer(t, topicOf(t, p, "in2"), "b", liveRate/2)
	outs := startVerifier(t, topicOf(t, p, "out"), topicOf(t, p, "out2"))
	out2 := startVerifier(t, topicOf(t, p, "out2"))
	time.Sleep(liveSteady)

	c1 := applyLive(t, ns, p.Name, "output out -> out2", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Outputs = []string{"out2"}
	}, pa, pb)
	if got := prediction(c1.plan, "id"); got != "restart 1" {
		t.Errorf("plan of the output change: id %s, want restart 1", got)
	}
	time.Sleep(liveSteady)
	r1 := c1.check(t, ns, p)

	c2 := applyLive(t, ns, p.Name, "inputs in -> in, in2", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Inputs = []string{"in", "in2"}
	}, pa, pb)
	if got := prediction(c2.plan, "id"); got != "restart 1" {
		t.Errorf("plan of the input change: id %s, want restart 1", got)
	}
	time.Sleep(liveSteady)
	r2 := c2.check(t, ns, p)

	// Dropping an input: its producer stops and the entity reads it to the end first, so that
	// nothing of it is left behind; in2 keeps flowing through the change.
	idsA := pa.finish(t)
	waitLagZero(t, render.GroupID(p, "id"), topicOf(t, p, "in"), 4*time.Minute)
	c3 := applyLive(t, ns, p.Name, "inputs in, in2 -> in2", func(p *v1alpha1.Pipeline) {
		p.Spec.Entities[0].Inputs = []string{"in2"}
	}, pb)
	if got := prediction(c3.plan, "id"); got != "restart 1" {
		t.Errorf("plan of dropping an input: id %s, want restart 1", got)
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in2"}}, pb)
	ids[pa] = idsA
	v := outs.verify(t, append(ids[pa], ids[pb]...), v1alpha1.ExactlyOnce, time.Minute, pa, pb)
	// The dropped input's committed offsets go from the group (no heir: once no member reads
	// it); those of in2 stay.
	if !slices.Contains(c3.plan.Steps, "group "+render.GroupID(p, "id")+": offsets on topic "+topicOf(t, p, "in")+" deleted by its pods once no member reads "+topicOf(t, p, "in")) {
		t.Errorf("the plan of dropping an input has no step deleting its offsets: %q", c3.plan.Steps)
	}
	waitOffsetsGone(t, render.GroupID(p, "id"), topicOf(t, p, "in"), 5*time.Minute)
	if n := committedPartitions(t, render.GroupID(p, "id"), topicOf(t, p, "in2")); n != int(p.Spec.Streams[1].Partitions) {
		t.Errorf("the group of id has committed offsets on %d partitions of in2, want all %d", n, p.Spec.Streams[1].Partitions)
	}
	// The rewiring took effect: what the entity read after its output moved is in out2, and
	// what it read of in2 as well (in2 from its earliest record: the group had no offsets there).
	for _, want := range [][]string{pa.ids(c1.what+": done", ""), ids[pb]} {
		if n, not := out2.seen(want); n != len(want) {
			t.Errorf("out2 holds %d of the %d inputs it should; not %v", n, len(want), not)
		}
	}
	recordVerdict(t, "rewire output, add an input, drop an input", started, v, r1+"; "+r2+"; "+c3.check(t, ns, p))
}

// TestLiveInsertStage inserts a stage into a running ExactlyOnce Pipeline: a -> s1 -> b becomes
// a -> s1 -> x -> s2 -> b in one change, x taking s1 over from b (start position Entity: x
// starts where b's group stopped). a keeps running; x starts on s1 and b moves to s2.
// Downstream of b every input must appear exactly once: nothing lost at the switch, nothing read
// twice.
func TestLiveInsertStage(t *testing.T) { insertStage(t, v1alpha1.ExactlyOnce, true) }

// TestLiveInsertStageAtLeastOnce is the same change under AtLeastOnce: nothing may be lost.
func TestLiveInsertStageAtLeastOnce(t *testing.T) { insertStage(t, v1alpha1.AtLeastOnce, true) }

// TestLiveInsertStageWithoutHandover inserts the stage without the handover, as main could only
// do: x reads s1 from its earliest record, as the plan says, so every record b had already
// written is written again. Nothing may be lost; the duplicates are counted, and there must be
// some (else the handover scenario would not show that it is needed).
func TestLiveInsertStageWithoutHandover(t *testing.T) {
	v := insertStage(t, v1alpha1.AtLeastOnce, false)
	if len(v.Duplicated) == 0 {
		t.Errorf("no duplicate without the handover: %s", v)
	}
}

func insertStage(t *testing.T, g v1alpha1.Guarantee, handover bool) verdict {
	ns := namespace(t, nil)
	p := create(t, ns, topologyPipeline("insert", 2, []string{"in", "s1", "s2", "out"},
		identityEntity("a", g, []string{"in"}, []string{"s1"}),
		identityEntity("b", g, []string{"s1"}, []string{"out"})))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	started := time.Now()
	prod := startProducer(t, topicOf(t, p, "in"), "r", liveRate)
	out := startVerifier(t, topicOf(t, p, "out"))
	time.Sleep(liveSteady)

	c := applyLive(t, ns, p.Name, "insert x between s1 and b", func(p *v1alpha1.Pipeline) {
		x := identityEntity("x", g, []string{"s1"}, []string{"s2"})
		if handover {
			x.Start = []v1alpha1.InputStart{{Stream: "s1", Position: v1alpha1.StartEntity, Entity: "b"}}
		}
		p.Spec.Entities = append(p.Spec.Entities, x)
		p.Spec.Entities[entityIndex(p, "b")].Inputs = []string{"s2"}
	}, prod)
	if a, x, b := prediction(c.plan, "a"), prediction(c.plan, "x"), prediction(c.plan, "b"); a != "keep" || x != "create" || b != "restart 1" {
		t.Errorf("plan: a %s, x %s, b %s; want keep, create, restart 1", a, x, b)
	}
	for _, gc := range c.plan.Groups {
		if gc.Name == render.GroupID(p, "x") {
			t.Logf("plan of x's group: %s", gc.Detail)
			if handover && !strings.Contains(gc.Detail, render.GroupID(p, "b")) {
				t.Errorf("the plan of x's group does not say it takes s1 over from b's group %s: %q", render.GroupID(p, "b"), gc.Detail)
			}
		}
	}
	if handover && !slices.Contains(c.plan.Steps, "group "+render.GroupID(p, "b")+": offsets on topic "+topicOf(t, p, "s1")+" deleted by its pods once "+render.GroupID(p, "x")+" committed its own on every partition") {
		t.Errorf("the plan has no step deleting b's offsets on s1 after x committed: %q", c.plan.Steps)
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	// b's committed offsets on s1 go, once x has committed its own (with the handover) or once
	// no pod of b reads s1 (without).
	waitOffsetsGone(t, render.GroupID(p, "b"), topicOf(t, p, "s1"), 5*time.Minute)
	if n := committedPartitions(t, render.GroupID(p, "x"), topicOf(t, p, "s1")); n == 0 {
		t.Errorf("b's offsets on s1 are gone but x has committed none")
	}
	ids := drain(t, p, map[string][]string{"a": {"in"}, "x": {"s1"}, "b": {"s2"}}, prod)[prod]
	v := out.verify(t, ids, g, time.Minute, prod)
	what := "insert a stage (" + string(g) + ")"
	if !handover {
		what = "insert a stage without handover (" + string(g) + ")"
	}
	recordVerdict(t, what, started, v, c.check(t, ns, p))
	return v
}

// committedPartitions is how many partitions of topic group has a committed offset on.
func committedPartitions(t *testing.T, group, topic string) int {
	t.Helper()
	offs, err := kadm.NewClient(kafkaClient(t)).FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatalf("fetch the committed offsets of %s: %v", group, err)
	}
	n := 0
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			n++
		}
	})
	return n
}

// waitOffsetsGone waits until group has no committed offset on topic, an input it dropped (the
// I/O sidecars try two minutes after they applied the configuration).
func waitOffsetsGone(t *testing.T, group, topic string, d time.Duration) {
	t.Helper()
	waitFor(t, d, "group "+group+" has no committed offsets on the dropped input "+topic, func(context.Context) error {
		if n := committedPartitions(t, group, topic); n > 0 {
			return fmt.Errorf("%d partitions still committed", n)
		}
		return nil
	})
}

// TestLiveRaisePartitionsStatic raises the partitions of the input of a running ExactlyOnce
// entity with Static assignment and two pods, while the producer writes to every partition it
// knows: the pods restart (as planned) and split the six partitions, records reach the new
// partitions, and the output holds every input exactly once.
func TestLiveRaisePartitionsStatic(t *testing.T) {
	ns := namespace(t, nil)
	e := identityEntity("id", v1alpha1.ExactlyOnce, []string{"in"}, []string{"out"})
	e.Replicas = ptr.To[int32](2)
	e.Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic}
	p := create(t, ns, topologyPipeline("partitions", 4, []string{"in", "out"}, e))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in := topicOf(t, p, "in")
	started := time.Now()
	prod := startProducer(t, in, "r", liveRate)
	out := startVerifier(t, topicOf(t, p, "out"))
	time.Sleep(liveSteady)

	c := applyLive(t, ns, p.Name, "partitions of in 4 -> 6", func(p *v1alpha1.Pipeline) {
		p.Spec.Streams[0].Partitions = 6
	}, prod)
	if got := prediction(c.plan, "id"); got != "restart 2" {
		t.Errorf("plan: id %s, want restart 2", got)
	}
	if !slices.ContainsFunc(c.plan.Topics, func(tc reconfig.TopicChange) bool { return tc.Name == in && tc.Action == reconfig.Update }) {
		t.Errorf("plan: no partition raise of %s in %+v", in, c.plan.Topics)
	}
	sts := statefulSet(t, ns, render.StatefulSetName(p, "id"))
	names := []string{sts.Name + "-0", sts.Name + "-1"}
	waitFor(t, 2*time.Minute, "each pod consumes 3 of the 6 partitions", func(ctx context.Context) error {
		got, err := assigned(ctx, ns, names, in)
		if err != nil {
			return err
		}
		if got[names[0]] != 3 || got[names[1]] != 3 {
			return fmt.Errorf("assigned %v", got)
		}
		return nil
	})
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"id": {"in"}}, prod)[prod]
	ends, err := kadm.NewClient(kafkaClient(t)).ListEndOffsets(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []int32{4, 5} {
		if o, ok := ends.Lookup(in, part); !ok || o.Offset == 0 {
			t.Errorf("partition %d of %s got no record: %+v", part, in, o)
		}
	}
	v := out.verify(t, ids, v1alpha1.ExactlyOnce, time.Minute, prod)
	recordVerdict(t, "raise partitions (Static, 2 pods)", started, v, c.check(t, ns, p))
}

const wordCountSumImage = "ghcr.io/millrace-dev/millrace-example-wordcount-sum:v0.1.0"

// TestLiveRaisePartitionsStateful raises the partitions of the input of a stateful entity (the
// word count's sum: a running count per word, its state per input partition in a changelog) with
// Static assignment and two pods, under ExactlyOnce, while words keep coming. Kafka's default
// partitioner sends a word to partition hash(word) mod partitions, so a raise moves words to
// partitions whose state has never seen them. Either the change is refused (the plan says so,
// the API server refuses it with the plan's message, the pods go on untouched), or the counts must
// stay right: for a word produced n times, counts holds word=1 .. word=n, each exactly once.
func TestLiveRaisePartitionsStateful(t *testing.T) {
	ns := namespace(t, nil)
	sum := v1alpha1.Entity{Name: "sum", Image: wordCountSumImage, Command: []string{"wordcount-sum"},
		Inputs: []string{"words"}, Outputs: []string{"counts"}, Replicas: ptr.To[int32](2),
		Assignment: &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic},
		State:      &v1alpha1.StateSpec{Enabled: true, Backend: v1alpha1.StateMemory}, Guarantee: v1alpha1.ExactlyOnce}
	p := create(t, ns, topologyPipeline("stateful", 4, []string{"words", "counts"}, sum))
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	const words = 16
	wordOf := func(n int) string { return fmt.Sprintf("w%02d", n%words) }
	started := time.Now()
	prod := startProducerOf(t, topicOf(t, p, "words"), "r", liveRate, func(_ string, n int) *kgo.Record {
		return &kgo.Record{Key: []byte(wordOf(n)), Value: []byte("1")}
	})
	counts := startVerifierOf(t, keyEqualsValue, topicOf(t, p, "counts"))
	time.Sleep(liveSteady)

	raise := func(p *v1alpha1.Pipeline) { p.Spec.Streams[0].Partitions = 6 }
	var c *liveChange
	if plan := planFor(t, ns, p.Name, raise); len(plan.Refused()) > 0 {
		// The plan says the API server refuses it: it must, with the plan's message, and the
		// entity must go on as if nothing happened.
		before := snapshotPods(t, ns, p, "sum")
		prod.mark("refused update")
		live := getPipeline(t, ns, p.Name)
		raise(live)
		err := env.c.Update(context.Background(), live)
		if !apierrors.IsInvalid(err) {
			t.Fatalf("the plan says %+v is refused, the API server answered %v", plan.Refused(), err)
		}
		for _, r := range plan.Refused() {
			if !strings.Contains(err.Error(), "cannot get more partitions") || !strings.Contains(err.Error(), r.Refused) {
				t.Errorf("the API server's refusal %q is not the plan's %q", err, r.Refused)
			}
		}
		t.Logf("refused as planned: %v", err)
		time.Sleep(liveSteady)
		if got := observed(before["sum"], snapshotPods(t, ns, p, "sum")["sum"]); got != "keep" {
			t.Errorf("the refused change moved the pods: %s", got)
		}
		c = &liveChange{what: "refused partition raise", plan: plan, entities: []string{"sum"}, before: before, done: before}
	} else {
		c = applyLive(t, ns, p.Name, "partitions of words 4 -> 6", raise, prod)
		if got := prediction(c.plan, "sum"); got != "restart 2" {
			t.Errorf("plan: sum %s, want restart 2", got)
		}
	}
	time.Sleep(liveSteady)
	p = getPipeline(t, ns, p.Name)
	ids := drain(t, p, map[string][]string{"sum": {"words"}}, prod)[prod]
	n := map[string]int{}
	for _, id := range ids {
		_, seq := splitID(id)
		n[wordOf(seq)]++
	}
	var want []string
	for w, k := range n {
		for i := 1; i <= k; i++ {
			want = append(want, fmt.Sprintf("%s=%d", w, i))
		}
	}
	v := counts.verify(t, want, v1alpha1.ExactlyOnce, time.Minute, prod)
	if t.Failed() {
		// Per word: how often it was produced, its last count, and whether its count started over.
		var per []string
		counts.mu.Lock()
		for _, w := range slices.Sorted(maps.Keys(n)) {
			last := 0
			for i := 1; counts.count[fmt.Sprintf("%s=%d", w, i)] > 0; i++ {
				last = i
			}
			per = append(per, fmt.Sprintf("%s produced %d, counted to %d, count 1 seen %d times", w, n[w], last, counts.count[w+"=1"]))
		}
		counts.mu.Unlock()
		t.Logf("counts per word:\n  %s", strings.Join(per, "\n  "))
	}
	recordVerdict(t, "raise partitions of a stateful entity (Static, 2 pods)", started, v, c.check(t, ns, p))
}
