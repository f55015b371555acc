package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TopicManagement says who creates the Kafka topics of the streams.
// +kubebuilder:validation:Enum=Strimzi;Direct;Unmanaged
type TopicManagement string

const (
	// TopicsStrimzi has the operator create one Strimzi KafkaTopic per stream.
	TopicsStrimzi TopicManagement = "Strimzi"
	// TopicsDirect has the operator create topics with the Kafka admin API.
	TopicsDirect TopicManagement = "Direct"
	// TopicsUnmanaged means the topics exist already; the operator never creates or deletes them.
	TopicsUnmanaged TopicManagement = "Unmanaged"
)

// AuthenticationType is how executors authenticate to Kafka.
// +kubebuilder:validation:Enum=none;scram-sha-512;tls
type AuthenticationType string

const (
	AuthNone        AuthenticationType = "none"
	AuthScramSha512 AuthenticationType = "scram-sha-512"
	AuthTLS         AuthenticationType = "tls"
)

// DeletionPolicy says what happens to a stream's topic when the stream or the Pipeline is deleted.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionRetain keeps the topic and its data.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete deletes the topic and its data.
	DeletionDelete DeletionPolicy = "Delete"
)

// AssignmentMode says how input partitions reach the pods of an entity.
// +kubebuilder:validation:Enum=Group;Static
type AssignmentMode string

const (
	// AssignmentGroup uses the Kafka consumer group protocol.
	AssignmentGroup AssignmentMode = "Group"
	// AssignmentStatic has the operator assign partitions to pod ordinals, without rebalances.
	AssignmentStatic AssignmentMode = "Static"
)

// Guarantee is the delivery guarantee of an entity.
// +kubebuilder:validation:Enum=AtLeastOnce;ExactlyOnce
type Guarantee string

const (
	AtLeastOnce Guarantee = "AtLeastOnce"
	ExactlyOnce Guarantee = "ExactlyOnce"
)

// ConsumerGroupPolicy says what happens to a removed entity's consumer group.
// +kubebuilder:validation:Enum=Keep;Delete
type ConsumerGroupPolicy string

const (
	// ConsumerGroupKeep keeps the group and its committed offsets in Kafka.
	ConsumerGroupKeep ConsumerGroupPolicy = "Keep"
	// ConsumerGroupDelete deletes the group (and its committed offsets) once the entity's pods
	// have left it.
	ConsumerGroupDelete ConsumerGroupPolicy = "Delete"
)

// StateBackend is where the state sidecar keeps state between changelog writes.
// +kubebuilder:validation:Enum=Memory;Pebble
type StateBackend string

const (
	StateMemory StateBackend = "Memory"
	StatePebble StateBackend = "Pebble"
)

// StartPosition is where an entity begins to read an input its consumer group has never
// committed offsets for.
// +kubebuilder:validation:Enum=Earliest;Latest;Timestamp;Entity
type StartPosition string

const (
	// StartEarliest reads the input from its first retained record (the default).
	StartEarliest StartPosition = "Earliest"
	// StartLatest skips the records the input holds when the entity first reads it.
	StartLatest StartPosition = "Latest"
	// StartTimestamp reads the input from its first record at or after a timestamp.
	StartTimestamp StartPosition = "Timestamp"
	// StartEntity takes the input over from another entity: it is read from where that
	// entity's consumer group stopped reading it (inserting a stage in front of an entity).
	StartEntity StartPosition = "Entity"
)

// InputStart is the start position of one input of an entity.
// +kubebuilder:validation:XValidation:rule="(self.position == 'Timestamp') == has(self.timestamp)",message="spec.entities[].start[].timestamp is required when position is Timestamp, and only then"
// +kubebuilder:validation:XValidation:rule="(self.position == 'Entity') == has(self.entity)",message="spec.entities[].start[].entity is required when position is Entity, and only then"
type InputStart struct {
	// Stream is one of the entity's inputs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Stream string `json:"stream"`

	// Position is Earliest, Latest, Timestamp or Entity. It applies only to a topic on which the
	// entity's consumer group has no committed offset at all (an added entity, an input added
	// to a running entity); once the group has committed offsets for the topic, they win, and a
	// partition added to the topic later is read from its earliest record so that nothing
	// written to it is skipped.
	Position StartPosition `json:"position"`

	// Timestamp, with position Timestamp: the input is read from the first record of each
	// partition whose timestamp is at or after it (the end of a partition that has none).
	// +optional
	Timestamp *metav1.Time `json:"timestamp,omitempty"`

	// Entity, with position Entity, names the entity (of this Pipeline, present or removed in
	// the same change) that read the stream until now: this entity's pods wait until no pod of
	// that entity's consumer group reads the stream any more, then start each partition at
	// that group's final committed offset (its earliest record where that group committed
	// none). Inserting a stage X between A -> s1 -> B is one change: X reads s1 with start
	// {stream: s1, position: Entity, entity: B} and writes s2, and B reads s2 instead of s1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Entity string `json:"entity,omitempty"`
}

// PipelineSpec is the topology of a Pipeline: its streams, the entities between them, and how they
// reach Kafka.
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, e.inputs.all(s, self.streams.exists(t, t.name == s)))",message="spec.entities[].inputs must name streams declared in spec.streams"
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, !has(e.outputs) || e.outputs.all(s, self.streams.exists(t, t.name == s)))",message="spec.entities[].outputs must name streams declared in spec.streams"
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, !has(e.autoscaling) || !has(e.autoscaling.maxReplicas) || e.autoscaling.maxReplicas <= self.streams.filter(t, t.name in e.inputs).map(t, t.partitions).sum())",message="spec.entities[].autoscaling.maxReplicas must not exceed the total partitions of the entity's input streams (extra consumers would idle)"
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, !has(e.assignment) || e.assignment.mode != 'Static' || self.streams.filter(t, t.name in e.inputs).all(a, self.streams.filter(t, t.name in e.inputs).all(b, a.partitions == b.partitions)))",message="spec.entities[].assignment: Static assignment requires co-partitioned inputs (equal partitions on every input stream)"
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, !has(e.assignment) || !has(e.assignment.partitions) || self.streams.all(t, !(t.name in e.inputs) || e.assignment.partitions.map(l, size(l)).sum() == t.partitions))",message="spec.entities[].assignment.partitions must cover each input partition exactly once"
// +kubebuilder:validation:XValidation:rule="self.entities.all(e, !has(e.start) || e.start.all(s, !has(s.entity) || self.entities.exists(o, o.name == s.entity) || !oldSelf.entities.exists(o, o.name == s.entity && has(o.removal) && has(o.removal.consumerGroup) && o.removal.consumerGroup == 'Delete')))",message="spec.entities[].start[].entity names an entity removed with removal.consumerGroup: Delete, which deletes the committed offsets the input would start from; remove it with consumerGroup: Keep"
// +kubebuilder:validation:XValidation:rule="self.streams.all(s, !oldSelf.streams.exists(o, o.name == s.name && o.partitions < s.partitions) || !self.entities.exists(e, s.name in e.inputs && has(e.state) && e.state.enabled))",message="spec.streams[].partitions: a stream read by an entity with state.enabled cannot get more partitions: its keys would move to other partitions and the entity's state, kept per input partition, cannot follow them yet (create a new stream with more partitions and a new entity instead)"
type PipelineSpec struct {
	// Kafka says how to reach Kafka and who manages topics.
	Kafka KafkaSpec `json:"kafka"`

	// Streams are the named Kafka topics of the pipeline.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Streams []Stream `json:"streams"`

	// Entities are the stages of the pipeline, each running a user function.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	Entities []Entity `json:"entities"`

	// Monitoring configures ServiceMonitors, alert rules and dashboards for the pipeline.
	// +optional
	Monitoring *MonitoringSpec `json:"monitoring,omitempty"`

	// RevisionHistoryLimit is how many ControllerRevisions of the spec are kept for rollback.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`

	// Suspend stops processing without losing anything: executors scale to zero, topics, offsets
	// and state stay. Setting it back to false resumes where processing stopped.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// KafkaSpec says how the pipeline reaches Kafka.
// +kubebuilder:validation:XValidation:rule="self.topics != 'Strimzi' || (has(self.strimziCluster) && size(self.strimziCluster) > 0)",message="spec.kafka.strimziCluster is required when spec.kafka.topics is Strimzi"
// +kubebuilder:validation:XValidation:rule="(has(self.strimziCluster) && size(self.strimziCluster) > 0) || (has(self.bootstrapServers) && size(self.bootstrapServers) > 0)",message="spec.kafka: set strimziCluster or bootstrapServers"
// +kubebuilder:validation:XValidation:rule="!has(self.authentication) || self.authentication.type == 'none' || (has(self.strimziCluster) && size(self.strimziCluster) > 0) || (has(self.authentication.secretName) && size(self.authentication.secretName) > 0)",message="spec.kafka.authentication.secretName is required when authenticating without a Strimzi cluster"
// +kubebuilder:validation:XValidation:rule="!has(self.authentication) || !has(self.authentication.adminSecretName) || (self.topics == 'Direct' && self.authentication.type != 'none')",message="spec.kafka.authentication.adminSecretName is only used with spec.kafka.topics: Direct and an authentication type other than none (it holds the credentials of the operator's own Kafka admin client)"
type KafkaSpec struct {
	// StrimziCluster names a Strimzi Kafka in the Pipeline's namespace. Topics and users are
	// labelled for it and the bootstrap address is read from its status.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	StrimziCluster string `json:"strimziCluster,omitempty"`

	// BootstrapServers is a comma-separated list of host:port, used when no Strimzi cluster is
	// named, or to override the address read from it.
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[^,\s]+(,[^,\s]+)*$`
	// +optional
	BootstrapServers string `json:"bootstrapServers,omitempty"`

	// Topics says who creates the topics: Strimzi KafkaTopics, the operator through the Kafka admin
	// API (Direct), or nobody because they exist (Unmanaged).
	// +kubebuilder:default=Strimzi
	// +optional
	Topics TopicManagement `json:"topics,omitempty"`

	// Authentication of the executors to Kafka.
	// +optional
	Authentication *KafkaAuthentication `json:"authentication,omitempty"`
}

// KafkaAuthentication configures client authentication.
type KafkaAuthentication struct {
	// Type of authentication. With a Strimzi cluster the operator creates a KafkaUser whose ACLs
	// are scoped to this pipeline's topics, groups and transactional ids.
	// +kubebuilder:default=none
	Type AuthenticationType `json:"type"`

	// SecretName names a Secret holding the credentials when no Strimzi cluster is used:
	// `username` and `password` for scram-sha-512; `ca.crt`, `user.crt` and `user.key` for tls.
	// With Strimzi it defaults to the KafkaUser's Secret.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// AdminSecretName names a Secret in the Pipeline's namespace with the credentials of the
	// operator's own Kafka admin client, which creates, grows and deletes the topics when
	// spec.kafka.topics is Direct; same keys as secretName. Unset, the operator uses the
	// executors' Secret (secretName, or the KafkaUser's, whose ACLs do not allow creating
	// topics). Its user needs Create, Alter, Describe and Delete on the Pipeline's topics. The
	// operator reads only this Secret (and, on an encrypting Strimzi listener, the cluster CA
	// Secret), when it calls Kafka; it never caches Secrets.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	AdminSecretName string `json:"adminSecretName,omitempty"`
}

// Stream is a named Kafka topic.
// +kubebuilder:validation:XValidation:rule="has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)",message="spec.streams[].topicName is immutable: create a new stream to read another topic"
type Stream struct {
	// Name of the stream, unique in the pipeline; a DNS label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// TopicName is the Kafka topic. It defaults to <namespace>.<pipeline>.<stream>; set it to read
	// or write an existing topic. It cannot change once set.
	// +kubebuilder:validation:MaxLength=249
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9._-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="spec.streams[].topicName must not be '.' or '..'"
	// +optional
	TopicName string `json:"topicName,omitempty"`

	// Partitions of the topic. Kafka cannot reduce them, so they never decrease.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:validation:XValidation:rule="self >= oldSelf",message="spec.streams[].partitions cannot decrease"
	// +optional
	Partitions int32 `json:"partitions,omitempty"`

	// Replicas of each partition; unset uses the broker's default.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32767
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Config holds Kafka topic configs, such as retention.ms.
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Config map[string]string `json:"config,omitempty"`

	// DeletionPolicy says whether deleting the stream or the Pipeline deletes the topic's data.
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// Entity is a stage: the user's function reading some streams and writing others.
// +kubebuilder:validation:XValidation:rule="!has(self.outputs) || self.outputs.all(o, !(o in self.inputs))",message="spec.entities[].outputs: an entity must not write a stream it reads"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || self.start.all(s, s.stream in self.inputs)",message="spec.entities[].start[].stream must be one of the entity's inputs"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || self.start.all(s, !has(s.entity) || s.entity != self.name)",message="spec.entities[].start[].entity must name another entity"
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="spec.entities[]: replicas and autoscaling are mutually exclusive"
// +kubebuilder:validation:XValidation:rule="!has(self.guarantee) || self.guarantee != 'ExactlyOnce' || (has(self.outputs) && size(self.outputs) > 0) || (has(self.state) && self.state.enabled)",message="spec.entities[].guarantee: ExactlyOnce requires outputs or state"
// +kubebuilder:validation:XValidation:rule="!has(self.assignment) || !has(self.assignment.partitions) || !has(self.autoscaling)",message="spec.entities[].assignment.partitions: explicit partition lists fix the parallelism and cannot be combined with autoscaling"
// +kubebuilder:validation:XValidation:rule="!has(self.assignment) || !has(self.assignment.partitions) || !has(self.replicas) || self.replicas == size(self.assignment.partitions)",message="spec.entities[].replicas must equal the number of lists in assignment.partitions"
type Entity struct {
	// Name of the entity, unique in the pipeline; a DNS label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// Image of the user's function container.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image"`

	// Command overrides the function container's entrypoint. `millrace run` uses it as the local
	// command of the function when no --function flag is given.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Command []string `json:"command,omitempty"`

	// Inputs are the streams the entity reads.
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Inputs []string `json:"inputs"`

	// Start says where the entity begins to read inputs its consumer group has no committed
	// offsets for; inputs not listed start at their earliest record.
	// +listType=map
	// +listMapKey=stream
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Start []InputStart `json:"start,omitempty"`

	// Outputs are the streams the entity writes.
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Outputs []string `json:"outputs,omitempty"`

	// Replicas is the fixed parallelism when autoscaling is absent; default 1.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// Autoscaling has KEDA scale the entity on its consumer lag, down to zero.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// Assignment says how input partitions reach the pods.
	// +optional
	Assignment *AssignmentSpec `json:"assignment,omitempty"`

	// Guarantee is the delivery guarantee.
	// +kubebuilder:default=AtLeastOnce
	// +optional
	Guarantee Guarantee `json:"guarantee,omitempty"`

	// State enables the state sidecar with a changelog topic.
	// +optional
	State *StateSpec `json:"state,omitempty"`

	// Config is the application configuration handed to the function; running pods hot-reload it.
	// +kubebuilder:validation:MaxProperties=128
	// +optional
	Config map[string]string `json:"config,omitempty"`

	// Resources of the function container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Env of the function container.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// Runtime tunes the entity's I/O sidecar (executor.json's runtime section).
	// +optional
	Runtime *EntityRuntime `json:"runtime,omitempty"`

	// Removal says what the operator does when the entity is removed from the spec: by default
	// its children are deleted at once and its consumer group stays. The policy in force is the
	// one of the last spec that had the entity (the operator records it on the StatefulSet).
	// +optional
	Removal *RemovalSpec `json:"removal,omitempty"`
}

// RemovalSpec is the removal policy of an entity.
type RemovalSpec struct {
	// Drain: when the entity is removed, its pods first process every record its inputs held
	// at the time of the removal (and commit), then stop; only then are its children deleted.
	// +kubebuilder:default=false
	// +optional
	Drain bool `json:"drain,omitempty"`
	// ConsumerGroup: Keep (the default) leaves the entity's consumer group and its committed
	// offsets in Kafka; Delete deletes the group once its pods have left it (after the drain).
	// +kubebuilder:default=Keep
	// +optional
	ConsumerGroup ConsumerGroupPolicy `json:"consumerGroup,omitempty"`
}

// Retires reports whether removing an entity with this policy retires it (drain or delete
// its group first) rather than deleting its children at once.
func (r *RemovalSpec) Retires() bool {
	return r != nil && (r.Drain || r.ConsumerGroup == ConsumerGroupDelete)
}

// EntityRuntime tunes how an entity's I/O sidecar takes part in its consumer group and when its
// liveness probe fails. Changing it rolls the entity's pods.
type EntityRuntime struct {
	// SessionTimeout bounds how long the partitions of a pod that died without leaving the
	// group (a crash, a SIGKILL, a lost node) wait before the group gives them to the other
	// pods; a Go duration such as 10s. In the classic group protocol (Static mode, and Group
	// mode before Kafka 4.0) it is the member's session timeout (default 10s), which the
	// broker accepts within group.min.session.timeout.ms..group.max.session.timeout.ms, 6s..30m
	// by default: hence the bounds here. Under KIP-848 the sidecar asks for it as the group's
	// consumer.session.timeout.ms, which the broker accepts only within
	// group.consumer.min.session.timeout.ms..group.consumer.max.session.timeout.ms (45s..60s by
	// default); otherwise the broker's group.consumer.session.timeout.ms (45s) applies.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('6s') && duration(self) <= duration('30m')",message="spec.entities[].runtime.sessionTimeout must be between 6s and 30m (the broker's default group.min.session.timeout.ms and group.max.session.timeout.ms)"
	// +optional
	SessionTimeout *metav1.Duration `json:"sessionTimeout,omitempty"`

	// LivenessTimeout is how long the I/O sidecar's processing loop may stand still while it
	// holds partitions before its liveness probe fails and the kubelet restarts it; default 2m.
	// The loop turns at least once per commit interval; it stands still only when what it
	// waits for does not come (the function's answer to a batch, the end of a transaction).
	// Raise it for a function whose batches really take longer. At least 30s, above the
	// transaction timeout (10s) that ending a transaction may take.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('1h')",message="spec.entities[].runtime.livenessTimeout must be between 30s and 1h"
	// +optional
	LivenessTimeout *metav1.Duration `json:"livenessTimeout,omitempty"`
}

// AutoscalingSpec configures KEDA's kafka scaler for an entity.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",message="spec.entities[].autoscaling.minReplicas must not exceed maxReplicas"
type AutoscalingSpec struct {
	// MinReplicas; zero lets KEDA scale the entity to zero when it has no lag.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// MaxReplicas; not above the total partitions of the entity's inputs.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	MaxReplicas int32 `json:"maxReplicas"`

	// LagThreshold is the target consumer lag per replica.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=1
	// +optional
	LagThreshold int64 `json:"lagThreshold,omitempty"`

	// ActivationLagThreshold is the lag above which the entity scales from zero.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +optional
	ActivationLagThreshold int64 `json:"activationLagThreshold,omitempty"`

	// PollingInterval in seconds.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +optional
	PollingInterval int32 `json:"pollingInterval,omitempty"`

	// CooldownPeriod in seconds before scaling to zero; 0 scales to zero as soon as the lag is
	// gone. A pointer, so that an explicit 0 is kept rather than taken for an omitted field.
	// +kubebuilder:default=120
	// +kubebuilder:validation:Minimum=0
	// +optional
	CooldownPeriod *int32 `json:"cooldownPeriod,omitempty"`
}

// PartitionList is the partitions one pod consumes.
// +listType=set
// +kubebuilder:validation:MaxItems=1024
// +kubebuilder:validation:items:Minimum=0
type PartitionList []int32

// AssignmentSpec says how input partitions reach pods.
// +kubebuilder:validation:XValidation:rule="!has(self.partitions) || self.mode == 'Static'",message="spec.entities[].assignment.partitions requires mode Static"
// +kubebuilder:validation:XValidation:rule="!has(self.partitions) || (self.partitions.flatten().distinct().size() == self.partitions.flatten().size() && (self.partitions.flatten().size() == 0 || self.partitions.flatten().max() < self.partitions.flatten().size()))",message="spec.entities[].assignment.partitions must cover each input partition exactly once"
type AssignmentSpec struct {
	// Mode is Group (the Kafka consumer group assigns) or Static (the operator assigns partitions
	// per pod ordinal, keeps the map sticky on scaling, and pods never rebalance).
	// +kubebuilder:default=Group
	Mode AssignmentMode `json:"mode"`

	// Partitions optionally fixes the Static map: item i lists the partitions, of every input
	// stream, that pod ordinal i consumes. The lists cover each partition exactly once.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Partitions []PartitionList `json:"partitions,omitempty"`
}

// StateSpec configures the state sidecar.
type StateSpec struct {
	// Enabled runs the state sidecar with a compacted changelog topic.
	Enabled bool `json:"enabled"`

	// Backend keeps state in memory or in Pebble on the pod's disk (for state larger than memory).
	// +kubebuilder:default=Memory
	// +optional
	Backend StateBackend `json:"backend,omitempty"`
}

// MonitoringSpec configures monitoring through the Prometheus Operator.
type MonitoringSpec struct {
	// Enabled renders a ServiceMonitor and alert rules for the pipeline. The Grafana dashboard
	// ships once with the operator and selects pipelines by label.
	// +kubebuilder:default=true
	Enabled bool `json:"enabled"`

	// Interval between scrapes.
	// +kubebuilder:default="15s"
	// Prometheus' duration format, the same pattern as the ServiceMonitor's: whole numbers of
	// y, w, d, h, m, s, ms in that order, such as 30s or 1m30s (no fractions: 1.5s is 1500ms).
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`
	// +optional
	Interval string `json:"interval,omitempty"`

	// Labels added to the ServiceMonitor and rules, so a Prometheus selects them.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
}

// Phase is the coarse state of a Pipeline.
// +kubebuilder:validation:Enum=Pending;Running;Degraded;Suspended;Failed
type Phase string

const (
	PhasePending   Phase = "Pending"
	PhaseRunning   Phase = "Running"
	PhaseDegraded  Phase = "Degraded"
	PhaseSuspended Phase = "Suspended"
	PhaseFailed    Phase = "Failed"
)

// PipelineStatus is what the operator observed of the pipeline.
type PipelineStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Phase is the coarse state.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// Conditions: Ready, TopicsReady, ExecutorsReady, AutoscalingReady, MonitoringReady,
	// ConfigApplied, Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// CurrentRevision is the ControllerRevision whose spec is fully rolled out.
	// +optional
	CurrentRevision string `json:"currentRevision,omitempty"`

	// UpdateRevision is the ControllerRevision of the current spec.
	// +optional
	UpdateRevision string `json:"updateRevision,omitempty"`

	// Entities is the status of each entity.
	// +listType=map
	// +listMapKey=name
	// +optional
	Entities []EntityStatus `json:"entities,omitempty"`

	// Streams is the status of each stream.
	// +listType=map
	// +listMapKey=name
	// +optional
	Streams []StreamStatus `json:"streams,omitempty"`

	// EntityCount is the number of entities, for the printer column.
	// +optional
	EntityCount int32 `json:"entityCount,omitempty"`

	// ReadyEntities is the number of entities whose executors are all ready, for the printer
	// column.
	// +optional
	ReadyEntities int32 `json:"readyEntities,omitempty"`

	// Retiring are the entities removed from the spec whose removal policy (drain, or delete
	// the consumer group) the operator is carrying out; their children go when it is done.
	// +listType=map
	// +listMapKey=entity
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Retiring []RetiringStatus `json:"retiring,omitempty"`
}

// RetiringStatus is the progress of the retirement of a removed entity.
type RetiringStatus struct {
	// Entity is the removed entity.
	Entity string `json:"entity"`
	// Phase: Pending (the retire section has not reached a running pod yet), Draining, Drained
	// (every input processed up to Since) or Deleted (the consumer group was deleted).
	Phase string `json:"phase"`
	// Remaining is how many input records the group has still to process before Since's
	// offsets, as its pods report it.
	// +optional
	Remaining int64 `json:"remaining,omitempty"`
	// Since is when the operator began the retirement: with drain, the inputs are processed up
	// to the offsets of that time.
	Since metav1.Time `json:"since"`
}

// Phases of RetiringStatus.
const (
	RetirePending  = "Pending"
	RetireDraining = "Draining"
	RetireDrained  = "Drained"
	RetireDeleted  = "Deleted"
)

// EntityStatus is the observed state of one entity.
type EntityStatus struct {
	Name string `json:"name"`
	// Replicas is the StatefulSet's current replicas.
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the StatefulSet's ready replicas.
	ReadyReplicas int32 `json:"readyReplicas"`
	// Partitions is the total partitions of the entity's inputs.
	Partitions int32 `json:"partitions"`
	// Autoscaling is "min-max" when KEDA scales the entity.
	// +optional
	Autoscaling string `json:"autoscaling,omitempty"`
	// Active reports whether KEDA sees lag above the activation threshold.
	// +optional
	Active *bool `json:"active,omitempty"`
	// Config says which configuration the entity's running pods applied, and which pods still
	// wait for a restart.
	// +optional
	Config *EntityConfigStatus `json:"config,omitempty"`
}

// EntityConfigStatus is what the running pods of an entity applied of its configuration. Each
// pod's I/O sidecar reports the digest of the executor.json its running session applied; the
// operator reads it through the API server (pods/proxy) and compares it with the ConfigMap's.
type EntityConfigStatus struct {
	// Digest identifies the entity's current executor.json: the first 16 hex digits of its
	// SHA-256.
	Digest string `json:"digest"`
	// Since is when the operator first rendered this Digest.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// AppliedPods is how many running pods report having applied Digest, with a ready session.
	AppliedPods int32 `json:"appliedPods"`
	// RunningPods is how many of the entity's pods are running.
	RunningPods int32 `json:"runningPods"`
	// Pods are the running pods, each with the configuration it applied.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1024
	// +optional
	Pods []PodConfigStatus `json:"pods,omitempty"`
	// PendingRestart is how many pods still run an older pod template: they restart in the
	// StatefulSet's rollout.
	// +optional
	PendingRestart int32 `json:"pendingRestart,omitempty"`
	// PendingRestartReason names the changes of the spec, in the reconfiguration contract's
	// words, that changed the pod template.
	// +optional
	PendingRestartReason string `json:"pendingRestartReason,omitempty"`
}

// PodConfigStatus is the configuration one pod applied.
type PodConfigStatus struct {
	Name string `json:"name"`
	// Applied is the Digest of the executor.json the pod's I/O sidecar applied; empty when the
	// sidecar could not be asked.
	// +optional
	Applied string `json:"applied,omitempty"`
	// Ready reports whether the sidecar's session with that configuration is ready.
	Ready bool `json:"ready"`
	// PendingRestart reports that the pod runs an older pod template.
	// +optional
	PendingRestart bool `json:"pendingRestart,omitempty"`
	// Error says why the sidecar could not be asked.
	// +optional
	Error string `json:"error,omitempty"`
}

// StreamStatus is the observed state of one stream.
type StreamStatus struct {
	Name string `json:"name"`
	// TopicName is the Kafka topic of the stream.
	TopicName string `json:"topicName"`
	// Ready reports whether the topic exists as specified.
	Ready bool `json:"ready"`
}

// Pipeline is a stream processing topology: streams (Kafka topics) and entities (user functions)
// between them, run by Millrace with Strimzi, KEDA and the Prometheus Operator.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mlp;pl,categories=millrace
// +kubebuilder:printcolumn:name="Entities",type=integer,JSONPath=`.status.entityCount`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyEntities`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters"
// +kubebuilder:validation:XValidation:rule="!self.metadata.name.contains('.') || self.spec.streams.all(s, (has(s.topicName) && size(s.topicName) > 0) || (s.name != 'changelog' && s.name != 'dlq'))",message="spec.streams[].name: a Pipeline whose name contains '.' cannot default the topic of a stream named 'changelog' or 'dlq' (<namespace>.<a>.<b>.changelog would be the changelog topic of entity <b> of Pipeline <a>, and <...>.dlq a dead-letter topic); rename the stream or set its topicName"
type Pipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PipelineSpec   `json:"spec"`
	Status PipelineStatus `json:"status,omitempty"`
}

// PipelineList is a list of Pipelines.
// +kubebuilder:object:root=true
type PipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Pipeline `json:"items"`
}

func init() {
	SchemeBuilder.Register(&Pipeline{}, &PipelineList{})
}
