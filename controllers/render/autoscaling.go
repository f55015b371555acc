package render

import (
	"strconv"
	"strings"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// scaledObject has KEDA scale an entity's StatefulSet on the consumer lag of its group, with one
// kafka trigger per input topic (KEDA scales on the largest). The HPA that KEDA creates then owns
// the StatefulSet's replicas, which is why the rendered StatefulSet leaves them unset.
func scaledObject(p *v1alpha1.Pipeline, e *v1alpha1.Entity, cfg *config.Executor) *kedav1alpha1.ScaledObject {
	a := e.Autoscaling
	var triggers []kedav1alpha1.ScaleTriggers
	for _, in := range cfg.Inputs {
		triggers = append(triggers, kedav1alpha1.ScaleTriggers{
			Type: "kafka",
			Name: in.Stream,
			Metadata: map[string]string{
				"bootstrapServers":       strings.Join(cfg.Kafka.BootstrapServers, ","),
				"consumerGroup":          cfg.GroupID,
				"topic":                  in.Topic,
				"lagThreshold":           strconv.FormatInt(a.LagThreshold, 10),
				"activationLagThreshold": strconv.FormatInt(a.ActivationLagThreshold, 10),
				// The executors' policy: a new group starts at the earliest offset, so all of the
				// topic counts as lag and wakes the entity from zero.
				"offsetResetPolicy": cfg.OffsetReset,
			},
		})
	}
	meta := objectMeta(p, ScaledObjectName(p, e.Name), EntityLabels(p, e.Name))
	if p.Spec.Suspend {
		// Pausing at zero keeps the ScaledObject (and its HPA's history) while the pipeline is
		// suspended; removing the annotation resumes scaling.
		meta.Annotations = map[string]string{AnnotationPausedReplicas: "0"}
	}
	return &kedav1alpha1.ScaledObject{
		TypeMeta:   metav1.TypeMeta{APIVersion: kedav1alpha1.SchemeGroupVersion.String(), Kind: "ScaledObject"},
		ObjectMeta: meta,
		Spec: kedav1alpha1.ScaledObjectSpec{
			ScaleTargetRef: &kedav1alpha1.ScaleTarget{
				APIVersion: "apps/v1",
				Kind:       "StatefulSet",
				Name:       StatefulSetName(p, e.Name),
			},
			PollingInterval: ptr.To(a.PollingInterval),
			CooldownPeriod:  ptr.To(a.CooldownPeriod),
			MinReplicaCount: ptr.To(ptr.Deref(a.MinReplicas, defaultMinReplicas)),
			MaxReplicaCount: ptr.To(a.MaxReplicas),
			Triggers:        triggers,
		},
	}
}
