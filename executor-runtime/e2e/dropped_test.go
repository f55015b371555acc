package e2e

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
)

// pendingDrops is the millrace_dropped_inputs_pending gauge of reason in reg, or, for reason "",
// the sum over the reasons (-1 when the gauge has not been set yet).
func pendingDrops(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	sum, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != "millrace_dropped_inputs_pending" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && (reason == "" || l.GetValue() == reason) {
					sum += m.GetGauge().GetValue()
					found = true
				}
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

// waitFor polls cond until it holds, for 60 s at most.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// waitOffsetsGone waits until group has no committed offset left on topic.
func waitOffsetsGone(t *testing.T, k *testenv.Kafka, group, topic string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("group %s has no committed offsets on the dropped input %s (it has %v)", group, topic, fetchCommitted(t, k.Admin, group, topic)),
		func() bool { return len(fetchCommitted(t, k.Admin, group, topic)) == 0 })
}

// offsetsDeletable makes e's group one whose offsets the broker can delete while it has
// members: kfake answers OffsetDelete for a KIP-848 group with members with NON_EMPTY_GROUP (it
// does not track what such members read), so on kfake the group uses the classic protocol. The
// real broker runs both tests in the protocol the I/O sidecar picks (KIP-848 on Kafka 4).
func offsetsDeletable(k *testenv.Kafka, e *testenv.Entity) {
	if k.Fake != nil {
		e.Config.Runtime.GroupProtocol = config.GroupProtocolClassic
	}
}

// testRewireDropsOffsets rewires a running two-pod entity from [in1, in2] to [in2]: the group's
// committed offsets on in1 are deleted, those on in2 stay as they are.
func testRewireDropsOffsets(t *testing.T, k *testenv.Kafka, g config.Guarantee) {
	in1, in2, out := k.Prefix+"in1", k.Prefix+"in2", k.Prefix+"out"
	e := k.NewEntity(t, "copy", []string{in1, in2}, []string{out}, 4, false, g)
	e.Update(t, func(*config.Executor) { offsetsDeletable(k, e) })
	k.CreateTopics(t, 4, e.Topics()...)
	pods := []*testenv.Pod{testenv.StartPod(t, e, 0, copyValues), testenv.StartPod(t, e, 1, copyValues)}
	defer func() {
		for _, p := range pods {
			p.Stop(t)
		}
	}()
	k.Produce(t, g == config.ExactlyOnce, valueRecords(in1, "one", 40, time.Now())...)
	k.Produce(t, g == config.ExactlyOnce, valueRecords(in2, "two", 40, time.Now())...)
	waitRecords(t, k, out, 80)
	ends1, ends2 := listEnds(t, k.Admin, in1), listEnds(t, k.Admin, in2)
	waitFor(t, "the group committed the ends of both inputs", func() bool {
		return maps.Equal(fetchCommitted(t, k.Admin, e.Config.GroupID, in1), ends1) && maps.Equal(fetchCommitted(t, k.Admin, e.Config.GroupID, in2), ends2)
	})

	e.Update(t, func(c *config.Executor) { c.Inputs = c.Inputs[1:] })
	waitOffsetsGone(t, k, e.Config.GroupID, in1)
	if got := fetchCommitted(t, k.Admin, e.Config.GroupID, in2); !maps.Equal(got, ends2) {
		t.Errorf("the offsets of the input the entity still reads changed: %v, want %v", got, ends2)
	}
	// The entity goes on reading in2, from where it was.
	k.Produce(t, g == config.ExactlyOnce, valueRecords(in2, "more", 20, time.Now())...)
	recs := waitRecords(t, k, out, 100)
	if g == config.ExactlyOnce && len(recs) != 100 {
		t.Errorf("the output holds %d records, want 100", len(recs))
	}
}

// testSubscribedMemberDelaysDrop drops in1 while a pod of the previous configuration (a rollout
// in progress) still reads it: the broker refuses to delete offsets of a topic a member is
// subscribed to, so the new pod waits, retrying, and deletes them once that pod has left.
func testSubscribedMemberDelaysDrop(t *testing.T, k *testenv.Kafka) {
	in1, in2, out := k.Prefix+"in1", k.Prefix+"in2", k.Prefix+"out"
	// Two configurations of one entity (one group): the previous one reads both inputs.
	prev := k.NewEntity(t, "copy", []string{in1, in2}, []string{out}, 4, false, config.AtLeastOnce)
	next := k.NewEntity(t, "copy", []string{in2}, []string{out}, 4, false, config.AtLeastOnce)
	prev.Update(t, func(*config.Executor) { offsetsDeletable(k, prev) })
	next.Update(t, func(*config.Executor) { offsetsDeletable(k, next) })
	k.CreateTopics(t, 4, prev.Topics()...)
	old := testenv.StartPod(t, prev, 1, copyValues)
	oldRunning := true
	defer func() {
		if oldRunning {
			old.Stop(t)
		}
	}()
	k.Produce(t, false, valueRecords(in1, "one", 40, time.Now())...)
	waitRecords(t, k, out, 40)
	waitCommitted(t, k.Admin, prev.Config.GroupID, in1, 4)

	reg := prometheus.NewRegistry()
	pod := testenv.StartPod(t, next, 0, copyValues, iosidecar.WithRegistry(reg))
	defer pod.Stop(t)
	// The new pod found in1's offsets, tried to delete them and was refused.
	waitFor(t, "the new pod reports the dropped input as pending", func() bool { return pendingDrops(t, reg, "subscribed") == 1 })
	if got := fetchCommitted(t, k.Admin, prev.Config.GroupID, in1); len(got) != 4 {
		t.Fatalf("the offsets on in1 went while a member still reads it: %v", got)
	}
	if pod.IO.Exited() {
		t.Fatal("the new pod's I/O sidecar exited while the deletion was refused")
	}
	// In1 is still read by the old pod meanwhile.
	k.Produce(t, false, valueRecords(in1, "late", 10, time.Now())...)
	waitRecords(t, k, out, 50)

	old.Stop(t)
	oldRunning = false
	waitOffsetsGone(t, k, prev.Config.GroupID, in1)
	waitFor(t, "the new pod reports nothing pending", func() bool { return pendingDrops(t, reg, "") == 0 })
	// The new pod reads in2 all along.
	k.Produce(t, false, &kgo.Record{Topic: in2, Value: []byte("after")})
	waitRecords(t, k, out, 51)
}

func testDroppedInputs(t *testing.T, kafka func(testing.TB) *testenv.Kafka) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run("Rewire/"+string(g), func(t *testing.T) { testRewireDropsOffsets(t, kafka(t), g) })
	}
	t.Run("SubscribedMember", func(t *testing.T) { testSubscribedMemberDelaysDrop(t, kafka(t)) })
}

func TestDroppedInputOffsetsDeleted(t *testing.T) {
	testDroppedInputs(t, func(tb testing.TB) *testenv.Kafka { return testenv.Fake(tb) })
}

func TestRealBrokerDroppedInputOffsetsDeleted(t *testing.T) {
	testDroppedInputs(t, func(tb testing.TB) *testenv.Kafka { return testenv.Real(tb) })
}
