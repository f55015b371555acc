package iosidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// starts places the inputs with a start position (executor.json's inputs[].start) where the
// user asked, on the partitions the entity's group has never committed offsets for.
//
// franz-go calls adjust (kgo.AdjustFetchOffsetsFn) when the member is given partitions, after
// fetching the group's committed offsets and before consuming; a partition without a commit
// carries the reset offset (negative), which adjust replaces:
//
//   - timestamp: the first offset at or after the timestamp, a pure function of the partition's
//     data, so every member, restart and later-added partition agrees without coordination;
//   - latest: the last stable offset, which depends on when it is asked. The first member to
//     resolve it (the group has no commit on any partition of the topic) resolves every
//     partition of the topic at once and the session commits them all (commit) before it
//     dispatches a record, so that members given the other partitions later (a rolling update,
//     Static ordinals joining one by one, a restart) continue from the same offsets instead of
//     resolving "latest" again and skipping what was written between. A topic on which the
//     group has a commit already is one it reads: its partitions without a commit are new
//     partitions and start at the reset offset (earliest), so nothing written to them is
//     skipped.
type starts struct {
	group string
	of    map[string]*config.Start // topic -> start position
	admin func() (*kadm.Client, error)
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]map[int32]int64 // resolved latest starts not yet committed
}

func newStarts(cfg *config.Executor, admin func() (*kadm.Client, error), log *slog.Logger) *starts {
	st := &starts{group: cfg.GroupID, of: map[string]*config.Start{}, admin: admin, log: log, pending: map[string]map[int32]int64{}}
	for _, in := range cfg.Inputs {
		if in.Start != nil {
			st.of[in.Topic] = in.Start
		}
	}
	if len(st.of) == 0 {
		return nil
	}
	return st
}

// adjust is the kgo.AdjustFetchOffsetsFn.
func (st *starts) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	uncommitted := map[string][]int32{}
	for topic, ps := range offsets {
		if st.of[topic] == nil {
			continue
		}
		for p, o := range ps {
			if o.EpochOffset().Offset < 0 {
				uncommitted[topic] = append(uncommitted[topic], p)
			}
		}
	}
	if len(uncommitted) == 0 {
		return offsets, nil
	}
	adm, err := st.admin()
	if err != nil {
		return nil, err
	}
	for _, topic := range slices.Sorted(maps.Keys(uncommitted)) {
		mine := uncommitted[topic]
		slices.Sort(mine)
		// Latest and a handover depend on when they are resolved: the first member resolves
		// every partition and commits them all (see commit).
		latest := st.of[topic].Position != config.StartTimestamp
		var committed map[int32]bool
		if latest {
			if committed, err = st.committedPartitions(ctx, adm, topic); err != nil {
				return nil, err
			}
			if len(committed) > 0 {
				st.log.Info("partitions without a committed offset on an input the group reads already (new partitions): reading them from the reset offset", "topic", topic, "partitions", mine)
				continue
			}
		}
		resolved, err := st.resolve(ctx, adm, topic)
		if err != nil {
			return nil, err
		}
		for _, p := range mine {
			at, ok := resolved[p]
			if !ok {
				if st.of[topic].Position == config.StartGroup {
					continue // the other group never committed this partition: from the reset offset
				}
				return nil, fmt.Errorf("resolve the start of %s/%d: no offset listed", topic, p)
			}
			offsets[topic][p] = kgo.NewOffset().At(at).WithEpoch(-1)
		}
		if latest {
			st.mu.Lock()
			if st.pending[topic] == nil {
				st.pending[topic] = map[int32]int64{}
			}
			maps.Copy(st.pending[topic], resolved)
			st.mu.Unlock()
		}
		st.log.Info("input start position resolved", "topic", topic, "position", st.of[topic].Position, "offsets", resolved, "assigned", mine)
	}
	return offsets, nil
}

// committedPartitions are the partitions of topic with a committed offset in the group (or a
// transactional commit pending).
func (st *starts) committedPartitions(ctx context.Context, adm *kadm.Client, topic string) (map[int32]bool, error) {
	resps, err := adm.FetchOffsetsForTopics(ctx, st.group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the committed offsets of group %s: %w", st.group, err)
	}
	committed := map[int32]bool{}
	var errs []error
	resps.Each(func(r kadm.OffsetResponse) {
		if r.Topic != topic {
			return
		}
		switch {
		case errors.Is(r.Err, kerr.UnstableOffsetCommit):
			committed[r.Partition] = true
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("committed offset of %s/%d in group %s: %w", r.Topic, r.Partition, st.group, r.Err))
		case r.At >= 0:
			committed[r.Partition] = true
		}
	})
	return committed, errors.Join(errs...)
}

// resolve lists the offsets of every partition of topic at its start position.
func (st *starts) resolve(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	var listed kadm.ListedOffsets
	var err error
	switch s := st.of[topic]; s.Position {
	case config.StartLatest:
		// The last stable offset, as a read_committed consumer sees the end: a transaction
		// open at that moment is read whole once it commits.
		listed, err = adm.ListCommittedOffsets(ctx, topic)
	case config.StartTimestamp:
		listed, err = adm.ListOffsetsAfterMilli(ctx, s.TimestampMillis, topic)
	case config.StartGroup:
		return st.handedOver(ctx, adm, topic, s.Group)
	default:
		return nil, fmt.Errorf("input %s: start position %q", topic, s.Position)
	}
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the start offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// handedOver is the final committed offsets of group on topic, stable (no transactional commit
// pending); a partition the group never committed is absent.
func (st *starts) handedOver(ctx context.Context, adm *kadm.Client, topic, group string) (map[int32]int64, error) {
	resps, err := adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the committed offsets of group %s, which hands %s over: %w", group, topic, err)
	}
	out := map[int32]int64{}
	var errs []error
	resps.Each(func(r kadm.OffsetResponse) {
		switch {
		case r.Topic != topic:
		case r.Err != nil:
			errs = append(errs, fmt.Errorf("committed offset of %s/%d in group %s: %w", r.Topic, r.Partition, group, r.Err))
		case r.At >= 0:
			out[r.Partition] = r.At
		}
	})
	return out, errors.Join(errs...)
}

// handoverPoll is how often waitHandovers asks whether the other group still reads the topic.
const handoverPoll = 500 * time.Millisecond

// waitHandovers runs before the session joins its group: for each input taken over from
// another group (position "group") on which this group has no commit yet, it waits until no
// member of the other group is subscribed to the topic. From then on that group's committed
// offsets on the topic are final (its last transaction is resolved: handedOver reads them
// stable), and this group starts where it stopped: every record of the topic is processed by
// exactly one of the two. The pod is not ready while it waits, and holds no partition.
func (st *starts) waitHandovers(ctx context.Context) error {
	for _, topic := range slices.Sorted(maps.Keys(st.of)) {
		from := st.of[topic]
		if from.Position != config.StartGroup {
			continue
		}
		adm, err := st.admin()
		if err != nil {
			return err
		}
		committed, err := st.committedPartitions(ctx, adm, topic)
		if err != nil {
			return err
		}
		if len(committed) > 0 {
			continue // handed over already
		}
		for logged := false; ; {
			readers, err := subscribers(ctx, adm, from.Group, topic)
			if err != nil {
				return err
			}
			if len(readers) == 0 {
				st.log.Info("the input's previous reader stopped reading it: taking it over", "topic", topic, "from", from.Group)
				break
			}
			if !logged {
				st.log.Info("waiting until the input's previous reader stops reading it", "topic", topic, "from", from.Group, "members", readers)
				logged = true
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(handoverPoll):
			}
		}
	}
	return nil
}

// subscribers are the members of group subscribed to topic, in either group protocol.
func subscribers(ctx context.Context, adm *kadm.Client, group, topic string) ([]string, error) {
	var out []string
	cgs, err := adm.DescribeConsumerGroups(ctx, group)
	if err == nil {
		if g, ok := cgs[group]; ok && g.Err == nil {
			for _, m := range g.Members {
				if slices.Contains(m.SubscribedTopics, topic) {
					out = append(out, m.MemberID)
				}
			}
			return out, nil
		}
	}
	// A classic group (or a broker without KIP-848): the members' join metadata.
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	g, ok := gs[group]
	if !ok {
		return nil, nil
	}
	if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("describe group %s: %w", group, g.Err)
	}
	for _, m := range g.Members {
		if c, ok := m.Join.AsConsumer(); ok && slices.Contains(c.Topics, topic) {
			out = append(out, m.MemberID)
		}
	}
	return out, nil
}

func hasPending(pending map[string]map[int32]int64) bool {
	for _, ps := range pending {
		if len(ps) > 0 {
			return true
		}
	}
	return false
}

// commit commits the resolved latest starts of every partition of the topic with the member's
// generation (the group coordinator checks the member, not who owns a partition), outside any
// transaction: no output depends on them. It runs in the processing loop after the poll that
// follows the assignment and before dispatch, so a partition's start is committed before any of
// its records is processed (a transaction that then commits further overwrites it). A failed
// commit is not retried: the member's own partitions keep their resolved offsets, and a
// partition whose start was not committed is resolved again by its next owner.
func (st *starts) commit(ctx context.Context, cl *kgo.Client) error {
	st.mu.Lock()
	waiting := hasPending(st.pending)
	st.mu.Unlock()
	if !waiting {
		return nil
	}
	// franz-go records the resolved start as the partition's committed offset; once the
	// session's own commit has moved it, committing the start would rewind the group.
	committed := cl.CommittedOffsets()
	// The partitions of other members: the start is committed only where the group has still no
	// commit, so that a member that resolved in the same generation and consumed already is not
	// moved back (what remains is the time between this check and the commit).
	others := map[string]map[int32]bool{}
	st.mu.Lock()
	for topic, ps := range st.pending {
		for p := range ps {
			if _, mine := committed[topic][p]; !mine {
				if others[topic] == nil {
					others[topic] = map[int32]bool{}
				}
				others[topic][p] = true
			}
		}
	}
	st.mu.Unlock()
	for topic := range others {
		adm, err := st.admin()
		if err != nil {
			return err
		}
		have, err := st.committedPartitions(ctx, adm, topic)
		if err != nil {
			return err
		}
		for p := range others[topic] {
			if !have[p] {
				delete(others[topic], p)
			}
		}
	}
	st.mu.Lock()
	todo := map[string]map[int32]kgo.EpochOffset{}
	for topic, ps := range st.pending {
		for p, at := range ps {
			if c, ok := committed[topic][p]; (ok && c.Offset != at) || others[topic][p] {
				delete(ps, p)
				continue
			}
			if todo[topic] == nil {
				todo[topic] = map[int32]kgo.EpochOffset{}
			}
			todo[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: at}
		}
	}
	st.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	var cerr error
	cl.CommitOffsetsSync(ctx, todo, func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		st.mu.Lock()
		defer st.mu.Unlock()
		for i, t := range resp.Topics {
			topic := t.Topic
			if topic == "" && i < len(req.Topics) {
				topic = req.Topics[i].Topic // v10+ answers with topic ids
			}
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					cerr = errors.Join(cerr, fmt.Errorf("%s/%d: %w", topic, p.Partition, perr))
					continue
				}
				if at, ok := st.pending[topic][p.Partition]; ok && at == todo[topic][p.Partition].Offset {
					delete(st.pending[topic], p.Partition)
				}
			}
		}
	})
	if cerr != nil {
		// Not retried: by the next poll a rebalance may have given these partitions to members
		// that consume them, whose commits a late start commit would rewind.
		st.mu.Lock()
		clear(st.pending)
		st.mu.Unlock()
		return fmt.Errorf("commit the start offsets %v: %w", todo, cerr)
	}
	st.log.Info("input start offsets committed", "offsets", todo)
	return nil
}
