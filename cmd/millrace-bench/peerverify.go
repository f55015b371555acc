package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// verifier reads a contender's output topic (read_committed) as it is written and checks every
// record against what the job must make of the input: identity and upper every input record
// transformed, word count the exact final count of every word.
type verifier struct {
	job string
	in  *peerInput
	p   peerParams
	cl  *kgo.Client
	n   atomic.Int64

	mu          sync.Mutex
	err         error
	first, last time.Time
	// identity, upper
	seenIdx  []bool
	distinct int
	dups     int
	// word count: the latest count of each word and how many words are at their final count
	latest map[string]int64
	atEnd  int
	over   int
	done   chan struct{}
}

func newVerifier(p peerParams, job string, in *peerInput, topic string) (*verifier, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, err
	}
	v := &verifier{job: job, in: in, p: p, cl: cl, done: make(chan struct{}), latest: map[string]int64{}}
	if job != "wordcount" {
		v.seenIdx = make([]bool, in.n)
	}
	go v.loop()
	return v, nil
}

func (v *verifier) loop() {
	defer close(v.done)
	for {
		fs := v.cl.PollFetches(context.Background())
		if fs.IsClientClosed() {
			return
		}
		v.mu.Lock()
		fs.EachError(func(t string, p int32, err error) {
			if v.err == nil {
				v.err = fmt.Errorf("read %s[%d]: %w", t, p, err)
			}
		})
		fs.EachRecord(v.record)
		v.mu.Unlock()
		v.n.Add(int64(fs.NumRecords()))
	}
}

// record checks one output; v.mu is held.
func (v *verifier) record(r *kgo.Record) {
	if v.first.IsZero() || r.Timestamp.Before(v.first) {
		v.first = r.Timestamp
	}
	if r.Timestamp.After(v.last) {
		v.last = r.Timestamp
	}
	fail := func(format string, args ...any) {
		if v.err == nil {
			v.err = fmt.Errorf("output %s[%d]@%d: "+format, append([]any{r.Topic, r.Partition, r.Offset}, args...)...)
		}
	}
	switch v.job {
	case "identity", "upper":
		i, err := strconv.Atoi(string(r.Value[:min(8, len(r.Value))]))
		if err != nil || i < 0 || i >= len(v.seenIdx) {
			fail("value %.20q does not start with an input record's number", r.Value)
			return
		}
		want := recordValue(i, v.p.size)
		if v.job == "upper" {
			want = bytes.ToUpper(want)
		}
		if !bytes.Equal(r.Value, want) {
			fail("value %.30q, want %.30q", r.Value, want)
			return
		}
		if wantKey := fmt.Appendf(nil, "%08d", i); !bytes.Equal(r.Key, wantKey) {
			fail("key %q, want %q", r.Key, wantKey)
			return
		}
		if v.seenIdx[i] {
			v.dups++
			return
		}
		v.seenIdx[i] = true
		v.distinct++
	case "wordcount":
		want, ok := v.in.counts[string(r.Key)]
		if !ok {
			fail("key %q is not a word of the input", r.Key)
			return
		}
		n, err := strconv.ParseInt(string(r.Value), 10, 64)
		if err != nil || n < 1 {
			fail("count %q of %q is not a positive number", r.Value, r.Key)
			return
		}
		prev := v.latest[string(r.Key)]
		if n > want {
			v.over++
		}
		switch {
		case prev != want && n == want:
			v.atEnd++
		case prev == want && n != want:
			v.atEnd--
		}
		v.latest[string(r.Key)] = n
	}
}

func (v *verifier) seen() int64 { return v.n.Load() }

func (v *verifier) failed() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

// complete reports whether every expected output has been read.
func (v *verifier) complete() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.job == "wordcount" {
		return v.atEnd == len(v.in.counts)
	}
	return v.distinct == len(v.seenIdx)
}

func (v *verifier) progress() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.job == "wordcount" {
		return fmt.Sprintf("%d outputs, %d of %d words at their final count", v.n.Load(), v.atEnd, len(v.in.counts))
	}
	return fmt.Sprintf("%d outputs, %d of %d input records", v.n.Load(), v.distinct, len(v.seenIdx))
}

// check is the final verdict: every output correct, all of them there; under exactly-once no
// duplicate (identity, upper) and no count beyond the input's (word count).
func (v *verifier) check(exactlyOnce bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		return v.err
	}
	if v.job == "wordcount" {
		if v.atEnd != len(v.in.counts) || (exactlyOnce && v.over > 0) {
			return fmt.Errorf("word counts: %d of %d words at their exact final count, %d counts beyond it", v.atEnd, len(v.in.counts), v.over)
		}
		return nil
	}
	if v.distinct != len(v.seenIdx) || (exactlyOnce && v.dups > 0) {
		return fmt.Errorf("%d of %d input records in the output, %d duplicates", v.distinct, len(v.seenIdx), v.dups)
	}
	return nil
}

func (v *verifier) span() (time.Time, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.first, v.last
}

func (v *verifier) close() {
	v.cl.Close()
	<-v.done
}

// printPeer prints the results as a table and the ratios Millrace/Kafka Streams.
func printPeer(w io.Writer, p peerParams, rs []peerResult) {
	fmt.Fprintf(w, "\nPeer benchmark: %d records of %d bytes (identity, upper), %d lines of 10 words (word count), %d partitions, commit interval %v\n\n",
		p.records, p.size, p.lines, p.partitions, p.commitInterval)
	fmt.Fprintln(w, "| job | guarantee | contender | processes | input records/s | CPU s per million input records | outputs |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.0f | %.2f | %d |\n", r.job, r.guarantee, r.contender, r.processes, r.perSecond, r.cpuPerMillion.Seconds(), r.outputs)
	}
	find := func(job, g, c string) *peerResult {
		for i := range rs {
			if rs[i].job == job && rs[i].guarantee == g && rs[i].contender == c {
				return &rs[i]
			}
		}
		return nil
	}
	fmt.Fprintln(w, "\n| job | guarantee | against | Millrace/KS records/s | Millrace/KS CPU per record | goal |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---|")
	for _, job := range p.jobs {
		for _, g := range p.guarantees {
			m := find(job, g, ctMillrace)
			for _, c := range []string{ctKS, ctKSNoCache} {
				k := find(job, g, c)
				if m == nil || k == nil {
					continue
				}
				speed, cpu := m.perSecond/k.perSecond, float64(m.cpuPerMillion)/float64(k.cpuPerMillion)
				goalSpeed, goalCPU := 3.0, 0.25
				if job == "wordcount" {
					goalSpeed, goalCPU = 2.0, 0.5
				}
				verdict := "met"
				if speed < goalSpeed || cpu > goalCPU {
					verdict = "NOT met"
				}
				fmt.Fprintf(w, "| %s | %s | %s | %.2f× | %.2f× | ≥ %.0f× and ≤ %.2f×: %s |\n", job, g, c, speed, cpu, goalSpeed, goalCPU, verdict)
			}
		}
	}
	if b, m := find("identity", "alo", ctBare), find("identity", "alo", ctMillrace); b != nil && m != nil {
		fmt.Fprintf(w, "\nExecutor as deployed against the bare franz-go loop (separate processes, identity, AtLeastOnce): CPU per record bare/Millrace = %.2f (goal ≥ 0.85), records/s Millrace/bare = %.2f\n",
			float64(b.cpuPerMillion)/float64(m.cpuPerMillion), m.perSecond/b.perSecond)
	}
	fmt.Fprintln(w, "\n| job | guarantee | Millrace/baseline records/s | Millrace/baseline CPU per record |")
	fmt.Fprintln(w, "|---|---|---:|---:|")
	for _, job := range p.jobs {
		for _, g := range p.guarantees {
			m, b := find(job, g, ctMillrace), find(job, g, ctBaseline)
			if m == nil || b == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %.2f× | %.2f× |\n", job, g, m.perSecond/b.perSecond, float64(m.cpuPerMillion)/float64(b.cpuPerMillion))
		}
	}
	fmt.Fprintln(w, "\n| job | contender | ExactlyOnce/AtLeastOnce records/s |")
	fmt.Fprintln(w, "|---|---|---:|")
	for _, job := range p.jobs {
		for _, c := range []string{ctBaseline, ctMillrace, ctKS, ctKSNoCache} {
			a, e := find(job, "alo", c), find(job, "eos", c)
			if a == nil || e == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %s | %.2f |\n", job, c, e.perSecond/a.perSecond)
		}
	}
}
