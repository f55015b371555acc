// Package render turns a Pipeline and a few observed facts into every object Millrace wants to
// exist for it. It is pure: no client, no clock, no context. The same input always gives the
// same output, byte for byte, which is what makes server-side apply idempotent, golden files
// possible, and `millrace render` show exactly what the operator would apply.
//
// The meta-operator's knowledge lives here: how a stream becomes a Strimzi KafkaTopic, how an
// entity becomes a StatefulSet with its sidecars, a ConfigMap, a Service and a KEDA
// ScaledObject, and how the pipeline is monitored.
package render

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/assignment"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Facts are what the controller observed of the cluster and of the Pipeline's own children;
// render needs them but cannot look them up itself.
type Facts struct {
	// StrimziAPIVersion is the version of kafka.strimzi.io that the cluster serves, "v1" or
	// "v1beta2"; "" when Strimzi is not installed, and then no KafkaTopic or KafkaUser is rendered.
	StrimziAPIVersion string
	// BootstrapServers is the resolved Kafka address (from the Strimzi Kafka's status); "" when
	// unknown. spec.kafka.bootstrapServers overrides it.
	BootstrapServers string
	// BootstrapTLS reports that the listener BootstrapServers points at (chosen from the Strimzi
	// Kafka by its authentication and TLS) encrypts: executors and KEDA then connect with TLS,
	// trusting Strimzi's cluster CA, whatever the authentication (SCRAM over TLS is Strimzi's
	// usual production listener).
	BootstrapTLS bool
	// KEDA reports whether the keda.sh ScaledObject CRD is served.
	KEDA bool
	// PrometheusOperator reports whether monitoring.coreos.com ServiceMonitor and PrometheusRule
	// are served.
	PrometheusOperator bool
	// Replicas is the current spec.replicas of each entity's StatefulSet, by entity name. For an
	// autoscaled entity the HPA owns that field, and the Static assignment follows it.
	Replicas map[string]int32
	// KeptReplicas is, by entity name, the replica count an entity without replicas in its spec
	// keeps after leaving autoscaling: what the autoscaler had set when the operator took
	// spec.replicas back, then what the StatefulSet's AnnotationKeptReplicas says.
	KeptReplicas map[string]int32
	// Assignments is the current assignment of each entity, by entity name, as read from its
	// ConfigMap. The Static map is recomputed from it with as few moves as possible.
	Assignments map[string]config.Assignment
	// Images are the sidecar images the operator is configured with.
	Images Images
	// TopicPartitions are the partition counts of existing topics, by Kafka topic name, as
	// observed for the streams that adopt a topic through topicName (in Direct mode from Kafka,
	// in Strimzi mode from another KafkaTopic of that topic). A stream whose topic has more
	// partitions than its spec says is rendered with the real count, so that its dead-letter
	// topic, changelog and executors (a Static map, the partition count in executor.json) cover
	// every partition.
	TopicPartitions map[string]int32
	// Retiring are the entities removed from the spec that the operator retires (their
	// removal policy drains their inputs or deletes their group first), by name: their pods
	// keep running until that is done, so the KafkaUser keeps their ACLs.
	Retiring []RetiringEntity
}

// RetiringEntity is an entity removed from the spec whose pods still run, to carry out its
// removal policy.
type RetiringEntity struct {
	Name string
	// Executor is the configuration its pods run with: its ConfigMap's executor.json.
	Executor *config.Executor
}

// Images are the container images of the executor sidecars.
type Images struct {
	IOSidecar    string
	StateSidecar string
}

// Version is the Millrace release this code is, the tag of the images it was released with
// (the Makefile's VERSION; a test keeps the two in step).
const Version = "0.1.0"

// Default sidecar images, used when Facts.Images leaves one empty (for example when the CLI
// renders a Pipeline): the released images of this version, which `make docker-build` builds and
// the bundle references, never a :latest that nothing publishes.
const (
	DefaultIOSidecarImage    = "ghcr.io/millrace-dev/millrace-io:v" + Version
	DefaultStateSidecarImage = "ghcr.io/millrace-dev/millrace-state:v" + Version
)

// TopicPurpose says why a topic exists.
type TopicPurpose string

const (
	// TopicStream is the topic of a stream.
	TopicStream TopicPurpose = "Stream"
	// TopicDeadLetter receives the records of an input stream that an entity failed to process.
	TopicDeadLetter TopicPurpose = "DeadLetter"
	// TopicChangelog is the compacted changelog of an entity's state.
	TopicChangelog TopicPurpose = "Changelog"
)

// Topic is a Kafka topic the pipeline needs. In Direct mode the controller creates these with
// the Kafka admin API; the local runner creates them in its embedded Kafka.
type Topic struct {
	// Name is the Kafka topic name.
	Name    string       `json:"name"`
	Purpose TopicPurpose `json:"purpose"`
	// Stream is the stream of a Stream or DeadLetter topic.
	Stream string `json:"stream,omitempty"`
	// Entity is the entity of a Changelog topic.
	Entity     string `json:"entity,omitempty"`
	Partitions int32  `json:"partitions"`
	// Replicas is the replication factor; nil uses the broker default.
	Replicas *int32            `json:"replicas,omitempty"`
	Config   map[string]string `json:"config,omitempty"`
	// DeletionPolicy says whether the topic goes when the Pipeline does.
	DeletionPolicy v1alpha1.DeletionPolicy `json:"deletionPolicy"`
	// Adopted marks the topic of a stream with an explicit topicName: an existing topic, which
	// Millrace reads and writes but whose partitions and configuration it does not manage.
	Adopted bool `json:"adopted,omitempty"`
}

// Result is everything render wants to exist for a Pipeline.
type Result struct {
	// Objects are the desired children, typed, with apiVersion and kind set (server-side apply
	// needs them), labels and the controller owner reference. Their order is deterministic:
	// KafkaUser, KafkaTopics, KEDA's TriggerAuthentication (with the ConfigMap it reads), then per entity its ConfigMap, Service, StatefulSet and
	// ScaledObject, then ServiceMonitor and PrometheusRule.
	Objects []client.Object
	// Topics are all topics of the pipeline (streams, dead-letter and changelog topics), whoever
	// manages them.
	Topics []Topic
	// Assignments are the Static assignments computed per Static entity, by entity name.
	Assignments map[string]config.Assignment
}

// Render returns the desired children of p given the observed facts f.
func Render(p *v1alpha1.Pipeline, f Facts) (*Result, error) {
	if p == nil {
		return nil, fmt.Errorf("render: pipeline is nil")
	}
	p = withDefaults(p)
	for i := range p.Spec.Streams {
		s := &p.Spec.Streams[i]
		if n := f.TopicPartitions[TopicName(p, s.Name)]; n > s.Partitions {
			s.Partitions = n
		}
	}
	if err := checkReferences(p); err != nil {
		return nil, fmt.Errorf("render pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}

	res := &Result{Topics: topics(p), Assignments: map[string]config.Assignment{}}

	if u := kafkaUser(p, f); u != nil {
		res.Objects = append(res.Objects, u)
	}
	for _, t := range kafkaTopics(p, f, res.Topics) {
		res.Objects = append(res.Objects, t)
	}
	res.Objects = append(res.Objects, autoscalingObjects(p, f)...)
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		cfg, err := executorConfig(p, e, f)
		if err != nil {
			return nil, fmt.Errorf("render entity %q of pipeline %s/%s: %w", e.Name, p.Namespace, p.Name, err)
		}
		if cfg.Assignment.Mode == config.StaticAssignment {
			res.Assignments[e.Name] = cfg.Assignment
		}
		objs, err := entityObjects(p, e, cfg, f)
		if err != nil {
			return nil, fmt.Errorf("render entity %q of pipeline %s/%s: %w", e.Name, p.Namespace, p.Name, err)
		}
		res.Objects = append(res.Objects, objs...)
	}
	if monitoringEnabled(p, f) {
		res.Objects = append(res.Objects, serviceMonitor(p), prometheusRule(p))
	}
	return res, nil
}

// ExecutorConfig returns the executor configuration of one entity, as Render writes it into the
// entity's ConfigMap. The local runner uses it to run an entity without Kubernetes.
func ExecutorConfig(p *v1alpha1.Pipeline, entity string, f Facts) (*config.Executor, error) {
	if p == nil {
		return nil, fmt.Errorf("executor config: pipeline is nil")
	}
	p = withDefaults(p)
	if err := checkReferences(p); err != nil {
		return nil, fmt.Errorf("executor config of pipeline %s/%s: %w", p.Namespace, p.Name, err)
	}
	for i := range p.Spec.Entities {
		if e := &p.Spec.Entities[i]; e.Name == entity {
			return executorConfig(p, e, f)
		}
	}
	return nil, fmt.Errorf("executor config of pipeline %s/%s: no entity %q", p.Namespace, p.Name, entity)
}

// checkReferences rejects what render cannot make sense of. The API server's validation rules
// reject these already; a Pipeline read by the CLI has not been through them.
func checkReferences(p *v1alpha1.Pipeline) error {
	if p.Name == "" {
		return fmt.Errorf("metadata.name is empty")
	}
	if len(p.Spec.Entities) == 0 {
		return fmt.Errorf("spec.entities is empty")
	}
	streams := map[string]bool{}
	for _, s := range p.Spec.Streams {
		if streams[s.Name] {
			return fmt.Errorf("spec.streams: stream %q is declared twice", s.Name)
		}
		streams[s.Name] = true
	}
	entities := map[string]bool{}
	for _, e := range p.Spec.Entities {
		if entities[e.Name] {
			return fmt.Errorf("spec.entities: entity %q is declared twice", e.Name)
		}
		entities[e.Name] = true
		if len(e.Inputs) == 0 {
			return fmt.Errorf("entity %q has no inputs", e.Name)
		}
		for _, s := range slices.Concat(e.Inputs, e.Outputs) {
			if !streams[s] {
				return fmt.Errorf("entity %q names stream %q, which spec.streams does not declare", e.Name, s)
			}
		}
	}
	return nil
}

// topics lists the Kafka topics of p: streams in spec order, then the dead-letter topic of each
// stream some entity reads, then the changelog of each entity with state.
func topics(p *v1alpha1.Pipeline) []Topic {
	var out []Topic
	read := map[string]bool{}
	for _, e := range p.Spec.Entities {
		for _, in := range e.Inputs {
			read[in] = true
		}
	}
	for _, s := range p.Spec.Streams {
		out = append(out, Topic{
			Name:           TopicName(p, s.Name),
			Purpose:        TopicStream,
			Stream:         s.Name,
			Partitions:     s.Partitions,
			Replicas:       s.Replicas,
			Config:         cloneMap(s.Config),
			DeletionPolicy: s.DeletionPolicy,
			Adopted:        s.TopicName != "",
		})
	}
	for _, s := range p.Spec.Streams {
		if !read[s.Name] {
			continue
		}
		// A dead-letter topic keeps the partitions, replication, configuration and deletion
		// policy of its stream: its records are the stream's records, and they are worth exactly
		// as much, for exactly as long.
		out = append(out, Topic{
			Name:           DeadLetterTopicName(TopicName(p, s.Name)),
			Purpose:        TopicDeadLetter,
			Stream:         s.Name,
			Partitions:     s.Partitions,
			Replicas:       s.Replicas,
			Config:         cloneMap(s.Config),
			DeletionPolicy: s.DeletionPolicy,
		})
	}
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		if !stateEnabled(e) {
			continue
		}
		inputs := inputStreams(p, e)
		// State is kept per input partition, so the changelog has as many partitions as the
		// (co-partitioned) inputs.
		t := Topic{
			Name:       ChangelogTopicName(p, e.Name),
			Purpose:    TopicChangelog,
			Entity:     e.Name,
			Partitions: inputPartitions(inputs),
			Config:     map[string]string{"cleanup.policy": "compact"},
			// State must outlive the Pipeline whenever the offsets it matches might: deleting the
			// changelog while keeping the input data would restart aggregates from zero in the
			// middle of a stream. So it is deleted only when every input is.
			DeletionPolicy: v1alpha1.DeletionDelete,
		}
		for _, s := range inputs {
			if s.Replicas != nil && (t.Replicas == nil || *s.Replicas > *t.Replicas) {
				t.Replicas = ptr.To(*s.Replicas)
			}
			if s.DeletionPolicy != v1alpha1.DeletionDelete {
				t.DeletionPolicy = v1alpha1.DeletionRetain
			}
		}
		out = append(out, t)
	}
	return out
}

// inputStreams returns the streams e reads, in the order of e.Inputs.
func inputStreams(p *v1alpha1.Pipeline, e *v1alpha1.Entity) []*v1alpha1.Stream {
	var out []*v1alpha1.Stream
	for _, name := range e.Inputs {
		if s := stream(p, name); s != nil {
			out = append(out, s)
		}
	}
	return out
}

func stream(p *v1alpha1.Pipeline, name string) *v1alpha1.Stream {
	for i := range p.Spec.Streams {
		if p.Spec.Streams[i].Name == name {
			return &p.Spec.Streams[i]
		}
	}
	return nil
}

// inputPartitions is the partition count that the Static map of an entity covers. Static inputs
// are co-partitioned; the maximum keeps every partition covered should they not be.
func inputPartitions(inputs []*v1alpha1.Stream) int32 {
	var n int32
	for _, s := range inputs {
		n = max(n, s.Partitions)
	}
	return n
}

func stateEnabled(e *v1alpha1.Entity) bool { return e.State != nil && e.State.Enabled }

func autoscaled(e *v1alpha1.Entity) bool { return e.Autoscaling != nil }

func staticMode(e *v1alpha1.Entity) bool {
	return e.Assignment != nil && e.Assignment.Mode == v1alpha1.AssignmentStatic
}

// kedaScaled reports whether KEDA (through its HPA) owns the entity's replicas.
func kedaScaled(e *v1alpha1.Entity, f Facts) bool { return autoscaled(e) && f.KEDA }

// fixedReplicas is the replica count of an entity whose replicas Millrace sets, ignoring suspend.
func fixedReplicas(e *v1alpha1.Entity) int32 {
	switch {
	case autoscaled(e):
		// KEDA is missing: run the minimum, but at least one pod so the pipeline makes progress.
		return max(ptr.Deref(e.Autoscaling.MinReplicas, defaultMinReplicas), 1)
	case e.Replicas != nil:
		return *e.Replicas
	case e.Assignment != nil && len(e.Assignment.Partitions) > 0:
		// An explicit map fixes the parallelism at one pod per list.
		return int32(len(e.Assignment.Partitions))
	default:
		return defaultReplicas
	}
}

// statefulSetReplicas is the spec.replicas of an entity's StatefulSet.
//
// For an entity KEDA scales it is nil once the StatefulSet exists: the HPA that KEDA creates owns
// the field, and server-side apply must never fight the autoscaler. The operator hands the field
// over (see the pipeline package's apply) instead of simply dropping it, which would reset the
// StatefulSet to one replica. A new autoscaled StatefulSet starts at minReplicas, zero included,
// so that KEDA scales it up from there rather than the API server's default of one.
//
// An autoscaled entity without KEDA keeps the replicas it runs with, within its bounds, so that
// KEDA going away does not cut pods the autoscaler had started.
func statefulSetReplicas(p *v1alpha1.Pipeline, e *v1alpha1.Entity, f Facts) *int32 {
	current, exists := f.Replicas[e.Name]
	if kedaScaled(e, f) {
		if exists {
			return nil
		}
		if p.Spec.Suspend {
			return ptr.To[int32](0)
		}
		return ptr.To(ptr.Deref(e.Autoscaling.MinReplicas, defaultMinReplicas))
	}
	if p.Spec.Suspend {
		return ptr.To[int32](0)
	}
	if autoscaled(e) && exists {
		return ptr.To(min(max(current, fixedReplicas(e)), max(e.Autoscaling.MaxReplicas, 1)))
	}
	return ptr.To(unscaledReplicas(e, f))
}

// keptReplicas is the count a fixed entity without stated replicas keeps after leaving
// autoscaling, if any.
func keptReplicas(e *v1alpha1.Entity, f Facts) (int32, bool) {
	if autoscaled(e) || e.Replicas != nil || (e.Assignment != nil && len(e.Assignment.Partitions) > 0) {
		return 0, false
	}
	n, ok := f.KeptReplicas[e.Name]
	return n, ok
}

// unscaledReplicas is fixedReplicas, except that an entity that left autoscaling without
// stating replicas keeps the pods it ran with rather than falling back to the default of one.
func unscaledReplicas(e *v1alpha1.Entity, f Facts) int32 {
	if n, ok := keptReplicas(e, f); ok {
		return n
	}
	return fixedReplicas(e)
}

// assignmentReplicas is the number of pods the Static map spreads partitions over. It ignores
// suspend, so that suspending and resuming moves nothing, and is at least one, so that a map
// exists for the first pod when an entity scales up from zero.
func assignmentReplicas(e *v1alpha1.Entity, f Facts) int {
	r := unscaledReplicas(e, f)
	if kedaScaled(e, f) {
		r = ptr.Deref(e.Autoscaling.MinReplicas, defaultMinReplicas)
		if current, ok := f.Replicas[e.Name]; ok {
			r = current
		}
	}
	return int(max(r, 1))
}

// staticAssignment computes the assignment of a Static entity: the explicit lists when given,
// else a sticky balanced map. Generation moves only when the map does.
func staticAssignment(p *v1alpha1.Pipeline, e *v1alpha1.Entity, f Facts) config.Assignment {
	previous := f.Assignments[e.Name]
	var static [][]int32
	if len(e.Assignment.Partitions) > 0 {
		lists := make([][]int32, len(e.Assignment.Partitions))
		for i, l := range e.Assignment.Partitions {
			lists[i] = l
		}
		static = assignment.Normalize(lists)
	} else {
		n := int(inputPartitions(inputStreams(p, e)))
		static = assignment.Compute(n, assignmentReplicas(e, f), previous.Static)
	}
	generation := previous.Generation
	if generation == 0 || !assignment.Equal(previous.Static, static) {
		generation++
	}
	return config.Assignment{Mode: config.StaticAssignment, Static: static, Generation: generation}
}

// ownerReference makes the Pipeline the controller of a child, so the garbage collector deletes
// the child with the Pipeline and the controller is woken by changes to it.
func ownerReference(p *v1alpha1.Pipeline) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         v1alpha1.GroupVersion.String(),
		Kind:               "Pipeline",
		Name:               p.Name,
		UID:                p.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// objectMeta is the metadata of a child owned by p.
func objectMeta(p *v1alpha1.Pipeline, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       p.Namespace,
		Labels:          labels,
		OwnerReferences: []metav1.OwnerReference{ownerReference(p)},
	}
}

// bootstrapServers is where executors and KEDA reach Kafka: the spec's address, else the one
// observed, else the bootstrap Service that Strimzi creates for a cluster (listener port 9092,
// or 9093 for TLS client authentication), so the rendered config is usable even before the
// Kafka's status is known.
func bootstrapServers(p *v1alpha1.Pipeline, f Facts) []string {
	s := p.Spec.Kafka.BootstrapServers
	if s == "" {
		s = f.BootstrapServers
	}
	if s == "" && p.Spec.Kafka.StrimziCluster != "" {
		port := 9092
		if authType(p) == v1alpha1.AuthTLS {
			port = 9093
		}
		s = fmt.Sprintf("%s-kafka-bootstrap.%s.svc:%d", p.Spec.Kafka.StrimziCluster, p.Namespace, port)
	}
	var out []string
	for _, addr := range strings.Split(s, ",") {
		if addr = strings.TrimSpace(addr); addr != "" {
			out = append(out, addr)
		}
	}
	return out
}

// useTLS reports whether the executors connect with TLS: for TLS authentication, or when the
// Strimzi listener they use encrypts.
func useTLS(p *v1alpha1.Pipeline, f Facts) bool {
	return authType(p) == v1alpha1.AuthTLS || (f.BootstrapTLS && p.Spec.Kafka.BootstrapServers == "")
}

func authType(p *v1alpha1.Pipeline) v1alpha1.AuthenticationType {
	if a := p.Spec.Kafka.Authentication; a != nil {
		return a.Type
	}
	return v1alpha1.AuthNone
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// mergeLabels returns extra overlaid with own: the labels Millrace selects on always win.
func mergeLabels(own, extra map[string]string) map[string]string {
	out := cloneMap(extra)
	if out == nil {
		out = map[string]string{}
	}
	for k, v := range own {
		out[k] = v
	}
	return out
}
