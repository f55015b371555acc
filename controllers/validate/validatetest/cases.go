// Package validatetest holds the table of invalid and valid Pipelines that every validator of
// Millrace must agree on: the API server (controllers/validate's envtest suite), the offline
// validate package, and the CLI's `millrace validate`. Keeping one table is what makes "the same
// messages everywhere" checkable.
package validatetest

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Pipeline builds the word count: lines -> split -> words -> sum -> counts, modified by mods.
func Pipeline(mods ...func(*v1alpha1.Pipeline)) *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "wordcount", Namespace: "default"},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "my-cluster"},
			Streams: []v1alpha1.Stream{
				{Name: "lines", Partitions: 6},
				{Name: "words", Partitions: 6},
				{Name: "counts", Partitions: 3},
			},
			Entities: []v1alpha1.Entity{
				{Name: "split", Image: "millrace/wordcount-split:latest", Inputs: []string{"lines"}, Outputs: []string{"words"}, Replicas: ptr.To[int32](2)},
				{Name: "sum", Image: "millrace/wordcount-sum:latest", Inputs: []string{"words"}, Outputs: []string{"counts"},
					State: &v1alpha1.StateSpec{Enabled: true}, Assignment: &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic}},
			},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func Entity(name string, m func(*v1alpha1.Entity)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Entities {
			if p.Spec.Entities[i].Name == name {
				m(&p.Spec.Entities[i])
			}
		}
	}
}

func Stream(name string, m func(*v1alpha1.Stream)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Streams {
			if p.Spec.Streams[i].Name == name {
				m(&p.Spec.Streams[i])
			}
		}
	}
}

func Kafka(m func(*v1alpha1.KafkaSpec)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) { m(&p.Spec.Kafka) }
}

// Runtime sets an entity's runtime timeouts; "" leaves one unset.
func Runtime(session, liveness string) func(*v1alpha1.Entity) {
	parse := func(s string) *metav1.Duration {
		if s == "" {
			return nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			panic(err)
		}
		return &metav1.Duration{Duration: d}
	}
	return func(e *v1alpha1.Entity) {
		e.Runtime = &v1alpha1.EntityRuntime{SessionTimeout: parse(session), LivenessTimeout: parse(liveness)}
	}
}

// Start sets where an entity begins to read stream: position, and a timestamp when ts is not "".
func Start(stream string, position v1alpha1.StartPosition, ts string) func(*v1alpha1.Entity) {
	return func(e *v1alpha1.Entity) {
		st := v1alpha1.InputStart{Stream: stream, Position: position}
		if ts != "" {
			t, err := time.Parse(time.RFC3339, ts)
			if err != nil {
				panic(err)
			}
			st.Timestamp = &metav1.Time{Time: t}
		}
		e.Start = append(e.Start, st)
	}
}

func Autoscaling(minR, maxR int32) func(*v1alpha1.Entity) {
	return func(e *v1alpha1.Entity) {
		e.Replicas = nil
		e.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: ptr.To(minR), MaxReplicas: maxR}
	}
}

// InvalidCase is a Pipeline the API server must reject, with a part of the message it must give.
type InvalidCase struct {
	Reason   string
	Pipeline *v1alpha1.Pipeline
	// Want is a part of the API server's message.
	Want string
}

// InvalidCases is the table shared by the API server test and the offline Schema test: both must
// reject every Pipeline with the same message.
func InvalidCases() []InvalidCase {
	return []InvalidCase{
		{
			Reason:   "a start position for a stream the entity does not read",
			Pipeline: Pipeline(Entity("sum", Start("lines", v1alpha1.StartLatest, ""))),
			Want:     `spec.entities[1]: Invalid value: spec.entities[].start[].stream must be one of the entity's inputs`,
		},
		{
			Reason:   "a Timestamp start without a timestamp",
			Pipeline: Pipeline(Entity("sum", Start("words", v1alpha1.StartTimestamp, ""))),
			Want:     `spec.entities[1].start[0]: Invalid value: spec.entities[].start[].timestamp is required when position is Timestamp, and only then`,
		},
		{
			Reason:   "a Latest start with a timestamp",
			Pipeline: Pipeline(Entity("sum", Start("words", v1alpha1.StartLatest, "2026-12-01T10:00:00Z"))),
			Want:     `spec.entities[].start[].timestamp is required when position is Timestamp, and only then`,
		},
		{
			Reason:   "an Entity start without the entity",
			Pipeline: Pipeline(Entity("sum", Start("words", v1alpha1.StartEntity, ""))),
			Want:     `spec.entities[1].start[0]: Invalid value: spec.entities[].start[].entity is required when position is Entity, and only then`,
		},
		{
			Reason: "an Entity start from the entity itself",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartEntity, Entity: "sum"}}
			})),
			Want: `spec.entities[].start[].entity must name another entity`,
		},
		{
			Reason: "a Latest start naming an entity",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartLatest, Entity: "split"}}
			})),
			Want: `spec.entities[].start[].entity is required when position is Entity, and only then`,
		},
		{
			Reason:   "an unknown start position",
			Pipeline: Pipeline(Entity("sum", Start("words", "Newest", ""))),
			Want:     `spec.entities[1].start[0].position: Unsupported value: "Newest"`,
		},
		{
			Reason: "an unknown consumer group removal policy",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Removal = &v1alpha1.RemovalSpec{ConsumerGroup: "Drop"}
			})),
			Want: `spec.entities[1].removal.consumerGroup: Unsupported value: "Drop": supported values: "Keep", "Delete"`,
		},
		{
			Reason:   "a session timeout below what the broker accepts by default",
			Pipeline: Pipeline(Entity("sum", Runtime("5s", ""))),
			Want:     `spec.entities[1].runtime.sessionTimeout: Invalid value: "5s": spec.entities[].runtime.sessionTimeout must be between 6s and 30m`,
		},
		{
			Reason:   "a session timeout above what the broker accepts by default",
			Pipeline: Pipeline(Entity("sum", Runtime("31m", ""))),
			Want:     `spec.entities[].runtime.sessionTimeout must be between 6s and 30m`,
		},
		{
			Reason:   "a negative session timeout",
			Pipeline: Pipeline(Entity("sum", Runtime("-10s", ""))),
			Want:     `spec.entities[1].runtime.sessionTimeout in body should match`,
		},
		{
			Reason:   "a liveness timeout below the transaction timeout",
			Pipeline: Pipeline(Entity("sum", Runtime("", "10s"))),
			Want:     `spec.entities[].runtime.livenessTimeout must be between 30s and 1h`,
		},
		{
			Reason: "an admin Secret without Direct topics",
			Pipeline: Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
				k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512, AdminSecretName: "ops"}
			})),
			Want: `spec.kafka.authentication.adminSecretName is only used with spec.kafka.topics: Direct`,
		},
		{
			Reason:   "stream names must be unique",
			Pipeline: Pipeline(func(p *v1alpha1.Pipeline) { p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "lines"}) }),
			Want:     `spec.streams[3]: Duplicate value: {"name":"lines"}`,
		},
		{
			Reason: "entity names must be unique",
			Pipeline: Pipeline(func(p *v1alpha1.Pipeline) {
				p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "split", Image: "x", Inputs: []string{"lines"}})
			}),
			Want: `spec.entities[2]: Duplicate value: {"name":"split"}`,
		},
		{
			Reason:   "stream names are DNS labels",
			Pipeline: Pipeline(Stream("lines", func(s *v1alpha1.Stream) { s.Name = "Lines_1" })),
			Want:     `spec.streams[0].name: Invalid value: "Lines_1": spec.streams[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`,
		},
		{
			Reason:   "entity names are DNS labels",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Name = "split.words" })),
			Want:     `spec.entities[0].name in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'`,
		},
		{
			Reason:   "topic names use Kafka's legal characters",
			Pipeline: Pipeline(Stream("lines", func(s *v1alpha1.Stream) { s.TopicName = "lines/raw" })),
			Want:     `spec.streams[0].topicName in body should match '^[a-zA-Z0-9._-]+$'`,
		},
		{
			Reason:   "topic name '..' is illegal in Kafka",
			Pipeline: Pipeline(Stream("lines", func(s *v1alpha1.Stream) { s.TopicName = ".." })),
			Want:     `spec.streams[0].topicName: Invalid value: "..": spec.streams[].topicName must not be '.' or '..'`,
		},
		{
			Reason:   "inputs must name declared streams",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Inputs = []string{"nosuch"} })),
			Want:     `spec: Invalid value: spec.entities[].inputs must name streams declared in spec.streams`,
		},
		{
			Reason:   "outputs must name declared streams",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Outputs = []string{"nosuch"} })),
			Want:     `spec: Invalid value: spec.entities[].outputs must name streams declared in spec.streams`,
		},
		{
			Reason:   "an entity must not read a stream it writes",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Outputs = []string{"lines", "words"} })),
			Want:     `spec.entities[0]: Invalid value: spec.entities[].outputs: an entity must not write a stream it reads`,
		},
		{
			Reason:   "an entity needs at least one input",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Inputs = []string{} })),
			Want:     `spec.entities[0].inputs: Invalid value: 0: spec.entities[0].inputs in body should have at least 1 items`,
		},
		{
			Reason:   "minReplicas must not exceed maxReplicas",
			Pipeline: Pipeline(Entity("split", Autoscaling(4, 2))),
			Want:     `spec.entities[0].autoscaling: Invalid value: spec.entities[].autoscaling.minReplicas must not exceed maxReplicas`,
		},
		{
			Reason:   "maxReplicas must not exceed the input partitions",
			Pipeline: Pipeline(Entity("split", Autoscaling(0, 7))),
			Want:     `spec: Invalid value: spec.entities[].autoscaling.maxReplicas must not exceed the total partitions of the entity's input streams (extra consumers would idle)`,
		},
		{
			Reason: "ExactlyOnce needs outputs or state",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) {
				e.Outputs = nil
				e.Guarantee = v1alpha1.ExactlyOnce
			})),
			Want: `spec.entities[0]: Invalid value: spec.entities[].guarantee: ExactlyOnce requires outputs or state`,
		},
		{
			Reason: "replicas and autoscaling are exclusive",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) {
				e.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 3}
			})),
			Want: `spec.entities[0]: Invalid value: spec.entities[]: replicas and autoscaling are mutually exclusive`,
		},
		{
			Reason: "static lists must not repeat a partition",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {2, 3, 4, 5}}
			})),
			Want: `spec.entities[1].assignment: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			Reason: "static lists must cover every partition",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4}}
			})),
			Want: `spec: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			Reason: "static lists must name existing partitions",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4, 9}}
			})),
			Want: `spec.entities[1].assignment: Invalid value: spec.entities[].assignment.partitions must cover each input partition exactly once`,
		},
		{
			Reason: "static lists need mode Static",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) {
				e.Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentGroup, Partitions: []v1alpha1.PartitionList{{0, 1, 2, 3, 4, 5}}}
				e.Replicas = ptr.To[int32](1)
			})),
			Want: `spec.entities[0].assignment: Invalid value: spec.entities[].assignment.partitions requires mode Static`,
		},
		{
			Reason: "replicas must match the static lists",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
				e.Replicas = ptr.To[int32](3)
				e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 1, 2}, {3, 4, 5}}
			})),
			Want: `spec.entities[1]: Invalid value: spec.entities[].replicas must equal the number of lists in assignment.partitions`,
		},
		{
			Reason:   "static assignment needs co-partitioned inputs",
			Pipeline: Pipeline(Entity("sum", func(e *v1alpha1.Entity) { e.Inputs = []string{"words", "counts"}; e.Outputs = nil })),
			Want:     `spec: Invalid value: spec.entities[].assignment: Static assignment requires co-partitioned inputs (equal partitions on every input stream)`,
		},
		{
			Reason: "Strimzi topics need a Strimzi cluster",
			Pipeline: Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.BootstrapServers = "kafka:9092"
			})),
			Want: `spec.kafka: Invalid value: spec.kafka.strimziCluster is required when spec.kafka.topics is Strimzi`,
		},
		{
			Reason: "Kafka must be reachable somehow",
			Pipeline: Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.Topics = v1alpha1.TopicsDirect
			})),
			Want: `spec.kafka: Invalid value: spec.kafka: set strimziCluster or bootstrapServers`,
		},
		{
			Reason: "authentication without Strimzi needs a Secret",
			Pipeline: Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
				k.StrimziCluster = ""
				k.BootstrapServers = "kafka:9092"
				k.Topics = v1alpha1.TopicsUnmanaged
				k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			})),
			Want: `spec.kafka: Invalid value: spec.kafka.authentication.secretName is required when authenticating without a Strimzi cluster`,
		},
		{
			Reason:   "topics mode is an enum",
			Pipeline: Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) { k.Topics = "Manual" })),
			Want:     `spec.kafka.topics: Unsupported value: "Manual": supported values: "Strimzi", "Direct", "Unmanaged"`,
		},
		{
			Reason:   "guarantee is an enum",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Guarantee = "AtMostOnce" })),
			Want:     `spec.entities[0].guarantee: Unsupported value: "AtMostOnce": supported values: "AtLeastOnce", "ExactlyOnce"`,
		},
		{
			Reason:   "partitions are positive",
			Pipeline: Pipeline(Stream("counts", func(s *v1alpha1.Stream) { s.Partitions = -1 })),
			Want:     `spec.streams[2].partitions: Invalid value: -1: spec.streams[2].partitions in body should be greater than or equal to 1`,
		},
		{
			Reason: "pipeline names fit in a DNS label",
			Pipeline: Pipeline(func(p *v1alpha1.Pipeline) {
				p.Name = "a-very-long-pipeline-name-that-goes-on-and-on-beyond-the-dns-label-limit"
			}),
			Want: `<nil>: Invalid value: metadata.name must be at most 63 characters`,
		},
		{
			Reason:   "an entity needs an image",
			Pipeline: Pipeline(Entity("split", func(e *v1alpha1.Entity) { e.Image = "" })),
			Want:     `spec.entities[0].image: Invalid value: "": spec.entities[0].image in body should be at least 1 chars long`,
		},
		{
			// The ServiceMonitor the interval goes into would reject it; the Pipeline must first.
			Reason: "the scrape interval is a Prometheus duration, without fractions",
			Pipeline: Pipeline(func(p *v1alpha1.Pipeline) {
				p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: true, Interval: "1.5s"}
			}),
			Want: `spec.monitoring.interval: Invalid value: "1.5s": spec.monitoring.interval in body should match`,
		},
		{
			// default.wordcount.sum.changelog would be the changelog topic of entity sum of
			// Pipeline wordcount (issue 10 item 10).
			Reason:   "a dotted Pipeline name must not default a stream topic onto another Pipeline's changelog topic",
			Pipeline: Pipeline(Named("wordcount.sum"), RenameStream("counts", "changelog")),
			Want:     `<nil>: Invalid value: spec.streams[].name: a Pipeline whose name contains '.' cannot default the topic of a stream named 'changelog' or 'dlq'`,
		},
		{
			// default.wordcount.words.dlq would be the dead-letter topic of stream words of
			// Pipeline wordcount.
			Reason:   "a dotted Pipeline name must not default a stream topic onto another Pipeline's dead-letter topic",
			Pipeline: Pipeline(Named("wordcount.words"), RenameStream("lines", "dlq")),
			Want:     `<nil>: Invalid value: spec.streams[].name: a Pipeline whose name contains '.' cannot default the topic of a stream named 'changelog' or 'dlq'`,
		},
	}
}

// Named names the Pipeline.
func Named(name string) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) { p.Name = name }
}

// RenameStream renames stream from to "to" in spec.streams and in every entity's inputs and outputs.
func RenameStream(from, to string) func(*v1alpha1.Pipeline) {
	rename := func(names []string) {
		for i := range names {
			if names[i] == from {
				names[i] = to
			}
		}
	}
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Streams {
			if p.Spec.Streams[i].Name == from {
				p.Spec.Streams[i].Name = to
			}
		}
		for i := range p.Spec.Entities {
			rename(p.Spec.Entities[i].Inputs)
			rename(p.Spec.Entities[i].Outputs)
		}
	}
}

// InvalidUpdate is an update the API server must reject.
type InvalidUpdate struct {
	Reason   string
	Old, New *v1alpha1.Pipeline
	Want     string
}

// InvalidUpdates are updates the API server must reject through transition rules.
func InvalidUpdates() []InvalidUpdate {
	return []InvalidUpdate{
		{
			Reason: "partitions never decrease",
			Old:    Pipeline(),
			New:    Pipeline(Stream("counts", func(s *v1alpha1.Stream) { s.Partitions = 2 })),
			Want:   `spec.streams[2].partitions: Invalid value: 2: spec.streams[].partitions cannot decrease`,
		},
		{
			Reason: "a stateful entity's input keeps its partitions",
			Old:    Pipeline(),
			New:    Pipeline(Stream("words", func(s *v1alpha1.Stream) { s.Partitions = 12 })),
			Want:   `spec: Invalid value: spec.streams[].partitions: a stream read by an entity with state.enabled cannot get more partitions: its keys would move to other partitions and the entity's state, kept per input partition, cannot follow them yet (create a new stream with more partitions and a new entity instead)`,
		},
		{
			Reason: "an entity removed with its group deleted cannot hand an input over",
			Old: Pipeline(Entity("split", func(e *v1alpha1.Entity) {
				e.Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupDelete}
			})),
			New: Pipeline(func(p *v1alpha1.Pipeline) {
				p.Spec.Entities[0].Name = "split2"
				p.Spec.Entities[0].Start = []v1alpha1.InputStart{{Stream: "lines", Position: v1alpha1.StartEntity, Entity: "split"}}
			}),
			Want: `spec: Invalid value: spec.entities[].start[].entity names an entity removed with removal.consumerGroup: Delete, which deletes the committed offsets the input would start from; remove it with consumerGroup: Keep`,
		},
		{
			Reason: "topicName never changes",
			Old:    Pipeline(),
			New:    Pipeline(Stream("lines", func(s *v1alpha1.Stream) { s.TopicName = "other" })),
			Want:   `spec.streams[0]: Invalid value: spec.streams[].topicName is immutable: create a new stream to read another topic`,
		},
	}
}

// ValidPipelines must be accepted.
func ValidPipelines() map[string]*v1alpha1.Pipeline {
	return map[string]*v1alpha1.Pipeline{
		"wordcount":          Pipeline(),
		"autoscaled to zero": Pipeline(Entity("split", Autoscaling(0, 6))),
		"explicit static lists": Pipeline(Entity("sum", func(e *v1alpha1.Entity) {
			e.Replicas = ptr.To[int32](2)
			e.Assignment.Partitions = []v1alpha1.PartitionList{{0, 2, 4}, {1, 3, 5}}
		})),
		"removal drained and group deleted": Pipeline(Entity("split", func(e *v1alpha1.Entity) {
			e.Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupDelete}
		})),
		"exactly once": Pipeline(Entity("sum", func(e *v1alpha1.Entity) { e.Guarantee = v1alpha1.ExactlyOnce })),
		"direct topics with bootstrap": Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
			k.StrimziCluster = ""
			k.BootstrapServers = "kafka-0:9092,kafka-1:9092"
			k.Topics = v1alpha1.TopicsDirect
		})),
		"monitoring every minute and a half": Pipeline(func(p *v1alpha1.Pipeline) {
			p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: true, Interval: "1m30s"}
		}),
		"monitoring every 1500ms": Pipeline(func(p *v1alpha1.Pipeline) {
			p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: true, Interval: "1500ms"}
		}),
		"a dotted name":                            Pipeline(Named("wordcount.v2")),
		"a stream named changelog":                 Pipeline(RenameStream("counts", "changelog")),
		"a stream named dlq":                       Pipeline(RenameStream("counts", "dlq")),
		"a dotted name with a changelog topicName": Pipeline(Named("wordcount.sum"), RenameStream("counts", "changelog"), Stream("changelog", func(s *v1alpha1.Stream) { s.TopicName = "wordcount-sum-changelog" })),
		"runtime timeouts":                         Pipeline(Entity("sum", Runtime("45s", "5m"))),
		"a stage inserted before sum": Pipeline(func(p *v1alpha1.Pipeline) {
			p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "checked", Partitions: 6})
			p.Spec.Entities[1].Inputs = []string{"checked"}
			p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "check", Image: "example.com/check:v1",
				Inputs: []string{"words"}, Outputs: []string{"checked"},
				Start: []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartEntity, Entity: "sum"}}})
		}),
		"start positions": Pipeline(Entity("split", Start("lines", v1alpha1.StartLatest, "")),
			Entity("sum", Start("words", v1alpha1.StartTimestamp, "2026-12-01T10:00:00Z"))),
		"runtime timeouts at their bounds": Pipeline(Entity("sum", Runtime("6s", "30s")), Entity("split", Runtime("30m", "1h"))),
		"fractional runtime timeouts":      Pipeline(Entity("sum", Runtime("7.5s", "1m30s"))),
		"direct topics with an admin Secret": Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
			k.StrimziCluster, k.BootstrapServers, k.Topics = "", "kafka-0:9094", v1alpha1.TopicsDirect
			k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512, SecretName: "app", AdminSecretName: "ops"}
		})),
		"strimzi with scram": Pipeline(Kafka(func(k *v1alpha1.KafkaSpec) {
			k.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
		})),
	}
}
