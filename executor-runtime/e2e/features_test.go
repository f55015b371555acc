package e2e

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

func wordRecords(topic string, words ...string) []*kgo.Record {
	recs := make([]*kgo.Record, len(words))
	for i, w := range words {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(w), Value: []byte("1")}
	}
	return recs
}

// sumEntity sets up only the stateful sum step: words in, counts out.
func sumEntity(t *testing.T, k *testenv.Kafka, g config.Guarantee, change func(*config.Executor)) (*wordCount, *testenv.Entity) {
	wc := &wordCount{k: k, words: k.Prefix + "words", counts: k.Prefix + "counts"}
	e := k.NewEntity(t, "sum", []string{wc.words}, []string{wc.counts}, 4, true, g)
	if change != nil {
		e.Update(t, change)
	}
	k.CreateTopics(t, 4, e.Topics()...)
	return wc, e
}

func TestStateSurvivesRestartByChangelogRestore(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) {
			k := testenv.Fake(t)
			wc, e := sumEntity(t, k, g, func(c *config.Executor) { c.State.Backend = "pebble" })
			truth := map[string]int{}
			first := []string{"a", "b", "a", "c", "a", "b"}
			second := []string{"a", "c", "d", "a"}
			for _, w := range append(slices.Clone(first), second...) {
				truth[w]++
			}
			pod := testenv.StartPod(t, e, 0, wordcount.Sum())
			k.Produce(t, g == config.ExactlyOnce, wordRecords(wc.words, first...)...)
			wc.waitCounts(t, map[string]int{"a": 3, "b": 2, "c": 1}, 60*time.Second)
			pod.Stop(t)

			// A new pod: fresh function, state sidecar with an empty store, new I/O sidecar.
			pod = testenv.StartPod(t, e, 0, wordcount.Sum())
			defer pod.Stop(t)
			k.Produce(t, g == config.ExactlyOnce, wordRecords(wc.words, second...)...)
			seen := wc.waitCounts(t, truth, 60*time.Second)
			if g == config.ExactlyOnce {
				checkExactlyOnce(t, seen, truth)
			} else {
				checkAtLeastOnce(t, seen, truth)
			}
			// The changelog holds the latest count of every word.
			latest := map[string]string{}
			for _, r := range k.ReadAll(t, e.Config.State.ChangelogTopic, true) {
				latest[string(r.Key)] = string(r.Value)
			}
			for w, n := range truth {
				if g == config.ExactlyOnce && latest[w] != strconv.Itoa(n) {
					t.Errorf("changelog of %q = %q, want %d", w, latest[w], n)
				}
			}
		})
	}
}

func TestPoisonRecordsGoToTheDeadLetterTopic(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) {
			k := testenv.Fake(t)
			wc, e := sumEntity(t, k, g, nil)
			pod := testenv.StartPod(t, e, 0, wordcount.Sum())
			defer pod.Stop(t)
			recs := wordRecords(wc.words, "x", "y", "x")
			poison := &kgo.Record{Topic: wc.words, Key: []byte("x"), Value: []byte("not-a-number")}
			recs = append(recs[:2], poison, recs[2])
			k.Produce(t, false, recs...)
			seen := wc.waitCounts(t, map[string]int{"x": 2, "y": 1}, 60*time.Second)
			if g == config.ExactlyOnce {
				checkExactlyOnce(t, seen, map[string]int{"x": 2, "y": 1})
			}
			dlq := waitRecords(t, k, e.Config.Inputs[0].DeadLetterTopic, 1)
			d := dlq[0]
			if string(d.Value) != "not-a-number" || string(d.Key) != "x" {
				t.Errorf("dead letter = %q=%q, want the poison record x=not-a-number", d.Key, d.Value)
			}
			h := headers(d)
			want := map[string]string{
				iosidecar.HeaderSourceTopic:     wc.words,
				iosidecar.HeaderSourcePartition: strconv.Itoa(int(poison.Partition)),
				iosidecar.HeaderSourceOffset:    strconv.FormatInt(poison.Offset, 10),
			}
			for key, v := range want {
				if h[key] != v {
					t.Errorf("header %s = %q, want %q", key, h[key], v)
				}
			}
			if h[iosidecar.HeaderError] == "" {
				t.Errorf("header %s is empty", iosidecar.HeaderError)
			}
		})
	}
}

// A dead-letter topic that cannot be written stops processing: the poison record's offset is not
// committed, and once the topic exists the record lands there and processing continues.
func TestUnwritableDeadLetterTopicStopsProcessing(t *testing.T) {
	k := testenv.Fake(t)
	wc := &wordCount{k: k, words: "words", counts: "counts"}
	e := k.NewEntity(t, "sum", []string{wc.words}, []string{wc.counts}, 1, true, config.ExactlyOnce)
	k.CreateTopics(t, 1, wc.words, wc.counts, e.Config.State.ChangelogTopic) // no words.dlq
	pod := testenv.StartPod(t, e, 0, wordcount.Sum())
	defer pod.Stop(t)
	k.Produce(t, false, wordRecords(wc.words, "x")...)
	wc.waitCounts(t, map[string]int{"x": 1}, 60*time.Second)
	k.Produce(t, false, &kgo.Record{Topic: wc.words, Key: []byte("x"), Value: []byte("poison")})
	k.Produce(t, false, wordRecords(wc.words, "x")...)

	// Give the sidecar several commit intervals and session retries to (wrongly) skip ahead.
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := k.Admin.FetchOffsets(ctx, e.Config.GroupID)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup(wc.words, 0); ok && o.At > 1 {
		t.Fatalf("committed offset %d passed the poison record at offset 1 although its dead letter was not written", o.At)
	}
	if s := wc.observed(t)["x"]; len(s) != 1 {
		t.Fatalf("counts of x = %v while the poison record blocks, want [1]", s)
	}

	k.CreateTopics(t, 1, e.Config.Inputs[0].DeadLetterTopic)
	seen := wc.waitCounts(t, map[string]int{"x": 2}, 60*time.Second)
	checkExactlyOnce(t, seen, map[string]int{"x": 2})
	waitRecords(t, k, e.Config.Inputs[0].DeadLetterTopic, 1)
}

// testHotReloadStatic moves partition 2 from pod 1 to pod 0 by rewriting the ConfigMap-style
// file, while both pods run: the new map must reach both within a few reload polls and rebalances
// (on a real broker, a static member used to get its old assignment back: issue 10), and partition
// 2's state must follow it through the changelog, exactly once.
func testHotReloadStatic(t *testing.T, k *testenv.Kafka) {
	wc, e := sumEntity(t, k, config.ExactlyOnce, func(c *config.Executor) {
		c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
	})
	a := newAssignments(wc.words)
	pod0 := testenv.StartPod(t, e, 0, wordcount.Sum(), a.hooks(0))
	defer pod0.Stop(t)
	pod1 := testenv.StartPod(t, e, 1, wordcount.Sum(), a.hooks(1))
	defer pod1.Stop(t)
	a.wait(t, map[int][]int32{0: {0, 1}, 1: {2, 3}}, 60*time.Second)

	words := []string{"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"}
	truth := map[string]int{}
	for _, w := range words {
		truth[w]++
	}
	k.Produce(t, true, wordRecords(wc.words, words...)...)
	wc.waitCounts(t, truth, 60*time.Second)

	e.Update(t, func(c *config.Executor) {
		c.Assignment.Static = [][]int32{{0, 1, 2}, {3}}
		c.Assignment.Generation = 2
	})
	took := a.wait(t, map[int][]int32{0: {0, 1, 2}, 1: {3}}, 60*time.Second)
	t.Logf("the new assignment reached both pods %v after the file changed (config polled every 100ms)", took.Round(time.Millisecond))

	// Partition 2's state moved from pod 1 to pod 0 through the changelog.
	for _, w := range words {
		truth[w]++
	}
	k.Produce(t, true, wordRecords(wc.words, words...)...)
	seen := wc.waitCounts(t, truth, 60*time.Second)
	checkExactlyOnce(t, seen, truth)

	// The sidecars reconfigured in process: each Run is still the one started above, and it
	// ended a session for the configuration change.
	for ord, p := range []*testenv.Pod{pod0, pod1} {
		if p.IO.Exited() {
			t.Errorf("I/O sidecar %d exited during the reload", ord)
		}
		if a.reloaded(ord) == 0 {
			t.Errorf("I/O sidecar %d never reloaded its configuration", ord)
		}
	}
}

func TestHotReloadMovesStaticPartitionsWithoutRestart(t *testing.T) {
	testHotReloadStatic(t, testenv.Fake(t))
}

func TestRealBrokerHotReloadMovesStaticPartitions(t *testing.T) {
	testHotReloadStatic(t, testenv.Real(t))
}

func TestUserConfigReloadReachesTheFunction(t *testing.T) {
	k := testenv.Fake(t)
	e := k.NewEntity(t, "tag", []string{"in"}, []string{"out"}, 1, false, config.AtLeastOnce)
	e.Update(t, func(c *config.Executor) { c.UserConfig = map[string]string{"tag": "v1"} })
	k.CreateTopics(t, 1, e.Topics()...)
	tag := sdk.Map(func(ctx context.Context, r sdk.Record) (sdk.Output, error) {
		return sdk.Output{Key: r.Key, Value: []byte(sdk.UserConfig(ctx)["tag"])}, nil
	})
	pod := testenv.StartPod(t, e, 0, tag)
	defer pod.Stop(t)
	k.Produce(t, false, &kgo.Record{Topic: "in", Value: []byte("x")})
	if got := string(waitRecords(t, k, "out", 1)[0].Value); got != "v1" {
		t.Fatalf("first output = %q, want v1", got)
	}
	e.Update(t, func(c *config.Executor) { c.UserConfig = map[string]string{"tag": "v2"} })
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		k.Produce(t, false, &kgo.Record{Topic: "in", Value: []byte("x")})
		recs := waitRecords(t, k, "out", i+2)
		if string(recs[len(recs)-1].Value) == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outputs never reflected the new user config: last %q", recs[len(recs)-1].Value)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pod.IO.Exited() {
		t.Fatal("the I/O sidecar exited instead of reloading")
	}
}

// waitRecords waits until topic holds at least n committed records and returns them.
func waitRecords(t *testing.T, k *testenv.Kafka, topic string, n int) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		recs := k.ReadAll(t, topic, true)
		if len(recs) >= n {
			return recs
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %s has %d records, want %d", topic, len(recs), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// produceWords writes the vocabulary's words to topic, one produce call at a time, pause apart,
// until the returned stop is called; stop waits for the producer and returns how often each word
// was written. Produces are not cut off by stop (one cut off could still land, uncounted).
func produceWords(t *testing.T, k *testenv.Kafka, topic string, pause time.Duration) (stop func() map[string]int) {
	t.Helper()
	truth := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			w := vocabulary[i%len(vocabulary)]
			if err := k.Client.ProduceSync(context.Background(), wordRecords(topic, w)...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			truth[w]++
			time.Sleep(pause)
		}
	}()
	var once sync.Once
	stop = func() map[string]int {
		once.Do(func() { cancel(); <-done })
		return truth
	}
	t.Cleanup(func() { stop() })
	return stop
}
