// Package reconfig is the reconfiguration contract of a running Pipeline: for every field of the
// Pipeline spec, what changing it does to the running pipeline. The table here is the one source
// the operator (events and status), the CLI (`millrace plan`, `kubectl millrace diff`) and the
// generated docs page (docs/reconfiguration.md) use; its tests walk the Go type of the spec so that
// no field goes unclassified, and check every class against what render really produces.
package reconfig

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Class says what a change of a field does to a running Pipeline.
type Class string

const (
	// Hot changes are applied in place: running pods reload them from their ConfigMap, or the
	// operator updates a child that no pod depends on (a KafkaTopic's config, monitoring). No pod
	// restarts and none is added or removed.
	Hot Class = "Hot"
	// Scale changes change the number of an entity's pods (the StatefulSet's replicas, KEDA's
	// ScaledObject). Pods that keep running are not restarted; Static assignments are moved with
	// as few partitions as possible, hot.
	Scale Class = "Scale"
	// Rolling changes change the pod template: the entity's pods restart, in one StatefulSet
	// rollout.
	Rolling Class = "Rolling"
	// Structural changes make topics, consumer groups or entities appear, disappear or be
	// rewired. Pods of the entities concerned restart as well.
	Structural Class = "Structural"
	// Refused changes are rejected by the API server (a CEL transition rule).
	Refused Class = "Refused"
)

// Classes in order of disruption, the least first.
var Classes = []Class{Hot, Scale, Rolling, Structural, Refused}

// Rank orders classes by disruption: Hot 0 ... Refused 4.
func (c Class) Rank() int { return slices.Index(Classes, c) }

// Rule is the contract of one field of the spec.
type Rule struct {
	// Path is the field's JSON path from spec, with [] for the items of a list:
	// spec.entities[].image.
	Path string
	// Class of a change of the field.
	Class Class
	// Effect says what the operator does when the field changes.
	Effect string
	// Refused, when set, is a transition the API server refuses although other changes of the
	// field are allowed (the CEL transition rule's message).
	Refused string
}

// Rules is the contract: every field of PipelineSpec, by path. TestEveryFieldIsClassified walks
// the Go type and fails on a field missing here; TestClassesMatchRender checks each class
// against what render produces.
var Rules = []Rule{
	{Path: "spec.kafka.strimziCluster", Class: Structural,
		Effect: "Every KafkaTopic and the KafkaUser move to another Strimzi cluster, which creates the topics empty; executors reconnect to its bootstrap address (every entity restarts) and their consumer groups start over there."},
	{Path: "spec.kafka.bootstrapServers", Class: Rolling,
		Effect: "Every entity's executor.json and pod template change: every entity restarts to connect to the new address (same topics, offsets and groups if it is the same Kafka)."},
	{Path: "spec.kafka.topics", Class: Structural,
		Effect: "Who creates topics changes: KafkaTopics are created or pruned (Retain topics keep their data), or topics are created with the Kafka admin API."},
	{Path: "spec.kafka.authentication", Class: Rolling,
		Effect: "The KafkaUser appears or goes (with a Strimzi cluster); credentials are mounted or unmounted: every entity restarts."},
	{Path: "spec.kafka.authentication.type", Class: Rolling,
		Effect: "Credentials and TLS settings of every executor change: every entity restarts; the KafkaUser is updated."},
	{Path: "spec.kafka.authentication.adminSecretName", Class: Hot,
		Effect: "The Secret the operator's own Kafka admin client reads (topics: Direct); no pod restarts."},
	{Path: "spec.kafka.authentication.secretName", Class: Rolling,
		Effect: "Another Secret is mounted: every entity restarts."},

	{Path: "spec.streams", Class: Structural,
		Effect: "An added stream gets its topic (and a dead-letter topic when read); a removed one's topics are deleted or kept by its deletionPolicy."},
	{Path: "spec.streams[].name", Class: Structural,
		Effect: "A renamed stream is another stream: a new topic is created and the old one is deleted or kept by its deletionPolicy."},
	{Path: "spec.streams[].topicName", Class: Refused,
		Effect:  "Immutable once set: create a new stream to read another topic.",
		Refused: "spec.streams[].topicName is immutable: create a new stream to read another topic"},
	{Path: "spec.streams[].partitions", Class: Structural,
		Effect:  "The topic (and its dead-letter topic) gets more partitions; the entities reading it restart to cover them, and Static maps are recomputed. Refused for a stream a stateful entity reads (its state cannot follow its keys to the new partitions yet).",
		Refused: "spec.streams[].partitions cannot decrease"},
	{Path: "spec.streams[].replicas", Class: Hot,
		Effect: "The KafkaTopic's replicas change (Strimzi changes a replication factor only with Cruise Control); no pod restarts."},
	{Path: "spec.streams[].config", Class: Hot,
		Effect: "The KafkaTopic's config (and its dead-letter topic's) change; no pod restarts."},
	{Path: "spec.streams[].deletionPolicy", Class: Hot,
		Effect: "The KafkaTopic gains or loses the owner reference that deletes it with the Pipeline; no pod restarts."},

	{Path: "spec.entities", Class: Structural,
		Effect: "An added entity gets its ConfigMap, Service, StatefulSet and consumer group (which starts each input at its spec.entities[].start position, earliest by default); a removed entity's children are deleted and its group's offsets stay in Kafka, unless its spec.entities[].removal policy retires it first: its pods drain its inputs up to the removal time and/or delete its consumer group, its topics and ACLs stay until then, and its children are deleted after."},
	{Path: "spec.entities[].name", Class: Structural,
		Effect: "A renamed entity is another entity: new StatefulSet and consumer group (starting at earliest), the old ones go."},
	{Path: "spec.entities[].image", Class: Rolling,
		Effect: "The function container's image: the entity's pods restart."},
	{Path: "spec.entities[].command", Class: Rolling,
		Effect: "The function container's command: the entity's pods restart."},
	{Path: "spec.entities[].inputs", Class: Structural,
		Effect: "The entity's consumer group subscribes to other topics (a new input is read from the group's committed offsets, else from its spec.entities[].start position, earliest by default); a dropped input's committed offsets are deleted by the entity's pods once no member of the group reads it, and, when other entities take it over (their start position Entity), only once they have committed offsets of their own on every partition; dead-letter topics appear for newly read streams; the entity restarts."},
	{Path: "spec.entities[].start", Class: Hot,
		Effect: "Where the entity's consumer group begins an input it has never committed offsets for (an added entity or input): Earliest, Latest or Timestamp. Running pods reload executor.json; inputs the group has committed offsets for continue from them."},
	{Path: "spec.entities[].start[].stream", Class: Hot,
		Effect: "Which input the start position is for (one of the entity's inputs)."},
	{Path: "spec.entities[].start[].position", Class: Hot,
		Effect: "Earliest (the default), Latest (the input's end when the group first reads it, committed at once for every partition), Timestamp or Entity (where another entity's group stopped); only for partitions the group has no committed offset for."},
	{Path: "spec.entities[].start[].timestamp", Class: Hot,
		Effect: "With Timestamp: the input is read from each partition's first record at or after it."},
	{Path: "spec.entities[].start[].entity", Class: Hot,
		Effect: "With Entity: the input is taken over from that entity's consumer group; the pods wait until no member of that group reads it, then start at its final committed offsets and commit them at once for every partition (inserting a stage: nothing lost, nothing duplicated under ExactlyOnce); that entity's pods then delete its group's offsets on the input (their executor.json names the groups that take it over: running pods reload it)."},
	{Path: "spec.entities[].outputs", Class: Structural,
		Effect: "The entity writes other topics; the KafkaUser's ACLs follow; the entity restarts."},
	{Path: "spec.entities[].replicas", Class: Scale,
		Effect: "The StatefulSet's replicas: pods are added or removed, the others keep running; Static maps move as few partitions as possible (hot)."},
	{Path: "spec.entities[].autoscaling", Class: Scale,
		Effect: "KEDA's ScaledObject appears or goes; the autoscaler takes or hands back the StatefulSet's replicas without restarting pods."},
	{Path: "spec.entities[].autoscaling.minReplicas", Class: Scale, Effect: "The ScaledObject's minimum."},
	{Path: "spec.entities[].autoscaling.maxReplicas", Class: Scale, Effect: "The ScaledObject's maximum."},
	{Path: "spec.entities[].autoscaling.lagThreshold", Class: Scale, Effect: "The ScaledObject's lag target."},
	{Path: "spec.entities[].autoscaling.activationLagThreshold", Class: Scale, Effect: "The ScaledObject's activation threshold."},
	{Path: "spec.entities[].autoscaling.pollingInterval", Class: Scale, Effect: "The ScaledObject's polling interval."},
	{Path: "spec.entities[].autoscaling.cooldownPeriod", Class: Scale, Effect: "The ScaledObject's cooldown before scaling to zero."},
	{Path: "spec.entities[].assignment", Class: Rolling,
		Effect: "Group or Static assignment: the entity's pods restart with the other mode."},
	{Path: "spec.entities[].assignment.mode", Class: Rolling,
		Effect: "Group or Static assignment: the entity's pods restart with the other mode."},
	{Path: "spec.entities[].assignment.partitions", Class: Hot,
		Effect: "The Static map in the ConfigMap: running pods hand over and take partitions without restarting (a different number of lists also scales the entity)."},
	{Path: "spec.entities[].runtime", Class: Rolling,
		Effect: "The I/O sidecar's group session and liveness bounds: the entity's pods restart with them."},
	{Path: "spec.entities[].runtime.sessionTimeout", Class: Rolling,
		Effect: "The group session timeout the I/O sidecar asks for: the entity's pods restart and rejoin with it; the KafkaUser may alter the group's config."},
	{Path: "spec.entities[].runtime.livenessTimeout", Class: Rolling,
		Effect: "How long a session may make no progress before the I/O sidecar fails its liveness probe: the entity's pods restart with it."},
	{Path: "spec.entities[].removal", Class: Hot,
		Effect: "What removing the entity later does; it changes nothing running (an annotation of the StatefulSet, outside the pod template, records it). The policy of the last spec that had the entity applies."},
	{Path: "spec.entities[].removal.drain", Class: Hot,
		Effect: "On removal, the entity's pods first process every record its inputs held at the removal time (status.retiring says how many remain), then stop; only then are its children deleted."},
	{Path: "spec.entities[].removal.consumerGroup", Class: Hot,
		Effect: "Keep (the default) leaves the removed entity's consumer group and offsets in Kafka; Delete has its pods leave and delete the group (after the drain) before its children are deleted. Refused: removing an entity with Delete that another entity's start position Entity takes an input over from (its offsets would go)."},
	{Path: "spec.entities[].guarantee", Class: Rolling,
		Effect: "AtLeastOnce or ExactlyOnce (transactional producers): the entity's pods restart; the KafkaUser's ACLs follow."},
	{Path: "spec.entities[].state", Class: Structural,
		Effect: "The state sidecar and the changelog topic appear or go: the entity restarts."},
	{Path: "spec.entities[].state.enabled", Class: Structural,
		Effect: "The state sidecar and the changelog topic appear or go: the entity restarts."},
	{Path: "spec.entities[].state.backend", Class: Rolling,
		Effect: "Memory or Pebble: the entity restarts and restores its state from the changelog."},
	{Path: "spec.entities[].config", Class: Hot,
		Effect: "The function's configuration in executor.json: running pods reload it, no restart."},
	{Path: "spec.entities[].resources", Class: Rolling,
		Effect: "The function container's resources: the entity's pods restart."},
	{Path: "spec.entities[].env", Class: Rolling,
		Effect: "The function container's environment: the entity's pods restart."},

	{Path: "spec.monitoring", Class: Hot, Effect: "The ServiceMonitor and PrometheusRule appear, change or go; no pod restarts."},
	{Path: "spec.monitoring.enabled", Class: Hot, Effect: "The ServiceMonitor and PrometheusRule appear or go."},
	{Path: "spec.monitoring.interval", Class: Hot, Effect: "The ServiceMonitor's scrape interval."},
	{Path: "spec.monitoring.labels", Class: Hot, Effect: "The labels of the ServiceMonitor and PrometheusRule."},
	{Path: "spec.revisionHistoryLimit", Class: Hot, Effect: "How many ControllerRevisions the operator keeps; nothing runs differently."},
	{Path: "spec.suspend", Class: Scale,
		Effect: "Every entity scales to zero (true) or back (false); topics, offsets and state stay."},
}

// RefusedStatefulPartitions is the API server's message when the partitions of a stream that a
// stateful entity reads are raised.
const RefusedStatefulPartitions = "spec.streams[].partitions: a stream read by an entity with state.enabled cannot get more partitions: its keys would move to other partitions and the entity's state, kept per input partition, cannot follow them yet (create a new stream with more partitions and a new entity instead)"

// RefusedDeletedGroupTakeover is the API server's message when an entity is removed with
// removal.consumerGroup: Delete while another takes an input over from it (start position Entity).
const RefusedDeletedGroupTakeover = "spec.entities[].start[].entity names an entity removed with removal.consumerGroup: Delete, which deletes the committed offsets the input would start from; remove it with consumerGroup: Keep"

// Lookup returns the rule of a field path (spec.entities[].image), and whether there is one.
func Lookup(path string) (Rule, bool) {
	for _, r := range Rules {
		if r.Path == path {
			return r, true
		}
	}
	return Rule{}, false
}

// apiPackage is the Go package of the Pipeline API: its struct types are walked into, others
// (Kubernetes' ResourceRequirements, EnvVar) are fields as a whole.
var apiPackage = reflect.TypeOf(v1alpha1.PipelineSpec{}).PkgPath()

// Fields lists the field paths of the Pipeline spec, from its Go type: every field of an API
// struct, and the struct-valued fields (optional structs and lists) themselves, since adding or
// removing one is a change of its own. A plain struct field (spec.kafka) is only walked into.
func Fields() []string {
	var out []string
	walkType("spec", reflect.TypeOf(v1alpha1.PipelineSpec{}), &out)
	return out
}

func walkType(prefix string, t reflect.Type, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		path := prefix + "." + name
		ft, composite := f.Type, false
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft, composite = ft.Elem(), true
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() == apiPackage {
			if composite {
				*out = append(*out, path)
			}
			sub := path
			if f.Type.Kind() == reflect.Slice {
				sub += "[]"
			}
			walkType(sub, ft, out)
			continue
		}
		*out = append(*out, path)
	}
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

// mustRule is Lookup for paths the walk produced, which the tests guarantee are in the table.
func mustRule(path string) Rule {
	r, ok := Lookup(path)
	if !ok {
		panic(fmt.Sprintf("reconfig: field %s has no rule (add it to reconfig.Rules)", path))
	}
	return r
}
