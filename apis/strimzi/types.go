// Package strimzi is the small typed subset of Strimzi's API that Millrace writes and reads:
// KafkaTopic, KafkaUser and the listeners of a Kafka's status. No Go module of Strimzi's API
// exists, so these types are written here from Strimzi's published CRDs.
//
// Strimzi serves kafka.strimzi.io/v1 from 1.0 and only v1beta2 before 0.49. The fields used
// here have the same shape in both, so one set of Go types is registered under both versions and
// an object's TypeMeta says which one it is.
// +kubebuilder:object:generate=true
// +kubebuilder:skip
package strimzi

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is Strimzi's API group.
const Group = "kafka.strimzi.io"

// Versions Millrace can write.
var (
	V1      = schema.GroupVersion{Group: Group, Version: "v1"}
	V1beta2 = schema.GroupVersion{Group: Group, Version: "v1beta2"}
)

// LabelCluster tells Strimzi's entity operators which Kafka cluster a KafkaTopic or KafkaUser
// belongs to.
const LabelCluster = "strimzi.io/cluster"

// AnnotationManaged set to "false" makes Strimzi's (unidirectional) Topic Operator leave a
// KafkaTopic's topic alone: it neither changes the topic to match the spec nor deletes it when the
// KafkaTopic is deleted.
const AnnotationManaged = "strimzi.io/managed"

// FinalizerTopicOperator is the finalizer the Topic Operator puts on each KafkaTopic it manages,
// and removes once it has deleted the topic in Kafka.
const FinalizerTopicOperator = "strimzi.io/topic-operator"

// AddToScheme registers the types under both served versions.
func AddToScheme(s *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{V1, V1beta2} {
		s.AddKnownTypes(gv, &KafkaTopic{}, &KafkaTopicList{}, &KafkaUser{}, &KafkaUserList{}, &Kafka{}, &KafkaList{})
		metav1.AddToGroupVersion(s, gv)
	}
	return nil
}

// KafkaTopic is a Strimzi KafkaTopic.
// +kubebuilder:object:root=true
type KafkaTopic struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              KafkaTopicSpec    `json:"spec,omitempty"`
	Status            *KafkaTopicStatus `json:"status,omitempty"`
}

// KafkaTopicSpec is the desired topic.
type KafkaTopicSpec struct {
	TopicName  string            `json:"topicName,omitempty"`
	Partitions *int32            `json:"partitions,omitempty"`
	Replicas   *int32            `json:"replicas,omitempty"`
	Config     map[string]string `json:"config,omitempty"`
}

// KafkaTopicStatus is what Strimzi's topic operator reports.
type KafkaTopicStatus struct {
	Conditions         []Condition `json:"conditions,omitempty"`
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	TopicName          string      `json:"topicName,omitempty"`
	TopicID            string      `json:"topicId,omitempty"`
}

// KafkaTopicList is a list of KafkaTopics.
// +kubebuilder:object:root=true
type KafkaTopicList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KafkaTopic `json:"items"`
}

// KafkaUser is a Strimzi KafkaUser.
// +kubebuilder:object:root=true
type KafkaUser struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              KafkaUserSpec    `json:"spec,omitempty"`
	Status            *KafkaUserStatus `json:"status,omitempty"`
}

// KafkaUserSpec is the desired user.
type KafkaUserSpec struct {
	Authentication *KafkaUserAuthentication `json:"authentication,omitempty"`
	Authorization  *KafkaUserAuthorization  `json:"authorization,omitempty"`
}

// KafkaUserAuthentication is the user's authentication: "scram-sha-512" or "tls".
type KafkaUserAuthentication struct {
	Type string `json:"type"`
}

// KafkaUserAuthorization holds simple ACLs.
type KafkaUserAuthorization struct {
	Type string `json:"type"`
	ACLs []ACL  `json:"acls,omitempty"`
}

// ACL is one simple ACL rule.
type ACL struct {
	Resource   ACLResource `json:"resource"`
	Operations []string    `json:"operations,omitempty"`
	Host       string      `json:"host,omitempty"`
	Type       string      `json:"type,omitempty"`
}

// ACLResource is what an ACL applies to: a topic, group, cluster or transactionalId, by literal
// name or prefix.
type ACLResource struct {
	Type        string `json:"type"`
	Name        string `json:"name,omitempty"`
	PatternType string `json:"patternType,omitempty"`
}

// KafkaUserStatus is what Strimzi's user operator reports.
type KafkaUserStatus struct {
	Conditions         []Condition `json:"conditions,omitempty"`
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
	Username           string      `json:"username,omitempty"`
	Secret             string      `json:"secret,omitempty"`
}

// KafkaUserList is a list of KafkaUsers.
// +kubebuilder:object:root=true
type KafkaUserList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []KafkaUser `json:"items"`
}

// Kafka is the part of a Strimzi Kafka that Millrace reads: its status listeners.
// +kubebuilder:object:root=true
type Kafka struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            *KafkaStatus `json:"status,omitempty"`
}

// KafkaStatus is the observed state of a Kafka cluster.
type KafkaStatus struct {
	Conditions []Condition      `json:"conditions,omitempty"`
	Listeners  []ListenerStatus `json:"listeners,omitempty"`
	ClusterID  string           `json:"clusterId,omitempty"`
}

// ListenerStatus is one listener's addresses.
type ListenerStatus struct {
	Name             string `json:"name,omitempty"`
	BootstrapServers string `json:"bootstrapServers,omitempty"`
}

// KafkaList is a list of Kafkas.
// +kubebuilder:object:root=true
type KafkaList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Kafka `json:"items"`
}

// Condition is a Strimzi status condition.
type Condition struct {
	Type               string `json:"type,omitempty"`
	Status             string `json:"status,omitempty"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
}

// IsReady reports whether conditions hold Ready=True.
func IsReady(conds []Condition) bool {
	for _, c := range conds {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}
