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
	"github.com/millrace-dev/millrace/executor-runtime/internal/kafkaclient"
)

// errRetired ends a session whose entity is retired: the group's committed offsets reached every
// target (or the group is gone). The interval before it was committed; the session leaves the
// group and Run starts no new one while the configuration says Retire.
var errRetired = errors.New("the entity is retired")

// retireGrace is how long after Since the targets are resolved: a record stamped just before
// Since may reach the broker a moment after it, and a partition without a record at or after
// Since takes its end as listed then, which every pod must agree on.
const retireGrace = 2 * time.Second

// retireCheckEvery bounds how often a draining session asks the group coordinator for the
// group's committed offsets.
const retireCheckEvery = 500 * time.Millisecond

// retirement is the progress of the retirement of the entity (executor.json's retire), kept by
// Run across the sessions of the process: the targets are resolved once per Since, so a hot
// reload or a failed session does not move them.
//
// The cut: with Drain, input partition p of topic t is processed up to target[t][p], the first
// offset whose record timestamp is at or after Since (ListOffsets by timestamp, which reads the
// log as written, open transactions included), or, when the partition has no such record yet, its
// end offset (high watermark) as listed the first time, retireGrace after Since. A session pauses a
// partition once a fetch reaches its target, hands the function only the records before it, and
// never commits past it (unless the group had committed past it already, before the pod learnt of
// the retirement). Records of an open transaction before the target are read once it is resolved
// (read_committed waits at the last stable offset), so every target is reachable: a transaction
// ends by its producer or by the broker's transaction timeout, and its control record, counted as
// consumed, moves the committed offset past it.
type retirement struct {
	mu      sync.Mutex
	since   string
	targets map[string]map[int32]int64 // nil until resolved
	status  *RetireStatus
}

// apply follows a new configuration: no Retire clears the retirement, a new Since starts it over.
func (r *retirement) apply(cfg *config.Executor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg.Retire == nil {
		r.since, r.targets, r.status = "", nil, nil
		return
	}
	if cfg.Retire.Since != r.since || r.status == nil {
		r.since, r.targets = cfg.Retire.Since, nil
		r.status = &RetireStatus{Phase: RetireDraining}
	}
}

// snapshot is what GET /status reports.
func (r *retirement) snapshot() *RetireStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		return nil
	}
	st := *r.status
	return &st
}

func (r *retirement) phase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil {
		return ""
	}
	return r.status.Phase
}

// set moves the phase forward (Draining, Drained, Deleted), never back.
func (r *retirement) set(phase string, remaining int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status == nil || phaseRank(phase) < phaseRank(r.status.Phase) {
		return
	}
	r.status.Phase, r.status.Remaining = phase, remaining
}

func phaseRank(p string) int {
	switch p {
	case RetireDrained:
		return 1
	case RetireDeleted:
		return 2
	}
	return 0
}

func (r *retirement) target(topic string, p int32) (int64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.targets[topic][p]
	return t, ok
}

func (r *retirement) targetsCopy() map[string]map[int32]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]map[int32]int64, len(r.targets))
	for t, ps := range r.targets {
		out[t] = maps.Clone(ps)
	}
	return out
}

// resolve sets the targets once per Since: it waits until the clock passes Since and retireGrace
// (the partitions' ends before then are not the cut: records older than Since are still being
// written), then lists them.
func (r *retirement) resolve(ctx context.Context, adm *kadm.Client, cfg *config.Executor, log *slog.Logger) error {
	r.mu.Lock()
	have := r.targets != nil
	r.mu.Unlock()
	if have {
		return nil
	}
	since, err := cfg.Retire.SinceTime()
	if err != nil {
		return err
	}
	if wait := time.Until(since.Add(retireGrace)); wait > 0 {
		log.Info("retirement: waiting for its start time to resolve the drain targets", "since", cfg.Retire.Since, "wait", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	targets, err := retireTargets(ctx, adm, cfg.Inputs, since)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.targets == nil && r.since == cfg.Retire.Since {
		r.targets = targets
	}
	r.mu.Unlock()
	log.Info("retirement: drain targets resolved", "since", cfg.Retire.Since, "targets", targets)
	return nil
}

// retireTargets lists, for every partition of every input, the first offset whose record
// timestamp is at or after since, or the partition's end offset (high watermark) when it has no
// such record.
func retireTargets(ctx context.Context, adm *kadm.Client, inputs []config.Input, since time.Time) (map[string]map[int32]int64, error) {
	topics := make([]string, 0, len(inputs))
	for _, in := range inputs {
		topics = append(topics, in.Topic)
	}
	listed, err := adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topics...)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the drain targets of %v at %s: %w", topics, since.Format(time.RFC3339Nano), err)
	}
	out := map[string]map[int32]int64{}
	for _, in := range inputs {
		ps, ok := listed[in.Topic]
		if !ok || (in.Partitions > 0 && len(ps) < int(in.Partitions)) {
			return nil, fmt.Errorf("list the drain targets of %s: %d partitions listed, %d expected", in.Topic, len(ps), in.Partitions)
		}
		out[in.Topic] = map[int32]int64{}
		for p, o := range ps {
			out[in.Topic][p] = o.Offset
		}
	}
	return out, nil
}

// retireRemaining is the number of records between committed (the group's committed offsets; a
// partition without one counts from 0) and targets, and whether every target is reached.
func retireRemaining(targets map[string]map[int32]int64, committed map[string]map[int32]int64) (int64, bool) {
	var n int64
	for t, ps := range targets {
		for p, target := range ps {
			c, ok := committed[t][p]
			if !ok || c < 0 {
				c = 0
			}
			n += max(0, target-c)
		}
	}
	return n, n == 0
}

// groupCommitted fetches the group's committed offsets on topics, stable: a transactional
// commit still pending is an error (the caller asks again later) rather than the offset before
// it. A group that does not exist has none.
func groupCommitted(ctx context.Context, adm *kadm.Client, group string, topics []string) (map[string]map[int32]int64, error) {
	resps, err := adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), group, topics...)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch the committed offsets of group %s: %w", group, err)
	}
	out := map[string]map[int32]int64{}
	var errs []error
	resps.Each(func(r kadm.OffsetResponse) {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("committed offset of %s/%d: %w", r.Topic, r.Partition, r.Err))
			return
		}
		if out[r.Topic] == nil {
			out[r.Topic] = map[int32]int64{}
		}
		out[r.Topic][r.Partition] = r.At
	})
	return out, errors.Join(errs...)
}

// check asks the group coordinator how far the group is and records it; true once every
// target is reached (Drained).
func (r *retirement) check(ctx context.Context, adm *kadm.Client, cfg *config.Executor) (bool, error) {
	targets := r.targetsCopy()
	topics := slices.Sorted(maps.Keys(targets))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	committed, err := groupCommitted(ctx, adm, cfg.GroupID, topics)
	if err != nil {
		return false, err
	}
	// Drained is set by Run once the session has left the group.
	n, done := retireRemaining(targets, committed)
	r.set(RetireDraining, n)
	return done, nil
}

// groupGone reports whether group does not exist (deleted, or never used): neither the
// consumer group API (KIP-848 groups) nor the classic one knows it.
func groupGone(ctx context.Context, adm *kadm.Client, group string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if cgs, err := adm.DescribeConsumerGroups(ctx, group); err == nil {
		if g, ok := cgs[group]; ok && g.Err == nil && g.State != "Dead" {
			return false, nil
		}
	}
	gs, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return false, err
	}
	g, ok := gs[group]
	if !ok || errors.Is(g.Err, kerr.GroupIDNotFound) {
		return true, nil
	}
	if g.Err != nil {
		return false, g.Err
	}
	return g.State == "Dead", nil
}

// finish runs while the retired pod idles, until ctx ends: with DeleteGroup, the pod with ordinal
// 0 deletes the group, retrying with backoff while members remain (the other pods are leaving,
// NON_EMPTY_GROUP); the other pods watch for the group to disappear. Both then report Deleted.
func (r *retirement) finish(ctx context.Context, cfg *config.Executor, ordinal int, log *slog.Logger) {
	if cfg.Retire == nil || !cfg.Retire.DeleteGroup || r.phase() == RetireDeleted {
		return
	}
	base, err := kafkaclient.Options(cfg.Kafka, log)
	if err != nil {
		log.Error("retirement: kafka options", "err", err)
		return
	}
	cl, err := kgo.NewClient(base...)
	if err != nil {
		log.Error("retirement: kafka client", "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	backoff := 200 * time.Millisecond
	for logged := false; ; {
		var gone bool
		var err error
		if ordinal == 0 {
			gone, err = deleteGroup(ctx, adm, cfg.GroupID)
		} else {
			gone, err = groupGone(ctx, adm, cfg.GroupID)
		}
		if gone {
			r.set(RetireDeleted, 0)
			log.Info("retirement: the consumer group is deleted", "group", cfg.GroupID)
			return
		}
		if err != nil && !logged {
			log.Info("retirement: the consumer group is not deleted yet; retrying", "group", cfg.GroupID, "err", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if ordinal == 0 {
			backoff = min(2*backoff, 5*time.Second)
		} else {
			backoff = 2 * time.Second
		}
	}
}

// deleteGroup deletes group; true when it is gone (deleted now, or not found).
func deleteGroup(ctx context.Context, adm *kadm.Client, group string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resps, err := adm.DeleteGroups(ctx, group)
	if err != nil {
		return false, err
	}
	r, ok := resps[group]
	if !ok {
		return false, fmt.Errorf("delete group %s: no answer for the group", group)
	}
	if r.Err == nil || errors.Is(r.Err, kerr.GroupIDNotFound) {
		return true, nil
	}
	return false, r.Err
}

// retireCut holds, per session, the partitions whose fetch reached the target: pending until a
// commit at the target succeeds, then done. Both are paused.
type retireCut struct {
	pending map[tp]bool
	done    map[tp]bool
	last    time.Time // the last group check
}

type tp struct {
	topic string
	p     int32
}

// cut returns the records of a fetch of topic/p that come before its target and pauses the
// partition once the fetch reaches it.
func (s *session) cut(topic string, p int32, recs []*kgo.Record) []*kgo.Record {
	target, ok := s.retire.target(topic, p)
	if !ok {
		return recs
	}
	k := tp{topic, p}
	if s.rcut.done[k] || s.rcut.pending[k] {
		return nil // fetched before the pause took effect
	}
	i, _ := slices.BinarySearchFunc(recs, target, func(r *kgo.Record, t int64) int {
		switch {
		case r.Offset < t:
			return -1
		case r.Offset > t:
			return 1
		}
		return 0
	})
	if i == len(recs) && recs[len(recs)-1].Offset+1 < target {
		return recs
	}
	s.cl.PauseFetchPartitions(map[string][]int32{topic: {p}})
	s.rcut.pending[k] = true
	s.log.Info("retirement: partition reached its drain target; paused", "topic", topic, "partition", p, "target", target, "processed", i)
	return recs[:i]
}

// capOffsets is the ceiling of each partition's commit: its target, or the group's committed
// offset when that is past the target already (never moved back).
func (s *session) capOffsets() map[tp]int64 {
	if s.retire == nil {
		return nil
	}
	prior := s.cl.CommittedOffsets()
	caps := map[tp]int64{}
	for t, ps := range s.retire.targetsCopy() {
		for p, target := range ps {
			c := target
			if eo, ok := prior[t][p]; ok && eo.Offset > c {
				c = eo.Offset
			}
			caps[tp{t, p}] = c
		}
	}
	return caps
}

// capCommit limits the offset commit of an interval (AtLeastOnce: OffsetCommit; ExactlyOnce:
// TxnOffsetCommit) to the ceilings of capOffsets.
func (s *session) capCommit(ctx context.Context) context.Context {
	caps := s.capOffsets()
	if caps == nil {
		return ctx
	}
	if s.txn != nil {
		return kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
			for i := range req.Topics {
				t := &req.Topics[i]
				for j := range t.Partitions {
					if c, ok := caps[tp{t.Topic, t.Partitions[j].Partition}]; ok && t.Partitions[j].Offset > c {
						t.Partitions[j].Offset = c
					}
				}
			}
			return nil
		})
	}
	return kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				if c, ok := caps[tp{t.Topic, t.Partitions[j].Partition}]; ok && t.Partitions[j].Offset > c {
					t.Partitions[j].Offset = c
				}
			}
		}
		return nil
	})
}

// afterRetireCommit records the outcome of an interval's commit for the cut partitions: a
// commit makes them done; an abort resumes them (franz-go rewinds to the last commit, and the
// records before the target are processed again).
func (s *session) afterRetireCommit(committed bool) {
	if s.retire == nil || len(s.rcut.pending) == 0 {
		return
	}
	if committed {
		for k := range s.rcut.pending {
			s.rcut.done[k] = true
		}
	} else {
		resume := map[string][]int32{}
		for k := range s.rcut.pending {
			resume[k.topic] = append(resume[k.topic], k.p)
		}
		s.cl.ResumeFetchPartitions(resume)
	}
	clear(s.rcut.pending)
}

// retireCheck asks, at most every retireCheckEvery, whether the group reached every target.
func (s *session) retireCheck(ctx context.Context) bool {
	if s.retire == nil || time.Since(s.rcut.last) < retireCheckEvery {
		return false
	}
	s.rcut.last = time.Now()
	adm, err := s.listAdmin()
	if err != nil {
		return false
	}
	done, err := s.retire.check(ctx, adm, s.cfg)
	if err != nil {
		s.log.Debug("retirement: the group's committed offsets are not known yet", "err", err)
		return false
	}
	return done
}

// prepareRetire runs before a draining session joins its group: it resolves the targets, and
// ends the session at once (errRetired) when the group is drained already or, with DeleteGroup,
// gone (a pod that restarts after the retirement finished never consumes again).
func (s *session) prepareRetire(ctx context.Context) error {
	adm, err := s.listAdmin()
	if err != nil {
		return err
	}
	if s.cfg.Retire.DeleteGroup {
		if gone, err := groupGone(ctx, adm, s.cfg.GroupID); err == nil && gone {
			s.retire.set(RetireDeleted, 0)
			return errRetired
		}
	}
	if err := s.retire.resolve(ctx, adm, s.cfg, s.log); err != nil {
		return fmt.Errorf("retirement: %w", err)
	}
	s.rcut = retireCut{pending: map[tp]bool{}, done: map[tp]bool{}, last: time.Now()}
	done, err := s.retire.check(ctx, adm, s.cfg)
	if err == nil && done {
		return errRetired
	}
	return nil
}
