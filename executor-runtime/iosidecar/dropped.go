package iosidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Default bounds of the backoff between two attempts at deleting a dropped input's offsets, and
// the wait before the first.
//
// The first attempt waits defaultDropDelay so that a pod that still runs a previous
// configuration (its mounted ConfigMap not yet updated by the kubelet, which takes up to its sync
// period, a minute, plus its cache's) does not delete the offsets of an input the new
// configuration added: by then it has reloaded the new configuration, which ends this session
// and its attempt. A member reading that input would make the broker refuse anyway; the delay
// covers the moment when no such member is in the group (the new pods restarting).
const (
	defaultDropDelay      = 2 * time.Minute
	defaultDropBackoff    = 2 * time.Second
	defaultDropBackoffMax = time.Minute
)

// dropped deletes the entity group's committed offsets on the topics the entity no longer reads
// (dropped inputs), so that a rewire leaves nothing behind in the group. It runs in the
// background of every session, with an admin client of its own, and ends when the group holds
// offsets on its inputs only (or the session ends). Any pod may do it and doing it twice is
// harmless: deleting offsets that are gone already is not an error.
//
// Two things must not be lost:
//
//   - a handover: when another entity takes the topic over (Executor.Heirs), its pods start at
//     this group's final offsets (starts.handedOver), so they are deleted only once every heir
//     group has committed offsets of its own, stable, on each partition this group has one on;
//   - a member that still reads the topic (a pod of the previous configuration during a
//     rollout): the broker refuses the delete with GROUP_SUBSCRIBED_TO_TOPIC while a member of
//     the group is subscribed to it, and the step tries again later.
//
// Every wait and every error is retried with a growing backoff (never a hot loop) and logged
// once per reason.
type dropped struct {
	group  string
	inputs map[string]bool
	heirs  map[string][]string // topic -> heir groups
	admin  func() (*kadm.Client, error)
	log    *slog.Logger
	m      *metrics

	delay, backoff, backoffMax time.Duration
}

func newDropped(cfg *config.Executor, admin func() (*kadm.Client, error), o *options, m *metrics, log *slog.Logger) *dropped {
	d := &dropped{group: cfg.GroupID, inputs: map[string]bool{}, heirs: map[string][]string{}, admin: admin, log: log, m: m,
		delay: defaultDropDelay, backoff: o.dropBackoff, backoffMax: o.dropBackoffMax}
	if o.dropDelay != nil {
		d.delay = *o.dropDelay
	}
	if d.backoff <= 0 {
		d.backoff = defaultDropBackoff
	}
	if d.backoffMax < d.backoff {
		d.backoffMax = max(defaultDropBackoffMax, d.backoff)
	}
	for _, in := range cfg.Inputs {
		d.inputs[in.Topic] = true
	}
	for _, h := range cfg.Heirs {
		if !slices.Contains(d.heirs[h.Topic], h.GroupID) {
			d.heirs[h.Topic] = append(d.heirs[h.Topic], h.GroupID)
		}
	}
	return d
}

// run tries until nothing is left to delete or ctx ends.
func (d *dropped) run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(d.delay):
	}
	wait := d.backoff
	logged := map[string]bool{} // reasons logged already, so that a long wait logs once
	for {
		left, err := d.once(ctx, logged)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, kerr.GroupAuthorizationFailed), errors.Is(err, kerr.TopicAuthorizationFailed):
			// The Kafka user may not delete the group's offsets (Delete on the group) or read
			// an heir's (Describe): asking again changes nothing until the ACLs do, and the next
			// configuration applied tries again.
			d.log.Warn("not allowed to delete the committed offsets of dropped inputs; they stay in the group (grant Delete on the group)", "group", d.group, "err", err)
			return
		case err != nil:
			if msg := err.Error(); !logged[msg] {
				logged[msg] = true
				d.log.Warn("delete the committed offsets of dropped inputs; trying again later", "err", err, "backoff", wait)
			}
		case left == 0:
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, d.backoffMax)
	}
}

// Why a dropped input's offsets are still in the group (the reason label of
// millrace_dropped_inputs_pending).
var dropReasons = []string{"heirs", "subscribed", "deleted", "error"}

// once makes one attempt: it returns how many dropped inputs still have offsets in the group.
func (d *dropped) once(ctx context.Context, logged map[string]bool) (int, error) {
	pending := map[string]int{}
	defer func() {
		for _, r := range dropReasons {
			d.m.droppedWaiting.WithLabelValues(r).Set(float64(pending[r]))
		}
	}()
	adm, err := d.admin()
	if err != nil {
		return 0, err
	}
	resps, err := adm.FetchOffsets(ctx, d.group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fetch the committed offsets of group %s: %w", d.group, err)
	}
	held := map[string][]int32{} // dropped topic -> partitions with a committed offset
	resps.Each(func(r kadm.OffsetResponse) {
		if d.inputs[r.Topic] {
			return
		}
		// A pending transactional commit (UNSTABLE_OFFSET_COMMIT) counts as held: it resolves
		// into an offset or into none, and deleting waits for the heirs either way.
		if errors.Is(r.Err, kerr.UnstableOffsetCommit) || (r.Err == nil && r.At >= 0) {
			held[r.Topic] = append(held[r.Topic], r.Partition)
		}
	})
	var errs []error
	left := 0
	for _, topic := range slices.Sorted(maps.Keys(held)) {
		partitions := held[topic]
		slices.Sort(partitions)
		if waiting, err := d.heirsPending(ctx, adm, topic, partitions); err != nil || len(waiting) > 0 {
			left++
			if err != nil {
				pending["error"]++
				errs = append(errs, err)
				continue
			}
			pending["heirs"]++
			if reason := topic + " heirs " + strings.Join(waiting, ","); !logged[reason] {
				logged[reason] = true
				d.log.Info("a dropped input's committed offsets stay until the entities that take it over have committed theirs", "topic", topic, "group", d.group, "waiting_for", waiting)
			}
			continue
		}
		subscribed, err := d.delete(ctx, adm, topic, partitions)
		switch {
		case err != nil:
			left++
			pending["error"]++
			errs = append(errs, err)
		case subscribed:
			left++
			pending["subscribed"]++
			if reason := topic + " subscribed"; !logged[reason] {
				logged[reason] = true
				d.log.Info("a member of the group still reads a dropped input; deleting its offsets once it stops", "topic", topic, "group", d.group)
			}
		default:
			// Counted as left until a fetch finds the offsets gone: a commit of a member that was
			// still leaving could have written them again.
			left++
			pending["deleted"]++
			d.m.droppedDeleted.WithLabelValues(topic).Add(float64(len(partitions)))
			d.log.Info("committed offsets of a dropped input deleted", "topic", topic, "group", d.group, "partitions", partitions, "heirs", d.heirs[topic])
		}
	}
	return left, errors.Join(errs...)
}

// heirsPending are the heir groups of topic that have not yet committed a stable offset on each
// of partitions.
func (d *dropped) heirsPending(ctx context.Context, adm *kadm.Client, topic string, partitions []int32) ([]string, error) {
	var waiting []string
	for _, heir := range d.heirs[topic] {
		resps, err := adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), heir, topic)
		if errors.Is(err, kerr.GroupIDNotFound) {
			waiting = append(waiting, heir)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fetch the committed offsets of group %s, which takes %s over: %w", heir, topic, err)
		}
		committed := map[int32]bool{}
		resps.Each(func(r kadm.OffsetResponse) {
			// UNSTABLE_OFFSET_COMMIT (a transaction not yet resolved) is not committed yet.
			if r.Topic == topic && r.Err == nil && r.At >= 0 {
				committed[r.Partition] = true
			}
		})
		if slices.ContainsFunc(partitions, func(p int32) bool { return !committed[p] }) {
			waiting = append(waiting, heir)
		}
	}
	return waiting, nil
}

// delete deletes the group's offsets on partitions of topic; subscribed reports that the broker
// refused because a member of the group is still subscribed to topic.
func (d *dropped) delete(ctx context.Context, adm *kadm.Client, topic string, partitions []int32) (subscribed bool, err error) {
	res, err := adm.DeleteOffsets(ctx, d.group, kadm.TopicsSet{topic: setOf(partitions)})
	switch {
	case errors.Is(err, kerr.GroupIDNotFound):
		return false, nil
	case errors.Is(err, kerr.NonEmptyGroup):
		// A group whose members do not speak the consumer protocol, or a broker that cannot
		// tell what its KIP-848 members read (kfake): it has members, so wait like for a
		// member subscribed to the topic.
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete the committed offsets of group %s on %s: %w", d.group, topic, err)
	}
	var errs []error
	for _, ps := range res {
		for p, perr := range ps {
			switch {
			case perr == nil, errors.Is(perr, kerr.UnknownTopicOrPartition):
			case errors.Is(perr, kerr.GroupSubscribedToTopic):
				subscribed = true
			default:
				errs = append(errs, fmt.Errorf("delete the committed offset of group %s on %s/%d: %w", d.group, topic, p, perr))
			}
		}
	}
	return subscribed, errors.Join(errs...)
}

func setOf(ps []int32) map[int32]struct{} {
	out := make(map[int32]struct{}, len(ps))
	for _, p := range ps {
		out[p] = struct{}{}
	}
	return out
}
