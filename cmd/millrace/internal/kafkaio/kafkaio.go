// Package kafkaio moves records between Kafka topics and text: one record a line, with an
// optional key before a separator. `millrace produce`, `millrace consume` and `millrace run`
// share it, locally and against a cluster's Kafka.
package kafkaio

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Format says how a line maps to a record.
type Format struct {
	// KeySeparator, when not empty, splits each line at its first occurrence into key and value;
	// a line without it is a value without key. Consuming, keys are printed before it.
	KeySeparator string
	// Key is the key of every produced record when KeySeparator is empty.
	Key string
	// Headers, consuming, starts each line with the record's headers, in their order, as
	// key="value" pairs (the value quoted as a Go string) separated by spaces and ended by a
	// tab: a dead-lettered record shows where it came from and why it failed.
	Headers bool
}

// Produce writes each line of r as a record to topic and waits until Kafka has acknowledged
// all of them. It returns the number of records written.
func Produce(ctx context.Context, cl *kgo.Client, topic string, r io.Reader, f Format) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	var (
		mu       sync.Mutex
		firstErr error
		n        int
	)
	for sc.Scan() {
		line := sc.Bytes()
		rec := &kgo.Record{Topic: topic}
		switch {
		case f.KeySeparator != "":
			if k, v, ok := bytes.Cut(line, []byte(f.KeySeparator)); ok {
				rec.Key, rec.Value = bytes.Clone(k), bytes.Clone(v)
			} else {
				rec.Value = bytes.Clone(line)
			}
		case f.Key != "":
			rec.Key, rec.Value = []byte(f.Key), bytes.Clone(line)
		default:
			rec.Value = bytes.Clone(line)
		}
		n++
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return n, fmt.Errorf("produce to %s: %w", topic, err)
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("read input for %s: %w", topic, err)
	}
	if firstErr != nil {
		return n, fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return n, nil
}

// WriteRecord prints a record as a line: the value, or key, separator and value when the
// separator is set, after the headers when f.Headers is set.
func WriteRecord(w io.Writer, r *kgo.Record, f Format) error {
	var b bytes.Buffer
	if f.Headers {
		for i, h := range r.Headers {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(h.Key)
			b.WriteByte('=')
			b.WriteString(strconv.Quote(string(h.Value)))
		}
		b.WriteByte('\t')
	}
	if f.KeySeparator != "" {
		b.Write(r.Key)
		b.WriteString(f.KeySeparator)
	}
	b.Write(r.Value)
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// ConsumeOptions say where to start, when to stop and what to read.
type ConsumeOptions struct {
	// FromEnd starts at the end of each partition instead of its beginning.
	FromEnd bool
	// UntilEnd stops once the end offsets seen at the start are reached, instead of following.
	UntilEnd bool
	// Max stops after that many records; 0 is no limit.
	Max int
	// Uncommitted also reads records of open and aborted transactions.
	Uncommitted bool
}

// ErrNoTopic is returned when the topic does not exist.
var ErrNoTopic = errors.New("topic does not exist")

// Consume reads topic (every partition, no consumer group) and calls fn for each record until ctx
// ends or the options say stop. It returns the number of records read.
func Consume(ctx context.Context, seeds []string, topic string, o ConsumeOptions, fn func(*kgo.Record) error) (int, error) {
	var remaining map[int32]int64
	if o.UntilEnd {
		var err error
		if remaining, err = endOffsets(ctx, seeds, topic, o.Uncommitted); err != nil {
			return 0, err
		}
		if len(remaining) == 0 {
			return 0, nil
		}
	}
	start := kgo.NewOffset().AtStart()
	if o.FromEnd {
		start = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start)}
	if !o.Uncommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if o.UntilEnd {
		// Control records (transaction markers) take offsets too; seeing them tells when a
		// partition is read to its end.
		opts = append(opts, kgo.KeepControlRecords())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return 0, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	n := 0
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return n, nil
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.Canceled) {
				fetchErr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
			}
		})
		if fetchErr != nil {
			return n, fetchErr
		}
		var stop bool
		var cbErr error
		fs.EachRecord(func(r *kgo.Record) {
			if stop || cbErr != nil {
				return
			}
			if remaining != nil {
				end, ok := remaining[r.Partition]
				if !ok || r.Offset >= end {
					return
				}
				if r.Offset+1 >= end {
					delete(remaining, r.Partition)
				}
			}
			if !r.Attrs.IsControl() {
				if cbErr = fn(r); cbErr != nil {
					return
				}
				n++
				if o.Max > 0 && n >= o.Max {
					stop = true
				}
			}
			if remaining != nil && len(remaining) == 0 {
				stop = true
			}
		})
		if cbErr != nil {
			return n, cbErr
		}
		if stop {
			return n, nil
		}
	}
}

// ReadAll returns every committed record of topic up to its current end.
func ReadAll(ctx context.Context, seeds []string, topic string) ([]*kgo.Record, error) {
	var out []*kgo.Record
	_, err := Consume(ctx, seeds, topic, ConsumeOptions{UntilEnd: true}, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// endOffsets returns, per partition holding records, the offset to read up to: the last stable
// offset for committed reads, the high watermark otherwise.
func endOffsets(ctx context.Context, seeds []string, topic string, uncommitted bool) (map[int32]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := adm.ListCommittedOffsets
	if uncommitted {
		list = adm.ListEndOffsets
	}
	ends, err := list(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		if errors.Is(err, kerrUnknownTopic) {
			return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
		}
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if _, ok := ends[topic]; !ok {
		return nil, fmt.Errorf("%s: %w", topic, ErrNoTopic)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			out[o.Partition] = o.Offset
		}
	})
	return out, nil
}
