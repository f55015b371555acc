package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ChangelogRestorer restores partitions from a compacted changelog topic whose partition N holds
// the state of input partition N. It reads with read_committed, so under ExactlyOnce only the
// writes of committed transactions are restored.
type ChangelogRestorer struct {
	Topic string
	// Opts connect to the cluster.
	Opts []kgo.Opt
	// OpenTxnWait bounds how long a restore waits for an open transaction on a partition to
	// finish (a transaction of a producer that died, aborted by the broker after its timeout).
	OpenTxnWait time.Duration
	Log         *slog.Logger
}

// Restore implements Restorer.
func (r *ChangelogRestorer) Restore(ctx context.Context, store Store, partitions []int32) (int64, error) {
	cl, err := kgo.NewClient(r.Opts...)
	if err != nil {
		return 0, fmt.Errorf("changelog client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ends, err := r.stableEnds(ctx, adm, partitions)
	if err != nil {
		return 0, err
	}
	starts, err := adm.ListStartOffsets(ctx, r.Topic)
	if err != nil {
		return 0, fmt.Errorf("list changelog start offsets: %w", err)
	}
	if err := starts.Error(); err != nil {
		return 0, fmt.Errorf("list changelog start offsets: %w", err)
	}
	consume := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for _, p := range partitions {
		start, _ := starts.Lookup(r.Topic, p)
		end := ends[p]
		if end <= start.Offset {
			continue
		}
		consume[p] = kgo.NewOffset().At(start.Offset)
		remaining[p] = end
	}
	if len(remaining) == 0 {
		return 0, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.Topic: consume})

	var applied int64
	var batch []Mutation
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return applied, err
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return applied, ferr
		}
		batch = batch[:0]
		fetches.EachRecord(func(rec *kgo.Record) {
			end, ok := remaining[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if !rec.Attrs.IsControl() {
				batch = append(batch, Mutation{Partition: rec.Partition, Key: rec.Key, Value: rec.Value, Delete: rec.Value == nil})
			}
			if rec.Offset+1 >= end {
				delete(remaining, rec.Partition)
			}
		})
		if err := store.Apply(batch); err != nil {
			return applied, err
		}
		applied += int64(len(batch))
	}
	return applied, nil
}

// stableEnds returns, per partition, the offset up to which the changelog is complete: the high
// watermark once no transaction is open on the partition, or the last stable offset if one stays
// open longer than OpenTxnWait.
func (r *ChangelogRestorer) stableEnds(ctx context.Context, adm *kadm.Client, partitions []int32) (map[int32]int64, error) {
	deadline := time.Now().Add(r.OpenTxnWait)
	for {
		hw, err := adm.ListEndOffsets(ctx, r.Topic)
		if err == nil {
			err = hw.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list changelog end offsets: %w", err)
		}
		lso, err := adm.ListCommittedOffsets(ctx, r.Topic)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list changelog stable offsets: %w", err)
		}
		ends := map[int32]int64{}
		open := false
		for _, p := range partitions {
			h, ok := hw.Lookup(r.Topic, p)
			if !ok {
				return nil, fmt.Errorf("changelog topic %s has no partition %d", r.Topic, p)
			}
			s, _ := lso.Lookup(r.Topic, p)
			ends[p] = s.Offset
			if s.Offset < h.Offset {
				open = true
			}
		}
		if !open || time.Now().After(deadline) {
			if open {
				r.Log.Warn("restoring up to the last stable offset while a transaction is still open", "topic", r.Topic)
			}
			return ends, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
