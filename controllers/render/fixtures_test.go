package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Fixtures are built from a minimal Pipeline by small modifiers, so each test says only what
// matters to it.

type pipelineModifier func(*v1alpha1.Pipeline)
type streamModifier func(*v1alpha1.Stream)
type entityModifier func(*v1alpha1.Entity)

// newPipeline is pipeline "demo" in namespace "team" on Strimzi cluster "my-cluster", with no
// streams or entities unless modifiers add them.
func newPipeline(mods ...pipelineModifier) *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "team", UID: "3f1c2a9e-0000-4000-8000-000000000001"},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "my-cluster"},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

// minimal is one stream read by one entity, everything else defaulted.
func minimal(mods ...pipelineModifier) *v1alpha1.Pipeline {
	return newPipeline(append([]pipelineModifier{
		withStream("events"),
		withEntity("handle", "example.com/handle:v1", []string{"events"}, nil),
	}, mods...)...)
}

// wordCount is the Invoker word count: lines → split → words → sum → counts, sum keeping state
// and its partitions statically assigned. It matches config/samples.
func wordCount(mods ...pipelineModifier) *v1alpha1.Pipeline {
	return newPipeline(append([]pipelineModifier{
		withName("wordcount"),
		withNamespace("default"),
		withStream("lines", partitions(6)),
		withStream("words", partitions(6)),
		withStream("counts"),
		withEntity("split", "ghcr.io/millrace-dev/millrace-example-wordcount-split:v0.1.0", []string{"lines"}, []string{"words"},
			command("wordcount-split")),
		withEntity("sum", "ghcr.io/millrace-dev/millrace-example-wordcount-sum:v0.1.0", []string{"words"}, []string{"counts"},
			command("wordcount-sum"), replicas(2), withState(v1alpha1.StateMemory), static(), exactlyOnce()),
	}, mods...)...)
}

func withName(name string) pipelineModifier { return func(p *v1alpha1.Pipeline) { p.Name = name } }

func withNamespace(ns string) pipelineModifier {
	return func(p *v1alpha1.Pipeline) { p.Namespace = ns }
}

func withStream(name string, mods ...streamModifier) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		s := v1alpha1.Stream{Name: name}
		for _, m := range mods {
			m(&s)
		}
		p.Spec.Streams = append(p.Spec.Streams, s)
	}
}

func withEntity(name, image string, inputs, outputs []string, mods ...entityModifier) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		e := v1alpha1.Entity{Name: name, Image: image, Inputs: inputs, Outputs: outputs}
		for _, m := range mods {
			m(&e)
		}
		p.Spec.Entities = append(p.Spec.Entities, e)
	}
}

// onEntity modifies an entity the pipeline already has.
func onEntity(name string, mods ...entityModifier) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Entities {
			if p.Spec.Entities[i].Name == name {
				for _, m := range mods {
					m(&p.Spec.Entities[i])
				}
			}
		}
	}
}

// onStreams modifies every stream.
func onStreams(mods ...streamModifier) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Streams {
			for _, m := range mods {
				m(&p.Spec.Streams[i])
			}
		}
	}
}

func withTopics(mode v1alpha1.TopicManagement) pipelineModifier {
	return func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Topics = mode }
}

func withBootstrap(servers string) pipelineModifier {
	return func(p *v1alpha1.Pipeline) { p.Spec.Kafka.BootstrapServers = servers }
}

func withoutStrimzi() pipelineModifier {
	return func(p *v1alpha1.Pipeline) { p.Spec.Kafka.StrimziCluster = "" }
}

func withAuth(t v1alpha1.AuthenticationType, secret string) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: t, SecretName: secret}
	}
}

func suspended() pipelineModifier { return func(p *v1alpha1.Pipeline) { p.Spec.Suspend = true } }

func withMonitoring(labels map[string]string) pipelineModifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: true, Labels: labels}
	}
}

func partitions(n int32) streamModifier { return func(s *v1alpha1.Stream) { s.Partitions = n } }

func topicName(name string) streamModifier { return func(s *v1alpha1.Stream) { s.TopicName = name } }

func deletion(d v1alpha1.DeletionPolicy) streamModifier {
	return func(s *v1alpha1.Stream) { s.DeletionPolicy = d }
}

func topicConfig(kv ...string) streamModifier {
	return func(s *v1alpha1.Stream) {
		s.Config = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Config[kv[i]] = kv[i+1]
		}
	}
}

func command(c ...string) entityModifier { return func(e *v1alpha1.Entity) { e.Command = c } }

func replicas(n int32) entityModifier { return func(e *v1alpha1.Entity) { e.Replicas = ptr.To(n) } }

func withState(b v1alpha1.StateBackend) entityModifier {
	return func(e *v1alpha1.Entity) { e.State = &v1alpha1.StateSpec{Enabled: true, Backend: b} }
}

func static(lists ...v1alpha1.PartitionList) entityModifier {
	return func(e *v1alpha1.Entity) {
		e.Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic, Partitions: lists}
	}
}

func exactlyOnce() entityModifier {
	return func(e *v1alpha1.Entity) { e.Guarantee = v1alpha1.ExactlyOnce }
}

func autoscaling(minReplicas, maxReplicas int32) entityModifier {
	return func(e *v1alpha1.Entity) {
		e.Replicas = nil
		e.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: ptr.To(minReplicas), MaxReplicas: maxReplicas}
	}
}

func userConfig(kv ...string) entityModifier {
	return func(e *v1alpha1.Entity) {
		e.Config = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Config[kv[i]] = kv[i+1]
		}
	}
}

func image(ref string) entityModifier { return func(e *v1alpha1.Entity) { e.Image = ref } }

func env(name, value string) entityModifier {
	return func(e *v1alpha1.Entity) { e.Env = append(e.Env, corev1.EnvVar{Name: name, Value: value}) }
}

// Facts modifiers.

type factsModifier func(*Facts)

func newFacts(mods ...factsModifier) Facts {
	f := Facts{
		StrimziAPIVersion: "v1",
		BootstrapServers:  "my-cluster-kafka-bootstrap:9092",
		Images:            Images{IOSidecar: "ghcr.io/millrace-dev/millrace-io:v0.1.0", StateSidecar: "ghcr.io/millrace-dev/millrace-state:v0.1.0"},
	}
	for _, m := range mods {
		m(&f)
	}
	return f
}

func strimziVersion(v string) factsModifier { return func(f *Facts) { f.StrimziAPIVersion = v } }
func withKEDA() factsModifier               { return func(f *Facts) { f.KEDA = true } }
func withPrometheus() factsModifier         { return func(f *Facts) { f.PrometheusOperator = true } }

func currentReplicas(entity string, n int32) factsModifier {
	return func(f *Facts) {
		if f.Replicas == nil {
			f.Replicas = map[string]int32{}
		}
		f.Replicas[entity] = n
	}
}
