package e2e

import (
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// testWordCountAcrossProtocolVersions counts words under ExactlyOnce with sum's function
// replaced pod after pod, each speaking other function protocol versions: the SDK's default
// (version 3, the state carried in the batch's messages and kept in the function), version 1 only
// (the Python SDK, functions on raw stubs), versions 1 and 2 (Go SDKs before version 3: one
// GetMany and one Write call per batch), and the default again. Each pod restores the state the
// one before committed from the changelog: every word's counts are exactly 1..n, and each pod's
// batches came in the version it speaks.
func testWordCountAcrossProtocolVersions(t *testing.T, k *testenv.Kafka) {
	wc := newWordCount(t, k, config.ExactlyOnce)
	n := 480
	if testing.Short() {
		n = 160
	}
	lines, truth := corpus(7, n)
	split := testenv.StartPod(t, wc.split, 0, wordcount.Split())
	defer split.Stop(t)
	pods := []struct {
		versions []uint32
		want     uint32
	}{{nil, 3}, {[]uint32{1}, 1}, {[]uint32{1, 2}, 2}, {nil, 3}}
	sofar := map[string]int{}
	for i, p := range pods {
		part := lines[i*n/len(pods) : (i+1)*n/len(pods)]
		for _, l := range part {
			for _, w := range strings.Fields(l) {
				sofar[w]++
			}
		}
		var mu sync.Mutex
		versions := map[uint32]int{}
		opts := []sdk.Option{sdk.WithHooks(sdk.Hooks{OnBatch: func(b sdk.BatchInfo) {
			mu.Lock()
			versions[b.ProtocolVersion] += b.Records
			mu.Unlock()
		}})}
		if p.versions != nil {
			opts = append(opts, sdk.WithProtocolVersions(p.versions...))
		}
		sum := testenv.StartPodWith(t, wc.sum, 0, wordcount.Sum(), opts)
		wc.produceLines(t, part, true)
		wc.waitCounts(t, sofar, 90*time.Second)
		sum.Stop(t)
		mu.Lock()
		if _, ok := versions[p.want]; !ok || len(versions) != 1 {
			t.Errorf("pod %d (versions %v): records per batch version %v, want all in version %d", i, p.versions, versions, p.want)
		}
		mu.Unlock()
	}
	if diff := cmp.Diff(truth, sofar); diff != "" {
		t.Fatalf("the parts do not add up to the corpus (-truth +parts):\n%s", diff)
	}
	checkExactlyOnce(t, wc.observed(t), truth)
}

func TestWordCountAcrossProtocolVersions(t *testing.T) {
	testWordCountAcrossProtocolVersions(t, testenv.Fake(t))
}

func TestRealBrokerWordCountAcrossProtocolVersions(t *testing.T) {
	testWordCountAcrossProtocolVersions(t, testenv.Real(t))
}

// testPartitionRegainedWithinASession: under AtLeastOnce a rebalance does not end a pod's
// session, so a pod can lose partitions to another pod that counts on, and get them back, with
// the same function stream all along. With protocol version 3 the function keeps its own copy of
// the state; the copy of a partition that comes back is stale (the other pod counted since) and
// must be dropped (the partition's state generation changes), or the pod counts on from its old
// totals and the counts never reach the truth.
func testPartitionRegainedWithinASession(t *testing.T, k *testenv.Kafka) {
	wc, e := sumEntity(t, k, config.AtLeastOnce, func(c *config.Executor) {
		c.Runtime.GroupProtocol = config.GroupProtocolClassic
		c.Runtime.SessionTimeout = config.Duration{Duration: sessionTimeout}
	})
	truth := map[string]int{}
	produce := func(words ...string) map[string]int {
		for _, w := range words {
			truth[w]++
		}
		k.Produce(t, false, wordRecords(wc.words, words...)...)
		return maps.Clone(truth)
	}
	words := vocabulary
	a := newAssignments(e.Config.Inputs[0].Topic)
	sessions := 0
	var mu sync.Mutex
	pod0 := testenv.StartPodWith(t, e, 0, wordcount.Sum(), []sdk.Option{sdk.WithHooks(sdk.Hooks{OnSession: func(sdk.SessionInfo) {
		mu.Lock()
		sessions++
		mu.Unlock()
	}})}, a.hooks(0))
	defer pod0.Stop(t)
	a.wait(t, map[int][]int32{0: {0, 1, 2, 3}}, handOverBound)
	wc.waitCounts(t, produce(words...), 60*time.Second)

	pod1 := testenv.StartPod(t, e, 1, wordcount.Sum(), a.hooks(1))
	begin := time.Now()
	for {
		a.mu.Lock()
		n0, n1 := len(a.current[0]), len(a.current[1])
		a.mu.Unlock()
		if n0 == 2 && n1 == 2 {
			break
		}
		if time.Since(begin) > handOverBound {
			t.Fatalf("partitions never split between the two pods: %d and %d", n0, n1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	produce(words...)
	wc.waitCounts(t, produce(words...), 60*time.Second)
	pod1.Stop(t)
	a.wait(t, map[int][]int32{0: {0, 1, 2, 3}}, handOverBound)

	wc.waitCounts(t, produce(words...), 60*time.Second)
	checkAtLeastOnce(t, wc.observed(t), truth)
	mu.Lock()
	defer mu.Unlock()
	if sessions != 1 {
		t.Errorf("pod 0's function saw %d sessions, want 1: the partitions were not regained within a session", sessions)
	}
}

func TestPartitionRegainedWithinASession(t *testing.T) {
	testPartitionRegainedWithinASession(t, testenv.Fake(t))
}

func TestRealBrokerPartitionRegainedWithinASession(t *testing.T) {
	testPartitionRegainedWithinASession(t, testenv.Real(t))
}
