package validate_test

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// pipeline builds the word count: lines -> split -> words -> sum -> counts, modified by mods.
func pipeline(mods ...func(*v1alpha1.Pipeline)) *v1alpha1.Pipeline {
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

func entity(name string, m func(*v1alpha1.Entity)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Entities {
			if p.Spec.Entities[i].Name == name {
				m(&p.Spec.Entities[i])
			}
		}
	}
}

func stream(name string, m func(*v1alpha1.Stream)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) {
		for i := range p.Spec.Streams {
			if p.Spec.Streams[i].Name == name {
				m(&p.Spec.Streams[i])
			}
		}
	}
}

func kafka(m func(*v1alpha1.KafkaSpec)) func(*v1alpha1.Pipeline) {
	return func(p *v1alpha1.Pipeline) { m(&p.Spec.Kafka) }
}

func autoscaling(minR, maxR int32) func(*v1alpha1.Entity) {
	return func(e *v1alpha1.Entity) {
		e.Replicas = nil
		e.Autoscaling = &v1alpha1.AutoscalingSpec{MinReplicas: ptr.To(minR), MaxReplicas: maxR}
	}
}
