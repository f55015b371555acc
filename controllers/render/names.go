package render

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Name limits. Every name render makes is at most 63 characters, and a DNS-1035 label (valid
// for every kind, a Service name being the strictest) except KafkaTopic names of dead-letter
// and changelog topics and the kafka-client ConfigMap, which are DNS subdomains so that their
// suffix cannot collide with a stream's or entity's name.
const (
	// maxNameLength is the DNS label limit.
	maxNameLength = validation.DNS1035LabelMaxLength
	// maxStatefulSetNameLength keeps the controller-revision-hash label that the StatefulSet
	// controller puts on each pod (<name>-<10 character hash>) within the 63-character label value
	// limit; longer StatefulSet names create pods that cannot be labelled.
	maxStatefulSetNameLength = 52
	// hashLength is the hex characters of the suffix that keeps shortened names unique.
	hashLength = 8
	// maxKafkaTopicLength is Kafka's own limit on topic names.
	maxKafkaTopicLength = 249
)

// Label keys and values that mark what Millrace manages.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelComponent = "app.kubernetes.io/component"

	LabelPipeline = v1alpha1.LabelPipeline
	LabelEntity   = v1alpha1.LabelEntity
	LabelStream   = v1alpha1.LabelStream

	// ValueName is the app.kubernetes.io/name of every child.
	ValueName = "millrace"
	// ValueManagedBy is the app.kubernetes.io/managed-by of every child.
	ValueManagedBy = "millrace-operator"

	// ComponentExecutor marks an entity's executor objects.
	ComponentExecutor = "executor"
	// ComponentTopic marks KafkaTopics.
	ComponentTopic = "topic"
	// ComponentMonitoring marks the ServiceMonitor and PrometheusRule.
	ComponentMonitoring = "monitoring"
	// ComponentUser marks the KafkaUser.
	ComponentUser = "user"
)

// AnnotationPodTemplateHash, on an executor pod template, is a hash of everything whose change
// needs the pods restarted. Changes that the executor hot-reloads through the mounted ConfigMap
// (the entity's config and its Static assignment) are left out, so they never restart pods.
const AnnotationPodTemplateHash = "streaming.millrace.dev/pod-template-hash"

// AnnotationKeptReplicas, on an entity's StatefulSet, is the replica count the entity kept when
// it stopped being autoscaled without stating replicas: taking spec.replicas back from the
// autoscaler keeps the pods that run, and this annotation keeps that count on later reconciles,
// until the spec states replicas again.
const AnnotationKeptReplicas = "streaming.millrace.dev/kept-replicas"

// AnnotationAutoscaled, on an entity's StatefulSet, says that an autoscaler owns its
// spec.replicas; when the entity stops being autoscaled without stating replicas, the operator
// takes the field back at the autoscaler's count (AnnotationKeptReplicas).
const AnnotationAutoscaled = "streaming.millrace.dev/autoscaled"

// AnnotationRemoval, on an entity's StatefulSet (not its pod template: a change restarts no
// pod), is the entity's removal policy as JSON ({"drain":true,"consumerGroup":"Delete"}), set
// only when removing the entity retires it (RemovalSpec.Retires). The entity is gone from the
// spec when it is removed, so the policy travels with its children, where prune finds it.
const AnnotationRemoval = "streaming.millrace.dev/removal"

// AnnotationPausedReplicas pauses a KEDA ScaledObject at a fixed replica count.
const AnnotationPausedReplicas = "autoscaling.keda.sh/paused-replicas"

// dnsName joins parts with "-" into a DNS-1035 label of at most limit characters. A name that is
// already valid is returned as is, so common names stay readable. Otherwise it is made valid
// (lowercased, invalid characters replaced, prefixed by a letter when it does not start with one)
// and shortened, and a hash of the unmodified parts is appended so that two different inputs
// never collapse to one name.
func dnsName(limit int, parts ...string) string {
	joined := strings.Join(parts, "-")
	if len(joined) <= limit && len(validation.IsDNS1035Label(joined)) == 0 {
		return joined
	}
	var b strings.Builder
	for _, r := range strings.ToLower(joined) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	clean := b.String()
	if clean == "" || clean[0] < 'a' || clean[0] > 'z' {
		clean = "m" + clean
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	suffix := hex.EncodeToString(sum[:])[:hashLength]
	keep := limit - hashLength - 1
	if len(clean) > keep {
		clean = clean[:keep]
	}
	clean = strings.TrimRight(clean, "-")
	return clean + "-" + suffix
}

// kafkaTopicName shortens a Kafka topic name that a suffix pushed over Kafka's limit, keeping it
// unique with a hash.
func kafkaTopicName(name string) string {
	if len(name) <= maxKafkaTopicLength {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:maxKafkaTopicLength-hashLength-1] + "-" + hex.EncodeToString(sum[:])[:hashLength]
}

// StatefulSetName is the name of an entity's StatefulSet: <pipeline>-<entity>.
func StatefulSetName(p *v1alpha1.Pipeline, entity string) string {
	return dnsName(maxStatefulSetNameLength, p.Name, entity)
}

// ConfigMapName is the name of the ConfigMap holding an entity's executor.json. It equals the
// StatefulSet name: one name per entity is easier to find with kubectl.
func ConfigMapName(p *v1alpha1.Pipeline, entity string) string { return StatefulSetName(p, entity) }

// ServiceName is the name of an entity's headless Service, which is also the StatefulSet's
// serviceName (the pods' DNS subdomain).
func ServiceName(p *v1alpha1.Pipeline, entity string) string { return StatefulSetName(p, entity) }

// ScaledObjectName is the name of an entity's KEDA ScaledObject.
func ScaledObjectName(p *v1alpha1.Pipeline, entity string) string { return StatefulSetName(p, entity) }

// KafkaTopicName is the metadata.name of a stream's Strimzi KafkaTopic: <pipeline>-<stream>.
// The Kafka topic name itself is in spec.topicName (see TopicName).
func KafkaTopicName(p *v1alpha1.Pipeline, stream string) string {
	return dnsName(maxNameLength, p.Name, stream)
}

// DeadLetterKafkaTopicName is the metadata.name of the KafkaTopic of a stream's dead-letter
// topic: <pipeline>-<stream>.dlq. The "." cannot occur in a stream name, so no stream's
// KafkaTopic (stream "x-dlq", say) can collide with it.
func DeadLetterKafkaTopicName(p *v1alpha1.Pipeline, stream string) string {
	return dnsName(maxNameLength-len(".dlq"), p.Name, stream) + ".dlq"
}

// ChangelogKafkaTopicName is the metadata.name of the KafkaTopic of an entity's state
// changelog: <pipeline>-<entity>.changelog (a DNS subdomain, like every KafkaTopic name).
func ChangelogKafkaTopicName(p *v1alpha1.Pipeline, entity string) string {
	return dnsName(maxNameLength-len(".changelog"), p.Name, entity) + ".changelog"
}

// KafkaUserName is the name of the pipeline's Strimzi KafkaUser. Strimzi uses it as the Kafka
// user name and as the name of the Secret holding the credentials.
func KafkaUserName(p *v1alpha1.Pipeline) string {
	return dnsName(maxNameLength, p.Name, "executor")
}

// TriggerAuthenticationName is the name of the KEDA TriggerAuthentication holding the pipeline's
// Kafka credentials for the kafka scaler.
func TriggerAuthenticationName(p *v1alpha1.Pipeline) string {
	return dnsName(maxNameLength, p.Name, "kafka")
}

// KafkaClientConfigMapName is the name of the ConfigMap with the non-secret identity (the
// username) of the pipeline's Kafka user: <pipeline>.kafka-client, a DNS subdomain. The "."
// cannot occur in the name of an entity's ConfigMap (a DNS label), so no entity (one named
// "kafka-client", say) can collide with it.
func KafkaClientConfigMapName(p *v1alpha1.Pipeline) string {
	return dnsName(maxNameLength-len(".kafka-client"), p.Name) + ".kafka-client"
}

// ServiceMonitorName is the name of the pipeline's ServiceMonitor.
func ServiceMonitorName(p *v1alpha1.Pipeline) string { return dnsName(maxNameLength, p.Name) }

// PrometheusRuleName is the name of the pipeline's PrometheusRule.
func PrometheusRuleName(p *v1alpha1.Pipeline) string { return dnsName(maxNameLength, p.Name) }

// TopicName is the Kafka topic of a stream: spec.streams[].topicName, or
// <namespace>.<pipeline>.<stream>. The namespace and pipeline make default names unique in a
// Kafka cluster shared by many namespaces.
func TopicName(p *v1alpha1.Pipeline, stream string) string {
	for _, s := range p.Spec.Streams {
		if s.Name == stream && s.TopicName != "" {
			return s.TopicName
		}
	}
	return kafkaTopicName(namespaceOf(p) + "." + p.Name + "." + stream)
}

// DeadLetterTopicName is the Kafka topic receiving the records of topic that an entity could
// not process.
func DeadLetterTopicName(topic string) string { return kafkaTopicName(topic + ".dlq") }

// ChangelogTopicName is the compacted Kafka topic of an entity's state:
// <namespace>.<pipeline>.<entity>.changelog.
func ChangelogTopicName(p *v1alpha1.Pipeline, entity string) string {
	return kafkaTopicName(namespaceOf(p) + "." + p.Name + "." + entity + ".changelog")
}

// GroupID is the Kafka consumer group of an entity: <namespace>.<pipeline>.<entity>. Both
// assignment modes commit offsets to it, which is what KEDA measures lag against.
func GroupID(p *v1alpha1.Pipeline, entity string) string {
	return namespaceOf(p) + "." + p.Name + "." + entity
}

// TransactionalIDPrefix prefixes the transactional ids of an entity's ExactlyOnce producers
// (<namespace>.<pipeline>.<entity>.); a pod appends "-" and its ordinal. The KafkaUser grants
// the prefix, so it must match the ids of no other entity of any Pipeline:
//   - the trailing "." keeps entity "a" from matching the ids of entity "ab";
//   - a Pipeline's name may contain dots (namespaces and entity names cannot), so Pipeline "p"
//     with entity "e" and Pipeline "p.e" with entity "x" would give "ns.p.e." and "ns.p.e.x.":
//     the first a prefix of the second. The dots of the Pipeline's name are written "_", which
//     no Kubernetes name contains: every part of the prefix is then free of dots, the prefix
//     ends where <namespace>.<pipeline>.<entity>. ends, and no two entities share a prefix or
//     extend one another's. Names without dots (most) are unchanged.
//
// The consumer group (GroupID) keeps the dots: it is granted literally, and a literal group
// <namespace>.<pipeline>.<entity> is already unique (only its middle part can hold dots).
func TransactionalIDPrefix(p *v1alpha1.Pipeline, entity string) string {
	return namespaceOf(p) + "." + strings.ReplaceAll(p.Name, ".", "_") + "." + entity + "."
}

// namespaceOf is the Pipeline's namespace, or "default" for a Pipeline read from a file without
// one (the CLI renders those).
func namespaceOf(p *v1alpha1.Pipeline) string {
	if p.Namespace == "" {
		return "default"
	}
	return p.Namespace
}

// PipelineLabels are the labels of every child of the Pipeline.
func PipelineLabels(p *v1alpha1.Pipeline) map[string]string {
	return map[string]string{
		LabelName:      ValueName,
		LabelInstance:  p.Name,
		LabelManagedBy: ValueManagedBy,
		LabelPipeline:  p.Name,
	}
}

// EntityLabels are the labels of an entity's objects and pods.
func EntityLabels(p *v1alpha1.Pipeline, entity string) map[string]string {
	l := PipelineLabels(p)
	l[LabelComponent] = ComponentExecutor
	l[LabelEntity] = entity
	return l
}

// StreamLabels are the labels of a stream's KafkaTopics.
func StreamLabels(p *v1alpha1.Pipeline, stream string) map[string]string {
	l := PipelineLabels(p)
	l[LabelComponent] = ComponentTopic
	l[LabelStream] = stream
	return l
}

// SelectorLabels select an entity's pods. They are a StatefulSet's immutable selector, so they
// hold only what never changes for an entity.
func SelectorLabels(p *v1alpha1.Pipeline, entity string) map[string]string {
	return map[string]string{
		LabelPipeline: p.Name,
		LabelEntity:   entity,
	}
}
