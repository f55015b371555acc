package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
)

// retireCase is one way an entity is retired.
type retireCase struct {
	name        string
	drain       bool
	deleteGroup bool
	// restart: pod 1 is stopped before the retirement and starts again with it already set.
	restart bool
}

// retirePod is a running pod and the address of its I/O sidecar's /status.
type retirePod struct {
	pod  *testenv.Pod
	base string
	// phases are the retirement phases its /status reported, in order, without repeats.
	mu     sync.Mutex
	phases []string
	last   iosidecar.Status
}

func startRetirePod(t *testing.T, e *testenv.Entity, ordinal int) *retirePod {
	addr := make(chan net.Addr, 1)
	p := &retirePod{}
	p.pod = testenv.StartPod(t, e, ordinal, copyValues, iosidecar.WithMetricsAddr("127.0.0.1:0", func(a net.Addr) { addr <- a }))
	select {
	case a := <-addr:
		p.base = "http://" + a.String()
	case <-time.After(30 * time.Second):
		t.Fatal("the I/O sidecar did not serve its metrics port")
	}
	return p
}

// poll reads /status once and records a new phase.
func (p *retirePod) poll(t *testing.T) iosidecar.Status {
	code, body := httpGet(t, p.base+"/status")
	var st iosidecar.Status
	if code != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		return p.status()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = st
	if st.Retire != nil && (len(p.phases) == 0 || p.phases[len(p.phases)-1] != st.Retire.Phase) {
		p.phases = append(p.phases, st.Retire.Phase)
	}
	return st
}

func (p *retirePod) status() iosidecar.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *retirePod) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.phases)
}

func phaseOf(st iosidecar.Status) string {
	if st.Retire == nil {
		return ""
	}
	return st.Retire.Phase
}

// testRetire retires a running two-pod entity while a producer keeps writing its input: with
// Drain, its output holds exactly the input records older than Since (each once under
// ExactlyOnce, at least once under AtLeastOnce) and the group's committed offsets are the drain
// targets; /status goes Draining -> Drained (-> Deleted, and the group is gone, with
// DeleteGroup). Without Drain the pods stop at once and process nothing more.
func testRetire(t *testing.T, k *testenv.Kafka, c retireCase, g config.Guarantee, mode config.AssignmentMode) {
	in, out := k.Prefix+"in", k.Prefix+"out"
	e := k.NewEntity(t, "retired", []string{in}, []string{out}, 4, false, g)
	if mode == config.StaticAssignment {
		e.Update(t, func(c *config.Executor) {
			c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
		})
	}
	k.CreateTopics(t, 4, e.Topics()...)

	// The producer writes batches of ten records, each with its own timestamp, until the end.
	type written struct {
		value string
		ts    int64 // milliseconds
	}
	var wmu sync.Mutex
	var all []written
	stop := make(chan struct{})
	var once sync.Once
	stopProducer := func() { once.Do(func() { close(stop) }) }
	defer stopProducer()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			ts := time.Now().Truncate(time.Millisecond)
			recs := valueRecords(in, fmt.Sprintf("r%d", n), 10, ts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := k.Client.ProduceSync(ctx, recs...).FirstErr()
			cancel()
			if err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			wmu.Lock()
			for _, r := range recs {
				all = append(all, written{string(r.Value), ts.UnixMilli()})
			}
			wmu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()

	pods := []*retirePod{startRetirePod(t, e, 0), startRetirePod(t, e, 1)}
	defer func() {
		for _, p := range pods {
			if p != nil {
				p.pod.Stop(t)
			}
		}
	}()
	waitRecords(t, k, out, 200)
	if c.restart {
		pods[1].pod.Stop(t)
		pods[1] = nil
	}

	// The retirement starts a moment after the pods read it, as when the operator's change
	// reaches the pods before Since (the cut is exact for the records they had not processed
	// when they applied it).
	since := time.Now().Add(2 * time.Second).UTC().Truncate(time.Millisecond)
	e.Update(t, func(cfg *config.Executor) {
		cfg.Retire = &config.Retire{Since: since.Format(time.RFC3339Nano), Drain: c.drain, DeleteGroup: c.deleteGroup}
	})
	if c.restart {
		time.Sleep(500 * time.Millisecond)
		pods[1] = startRetirePod(t, e, 1)
	}

	final := iosidecar.RetireDrained
	if c.deleteGroup {
		final = iosidecar.RetireDeleted
	}
	// Each pod reaches the final phase (pod 0 deletes the group; pod 1 sees it gone).
	deadline := time.Now().Add(90 * time.Second)
	for {
		doneAll := true
		for _, p := range pods {
			if phaseOf(p.poll(t)) != final {
				doneAll = false
			}
		}
		if doneAll {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retirement did not finish: pod 0 %+v (phases %v), pod 1 %+v (phases %v)",
				pods[0].status().Retire, pods[0].seen(), pods[1].status().Retire, pods[1].seen())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, p := range pods {
		seen := p.seen()
		want := []string{iosidecar.RetireDraining, iosidecar.RetireDrained, iosidecar.RetireDeleted}
		if !c.drain {
			want = want[1:]
		}
		if !c.deleteGroup {
			want = want[:len(want)-1]
		}
		// /status is polled, so a short phase may go unseen; what is seen must be in order and end
		// with the final phase, and a draining pod that ran before the retirement reports
		// Draining first (it lasts at least until Since).
		if !inOrder(seen, want) || len(seen) == 0 || seen[len(seen)-1] != final || (c.drain && !(c.restart && i == 1) && seen[0] != iosidecar.RetireDraining) {
			t.Errorf("pod %d reported the phases %v, want them in the order %v", i, seen, want)
		}
		if st := p.status(); st.Retire.Remaining != 0 || st.Ready {
			t.Errorf("pod %d: /status %+v once retired, want remaining 0 and not ready", i, st)
		}
		if code, body := httpGet(t, p.base+"/healthz"); code != http.StatusOK {
			t.Errorf("pod %d: /healthz = %d %s once retired, want 200", i, code, body)
		}
	}

	// The group: gone with DeleteGroup, else its offsets are the drain targets.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.deleteGroup {
		if !groupIsGone(t, k.Admin, e.Config.GroupID) {
			t.Errorf("group %s still exists once Deleted", e.Config.GroupID)
		}
	}
	if c.drain && !c.deleteGroup {
		targets, err := k.Admin.ListOffsetsAfterMilli(ctx, since.UnixMilli(), in)
		if err != nil {
			t.Fatal(err)
		}
		committed := fetchCommitted(t, k.Admin, e.Config.GroupID, in)
		targets.Each(func(o kadm.ListedOffset) {
			if committed[o.Partition] != o.Offset {
				t.Errorf("partition %d: the group committed %d, want the drain target %d", o.Partition, committed[o.Partition], o.Offset)
			}
		})
	}

	// Nothing is processed once the pods report the final phase. (A transaction committed
	// before it may still be having its markers written: the output is read once it has none
	// pending.)
	waitNoOpenTransactions(t, k.Admin, out)
	before := len(k.ReadAll(t, out, true))
	time.Sleep(2 * time.Second)
	stopProducer()
	<-produced
	recs := k.ReadAll(t, out, true)
	if len(recs) != before {
		t.Errorf("the output grew from %d to %d records after the retirement finished", before, len(recs))
	}
	got := map[string]int{}
	for _, r := range recs {
		got[string(r.Value)]++
	}
	wmu.Lock()
	defer wmu.Unlock()
	lost, dup, late, older := 0, 0, 0, 0
	for _, w := range all {
		n := got[w.value]
		switch {
		case w.ts >= since.UnixMilli() && n > 0:
			late++
		case w.ts >= since.UnixMilli():
		case n == 0:
			lost++
		case n > 1:
			dup++
		}
		if w.ts < since.UnixMilli() {
			older++
		}
	}
	t.Logf("%d records written (%d before Since); %d older records not in the output (lost, with Drain), %d duplicated; %d records at or after Since came out", len(all), older, lost, dup, late)
	if late > 0 {
		t.Errorf("%d records at or after Since came out", late)
	}
	if c.drain && lost > 0 {
		t.Errorf("%d of %d records older than Since were not drained", lost, older)
	}
	if g == config.ExactlyOnce && dup > 0 {
		t.Errorf("%d records came out more than once under ExactlyOnce", dup)
	}
}

// waitNoOpenTransactions waits until every partition of topic has its last stable offset at its
// end.
func waitNoOpenTransactions(t *testing.T, adm *kadm.Client, topic string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		lso, err := adm.ListCommittedOffsets(ctx, topic)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		hwm, err := adm.ListEndOffsets(ctx, topic)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		open := 0
		hwm.Each(func(o kadm.ListedOffset) {
			if l, _ := lso.Lookup(topic, o.Partition); l.Offset != o.Offset {
				open++
			}
		})
		if open == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d partitions still have a transaction open", topic, open)
		}
	}
}

// inOrder: seen is a subsequence of want.
func inOrder(seen, want []string) bool {
	i := 0
	for _, s := range seen {
		for i < len(want) && want[i] != s {
			i++
		}
		if i == len(want) {
			return false
		}
		i++
	}
	return true
}

// groupIsGone: neither group API knows the group.
func groupIsGone(t *testing.T, adm *kadm.Client, group string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cgs, err := adm.DescribeConsumerGroups(ctx, group); err == nil {
		if g, ok := cgs[group]; ok && g.Err == nil && g.State != "Dead" {
			return false
		}
	}
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		t.Fatalf("describe group %s: %v", group, err)
	}
	g, ok := gs[group]
	return !ok || errors.Is(g.Err, kerr.GroupIDNotFound) || (g.Err == nil && g.State == "Dead")
}

var retireCases = []retireCase{
	{name: "DrainAndDelete", drain: true, deleteGroup: true},
	{name: "DrainKeepGroup", drain: true},
	{name: "StartsRetired", drain: true, deleteGroup: true, restart: true},
	{name: "DeleteWithoutDrain", deleteGroup: true},
}

// testRetirements runs every case in both guarantees and both assignment modes; with only
// (the real broker, where a case takes 15-30 s) DrainAndDelete runs in all four and every other
// case in the combinations named.
func testRetirements(t *testing.T, kafka func(testing.TB) *testenv.Kafka, only map[string][]string) {
	for _, c := range retireCases {
		for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
			for _, mode := range []config.AssignmentMode{config.GroupAssignment, config.StaticAssignment} {
				name := fmt.Sprintf("%s/%s/%s", c.name, g, mode)
				if only != nil && c.name != "DrainAndDelete" && !slices.Contains(only[c.name], fmt.Sprintf("%s/%s", g, mode)) {
					continue
				}
				t.Run(name, func(t *testing.T) { testRetire(t, kafka(t), c, g, mode) })
			}
		}
	}
}

func TestRetireEntity(t *testing.T) {
	testRetirements(t, func(tb testing.TB) *testenv.Kafka { return testenv.Fake(tb) }, nil)
}

func TestRealBrokerRetireEntity(t *testing.T) {
	testRetirements(t, func(tb testing.TB) *testenv.Kafka { return testenv.Real(tb) }, map[string][]string{
		"DrainKeepGroup":     {"ExactlyOnce/Group"},
		"StartsRetired":      {"ExactlyOnce/Group", "AtLeastOnce/Static"},
		"DeleteWithoutDrain": {"ExactlyOnce/Static"},
	})
}
