//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
)

// The harness of the live topology scenarios: a producer that writes numbered records at a
// steady rate for as long as a scenario changes the Pipeline, a verifier that reads the final
// outputs on its own (no consumer group, read_committed) and checks every acknowledged input
// against a guarantee, and a comparison of `millrace plan`'s prediction with the pods' UIDs and
// restart counts.

// producer writes records with unique ids prefix-0, prefix-1, ... (key and value both the id,
// so they spread over the partitions) to one topic, a batch every tick, from the test process.
type producer struct {
	topic, prefix string
	cl            *kgo.Client
	stop, done    chan struct{}
	started       time.Time

	mu      sync.Mutex
	next    int      // the id of the next record
	acked   []string // ids the broker acknowledged
	failed  []string // ids of batches that failed: their fate is unknown
	errs    []error
	marks   []mark
	stopped time.Duration
}

// mark is a moment of the scenario (an update applied, a rollout done): ids from seq on were
// produced after it. Failures name the phase of each id they list.
type mark struct {
	seq  int
	what string
}

// startProducer writes perSecond records a second to topic until stop. The client refreshes its
// metadata every 2 s, so that it writes to partitions added while it runs.
func startProducer(t *testing.T, topic, prefix string, perSecond int) *producer {
	t.Helper()
	return startProducerOf(t, topic, prefix, perSecond, func(id string, _ int) *kgo.Record {
		return &kgo.Record{Key: []byte(id), Value: []byte(id)}
	})
}

// startProducerOf is startProducer with records of another shape: record n (id prefix-n) is
// shape(id, n). The producer still tracks ids: they are the records' values unless shape keeps
// the id in a header (idHeader).
func startProducerOf(t *testing.T, topic, prefix string, perSecond int, shape func(id string, n int) *kgo.Record) *producer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.kafka, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MetadataMaxAge(2*time.Second), kgo.MetadataMinAge(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	const tick = 100 * time.Millisecond
	batch := max(1, perSecond/int(time.Second/tick))
	p := &producer{topic: topic, prefix: prefix, cl: cl, stop: make(chan struct{}), done: make(chan struct{}),
		started: time.Now(), marks: []mark{{0, "start"}}}
	go func() {
		defer close(p.done)
		defer cl.Close()
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-ticker.C:
			}
			p.mu.Lock()
			from := p.next
			p.next += batch
			p.mu.Unlock()
			rs := make([]*kgo.Record, batch)
			for i := range rs {
				id := fmt.Sprintf("%s-%d", prefix, from+i)
				rs[i] = shape(id, from+i)
				rs[i].Headers = append(rs[i].Headers, kgo.RecordHeader{Key: idHeader, Value: []byte(id)})
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			res := cl.ProduceSync(ctx, rs...)
			cancel()
			p.mu.Lock()
			for _, r := range res {
				if r.Err != nil {
					p.failed = append(p.failed, recordID(r.Record))
					if len(p.errs) < 5 {
						p.errs = append(p.errs, r.Err)
					}
					continue
				}
				p.acked = append(p.acked, recordID(r.Record))
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.halt() })
	return p
}

// idHeader carries a produced record's id, whatever its value.
const idHeader = "e2e-id"

func recordID(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == idHeader {
			return string(h.Value)
		}
	}
	return string(r.Value)
}

func (p *producer) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// mark names the moment: the ids produced from now on belong to the phase "after what".
func (p *producer) mark(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marks = append(p.marks, mark{p.next, what})
}

// finish stops the producer and returns the ids the broker acknowledged. A failed batch fails
// the test: those records may or may not be in the topic, so no guarantee can be checked on them.
func (p *producer) finish(t *testing.T) []string {
	t.Helper()
	p.halt()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = time.Since(p.started)
	if len(p.failed) > 0 {
		t.Errorf("producer on %s: %d records not acknowledged (%v...): %v", p.topic, len(p.failed), p.failed[:min(5, len(p.failed))], p.errs)
	}
	t.Logf("producer on %s: %d records acknowledged in %s (%s)", p.topic, len(p.acked), p.stopped.Round(time.Millisecond), p.phases())
	return slices.Clone(p.acked)
}

// ids are the acknowledged ids produced from the mark named from ("" the start) to the mark
// named to ("" the end).
func (p *producer) ids(from, to string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lo, hi := 0, p.next
	for _, m := range p.marks {
		if from != "" && m.what == from {
			lo = m.seq
		}
		if to != "" && m.what == to {
			hi = m.seq
		}
	}
	var out []string
	for _, id := range p.acked {
		if _, n := splitID(id); n >= lo && n < hi {
			out = append(out, id)
		}
	}
	return out
}

// phaseOf names the phase an id of this producer was produced in.
func (p *producer) phaseOf(id string) (string, bool) {
	rest, ok := strings.CutPrefix(id, p.prefix+"-")
	if !ok {
		return "", false
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return "", false
	}
	what := ""
	for _, m := range p.marks {
		if n >= m.seq {
			what = m.what
		}
	}
	return fmt.Sprintf("%s after %q", p.prefix, what), true
}

// phases lists the phases and where each begins: "start@0, update@412, ...".
func (p *producer) phases() string {
	var s []string
	for _, m := range p.marks {
		s = append(s, fmt.Sprintf("%s@%d", m.what, m.seq))
	}
	return strings.Join(s, ", ")
}

// verifier reads topics from their start with read_committed, as a downstream consumer of the
// Pipeline would, on a client of its own (no consumer group), and counts each value it sees.
type verifier struct {
	name    string
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}
	started time.Time

	mu       sync.Mutex
	topics   []string
	count    map[string]int
	optional map[string]bool // ids that may be seen (at most once) without being required
	records  int
	last     time.Time // when the last record arrived
}

func startVerifier(t *testing.T, topics ...string) *verifier {
	t.Helper()
	return startVerifierOf(t, func(r *kgo.Record) string { return string(r.Value) }, topics...)
}

// keyEqualsValue is what a verifier of a stateful function's outputs counts: "key=value".
func keyEqualsValue(r *kgo.Record) string { return string(r.Key) + "=" + string(r.Value) }

// startVerifierOf is startVerifier counting valueOf(record) instead of the records' values.
func startVerifierOf(t *testing.T, valueOf func(*kgo.Record) string, topics ...string) *verifier {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.kafka, ",")...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond), kgo.MetadataMaxAge(2*time.Second), kgo.MetadataMinAge(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	v := &verifier{name: strings.Join(topics, "+"), cl: cl, cancel: cancel, done: make(chan struct{}), started: time.Now(),
		topics: slices.Clone(topics), count: map[string]int{}}
	go func() {
		defer close(v.done)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			n := 0
			v.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) { v.count[valueOf(r)]++; n++ })
			v.records += n
			if n > 0 {
				v.last = time.Now()
			}
			v.mu.Unlock()
		}
	}()
	t.Cleanup(func() { v.close() })
	return v
}

func (v *verifier) close() {
	v.cancel()
	<-v.done
	v.cl.Close()
}

// mayHold names ids the outputs may hold but need not (they were produced while a change
// decided whether they are read): verify counts them neither missing nor unknown, but under
// ExactlyOnce not twice.
func (v *verifier) mayHold(ids []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.optional == nil {
		v.optional = map[string]bool{}
	}
	for _, id := range ids {
		v.optional[id] = true
	}
}

// verdict is what a verifier found for a set of inputs.
type verdict struct {
	Produced   int           // distinct ids the producers had acknowledged
	Records    int           // records read from the outputs
	Seen       int           // produced ids seen at least once
	Missing    []string      // produced ids never seen
	Duplicated []string      // produced ids seen more than once
	Unknown    []string      // values seen that no producer acknowledged
	Waited     time.Duration // from the call to the verdict
}

func (v verdict) String() string {
	return fmt.Sprintf("%d inputs, %d output records, %d seen, %d missing, %d duplicated, %d unknown",
		v.Produced, v.Records, v.Seen, len(v.Missing), len(v.Duplicated), len(v.Unknown))
}

// settle is how long the verifier waits, once every input was seen, with no new record
// arriving, before it judges: duplicates that are still on their way get that long to show.
const settle = 5 * time.Second

// verify waits (up to timeout) until every id of want has been seen, then until no record
// arrived for settle, and checks guarantee: under ExactlyOnce every id exactly once, under
// AtLeastOnce every id at least once (duplicates are counted and logged). Values that no
// producer wrote fail both. Ids are named with their phase (the producers' marks).
func (v *verifier) verify(t *testing.T, want []string, g v1alpha1.Guarantee, timeout time.Duration, ps ...*producer) verdict {
	t.Helper()
	start := time.Now()
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	deadline := start.Add(timeout)
	for {
		v.mu.Lock()
		seen := 0
		for id := range wanted {
			if v.count[id] > 0 {
				seen++
			}
		}
		quiet := time.Since(v.last)
		v.mu.Unlock()
		if seen == len(wanted) && quiet >= settle {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("verifier %s: gave up waiting after %s: %d of %d inputs seen", v.name, timeout, seen, len(wanted))
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	out := verdict{Produced: len(wanted), Records: v.records, Waited: time.Since(start)}
	for _, id := range slices.Sorted(maps.Keys(wanted)) {
		switch n := v.count[id]; {
		case n == 0:
			out.Missing = append(out.Missing, id)
		case n > 1:
			out.Duplicated = append(out.Duplicated, id)
		}
		if v.count[id] > 0 {
			out.Seen++
		}
	}
	for _, val := range slices.Sorted(maps.Keys(v.count)) {
		switch {
		case wanted[val]:
		case v.optional[val]:
			if v.count[val] > 1 {
				out.Duplicated = append(out.Duplicated, val)
			}
		default:
			out.Unknown = append(out.Unknown, val)
		}
	}
	t.Logf("verifier %s (%s, read_committed): %s; waited %s after the producers stopped", v.name, g, out, out.Waited.Round(time.Millisecond))
	fail := len(out.Missing) > 0 || len(out.Unknown) > 0 || (g == v1alpha1.ExactlyOnce && len(out.Duplicated) > 0)
	if !fail {
		if len(out.Duplicated) > 0 {
			t.Logf("verifier %s: %d duplicates, allowed under %s: %s", v.name, len(out.Duplicated), g, byPhase(out.Duplicated, v.count, ps))
		}
		return out
	}
	msg := fmt.Sprintf("verifier %s, %s: %s", v.name, g, out)
	if len(out.Missing) > 0 {
		msg += "\n  missing: " + byPhase(out.Missing, v.count, ps)
	}
	if len(out.Duplicated) > 0 {
		msg += "\n  duplicated: " + byPhase(out.Duplicated, v.count, ps)
	}
	if len(out.Unknown) > 0 {
		msg += fmt.Sprintf("\n  unknown values: %q", out.Unknown[:min(10, len(out.Unknown))])
	}
	t.Error(msg)
	return out
}

// seen counts how many of ids the verifier has read at least once so far, and returns the first
// few it has not.
func (v *verifier) seen(ids []string) (int, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	var not []string
	for _, id := range ids {
		if v.count[id] > 0 {
			n++
		} else if len(not) < 8 {
			not = append(not, id)
		}
	}
	return n, not
}

// atMostOnce checks that nothing in the topics was read twice and that everything read was
// produced (an output whose writer was removed: what it wrote stays, whole transactions only).
func (v *verifier) atMostOnce(t *testing.T, want []string, ps ...*producer) verdict {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	out := verdict{Produced: len(wanted), Records: v.records}
	for _, val := range slices.Sorted(maps.Keys(v.count)) {
		switch {
		case !wanted[val]:
			out.Unknown = append(out.Unknown, val)
		case v.count[val] > 1:
			out.Duplicated = append(out.Duplicated, val)
		}
		if wanted[val] {
			out.Seen++
		}
	}
	t.Logf("verifier %s (at most once): %s", v.name, out)
	if len(out.Duplicated) > 0 || len(out.Unknown) > 0 {
		t.Errorf("verifier %s, at most once: %s\n  duplicated: %s\n  unknown: %q", v.name, out,
			byPhase(out.Duplicated, v.count, ps), out.Unknown[:min(10, len(out.Unknown))])
	}
	return out
}

// byPhase groups ids by the phase they were produced in: `12 produced after "update": r-400
// (x2), r-401 (x2) ...`.
func byPhase(ids []string, count map[string]int, ps []*producer) string {
	groups := map[string][]string{}
	for _, id := range ids {
		phase := "unknown phase"
		for _, p := range ps {
			if ph, ok := p.phaseOf(id); ok {
				phase = ph
			}
		}
		groups[phase] = append(groups[phase], id)
	}
	var parts []string
	for _, ph := range slices.Sorted(maps.Keys(groups)) {
		g := groups[ph]
		sort.Slice(g, func(i, j int) bool { return idLess(g[i], g[j]) })
		var shown []string
		for _, id := range g[:min(8, len(g))] {
			shown = append(shown, fmt.Sprintf("%s (x%d)", id, count[id]))
		}
		more := ""
		if len(g) > 8 {
			more = fmt.Sprintf(" ... %s", g[len(g)-1])
		}
		parts = append(parts, fmt.Sprintf("%d produced %s: %s%s", len(g), ph, strings.Join(shown, ", "), more))
	}
	return strings.Join(parts, "; ")
}

// idLess orders prefix-n ids by prefix, then numerically.
func idLess(a, b string) bool {
	pa, na := splitID(a)
	pb, nb := splitID(b)
	if pa != pb {
		return pa < pb
	}
	return na < nb
}

func splitID(id string) (string, int) {
	i := strings.LastIndex(id, "-")
	if i < 0 {
		return id, 0
	}
	n, _ := strconv.Atoi(id[i+1:])
	return id[:i], n
}

// podState is a pod as a restart check sees it.
type podState struct {
	UID      types.UID
	Restarts int32 // of all its containers
	Ready    bool
}

// entityPods are the pods of every entity of a Pipeline (of old and new specs), by entity and pod name.
type entityPods map[string]map[string]podState

func snapshotPods(t *testing.T, ns string, p *v1alpha1.Pipeline, entities ...string) entityPods {
	t.Helper()
	out := entityPods{}
	for _, e := range entities {
		sel := labels.SelectorFromSet(render.SelectorLabels(p, e)).String()
		list, err := env.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		out[e] = map[string]podState{}
		for i := range list.Items {
			pod := &list.Items[i]
			var n int32
			for _, s := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
				n += s.RestartCount
			}
			// A terminating pod counts (not Ready): a deleted entity is gone, and a pod replaced,
			// only once their pods are.
			out[e][pod.Name] = podState{UID: pod.UID, Restarts: n, Ready: podReady(pod) && pod.DeletionTimestamp == nil}
		}
	}
	return out
}

func entityNames(ps ...*v1alpha1.Pipeline) []string {
	set := map[string]bool{}
	for _, p := range ps {
		for _, e := range p.Spec.Entities {
			set[e.Name] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// prediction is what the plan says happens to an entity's pods: "keep", "create", "delete" or
// "restart N".
func prediction(plan *reconfig.Plan, entity string) string {
	ep := entityPlan(plan, entity)
	switch {
	case ep.Action == reconfig.Create:
		return "create"
	case ep.Action == reconfig.Delete:
		return "delete"
	case ep.Restart:
		return "restart " + ep.Pods
	}
	return "keep"
}

// observed says what happened to an entity's pods between two snapshots, in prediction's words.
func observed(before, after map[string]podState) string {
	switch {
	case len(before) == 0 && len(after) > 0:
		return "create"
	case len(before) > 0 && len(after) == 0:
		return "delete"
	}
	replaced, restarted := 0, 0
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok || a.UID != b.UID:
			replaced++
		case a.Restarts != b.Restarts:
			restarted++
		}
	}
	switch {
	case replaced == 0 && restarted == 0 && len(after) == len(before):
		return "keep"
	case restarted == 0 && replaced == len(before) && len(after) == len(before):
		return fmt.Sprintf("restart %d", replaced)
	}
	return fmt.Sprintf("%d of %d pods replaced, %d restarted in place, %d pods now", replaced, len(before), restarted, len(after))
}

// waitPlanDone waits until what the plan predicts has happened to every entity: created
// entities have all their pods Ready, deleted ones none, restarted ones every pod replaced and
// Ready. It returns the snapshot then.
func waitPlanDone(t *testing.T, ns string, p *v1alpha1.Pipeline, plan *reconfig.Plan, before entityPods, entities []string) entityPods {
	t.Helper()
	var now entityPods
	waitFor(t, 5*time.Minute, "the plan's pod changes done", func(ctx context.Context) error {
		now = snapshotPods(t, ns, p, entities...)
		for _, e := range entities {
			want := prediction(plan, e)
			got := now[e]
			ready := 0
			for _, s := range got {
				if s.Ready {
					ready++
				}
			}
			switch {
			case want == "delete":
				if len(got) > 0 {
					return fmt.Errorf("entity %s: %d pods left", e, len(got))
				}
			case want == "create" || want == "keep":
				if len(got) == 0 || ready != len(got) {
					return fmt.Errorf("entity %s: %d of %d pods Ready", e, ready, len(got))
				}
			default: // restart
				for name, b := range before[e] {
					if got[name].UID == b.UID {
						return fmt.Errorf("entity %s: pod %s not replaced yet", e, name)
					}
				}
				if ready != len(got) || len(got) != len(before[e]) {
					return fmt.Errorf("entity %s: %d of %d pods Ready", e, ready, len(got))
				}
			}
		}
		return nil
	})
	return now
}

// checkPlan compares the plan's prediction for each entity with what the pods did from before
// to after, and returns the comparison ("a: keep/keep, x: create/create").
func checkPlan(t *testing.T, plan *reconfig.Plan, before, after entityPods, entities []string) string {
	t.Helper()
	var s []string
	for _, e := range entities {
		want, got := prediction(plan, e), observed(before[e], after[e])
		s = append(s, fmt.Sprintf("%s: planned %s, observed %s", e, want, got))
		if want != got {
			t.Errorf("entity %s: the plan said %q, the pods did %q (pods before %v, after %v)", e, want, got, before[e], after[e])
		}
	}
	return strings.Join(s, "; ")
}
