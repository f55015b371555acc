package render

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
)

// bytesSource hands out fuzz bytes; once they run out it returns zeros, so every input builds
// a Pipeline.
type bytesSource struct{ b []byte }

func (s *bytesSource) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *bytesSource) intn(n int) int { return int(s.byte()) % n }

func (s *bytesSource) bool() bool { return s.byte()&1 == 1 }

// name returns a DNS label of 1 to 63 characters, sometimes at the limits.
func (s *bytesSource) name(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
	switch s.intn(8) {
	case 0:
		return strings.Repeat("z", 63)
	case 1:
		return "9" + strings.Repeat("x", 61) + "9"
	}
	n := 1 + s.intn(20)
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < n; i++ {
		b.WriteByte(alphabet[s.intn(len(alphabet)-1)]) // no "-": keeps the label valid
	}
	return b.String()
}

// fuzzPipeline builds a Pipeline that the API server would accept, from fuzz bytes.
func fuzzPipeline(data []byte) (*v1alpha1.Pipeline, Facts) {
	s := &bytesSource{b: data}
	p := newPipeline(withName(s.name("")), withNamespace([]string{"team", "", strings.Repeat("n", 63)}[s.intn(3)]))
	if s.bool() {
		// Pipeline names may be DNS subdomains.
		p.Name = s.name("") + "." + s.name("")
		if len(p.Name) > 63 {
			p.Name = p.Name[:62] + "x"
		}
	}
	p.Spec.Kafka.Topics = []v1alpha1.TopicManagement{"", v1alpha1.TopicsStrimzi, v1alpha1.TopicsDirect, v1alpha1.TopicsUnmanaged}[s.intn(4)]
	if s.bool() {
		p.Spec.Kafka.BootstrapServers = "kafka:9092"
	}
	if s.bool() {
		auth := []v1alpha1.AuthenticationType{v1alpha1.AuthNone, v1alpha1.AuthScramSha512, v1alpha1.AuthTLS}[s.intn(3)]
		p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: auth}
		if s.bool() {
			p.Spec.Kafka.Authentication.SecretName = "creds"
		}
	}
	p.Spec.Suspend = s.bool()
	if s.bool() {
		p.Spec.Monitoring = &v1alpha1.MonitoringSpec{Enabled: s.bool(), Labels: map[string]string{"release": "prom"}}
	}

	nStreams := 1 + s.intn(5)
	seen := map[string]bool{}
	for i := 0; i < nStreams; i++ {
		name := s.name("s")
		if seen[name] {
			name = fmt.Sprintf("s%d", i)
		}
		seen[name] = true
		st := v1alpha1.Stream{Name: name, Partitions: int32(s.intn(13))}
		if s.intn(4) == 0 {
			st.TopicName = "ext_" + strings.Repeat("T.", s.intn(130))
		}
		if s.bool() {
			st.DeletionPolicy = v1alpha1.DeletionDelete
		}
		if s.bool() {
			st.Replicas = ptr.To(int32(1 + s.intn(3)))
		}
		p.Spec.Streams = append(p.Spec.Streams, st)
	}
	partitionsOf := func(name string) int32 {
		for _, st := range p.Spec.Streams {
			if st.Name == name {
				return max(st.Partitions, 1)
			}
		}
		return 1
	}

	nEntities := 1 + s.intn(4)
	for i := 0; i < nEntities; i++ {
		name := s.name("e")
		if seen[name] {
			name = fmt.Sprintf("e%d", i)
		}
		seen[name] = true
		e := v1alpha1.Entity{Name: name, Image: "example.com/fn:v1"}
		in := p.Spec.Streams[s.intn(len(p.Spec.Streams))].Name
		e.Inputs = []string{in}
		for _, st := range p.Spec.Streams {
			if st.Name == in {
				continue
			}
			switch s.intn(4) {
			case 0:
				e.Outputs = append(e.Outputs, st.Name)
			case 1:
				e.Inputs = append(e.Inputs, st.Name)
			}
		}
		var total int32
		for _, n := range e.Inputs {
			total += partitionsOf(n)
		}
		if s.bool() {
			e.State = &v1alpha1.StateSpec{Enabled: true, Backend: []v1alpha1.StateBackend{"", v1alpha1.StateMemory, v1alpha1.StatePebble}[s.intn(3)]}
		}
		if (len(e.Outputs) > 0 || e.State != nil) && s.bool() {
			e.Guarantee = v1alpha1.ExactlyOnce
		}
		static := s.intn(3) == 0
		if static {
			// Static needs co-partitioned inputs: keep the first only when they are not.
			for _, n := range e.Inputs[1:] {
				if partitionsOf(n) != partitionsOf(e.Inputs[0]) {
					e.Inputs = e.Inputs[:1]
					break
				}
			}
			e.Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic}
			total = partitionsOf(e.Inputs[0]) * int32(len(e.Inputs))
		}
		switch s.intn(3) {
		case 0:
			e.Autoscaling = &v1alpha1.AutoscalingSpec{MaxReplicas: 1 + int32(s.intn(int(total)))}
			if s.bool() {
				e.Autoscaling.MinReplicas = ptr.To(int32(s.intn(int(e.Autoscaling.MaxReplicas) + 1)))
			}
		case 1:
			e.Replicas = ptr.To(int32(s.intn(5)))
			if static && s.bool() {
				// An explicit map: deal the partitions round robin over the replicas.
				n := max(*e.Replicas, 1)
				e.Replicas = ptr.To(n)
				lists := make([]v1alpha1.PartitionList, n)
				for q := int32(0); q < partitionsOf(e.Inputs[0]); q++ {
					lists[q%n] = append(lists[q%n], q)
				}
				e.Assignment.Partitions = lists
			}
		}
		if s.bool() {
			e.Config = map[string]string{"k": string(rune('a' + s.intn(26)))}
		}
		p.Spec.Entities = append(p.Spec.Entities, e)
	}

	f := newFacts(strimziVersion([]string{"", "v1", "v1beta2"}[s.intn(3)]))
	f.KEDA, f.PrometheusOperator = s.bool(), s.bool()
	if s.bool() {
		f.BootstrapServers = ""
	}
	if s.bool() {
		f.Replicas = map[string]int32{p.Spec.Entities[0].Name: int32(s.intn(8))}
	}
	return p, f
}

var kafkaTopicPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// checkResult asserts the invariants of any rendering.
func checkResult(t *testing.T, p *v1alpha1.Pipeline, res *Result) {
	t.Helper()
	for _, o := range res.Objects {
		kind := o.GetObjectKind().GroupVersionKind()
		if kind.Kind == "" || kind.Version == "" {
			t.Errorf("%T %s has no apiVersion/kind", o, o.GetName())
		}
		name := o.GetName()
		if len(name) > maxNameLength {
			t.Errorf("%s name %q is longer than %d", kind.Kind, name, maxNameLength)
		}
		_, topic := o.(*strimzi.KafkaTopic)
		_, configMap := o.(*corev1.ConfigMap)
		if topic || (configMap && name == KafkaClientConfigMapName(p)) {
			if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
				t.Errorf("%s name %q: %v", kind.Kind, name, errs)
			}
		} else if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
			t.Errorf("%s name %q: %v", kind.Kind, name, errs)
		}
		if o.GetNamespace() == "" {
			t.Errorf("%s %s has no namespace", kind.Kind, name)
		}
		for k, v := range o.GetLabels() {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s %s label key %q: %v", kind.Kind, name, k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s %s label %s=%q: %v", kind.Kind, name, k, v, errs)
			}
		}
		switch obj := o.(type) {
		case *appsv1.StatefulSet:
			if len(name) > maxStatefulSetNameLength {
				t.Errorf("StatefulSet name %q longer than %d", name, maxStatefulSetNameLength)
			}
			checkPodSecurityFields(t, name, &obj.Spec.Template.Spec)
			if obj.Spec.Template.Annotations[AnnotationPodTemplateHash] == "" {
				t.Errorf("StatefulSet %s has no pod template hash", name)
			}
		case *corev1.Service:
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 {
				t.Errorf("Service name %q: %v", name, errs)
			}
		case *strimzi.KafkaTopic:
			if !kafkaTopicPattern.MatchString(obj.Spec.TopicName) {
				t.Errorf("KafkaTopic %s topicName %q is not a valid Kafka topic name", name, obj.Spec.TopicName)
			}
		}
		// Only KafkaTopics of retained topics go without an owner; the rest are the Pipeline's.
		if _, topic := o.(*strimzi.KafkaTopic); !topic && len(o.GetOwnerReferences()) != 1 {
			t.Errorf("%s %s has %d owner references, want the Pipeline", kind.Kind, name, len(o.GetOwnerReferences()))
		}
	}
	for _, tp := range res.Topics {
		if !kafkaTopicPattern.MatchString(tp.Name) {
			t.Errorf("topic %q is not a valid Kafka topic name", tp.Name)
		}
		if tp.Partitions < 1 {
			t.Errorf("topic %q has %d partitions", tp.Name, tp.Partitions)
		}
	}
	names := map[string]bool{}
	for _, o := range res.Objects {
		key := o.GetObjectKind().GroupVersionKind().Kind + "/" + o.GetName()
		if names[key] {
			t.Errorf("two objects are %s", key)
		}
		names[key] = true
	}
}

// checkPodSecurityFields asserts the restricted Pod Security Standard's fields directly; the
// schema test also runs the pod-security-admission library over the golden cases.
func checkPodSecurityFields(t *testing.T, name string, spec *corev1.PodSpec) {
	t.Helper()
	if sc := spec.SecurityContext; sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || sc.SeccompProfile == nil {
		t.Errorf("StatefulSet %s: pod securityContext is not restricted", name)
	}
	for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
			!ptr.Deref(sc.ReadOnlyRootFilesystem, false) || sc.Capabilities == nil ||
			!cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("StatefulSet %s container %s: securityContext is not restricted: %+v", name, c.Name, sc)
		}
	}
}

// FuzzRender renders arbitrary valid Pipelines: no panic, no error, the same output twice, and
// every name and label valid. Its seed corpus runs with go test.
func FuzzRender(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte("the word count, long names, static assignment and autoscaling"))
	f.Add([]byte{7, 1, 3, 1, 2, 1, 1, 1, 4, 12, 3, 1, 1, 0, 1, 1, 2, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245, 244, 243, 242, 241, 240})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, facts := fuzzPipeline(data)
		first, err := Render(p, facts)
		if err != nil {
			t.Fatalf("Render of a valid pipeline: %v\n%+v", err, p.Spec)
		}
		second, err := Render(p, facts)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := marshalResult(t, first), marshalResult(t, second); string(a) != string(b) {
			t.Fatalf("Render is not deterministic:\n%s", cmp.Diff(string(a), string(b)))
		}
		checkResult(t, p, first)
	})
}

func TestGoldenInvariants(t *testing.T) {
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			checkResult(t, tc.pipeline, mustRender(t, tc.pipeline, tc.facts))
		})
	}
}
