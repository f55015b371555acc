package render

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// scaledObject has KEDA scale an entity's StatefulSet on the consumer lag of its group, with one
// kafka trigger per input topic (KEDA scales on the largest). The HPA that KEDA creates then owns
// the StatefulSet's replicas, which is why the rendered StatefulSet leaves them unset.
func scaledObject(p *v1alpha1.Pipeline, e *v1alpha1.Entity, cfg *config.Executor, f Facts) *kedav1alpha1.ScaledObject {
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
	if auth := triggerAuthentication(p, f); auth != nil {
		for i := range triggers {
			triggers[i].AuthenticationRef = &kedav1alpha1.AuthenticationRef{Name: auth.Name}
			for k, v := range triggerAuthMetadata(p, f) {
				triggers[i].Metadata[k] = v
			}
		}
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
			CooldownPeriod:  ptr.To(ptr.Deref(a.CooldownPeriod, defaultCooldownPeriod)),
			MinReplicaCount: ptr.To(ptr.Deref(a.MinReplicas, defaultMinReplicas)),
			MaxReplicaCount: ptr.To(a.MaxReplicas),
			Triggers:        triggers,
		},
	}
}

// triggerAuthMetadata is the part of KEDA's kafka trigger that says how to authenticate; the
// credentials themselves come from the TriggerAuthentication.
func triggerAuthMetadata(p *v1alpha1.Pipeline, f Facts) map[string]string {
	out := map[string]string{}
	if authType(p) == v1alpha1.AuthScramSha512 {
		out["sasl"] = "scram_sha512"
	}
	if useTLS(p, f) {
		out["tls"] = "enable"
	}
	return out
}

// triggerAuthentication gives KEDA's kafka scaler the executors' own credentials, so that it can
// read the consumer group's lag on a cluster that requires authentication. It is nil when the
// pipeline does not authenticate. Without it, the scaler could not connect and the entity would
// never scale.
//
// KEDA reads the scram username only from a TriggerAuthentication, and Strimzi's KafkaUser
// Secret carries no username key (the username is the KafkaUser's name), so for Strimzi users
// the username comes from the kafka-client ConfigMap rendered beside it.
func triggerAuthentication(p *v1alpha1.Pipeline, f Facts) *kedav1alpha1.TriggerAuthentication {
	secret := credentialsSecretName(p)
	var spec kedav1alpha1.TriggerAuthenticationSpec
	if useTLS(p, f) && authType(p) != v1alpha1.AuthTLS {
		// The listener encrypts: KEDA trusts the cluster CA, like the executors.
		spec.SecretTargetRef = []kedav1alpha1.AuthSecretTargetRef{{Parameter: "ca", Name: clusterCASecretName(p), Key: "ca.crt"}}
	}
	switch authType(p) {
	case v1alpha1.AuthScramSha512:
		spec.SecretTargetRef = append(spec.SecretTargetRef, kedav1alpha1.AuthSecretTargetRef{Parameter: "password", Name: secret, Key: "password"})
		if saslUsername(p) != "" {
			spec.ConfigMapTargetRef = []kedav1alpha1.AuthConfigMapTargetRef{{Parameter: "username", Name: KafkaClientConfigMapName(p), Key: "username"}}
		} else {
			spec.SecretTargetRef = append(spec.SecretTargetRef, kedav1alpha1.AuthSecretTargetRef{Parameter: "username", Name: secret, Key: "username"})
		}
	case v1alpha1.AuthTLS:
		caSecret, caKey := secret, "ca.crt"
		if p.Spec.Kafka.StrimziCluster != "" {
			caSecret = clusterCASecretName(p)
		}
		spec.SecretTargetRef = []kedav1alpha1.AuthSecretTargetRef{
			{Parameter: "ca", Name: caSecret, Key: caKey},
			{Parameter: "cert", Name: secret, Key: "user.crt"},
			{Parameter: "key", Name: secret, Key: "user.key"},
		}
	default:
		if len(spec.SecretTargetRef) == 0 {
			return nil
		}
	}
	return &kedav1alpha1.TriggerAuthentication{
		TypeMeta:   metav1.TypeMeta{APIVersion: kedav1alpha1.SchemeGroupVersion.String(), Kind: "TriggerAuthentication"},
		ObjectMeta: objectMeta(p, TriggerAuthenticationName(p), PipelineLabels(p)),
		Spec:       spec,
	}
}

// kafkaClientConfigMap publishes the non-secret identity of the pipeline's Kafka user, for KEDA.
func kafkaClientConfigMap(p *v1alpha1.Pipeline) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(p, KafkaClientConfigMapName(p), PipelineLabels(p)),
		Data:       map[string]string{"username": saslUsername(p)},
	}
}

// autoscalingObjects are the pipeline-level objects KEDA needs to authenticate, when some entity
// is scaled by KEDA on a cluster that requires authentication.
func autoscalingObjects(p *v1alpha1.Pipeline, f Facts) []client.Object {
	if !slices.ContainsFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return kedaScaled(&e, f) }) {
		return nil
	}
	auth := triggerAuthentication(p, f)
	if auth == nil {
		return nil
	}
	if len(auth.Spec.ConfigMapTargetRef) > 0 {
		return []client.Object{kafkaClientConfigMap(p), auth}
	}
	return []client.Object{auth}
}
