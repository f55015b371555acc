// Package e2e tests the executor runtime end to end: sidecars, SDK and example functions against
// Kafka (kfake in process, or a real broker with MILLRACE_KAFKA_BOOTSTRAP).
package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

var vocabulary = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango")

// corpus returns n lines of random words and the true count of each word.
func corpus(seed uint64, n int) ([]string, map[string]int) {
	r := rand.New(rand.NewPCG(seed, seed))
	truth := map[string]int{}
	lines := make([]string, n)
	for i := range lines {
		words := make([]string, 1+r.IntN(8))
		for j := range words {
			words[j] = vocabulary[r.IntN(len(vocabulary))]
			truth[words[j]]++
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines, truth
}

type wordCount struct {
	k                    *testenv.Kafka
	lines, words, counts string
	split, sum           *testenv.Entity
}

func newWordCount(t *testing.T, k *testenv.Kafka, g config.Guarantee) *wordCount {
	wc := &wordCount{k: k, lines: k.Prefix + "lines", words: k.Prefix + "words", counts: k.Prefix + "counts"}
	wc.split = k.NewEntity(t, "split", []string{wc.lines}, []string{wc.words}, 4, false, g)
	wc.sum = k.NewEntity(t, "sum", []string{wc.words}, []string{wc.counts}, 4, true, g)
	var topics []string
	topics = append(topics, wc.split.Topics()...)
	for _, tp := range wc.sum.Topics() {
		if tp != wc.words {
			topics = append(topics, tp)
		}
	}
	k.CreateTopics(t, 4, topics...)
	return wc
}

func (wc *wordCount) produceLines(t *testing.T, lines []string, transactional bool) {
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Topic: wc.lines, Key: []byte(strconv.Itoa(i)), Value: []byte(l)}
	}
	wc.k.Produce(t, transactional, recs...)
}

// observed returns, per word, the counts emitted in order, as a read_committed consumer sees them.
func (wc *wordCount) observed(t *testing.T) map[string][]int {
	seen := map[string][]int{}
	for _, r := range wc.k.ReadAll(t, wc.counts, true) {
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("count record %q=%q is not a number", r.Key, r.Value)
		}
		seen[string(r.Key)] = append(seen[string(r.Key)], n)
	}
	return seen
}

// waitCounts waits until the last emitted count of every word is at least its true count.
func (wc *wordCount) waitCounts(t *testing.T, truth map[string]int, timeout time.Duration) map[string][]int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		seen := wc.observed(t)
		missing := 0
		for w, n := range truth {
			s := seen[w]
			if len(s) == 0 || s[len(s)-1] < n {
				missing++
			}
		}
		if missing == 0 {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d words have not reached their count; seen %v, truth %v", timeout, missing, len(truth), lastCounts(seen), truth)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func lastCounts(seen map[string][]int) map[string]int {
	m := map[string]int{}
	for w, s := range seen {
		m[w] = s[len(s)-1]
	}
	return m
}

// checkExactlyOnce asserts every word's counts are exactly 1, 2, ..., truth: nothing lost, no
// duplicate visible to a read_committed consumer.
func checkExactlyOnce(t *testing.T, seen map[string][]int, truth map[string]int) {
	t.Helper()
	for w, n := range truth {
		s := seen[w]
		for i, c := range s {
			if c != i+1 {
				t.Errorf("word %q: count #%d is %d, want %d (a duplicate or a gap; %d counts, truth %d)", w, i+1, c, i+1, len(s), n)
				break
			}
		}
		if len(s) != n {
			t.Errorf("word %q: %d counts emitted, want exactly %d", w, len(s), n)
		}
	}
	for w := range seen {
		if _, ok := truth[w]; !ok {
			t.Errorf("word %q was counted but never written", w)
		}
	}
}

// checkAtLeastOnce asserts every word's final count is at least the truth.
func checkAtLeastOnce(t *testing.T, seen map[string][]int, truth map[string]int) {
	t.Helper()
	for w, n := range truth {
		s := seen[w]
		if len(s) == 0 || s[len(s)-1] < n {
			t.Errorf("word %q: final count %v below the truth %d", w, s, n)
		}
	}
}

// waitZeroLag waits until every partition of each entity's input topics reports a lag of 0 the
// way KEDA's Kafka scaler computes it through the admin API: the topic's end offset (high
// watermark) minus the group's committed offset. (kadm's Lag describes the group first, which
// KIP-848 groups answer only through a newer API, so the lag is computed here from its parts.)
func waitZeroLag(t *testing.T, k *testenv.Kafka, timeout time.Duration, entities ...*testenv.Entity) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var problems []string
		for _, e := range entities {
			problems = append(problems, lagProblems(k, e)...)
		}
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag did not reach 0: %v", problems)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func lagProblems(k *testenv.Kafka, e *testenv.Entity) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	group := e.Config.GroupID
	committed, err := k.Admin.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return []string{fmt.Sprintf("fetch offsets of %s: %v", group, err)}
	}
	var problems []string
	for _, in := range e.Config.Inputs {
		ends, err := k.Admin.ListEndOffsets(ctx, in.Topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return []string{fmt.Sprintf("list end offsets of %s: %v", in.Topic, err)}
		}
		ends.Each(func(end kadm.ListedOffset) {
			c, ok := committed.Lookup(in.Topic, end.Partition)
			switch {
			case !ok && end.Offset > 0:
				problems = append(problems, fmt.Sprintf("%s %s/%d: nothing committed, end %d", group, in.Topic, end.Partition, end.Offset))
			case ok && end.Offset-c.At != 0:
				problems = append(problems, fmt.Sprintf("%s %s/%d: lag %d (committed %d, end %d)", group, in.Topic, end.Partition, end.Offset-c.At, c.At, end.Offset))
			}
		})
	}
	return problems
}

func testWordCount(t *testing.T, k *testenv.Kafka, g config.Guarantee) {
	wc := newWordCount(t, k, g)
	n := 600
	if testing.Short() {
		n = 200
	}
	lines, truth := corpus(1, n)
	split := testenv.StartPod(t, wc.split, 0, wordcount.Split())
	sum := testenv.StartPod(t, wc.sum, 0, wordcount.Sum())
	// Half before, half after the pods start; transactional input under ExactlyOnce, so that the
	// input topics hold transaction markers.
	wc.produceLines(t, lines[:n/2], g == config.ExactlyOnce)
	wc.produceLines(t, lines[n/2:], g == config.ExactlyOnce)
	seen := wc.waitCounts(t, truth, 90*time.Second)
	if g == config.ExactlyOnce {
		checkExactlyOnce(t, seen, truth)
		waitZeroLag(t, k, 30*time.Second, wc.split, wc.sum)
	} else {
		checkAtLeastOnce(t, seen, truth)
	}
	split.Stop(t)
	sum.Stop(t)
}

func TestWordCountAtLeastOnce(t *testing.T) {
	testWordCount(t, testenv.Fake(t), config.AtLeastOnce)
}

func TestWordCountExactlyOnce(t *testing.T) {
	testWordCount(t, testenv.Fake(t), config.ExactlyOnce)
}
