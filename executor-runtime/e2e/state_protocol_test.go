package e2e

import (
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
