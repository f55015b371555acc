package local

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/controllers/render"
)

// Progress counts records from Kafka, not from the I/O sidecars' metrics: a sidecar killed
// between two scrapes takes what it handled since the last one with it, Kafka keeps it. An
// entity's records in are the data records of its inputs between where its consumer group
// stood when the run started and where it has committed now; its records out are the data
// records of its outputs written since the run started, read_committed. Records, not offsets:
// transaction markers and aborted records take offsets too, so the run reads the streams and
// counts the records between two offsets.

// countWait bounds how long one progress measurement waits for the counter to catch up.
const countWait = 5 * time.Second

// baseline is where an entity's counting starts on each partition of its inputs.
type baseline struct {
	in map[string]map[int32]int64
}

// recordCounter reads topics read_committed from given offsets and keeps the offsets of their
// data records, so that it can count the records in any offset range it has read past.
type recordCounter struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	records map[string]map[int32][]int64 // offsets of data records, ascending
	next    map[string]map[int32]int64   // past every record and marker read so far
}

func startCounter(seeds []string, from map[string]map[int32]int64) (*recordCounter, error) {
	c := &recordCounter{done: make(chan struct{}), records: map[string]map[int32][]int64{}, next: map[string]map[int32]int64{}}
	start := map[string]map[int32]kgo.Offset{}
	for t, ps := range from {
		start[t], c.records[t], c.next[t] = map[int32]kgo.Offset{}, map[int32][]int64{}, map[int32]int64{}
		for p, o := range ps {
			start[t][p] = kgo.NewOffset().At(o)
			c.next[t][p] = o
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumePartitions(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cl, c.cancel = cl, cancel
	go c.loop(ctx)
	return c, nil
}

func (c *recordCounter) loop(ctx context.Context) {
	defer close(c.done)
	for ctx.Err() == nil {
		fs := c.cl.PollFetches(ctx)
		c.mu.Lock()
		fs.EachRecord(func(rec *kgo.Record) {
			if c.next[rec.Topic] == nil || rec.Offset < c.next[rec.Topic][rec.Partition] {
				return
			}
			if !rec.Attrs.IsControl() {
				c.records[rec.Topic][rec.Partition] = append(c.records[rec.Topic][rec.Partition], rec.Offset)
			}
			c.next[rec.Topic][rec.Partition] = rec.Offset + 1
		})
		c.mu.Unlock()
	}
}

// count is the number of data records of a partition in [from, to), and whether the counter has
// read that far.
func (c *recordCounter) count(topic string, partition int32, from, to int64) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	offs := c.records[topic][partition]
	lo := sort.Search(len(offs), func(i int) bool { return offs[i] >= from })
	hi := sort.Search(len(offs), func(i int) bool { return offs[i] >= to })
	return int64(max(hi-lo, 0)), c.next[topic][partition] >= to
}

func (c *recordCounter) close() {
	if c == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cl.Close()
}

// startCounting notes where every entity's group and every output stand before the entities
// start, and starts the counter from there.
func (r *Runner) startCounting(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var topics []string
	for _, s := range r.p.Spec.Streams {
		topics = append(topics, render.TopicName(r.p, s.Name))
	}
	// Topics just created may not have leaders yet on a real broker: retry what is retriable.
	list := func(f func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		for {
			o, err := f(ctx, topics...)
			if err == nil {
				err = o.Error()
			}
			if err == nil || !kerr.IsRetriable(err) || ctx.Err() != nil {
				return o, err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	starts, err := list(r.admin.ListStartOffsets)
	if err != nil {
		return fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := list(r.admin.ListEndOffsets)
	if err != nil {
		return fmt.Errorf("list end offsets: %w", err)
	}
	r.outFrom = map[string]map[int32]int64{}
	from := map[string]map[int32]int64{}
	note := func(m map[string]map[int32]int64, t string, p int32, o int64) {
		if m[t] == nil {
			m[t] = map[int32]int64{}
		}
		if cur, ok := m[t][p]; !ok || o < cur {
			m[t][p] = o
		}
	}
	ends.Each(func(o kadm.ListedOffset) {
		note(r.outFrom, o.Topic, o.Partition, o.Offset)
		note(from, o.Topic, o.Partition, o.Offset)
	})
	r.inFrom = map[string]baseline{}
	for _, e := range r.p.Spec.Entities {
		cfg, err := r.executorConfig(r.p, &e)
		if err != nil {
			return err
		}
		committed, err := r.committed(ctx, e.Name)
		if err != nil {
			return err
		}
		b := baseline{in: map[string]map[int32]int64{}}
		for _, in := range e.Inputs {
			t := render.TopicName(r.p, in)
			ends.Each(func(end kadm.ListedOffset) {
				if end.Topic != t {
					return
				}
				// Without a commit the group starts where offsetReset says.
				o := end.Offset
				if cfg.OffsetReset != "latest" {
					if s, ok := starts.Lookup(t, end.Partition); ok {
						o = s.Offset
					}
				}
				if c, ok := committed.Lookup(t, end.Partition); ok && c.At >= 0 {
					o = c.At
				}
				note(b.in, t, end.Partition, o)
				note(from, t, end.Partition, o)
			})
		}
		r.inFrom[e.Name] = b
	}
	r.counter, err = startCounter(r.seeds, from)
	return err
}

// recordCounts counts an entity's records in and out, waiting up to wait for the counter to
// read far enough; complete says whether it did.
func (r *Runner) recordCounts(ctx context.Context, entityName string, wait time.Duration) (in, out int64, complete bool, err error) {
	e := entity(r.p, entityName)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	committed, err := r.committed(ctx, entityName)
	if err != nil {
		return 0, 0, false, err
	}
	var outTopics []string
	for _, o := range e.Outputs {
		outTopics = append(outTopics, render.TopicName(r.p, o))
	}
	var stable kadm.ListedOffsets
	if len(outTopics) > 0 {
		// read_committed end offsets: what a transaction has not committed yet is not out.
		if stable, err = r.admin.ListCommittedOffsets(ctx, outTopics...); err == nil {
			err = stable.Error()
		}
		if err != nil {
			return 0, 0, false, fmt.Errorf("list end offsets: %w", err)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		in, out, complete = 0, 0, true
		for t, ps := range r.inFrom[entityName].in {
			for p, from := range ps {
				c, ok := committed.Lookup(t, p)
				if !ok || c.At < from {
					continue
				}
				n, read := r.counter.count(t, p, from, c.At)
				in += n
				complete = complete && read
			}
		}
		stable.Each(func(o kadm.ListedOffset) {
			if !slices.Contains(outTopics, o.Topic) {
				return
			}
			n, read := r.counter.count(o.Topic, o.Partition, r.outFrom[o.Topic][o.Partition], o.Offset)
			out += n
			complete = complete && read
		})
		if complete || time.Now().After(deadline) || ctx.Err() != nil {
			return in, out, complete, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// committed is the offsets an entity's consumer group committed; none when the group does not
// exist yet.
func (r *Runner) committed(ctx context.Context, entityName string) (kadm.OffsetResponses, error) {
	group := render.GroupID(r.p, entityName)
	var committed kadm.OffsetResponses
	var err error
	for {
		// A fresh broker has no coordinator until it has created its offsets topic.
		if committed, err = r.admin.FetchOffsets(ctx, group); err == nil {
			err = committed.Error()
		}
		if err == nil || !kerr.IsRetriable(err) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		return kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the offsets of group %s: %w", group, err)
	}
	return committed, nil
}
