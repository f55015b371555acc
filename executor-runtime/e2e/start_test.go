package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// copyValues writes every record's value to the only output, unchanged.
var copyValues = sdk.Map(func(_ context.Context, r sdk.Record) (sdk.Output, error) {
	return sdk.Output{Key: r.Key, Value: r.Value}, nil
})

func valueRecords(topic string, prefix string, n int, ts time.Time) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i), Timestamp: ts}
	}
	return recs
}

// startCase is one start position of an input added to a running entity: the records written to
// the new input before the change (before), which the position skips, and those it must read
// (from), written before the change too.
type startCase struct {
	name  string
	start func(now time.Time) *config.Start
	// skipped and read are written to the new input before it is added.
	skipped, read func(topic string, now time.Time) []*kgo.Record
}

var startCases = []startCase{
	{
		name:    "Latest",
		start:   func(time.Time) *config.Start { return &config.Start{Position: config.StartLatest} },
		skipped: func(topic string, now time.Time) []*kgo.Record { return valueRecords(topic, "backlog", 40, now) },
		read:    func(string, time.Time) []*kgo.Record { return nil },
	},
	{
		name: "Timestamp",
		start: func(now time.Time) *config.Start {
			return &config.Start{Position: config.StartTimestamp, TimestampMillis: now.Add(-30 * time.Minute).UnixMilli()}
		},
		skipped: func(topic string, now time.Time) []*kgo.Record {
			return valueRecords(topic, "before", 40, now.Add(-time.Hour))
		},
		read: func(topic string, now time.Time) []*kgo.Record {
			return valueRecords(topic, "after", 40, now.Add(-10*time.Minute))
		},
	},
}

// testStartOfAddedInput adds an input with a start position to a running two-pod entity (both
// pods reload and join at once), writes records while one pod restarts, and requires the output
// to hold exactly the records at or after the start, each once (ExactlyOnce) or at least once.
func testStartOfAddedInput(t *testing.T, k *testenv.Kafka, c startCase, g config.Guarantee, mode config.AssignmentMode) {
	old, added, out := k.Prefix+"old", k.Prefix+"added", k.Prefix+"out"
	e := k.NewEntity(t, "copy", []string{old}, []string{out}, 4, false, g)
	if mode == config.StaticAssignment {
		e.Update(t, func(c *config.Executor) {
			c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
		})
	}
	k.CreateTopics(t, 4, e.Topics()...)
	k.CreateTopics(t, 4, added, added+".dlq")
	now := time.Now()
	// The records the added input holds before the entity reads it.
	k.Produce(t, g == config.ExactlyOnce, c.skipped(added, now)...)
	if rs := c.read(added, now); len(rs) > 0 {
		k.Produce(t, g == config.ExactlyOnce, rs...)
	}
	pods := []*testenv.Pod{testenv.StartPod(t, e, 0, copyValues), testenv.StartPod(t, e, 1, copyValues)}
	defer func() {
		for _, p := range pods {
			p.Stop(t)
		}
	}()
	k.Produce(t, g == config.ExactlyOnce, valueRecords(old, "old", 20, now)...)
	waitRecords(t, k, out, 20)

	// The change: both running pods reload with the added input and join the group at once.
	e.Update(t, func(cfg *config.Executor) {
		cfg.Inputs = append(cfg.Inputs, config.Input{Stream: added, Topic: added, Partitions: 4, DeadLetterTopic: added + ".dlq", Start: c.start(now)})
	})
	// The start is committed for every partition as soon as the partition is assigned, before
	// any record of it is processed.
	ends := listEnds(t, k.Admin, added)
	waitCommitted(t, k.Admin, e.Config.GroupID, added, 4)
	want := map[string]int{}
	for _, r := range c.read(added, now) {
		want[string(r.Value)]++
	}
	for _, r := range valueRecords(old, "old", 20, now) {
		want[string(r.Value)]++
	}
	if c.name == "Latest" {
		committed := fetchCommitted(t, k.Admin, e.Config.GroupID, added)
		for p, end := range ends {
			if committed[p] != end {
				t.Errorf("partition %d of the added input: start committed at %d, want its end %d", p, committed[p], end)
			}
		}
	}

	// Records written after the change, while pod 1 restarts: each must come out.
	live := valueRecords(added, "live", 40, time.Now())
	k.Produce(t, g == config.ExactlyOnce, live[:20]...)
	pods[1].Stop(t)
	k.Produce(t, g == config.ExactlyOnce, live[20:30]...)
	pods[1] = testenv.StartPod(t, e, 1, copyValues)
	k.Produce(t, g == config.ExactlyOnce, live[30:]...)
	for _, r := range live {
		want[string(r.Value)]++
	}
	total := 0
	for _, n := range want {
		total += n
	}
	waitRecords(t, k, out, total)
	// Let anything extra (a duplicate, a skipped record read after all) arrive before judging.
	time.Sleep(2 * time.Second)
	recs := k.ReadAll(t, out, true)
	got := map[string]int{}
	for _, r := range recs {
		got[string(r.Value)]++
	}
	for v := range want {
		switch {
		case got[v] == 0:
			t.Errorf("record %q was lost", v)
		case got[v] > 1 && g == config.ExactlyOnce:
			t.Errorf("record %q came out %d times under ExactlyOnce", v, got[v])
		}
	}
	if t.Failed() {
		t.Logf("group offsets on the added input %v, its end %v", fetchCommitted(t, k.Admin, e.Config.GroupID, added), listEnds(t, k.Admin, added))
		for _, r := range k.ReadAll(t, added, true) {
			t.Logf("added input record %d/%d %s came out %d times", r.Partition, r.Offset, r.Value, got[string(r.Value)])
		}
	}
	for v := range got {
		if want[v] == 0 {
			t.Errorf("record %q is before the start position %s but came out", v, c.name)
		}
	}
}

func listEnds(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		t.Fatalf("list the end of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func fetchCommitted(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("fetch the offsets of %s: %v", group, err)
	}
	out := map[int32]int64{}
	res.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// waitCommitted waits until group has a committed offset on each of topic's partitions.
func waitCommitted(t *testing.T, adm *kadm.Client, group, topic string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := fetchCommitted(t, adm, group, topic)
		if len(c) == partitions {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s committed %v on %s, want all %d partitions", group, c, topic, partitions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testStartPositions(t *testing.T, kafka func(testing.TB) *testenv.Kafka) {
	for _, c := range startCases {
		for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
			for _, mode := range []config.AssignmentMode{config.GroupAssignment, config.StaticAssignment} {
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, g, mode), func(t *testing.T) {
					testStartOfAddedInput(t, kafka(t), c, g, mode)
				})
			}
		}
	}
}

func TestStartPositionOfAddedInput(t *testing.T) {
	testStartPositions(t, func(tb testing.TB) *testenv.Kafka { return testenv.Fake(tb) })
}

func TestRealBrokerStartPositionOfAddedInput(t *testing.T) {
	testStartPositions(t, func(tb testing.TB) *testenv.Kafka { return testenv.Real(tb) })
}

// testInsertStage turns A -> s1 -> B into A -> s1 -> X -> s2 -> B on running pods while records
// flow into s1: X takes s1 over from B's group (start position "group") and B reads s2 instead.
// Every record written to s1 must reach B's output exactly once (ExactlyOnce) or at least once.
func testInsertStage(t *testing.T, k *testenv.Kafka, g config.Guarantee, mode config.AssignmentMode) {
	s1, s2, out := k.Prefix+"s1", k.Prefix+"s2", k.Prefix+"out"
	b := k.NewEntity(t, "b", []string{s1}, []string{out}, 4, false, g)
	x := k.NewEntity(t, "x", []string{s1}, []string{s2}, 4, false, g)
	static := func(c *config.Executor) {
		if mode == config.StaticAssignment {
			c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
		}
	}
	b.Update(t, func(c *config.Executor) {
		static(c)
		offsetsDeletable(k, b)
	})
	x.Update(t, func(c *config.Executor) {
		static(c)
		c.Inputs[0].Start = &config.Start{Position: config.StartGroup, Group: b.Config.GroupID}
	})
	k.CreateTopics(t, 4, s1, s1+".dlq", s2, s2+".dlq", out)

	// The producer writes s1 from before B starts until after the change.
	stop := make(chan struct{})
	var once sync.Once
	stopProducer := func() { once.Do(func() { close(stop) }) }
	defer stopProducer()
	produced := make(chan int, 1)
	go func() {
		n := 0
		defer func() { produced <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			recs := valueRecords(s1, fmt.Sprintf("r%d", n), 10, time.Now())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := k.Client.ProduceSync(ctx, recs...).FirstErr()
			cancel()
			if err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			n++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	bPods := []*testenv.Pod{testenv.StartPod(t, b, 0, copyValues), testenv.StartPod(t, b, 1, copyValues)}
	defer func() {
		for _, p := range bPods {
			p.Stop(t)
		}
	}()
	waitRecords(t, k, out, 200)

	// The change, in the operator's order: X's pods start (they wait while B's group reads s1),
	// and B's pods reload to read s2 instead of s1.
	xPods := []*testenv.Pod{testenv.StartPod(t, x, 0, copyValues), testenv.StartPod(t, x, 1, copyValues)}
	defer func() {
		for _, p := range xPods {
			p.Stop(t)
		}
	}()
	// The partitions B has committed (the producer's keys cover some partitions only).
	bHad := fetchCommitted(t, k.Admin, b.Config.GroupID, s1)
	b.Update(t, func(c *config.Executor) {
		c.Inputs = []config.Input{{Stream: s2, Topic: s2, Partitions: 4, DeadLetterTopic: s2 + ".dlq"}}
		c.Heirs = []config.Heir{{Topic: s1, GroupID: x.Config.GroupID}}
	})
	// Records keep flowing through the new stage for a while, then the producer stops.
	deadline := time.Now().Add(60 * time.Second)
	for len(fetchCommitted(t, k.Admin, x.Config.GroupID, s1)) == 0 || len(k.ReadAll(t, s2, true)) < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("X did not take s1 over: committed %v", fetchCommitted(t, k.Admin, x.Config.GroupID, s1))
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopProducer()
	batches := <-produced
	want := batches * 10
	// Wait until every record came out (or the bound passes), then a little for duplicates.
	got := map[string]int{}
	for deadline := time.Now().Add(60 * time.Second); len(got) < want && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		clear(got)
		for _, r := range k.ReadAll(t, out, true) {
			got[string(r.Value)]++
		}
	}
	time.Sleep(2 * time.Second)
	clear(got)
	for _, r := range k.ReadAll(t, out, true) {
		got[string(r.Value)]++
	}
	lost, dup := 0, 0
	for i := range batches {
		for _, r := range valueRecords(s1, fmt.Sprintf("r%d", i), 10, time.Time{}) {
			switch n := got[string(r.Value)]; {
			case n == 0:
				lost++
			case n > 1:
				dup++
			}
		}
	}
	// B's offsets on s1 go once X has committed its own on every partition.
	waitOffsetsGone(t, k, b.Config.GroupID, s1)
	xHas := fetchCommitted(t, k.Admin, x.Config.GroupID, s1)
	for p := range bHad {
		if _, ok := xHas[p]; !ok {
			t.Errorf("B's offsets on s1 were deleted while X has committed %v only, not partition %d that B had committed (%v)", xHas, p, bHad)
		}
	}
	t.Logf("%d records written to s1 across the change; %d lost, %d duplicated in B's output", want, lost, dup)
	if lost > 0 {
		t.Errorf("%d of %d records were lost", lost, want)
	}
	if dup > 0 && g == config.ExactlyOnce {
		t.Errorf("%d of %d records came out more than once under ExactlyOnce", dup, want)
	}
}

// testHeirCommitsBeforeDrop inserts X before B the other way round from testInsertStage: B's
// pods drop s1 first (it has read all of s1), and X's pods start only later. B's group keeps its
// offsets on s1 while X has committed none (B's pods report that they wait for the heir); X
// starts at them and commits them at once for every partition although no new record arrives,
// and then B's offsets on s1 are deleted. Records written afterwards reach B's output through X,
// each exactly once (ExactlyOnce) or at least once.
func testHeirCommitsBeforeDrop(t *testing.T, k *testenv.Kafka, g config.Guarantee) {
	s1, s2, out := k.Prefix+"s1", k.Prefix+"s2", k.Prefix+"out"
	b := k.NewEntity(t, "b", []string{s1}, []string{out}, 4, false, g)
	x := k.NewEntity(t, "x", []string{s1}, []string{s2}, 4, false, g)
	b.Update(t, func(*config.Executor) { offsetsDeletable(k, b) })
	x.Update(t, func(c *config.Executor) {
		c.Inputs[0].Start = &config.Start{Position: config.StartGroup, Group: b.Config.GroupID}
	})
	k.CreateTopics(t, 4, s1, s1+".dlq", s2, s2+".dlq", out)
	k.Produce(t, g == config.ExactlyOnce, valueRecords(s1, "before", 40, time.Now())...)
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	bPods := []*testenv.Pod{
		testenv.StartPod(t, b, 0, copyValues, iosidecar.WithRegistry(regs[0])),
		testenv.StartPod(t, b, 1, copyValues, iosidecar.WithRegistry(regs[1])),
	}
	defer func() {
		for _, p := range bPods {
			p.Stop(t)
		}
	}()
	waitRecords(t, k, out, 40)
	ends := listEnds(t, k.Admin, s1)
	waitFor(t, "B committed the end of s1", func() bool { return maps.Equal(fetchCommitted(t, k.Admin, b.Config.GroupID, s1), ends) })

	b.Update(t, func(c *config.Executor) {
		c.Inputs = []config.Input{{Stream: s2, Topic: s2, Partitions: 4, DeadLetterTopic: s2 + ".dlq"}}
		c.Heirs = []config.Heir{{Topic: s1, GroupID: x.Config.GroupID}}
	})
	waitFor(t, "B's pods wait for X to commit before they delete B's offsets on s1", func() bool {
		return pendingDrops(t, regs[0], "heirs") == 1 && pendingDrops(t, regs[1], "heirs") == 1
	})
	if got := fetchCommitted(t, k.Admin, b.Config.GroupID, s1); !maps.Equal(got, ends) {
		t.Fatalf("B's offsets on s1 changed before X committed any: %v, want %v", got, ends)
	}

	xPods := []*testenv.Pod{testenv.StartPod(t, x, 0, copyValues), testenv.StartPod(t, x, 1, copyValues)}
	defer func() {
		for _, p := range xPods {
			p.Stop(t)
		}
	}()
	waitOffsetsGone(t, k, b.Config.GroupID, s1)
	if got := fetchCommitted(t, k.Admin, x.Config.GroupID, s1); !maps.Equal(got, ends) {
		t.Errorf("X committed %v on s1 when B's offsets went, want B's final offsets %v on every partition", got, ends)
	}
	after := valueRecords(s1, "after", 40, time.Now())
	k.Produce(t, g == config.ExactlyOnce, after...)
	recs := waitRecords(t, k, out, 80)
	time.Sleep(2 * time.Second) // let a duplicate arrive before judging
	recs = k.ReadAll(t, out, true)
	got := map[string]int{}
	for _, r := range recs {
		got[string(r.Value)]++
	}
	for _, r := range append(valueRecords(s1, "before", 40, time.Time{}), after...) {
		switch n := got[string(r.Value)]; {
		case n == 0:
			t.Errorf("record %q was lost", r.Value)
		case n > 1 && g == config.ExactlyOnce:
			t.Errorf("record %q came out %d times under ExactlyOnce", r.Value, n)
		}
	}
}

func testInsertStages(t *testing.T, kafka func(testing.TB) *testenv.Kafka) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run("HeirCommitsBeforeDrop/"+string(g), func(t *testing.T) { testHeirCommitsBeforeDrop(t, kafka(t), g) })
	}
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		for _, mode := range []config.AssignmentMode{config.GroupAssignment, config.StaticAssignment} {
			t.Run(fmt.Sprintf("%s/%s", g, mode), func(t *testing.T) { testInsertStage(t, kafka(t), g, mode) })
		}
	}
}

func TestInsertStageHandsTheInputOver(t *testing.T) {
	testInsertStages(t, func(tb testing.TB) *testenv.Kafka { return testenv.Fake(tb) })
}

func TestRealBrokerInsertStageHandsTheInputOver(t *testing.T) {
	testInsertStages(t, func(tb testing.TB) *testenv.Kafka { return testenv.Real(tb) })
}
