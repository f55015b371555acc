package e2e

import (
	"maps"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

// testStateOwnedByAnotherPodMeanwhile is issue 10's "healthy sidecar hangs" of
// TestFaultsExactlyOnceTwoPods made deterministic. It was no hang: a pod whose I/O session
// ended (here its function stops; in the fault test a SIGKILLed function or state call) keeps its
// state sidecar, and while its next session waits, another pod owns the partitions and counts
// more words. When the first pod's next session is assigned the partitions again, its state
// sidecar must restore them from the changelog; one that kept its store counted on from the old
// totals, so the counts of the words fell back and never reached the truth.
func testStateOwnedByAnotherPodMeanwhile(t *testing.T, k *testenv.Kafka, g config.Guarantee) {
	wc, e := sumEntity(t, k, g, nil)
	truth := map[string]int{}
	produce := func(words ...string) map[string]int {
		for _, w := range words {
			truth[w]++
		}
		k.Produce(t, g == config.ExactlyOnce, wordRecords(wc.words, words...)...)
		return maps.Clone(truth)
	}
	words := vocabulary[:8]

	pod0 := testenv.StartPod(t, e, 0, wordcount.Sum())
	wc.waitCounts(t, produce(words...), 60*time.Second)
	// Pod 0's function stops: its I/O sidecar commits, closes its session (its client leaves the
	// group) and waits for a function; its state sidecar keeps running.
	pod0.Function.Stop(t)

	pod1 := testenv.StartPod(t, e, 1, wordcount.Sum())
	produce(words...)
	wc.waitCounts(t, produce(words...), 60*time.Second)
	pod1.Stop(t)

	// Pod 0's function is back; its next session is assigned every partition.
	pod0.Function = testenv.StartFunction(t, e, 0, wordcount.Sum())
	defer pod0.Stop(t)
	produce(words...)
	n := 0
	for _, c := range truth {
		n += c
	}
	waitRecords(t, k, wc.counts, n)
	seen := wc.observed(t)
	if g == config.ExactlyOnce {
		checkExactlyOnce(t, seen, truth)
	} else {
		checkAtLeastOnce(t, seen, truth)
	}
}

func TestStateOwnedByAnotherPodMeanwhile(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testStateOwnedByAnotherPodMeanwhile(t, testenv.Fake(t), g) })
	}
}

func TestRealBrokerStateOwnedByAnotherPodMeanwhile(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testStateOwnedByAnotherPodMeanwhile(t, testenv.Real(t), g) })
	}
}
