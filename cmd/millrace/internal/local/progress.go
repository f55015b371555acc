package local

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/millrace-dev/millrace/controllers/render"
)

// EntityProgress is what one entity has done so far.
type EntityProgress struct {
	Entity string
	// Replicas is the number of replicas; Running of them have every process up.
	Replicas, Running int
	// Restarts counts process restarts over all replicas.
	Restarts int
	// In is the records of the inputs the entity's consumer group committed during the run,
	// and Out the records the entity's outputs received during the run (committed ones, for
	// transactional writers), both counted in Kafka, so that a killed process loses none of
	// them. An output stream that several entities write counts in each of them.
	In, Out int64
	// Counted says that In and Out are complete: the runner read the streams up to the offsets
	// they count to (it is behind, briefly, when much was written).
	Counted bool
	// CountErr says why In and Out are unknown.
	CountErr error
	// DeadLettered counts records over all replicas and restarts, as the I/O sidecars report
	// them (dead-letter topics are shared by every entity reading a stream); a sidecar killed
	// between two measurements takes what it dead-lettered since the last one with it.
	DeadLettered int64
	// Lag is the records of the inputs not yet committed by the entity's consumer group.
	Lag int64
	// LagErr says why Lag is unknown.
	LagErr error
}

// Progress returns the progress of every entity, producers first.
func (r *Runner) Progress(ctx context.Context) []EntityProgress {
	r.mu.Lock()
	order := append([]string(nil), r.order...)
	reps := map[string][]*replica{}
	for k, v := range r.replicas {
		reps[k] = append([]*replica(nil), v...)
	}
	r.mu.Unlock()
	var out []EntityProgress
	for _, name := range order {
		ep := EntityProgress{Entity: name, Replicas: len(reps[name])}
		for _, rep := range reps[name] {
			up := true
			for _, p := range rep.processes {
				up = up && p.Running()
				ep.Restarts += p.Restarts()
				if p.metricsURL == "" {
					continue
				}
				totals := p.counters.total()
				if p.Running() {
					sctx, cancel := context.WithTimeout(ctx, metricsScrapeTimout)
					if m, err := scrape(sctx, p.metricsURL); err == nil {
						totals = p.counters.observe(m, p.Restarts())
					}
					cancel()
				}
				ep.DeadLettered += int64(totals[metricDeadLettered])
			}
			if up {
				ep.Running++
			}
		}
		ep.In, ep.Out, ep.Counted, ep.CountErr = r.recordCounts(ctx, name, countWait)
		ep.Lag, ep.LagErr = r.lag(ctx, name)
		out = append(out, ep)
	}
	return out
}

// lag is the number of records of an entity's inputs past its group's committed offsets.
func (r *Runner) lag(ctx context.Context, entityName string) (int64, error) {
	e := entity(r.p, entityName)
	var topics []string
	for _, in := range e.Inputs {
		topics = append(topics, render.TopicName(r.p, in))
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	group := render.GroupID(r.p, entityName)
	committed, err := r.admin.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("fetch the offsets of group %s: %w", group, err)
	}
	ends, err := r.admin.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := r.admin.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("list start offsets: %w", err)
	}
	var lag int64
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(end.Topic, end.Partition); ok {
			from = s.Offset
		}
		if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.At >= 0 {
			from = max(from, c.At)
		}
		lag += max(end.Offset-from, 0)
	})
	return lag, nil
}

// Idle reports whether every entity has committed everything of its inputs, checking
// producers before their consumers so that a producer's last outputs count in its consumers' lag.
func Idle(progress []EntityProgress) bool {
	for _, ep := range progress {
		if ep.LagErr != nil || ep.Lag != 0 || ep.Running != ep.Replicas || !ep.Counted {
			return false
		}
	}
	return true
}

// WaitIdle returns once the Pipeline is idle (every input consumed and committed, lag 0 for
// every entity) on two checks in a row, calling report with each check's progress.
func (r *Runner) WaitIdle(ctx context.Context, interval time.Duration, report func([]EntityProgress)) error {
	streak := 0
	for {
		progress := r.Progress(ctx)
		if report != nil {
			report(progress)
		}
		if Idle(progress) {
			streak++
			if streak >= 2 {
				return nil
			}
		} else {
			streak = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
