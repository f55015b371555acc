package iosidecar

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// testRetireTargets: the drain target of a partition is the first offset whose record timestamp
// is at or after Since, else the partition's end; a target inside an open transaction is that
// offset (past the last stable offset: the records before it in the transaction are drained once
// it is resolved), not the last stable offset, which would leave them out.
func testRetireTargets(t *testing.T, bootstrap []string, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := prefix + "retire-targets"
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	rec := func(p int32, ts time.Time) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: p, Value: []byte(ts.String()), Timestamp: ts}
	}
	before, after := since.Add(-10*time.Minute), since.Add(time.Minute)
	// Partition 0: three records before Since, then two at and after it. Partition 1: only
	// records before Since. Partition 2: none. Partition 3: two records before Since, then an
	// open transaction with two records before Since and one after.
	recs := []*kgo.Record{rec(0, before), rec(0, before), rec(0, before.Add(time.Second)), rec(0, since), rec(0, after), rec(1, before), rec(1, before), rec(3, before), rec(3, before)}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txn, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID(topic+"-txn"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, rec(3, before.Add(time.Minute)), rec(3, before.Add(2*time.Minute)), rec(3, after)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	inputs := []config.Input{{Topic: topic, Partitions: 4}}
	got, err := retireTargets(ctx, adm, inputs, since)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: 3, 1: 2, 2: 0, 3: 4}
	for p, w := range want {
		if got[topic][p] != w {
			t.Errorf("partition %d: drain target %d, want %d", p, got[topic][p], w)
		}
	}
	if len(got[topic]) != len(want) {
		t.Errorf("targets %v, want one per partition %v", got[topic], want)
	}
	lso, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := lso.Lookup(topic, 3); o.Offset != 2 {
		t.Errorf("partition 3's last stable offset is %d with the transaction open, want 2", o.Offset)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	// Targets resolved again later are the same, except where no record is at or after Since
	// (the end as listed then): partition 1 gains a record before Since and one after.
	if err := cl.ProduceSync(ctx, rec(1, before), rec(1, after)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	again, err := retireTargets(ctx, adm, inputs, since)
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range map[int32]int64{0: 3, 1: 3, 2: 0, 3: 4} {
		if again[topic][p] != w {
			t.Errorf("resolved again: partition %d: drain target %d, want %d", p, again[topic][p], w)
		}
	}
	// An input that does not exist is an error, not an empty target.
	if _, err := retireTargets(ctx, adm, []config.Input{{Topic: prefix + "missing", Partitions: 1}}, since); err == nil {
		t.Error("the targets of a missing topic resolved without an error")
	}
}

func TestRetireTargets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testRetireTargets(t, c.ListenAddrs(), "")
}

func TestRetireTargetsRealBroker(t *testing.T) {
	bs := os.Getenv("MILLRACE_KAFKA_BOOTSTRAP")
	if bs == "" {
		t.Skip("MILLRACE_KAFKA_BOOTSTRAP is not set: start a broker with `hack/kafka.sh start` and export the address it prints to run the real-broker tier")
	}
	testRetireTargets(t, strings.Split(bs, ","), fmt.Sprintf("t%d-", time.Now().UnixNano()%1_000_000_000))
}

func TestRetireRemaining(t *testing.T) {
	targets := map[string]map[int32]int64{"a": {0: 10, 1: 0, 2: 5}, "b": {0: 7}}
	for _, c := range []struct {
		name      string
		committed map[string]map[int32]int64
		want      int64
		done      bool
	}{
		{"no commits", nil, 22, false},
		{"some", map[string]map[int32]int64{"a": {0: 4, 2: 5}, "b": {0: -1}}, 13, false},
		{"reached, one past its target", map[string]map[int32]int64{"a": {0: 10, 2: 6}, "b": {0: 7}}, 0, true},
		{"one short", map[string]map[int32]int64{"a": {0: 10, 2: 5}, "b": {0: 6}}, 1, false},
	} {
		n, done := retireRemaining(targets, c.committed)
		if n != c.want || done != c.done {
			t.Errorf("%s: remaining %d, drained %v; want %d, %v", c.name, n, done, c.want, c.done)
		}
	}
}

func TestRetirementPhasesOnlyMoveForward(t *testing.T) {
	r := &retirement{}
	cfg := &config.Executor{Retire: &config.Retire{Since: "2026-12-01T10:00:00Z", Drain: true}}
	r.apply(cfg)
	if st := r.snapshot(); st == nil || st.Phase != RetireDraining {
		t.Fatalf("after apply: %+v, want Draining", st)
	}
	r.set(RetireDraining, 12)
	r.set(RetireDrained, 0)
	r.set(RetireDraining, 3) // a late check of another session
	if st := r.snapshot(); st.Phase != RetireDrained || st.Remaining != 0 {
		t.Fatalf("%+v, want Drained, 0", st)
	}
	r.set(RetireDeleted, 0)
	r.apply(cfg) // the same retirement reloaded
	if st := r.snapshot(); st.Phase != RetireDeleted {
		t.Fatalf("after reloading the same retirement: %+v, want Deleted", st)
	}
	r.apply(&config.Executor{Retire: &config.Retire{Since: "2026-12-01T11:00:00Z", Drain: true}})
	if st := r.snapshot(); st.Phase != RetireDraining {
		t.Fatalf("a new Since: %+v, want Draining again", st)
	}
	r.apply(&config.Executor{})
	if st := r.snapshot(); st != nil {
		t.Fatalf("without retire: %+v, want none", st)
	}
}
