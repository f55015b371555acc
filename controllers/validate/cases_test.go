package validate_test

import (
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// invalidCase is a Pipeline the API server must reject, with a part of the message it must give.
type invalidCase struct {
	reason string
	p      *v1alpha1.Pipeline
	want   string
}

// invalidCases is the table shared by the API server test and the offline Schema test: both must
// reject every Pipeline with the same message.
func invalidCases() []invalidCase {
	return []invalidCase{
		{
			reason: "stream names must be unique",
			p:      pipeline(func(p *v1alpha1.Pipeline) { p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "lines"}) }),
			want:   `spec.streams[3]: Duplicate value: {"name":"lines"}`,
		},
		{
			reason: "entity names must be unique",
			p: pipeline(func(p *v1alpha1.Pipeline) {
				p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "split", Image: "x", Inputs: []string{"lines"}})
			}),
			want: `spec.entities[2]: Duplicate value: {"name":"split"}`,
		},
		{
			reason: "stream names are DNS labels",
			p:      pipeline(stream("lines", func(s *v1alpha1.Stream) { s.Name = "Lines_1" })),
			want:   `spec.streams[0].name: Invalid value: "Lines_1": spec.streams[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`,
		},
		{
			reason: "entity names are DNS labels",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Name = "split.words" })),
			want:   `spec.entities[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`,
		},
		{
			reason: "topic names use Kafka's legal characters",
			p:      pipeline(stream("lines", func(s *v1alpha1.Stream) { s.TopicName = "lines/raw" })),
			want:   `spec.streams[0].topicName in body should match '^[a-zA-Z0-9._-]+$'`,
		},
		{
			reason: "topic name '..' is illegal in Kafka",
			p:      pipeline(stream("lines", func(s *v1alpha1.Stream) { s.TopicName = ".." })),
			want:   `spec.streams[0].topicName: Invalid value: "..": spec.streams[].topicName must not be '.' or '..'`,
		},
		{
			reason: "inputs must name declared streams",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Inputs = []string{"nosuch"} })),
			want:   `spec: Invalid value: spec.entities[].inputs must name streams declared in spec.streams`,
		},
		{
			reason: "outputs must name declared streams",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Outputs = []string{"nosuch"} })),
			want:   `spec: Invalid value: spec.entities[].outputs must name streams declared in spec.streams`,
		},
		{
			reason: "an entity must not read a stream it writes",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Outputs = []string{"lines", "words"} })),
			want:   `spec.entities[0]: Invalid value: spec.entities[].outputs: an entity must not write a stream it reads`,
		},
		{
			reason: "an entity needs at least one input",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Inputs = []string{} })),
			want:   `spec.entities[0].inputs: Invalid value: 0: spec.entities[0].inputs in body should have at least 1 items`,
		},
		{
			reason: "minReplicas must not exceed maxReplicas",
			p:      pipeline(entity("split", autoscaling(4, 2))),
			want:   `spec.entities[0].autoscaling: Invalid value: spec.entities[].autoscaling.minReplicas must not exceed maxReplicas`,
		},
		{
			reason: "maxReplicas must not exceed the input partitions",
			p:      pipeline(entity("split", autoscaling(0, 7))),
			want:   `spec: Invalid value: spec.entities[].autoscaling.maxReplicas must not exceed the total partitions of the entity's input streams (extra consumers would idle)`,
		},
		{
			reason: "ExactlyOnce needs outputs or state",
			p: pipeline(entity("split", func(e *v1alpha1.Entity) {
				e.Outputs = nil
				e.Guarantee = v1alpha1.ExactlyOnce
			})),
			want: `spec.entities[0]: Invalid value: spec.entities[].guarantee: ExactlyOnce requires outputs or state`,
		},
		{
			reason: "replicas and autoscaling are exclusive",
			p: pipeline(entity("split", func(e *v1alpha1.Entity) {
				e.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 3}
			})),
			want: `spec.entities[0]: Invalid value: spec.entities[]: replicas and autoscaling are mutually exclusive`,
		},
		{
			reason: "static lists must not repeat a partition",
			p: pipeline(entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {2, 3, 4, 5}}
			})),
			want: `spec.entities[1].assignment: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			reason: "static lists must cover every partition",
			p: pipeline(entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4}}
			})),
			want: `spec: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			reason: "static lists must name existing partitions",
			p: pipeline(entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4, 9}}
			})),
			want: `spec.entities[1].assignment: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			reason: "static lists need mode Static",
			p: pipeline(entity("split", func(e *v1alpha1.Entity) {
				e.Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentGroup, Partitions: []v1alpha1.PartitionList{{0, 1, 2, 3, 4, 5}}}
				e.Replicas = ptr.To[int32](1)
			})),
			want: `spec.entities[0].assignment: Invalid value: spec.entities[].assignment.partitions requires mode Static`,
		},
		{
			reason: "replicas must match the static lists",
			p: pipeline(entity("sum", func(e *v1alpha1.Entity) {
				e.Replicas = ptr.To[int32](3)
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4, 5}}
			})),
			want: `spec.entities[1]: Invalid value: spec.entities[].replicas must equal the number of lists in assignment.partitions`,
		},
		{
			reason: "static assignment needs co-partitioned inputs",
			p:      pipeline(entity("sum", func(e *v1alpha1.Entity) { e.Inputs = []string{"words", "counts"}; e.Outputs = nil })),
			want:   `spec: Invalid value: spec.entities[].assignment: Static assignment requires co-partitioned inputs (equal partitions on every input stream)`,
		},
		{
			reason: "Strimzi topics need a Strimzi cluster",
			p: pipeline(kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.BootstrapServers = "kafka:9092"
			})),
			want: `spec.kafka: Invalid value: spec.kafka.strimziCluster is required when spec.kafka.topics is Strimzi`,
		},
		{
			reason: "Kafka must be reachable somehow",
			p: pipeline(kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.Topics = v1alpha1.TopicsDirect
			})),
			want: `spec.kafka: Invalid value: spec.kafka: set strimziCluster or bootstrapServers`,
		},
		{
			reason: "authentication without Strimzi needs a Secret",
			p: pipeline(kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.BootstrapServers = "kafka:9092"
				k.Topics = v1alpha1.TopicsUnmanaged
				k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			})),
			want: `spec.kafka: Invalid value: spec.kafka.authentication.secretName is required when authenticating without a Strimzi cluster`,
		},
		{
			reason: "topics mode is an enum",
			p:      pipeline(kafka(func(k *v1alpha1.KafkaSpec) { k.Topics = "Manual" })),
			want:   `spec.kafka.topics: Unsupported value: "Manual": supported values: "Strimzi", "Direct", "Unmanaged"`,
		},
		{
			reason: "guarantee is an enum",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Guarantee = "AtMostOnce" })),
			want:   `spec.entities[0].guarantee: Unsupported value: "AtMostOnce": supported values: "AtLeastOnce", "ExactlyOnce"`,
		},
		{
			reason: "partitions are positive",
			p:      pipeline(stream("counts", func(s *v1alpha1.Stream) { s.Partitions = -1 })),
			want:   `spec.streams[2].partitions: Invalid value: -1: spec.streams[2].partitions in body should be greater than or equal to 1`,
		},
		{
			reason: "pipeline names fit in a DNS label",
			p: pipeline(func(p *v1alpha1.Pipeline) {
				p.Name = "a-very-long-pipeline-name-that-goes-on-and-on-beyond-the-dns-label-limit"
			}),
			want: `<nil>: Invalid value: metadata.name must be at most 63 characters`,
		},
		{
			reason: "an entity needs an image",
			p:      pipeline(entity("split", func(e *v1alpha1.Entity) { e.Image = "" })),
			want:   `spec.entities[0].image: Invalid value: "": spec.entities[0].image in body should be at least 1 chars long`,
		},
	}
}

// invalidUpdates are updates the API server must reject through transition rules.
func invalidUpdates() []struct {
	reason   string
	old, new *v1alpha1.Pipeline
	want     string
} {
	return []struct {
		reason   string
		old, new *v1alpha1.Pipeline
		want     string
	}{
		{
			reason: "partitions never decrease",
			old:    pipeline(),
			new:    pipeline(stream("counts", func(s *v1alpha1.Stream) { s.Partitions = 2 })),
			want:   `spec.streams[2].partitions: Invalid value: 2: spec.streams[].partitions cannot decrease`,
		},
		{
			reason: "topicName never changes",
			old:    pipeline(),
			new:    pipeline(stream("lines", func(s *v1alpha1.Stream) { s.TopicName = "other" })),
			want:   `spec.streams[0]: Invalid value: spec.streams[].topicName is immutable: create a new stream to read another topic`,
		},
	}
}

// validPipelines must be accepted.
func validPipelines() map[string]*v1alpha1.Pipeline {
	return map[string]*v1alpha1.Pipeline{
		"wordcount":          pipeline(),
		"autoscaled to zero": pipeline(entity("split", autoscaling(0, 6))),
		"explicit static lists": pipeline(entity("sum", func(e *v1alpha1.Entity) {
			e.Replicas = ptr.To[int32](2)
			e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 2, 4}, {1, 3, 5}}
		})),
		"exactly once": pipeline(entity("sum", func(e *v1alpha1.Entity) { e.Guarantee = v1alpha1.ExactlyOnce })),
		"direct topics with bootstrap": pipeline(kafka(func(k *v1alpha1.KafkaSpec) {
			k.StrimziCluster = ""
			k.BootstrapServers = "kafka-0:9092,kafka-1:9092"
			k.Topics = v1alpha1.TopicsDirect
		})),
		"strimzi with scram": pipeline(kafka(func(k *v1alpha1.KafkaSpec) {
			k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
		})),
	}
}
