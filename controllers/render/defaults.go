package render

import (
	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Defaults of the Pipeline API. They repeat the +kubebuilder:default markers of the API types:
// a Pipeline the CLI reads from a file never went through the API server, so render has to fill
// the same defaults itself to render it exactly as the operator would.
const (
	defaultPartitions         int32 = 1
	defaultReplicas           int32 = 1
	defaultMinReplicas        int32 = 0
	defaultLagThreshold       int64 = 100
	defaultPollingInterval    int32 = 10
	defaultCooldownPeriod     int32 = 120
	defaultMonitoringInterval       = "15s"
)

// withDefaults returns a deep copy of p with every zero field that has a CRD default set to it.
func withDefaults(in *v1alpha1.Pipeline) *v1alpha1.Pipeline {
	p := in.DeepCopy()
	if p.Namespace == "" {
		p.Namespace = namespaceOf(p)
	}
	k := &p.Spec.Kafka
	if k.Topics == "" {
		k.Topics = v1alpha1.TopicsStrimzi
	}
	if k.Authentication != nil && k.Authentication.Type == "" {
		k.Authentication.Type = v1alpha1.AuthNone
	}
	for i := range p.Spec.Streams {
		s := &p.Spec.Streams[i]
		if s.Partitions == 0 {
			s.Partitions = defaultPartitions
		}
		if s.DeletionPolicy == "" {
			s.DeletionPolicy = v1alpha1.DeletionRetain
		}
	}
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		if e.Guarantee == "" {
			e.Guarantee = v1alpha1.AtLeastOnce
		}
		if a := e.Autoscaling; a != nil {
			if a.MinReplicas == nil {
				m := defaultMinReplicas
				a.MinReplicas = &m
			}
			if a.LagThreshold == 0 {
				a.LagThreshold = defaultLagThreshold
			}
			if a.PollingInterval == 0 {
				a.PollingInterval = defaultPollingInterval
			}
			// A pointer: an explicit 0 (scale to zero at once) is kept.
			if a.CooldownPeriod == nil {
				c := defaultCooldownPeriod
				a.CooldownPeriod = &c
			}
		}
		if e.Assignment != nil && e.Assignment.Mode == "" {
			e.Assignment.Mode = v1alpha1.AssignmentGroup
		}
		if e.State != nil && e.State.Backend == "" {
			e.State.Backend = v1alpha1.StateMemory
		}
	}
	if m := p.Spec.Monitoring; m != nil && m.Interval == "" {
		m.Interval = defaultMonitoringInterval
	}
	return p
}
