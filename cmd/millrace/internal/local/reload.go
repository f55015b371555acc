package local

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Reload applies a changed Pipeline to the running replicas the way the operator applies it to
// pods: each replica's executor.json is rewritten, and the sidecars and the function pick the new
// configuration up without a restart (hot reload). Changes that need other processes or topics
// (entities, streams, replicas, functions) are refused: restart the run to apply them. It returns
// the replicas whose configuration changed.
func (r *Runner) Reload(p *v1alpha1.Pipeline) ([]string, error) {
	if err := sameShape(r.p, p); err != nil {
		return nil, fmt.Errorf("%w: restart millrace run to apply it", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	type update struct {
		rep  *replica
		data []byte
	}
	var updates []update
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		cfg, err := r.executorConfig(p, e)
		if err != nil {
			return nil, err
		}
		for _, rep := range r.replicas[e.Name] {
			data, err := r.replicaConfig(cfg, rep)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(data, rep.config) {
				updates = append(updates, update{rep, data})
			}
		}
	}
	var changed []string
	for _, u := range updates {
		if err := writeConfig(filepath.Dir(u.rep.configPath), u.data); err != nil {
			return changed, err
		}
		u.rep.config = u.data
		changed = append(changed, fmt.Sprintf("%s-%d", u.rep.entity, u.rep.ordinal))
	}
	r.p = p.DeepCopy()
	return changed, nil
}

// sameShape says what differs between two Pipelines beyond what a running replica reloads.
func sameShape(old, p *v1alpha1.Pipeline) error {
	if old.Name != p.Name || old.Namespace != p.Namespace {
		return fmt.Errorf("the Pipeline is now %s/%s, not %s/%s", p.Namespace, p.Name, old.Namespace, old.Name)
	}
	if !slices.EqualFunc(old.Spec.Streams, p.Spec.Streams, func(a, b v1alpha1.Stream) bool {
		return a.Name == b.Name && a.TopicName == b.TopicName && a.Partitions == b.Partitions
	}) {
		return fmt.Errorf("the streams changed")
	}
	if len(old.Spec.Entities) != len(p.Spec.Entities) {
		return fmt.Errorf("the entities changed")
	}
	for i := range p.Spec.Entities {
		a, b := &old.Spec.Entities[i], &p.Spec.Entities[i]
		if a.Name != b.Name || !slices.Equal(a.Inputs, b.Inputs) || !slices.Equal(a.Outputs, b.Outputs) {
			return fmt.Errorf("the entities changed")
		}
		if Replicas(a) != Replicas(b) {
			return fmt.Errorf("the replicas of entity %s changed", b.Name)
		}
		if (a.State != nil && a.State.Enabled) != (b.State != nil && b.State.Enabled) {
			return fmt.Errorf("the state of entity %s changed", b.Name)
		}
		if !slices.Equal(a.Command, b.Command) {
			return fmt.Errorf("the command of entity %s changed", b.Name)
		}
	}
	return nil
}
