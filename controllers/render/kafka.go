package render

import (
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
)

// strimziTypeMeta is the apiVersion/kind of a Strimzi object in the version the cluster serves.
func strimziTypeMeta(f Facts, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: strimzi.Group + "/" + f.StrimziAPIVersion, Kind: kind}
}

// kafkaTopics renders a Strimzi KafkaTopic for every topic, when Strimzi manages the topics and
// is installed. Topics whose policy is Retain get no owner reference: the garbage collector must
// not delete them (and their data) with the Pipeline.
func kafkaTopics(p *v1alpha1.Pipeline, f Facts, topics []Topic) []*strimzi.KafkaTopic {
	if p.Spec.Kafka.Topics != v1alpha1.TopicsStrimzi || f.StrimziAPIVersion == "" {
		return nil
	}
	var out []*strimzi.KafkaTopic
	for _, t := range topics {
		var name string
		var labels map[string]string
		switch t.Purpose {
		case TopicStream:
			name, labels = KafkaTopicName(p, t.Stream), StreamLabels(p, t.Stream)
		case TopicDeadLetter:
			name, labels = DeadLetterKafkaTopicName(p, t.Stream), StreamLabels(p, t.Stream)
		case TopicChangelog:
			name, labels = ChangelogKafkaTopicName(p, t.Entity), PipelineLabels(p)
			labels[LabelComponent] = ComponentTopic
			labels[LabelEntity] = t.Entity
		}
		labels[strimzi.LabelCluster] = p.Spec.Kafka.StrimziCluster
		meta := objectMeta(p, name, labels)
		if t.DeletionPolicy != v1alpha1.DeletionDelete {
			meta.OwnerReferences = nil
		}
		if t.Adopted {
			// An adopted topic exists already, with its own partitions and configuration.
			// Strimzi's Topic Operator makes a topic match its KafkaTopic's spec (it would reset
			// every config the spec leaves out, and refuse the partition count), so the
			// KafkaTopic of an adopted topic tells it to keep its hands off: it is only the
			// handle by which deletionPolicy: Delete deletes the topic (see the pipeline
			// package's deleteChild).
			meta.Annotations = map[string]string{strimzi.AnnotationManaged: "false"}
		}
		out = append(out, &strimzi.KafkaTopic{
			TypeMeta:   strimziTypeMeta(f, "KafkaTopic"),
			ObjectMeta: meta,
			Spec: strimzi.KafkaTopicSpec{
				TopicName:  t.Name,
				Partitions: ptr.To(t.Partitions),
				Replicas:   t.Replicas,
				Config:     cloneMap(t.Config),
			},
		})
	}
	return out
}

// Kafka ACL vocabulary of Strimzi's simple authorization.
const (
	aclRead            = "Read"
	aclWrite           = "Write"
	aclDescribe        = "Describe"
	aclDelete          = "Delete"
	aclIdempotentWrite = "IdempotentWrite"
	aclAlterConfigs    = "AlterConfigs"
)

// kafkaUser renders the pipeline's KafkaUser when executors authenticate against a Strimzi
// cluster. Its ACLs allow exactly what the executors do and nothing else:
//   - Read and Describe on input topics, Write and Describe on output and dead-letter topics,
//     all three on changelogs (the state sidecar restores from and writes to them);
//   - Read, Describe and Delete on each entity's consumer group (Delete: the I/O sidecar deletes
//     the group's committed offsets on inputs the entity no longer reads, an OffsetDelete; the
//     groups of the entities that take such an input over are the Pipeline's too, so reading
//     their offsets needs nothing more), and AlterConfigs on it when the entity sets
//     runtime.sessionTimeout (under KIP-848 the sidecar asks for it as the group's
//     consumer.session.timeout.ms, an IncrementalAlterConfigs on the group);
//   - the same for an entity being retired (Facts.Retiring: removed from the spec, its pods
//     drain its inputs or delete its group, a DeleteGroups, first), from the executor.json its
//     pods run with, until the retirement is done;
//   - Describe only on the group of a removed entity that another takes an input over from
//     (start position Entity), to see its members and read its committed offsets;
//   - Write and Describe on the transactional ids of ExactlyOnce entities, by prefix, since each
//     pod appends its ordinal;
//   - IdempotentWrite on the cluster, which brokers before Kafka 2.8 require of idempotent
//     producers (every executor produces at least to its dead-letter topics).
func kafkaUser(p *v1alpha1.Pipeline, f Facts) *strimzi.KafkaUser {
	at := authType(p)
	if at == v1alpha1.AuthNone || p.Spec.Kafka.StrimziCluster == "" || f.StrimziAPIVersion == "" {
		return nil
	}
	topicOps := map[string]map[string]bool{}
	allow := func(topic string, ops ...string) {
		if topicOps[topic] == nil {
			topicOps[topic] = map[string]bool{}
		}
		for _, op := range ops {
			topicOps[topic][op] = true
		}
	}
	var txPrefixes []string
	type group struct {
		id  string
		ops []string
	}
	var groups []group
	for i := range p.Spec.Entities {
		e := &p.Spec.Entities[i]
		for _, in := range e.Inputs {
			topic := TopicName(p, in)
			allow(topic, aclRead, aclDescribe)
			allow(DeadLetterTopicName(topic), aclWrite, aclDescribe)
		}
		for _, out := range e.Outputs {
			allow(TopicName(p, out), aclWrite, aclDescribe)
		}
		if stateEnabled(e) {
			allow(ChangelogTopicName(p, e.Name), aclRead, aclWrite, aclDescribe)
		}
		g := group{id: GroupID(p, e.Name), ops: []string{aclDelete, aclDescribe, aclRead}}
		if e.Runtime != nil && e.Runtime.SessionTimeout != nil {
			g.ops = []string{aclAlterConfigs, aclDelete, aclDescribe, aclRead}
		}
		groups = append(groups, g)
		if e.Guarantee == v1alpha1.ExactlyOnce {
			txPrefixes = append(txPrefixes, TransactionalIDPrefix(p, e.Name))
		}
	}
	// A retiring entity keeps what its pods do until the retirement is done. An entity of the
	// spec with the same name (added back) has its rights already.
	for _, re := range f.Retiring {
		cfg := re.Executor
		if cfg == nil || slices.ContainsFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == re.Name }) {
			continue
		}
		for _, in := range cfg.Inputs {
			allow(in.Topic, aclRead, aclDescribe)
			if in.DeadLetterTopic != "" {
				allow(in.DeadLetterTopic, aclWrite, aclDescribe)
			}
		}
		for _, out := range cfg.Outputs {
			allow(out.Topic, aclWrite, aclDescribe)
		}
		if cfg.State != nil && cfg.State.ChangelogTopic != "" {
			allow(cfg.State.ChangelogTopic, aclRead, aclWrite, aclDescribe)
		}
		if cfg.GroupID != "" && !slices.ContainsFunc(groups, func(g group) bool { return g.id == cfg.GroupID }) {
			g := group{id: cfg.GroupID, ops: []string{aclDelete, aclDescribe, aclRead}}
			if cfg.Runtime.SessionTimeout.Duration > 0 {
				g.ops = []string{aclAlterConfigs, aclDelete, aclDescribe, aclRead}
			}
			groups = append(groups, g)
		}
		if cfg.TransactionalIDPrefix != "" && !slices.Contains(txPrefixes, cfg.TransactionalIDPrefix) {
			txPrefixes = append(txPrefixes, cfg.TransactionalIDPrefix)
		}
	}
	// An entity that takes an input over from an entity removed in the same change reads that
	// entity's group: its members (DescribeGroups) and committed offsets (OffsetFetch), both
	// Describe. An entity still in the spec has its group's Read and Describe already.
	for i := range p.Spec.Entities {
		for _, st := range p.Spec.Entities[i].Start {
			if st.Position != v1alpha1.StartEntity || slices.ContainsFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == st.Entity }) {
				continue
			}
			id := GroupID(p, st.Entity)
			if !slices.ContainsFunc(groups, func(g group) bool { return g.id == id }) {
				groups = append(groups, group{id: id, ops: []string{aclDescribe}})
			}
		}
	}

	var acls []strimzi.ACL
	for _, topic := range slices.Sorted(maps.Keys(topicOps)) {
		acls = append(acls, acl("topic", topic, "literal", sortedOps(topicOps[topic])...))
	}
	for _, g := range groups {
		acls = append(acls, acl("group", g.id, "literal", g.ops...))
	}
	for _, prefix := range txPrefixes {
		acls = append(acls, acl("transactionalId", prefix, "prefix", aclDescribe, aclWrite))
	}
	acls = append(acls, strimzi.ACL{
		Resource:   strimzi.ACLResource{Type: "cluster"},
		Operations: []string{aclIdempotentWrite},
		Type:       "allow",
	})

	labels := PipelineLabels(p)
	labels[LabelComponent] = ComponentUser
	labels[strimzi.LabelCluster] = p.Spec.Kafka.StrimziCluster
	return &strimzi.KafkaUser{
		TypeMeta:   strimziTypeMeta(f, "KafkaUser"),
		ObjectMeta: objectMeta(p, KafkaUserName(p), labels),
		Spec: strimzi.KafkaUserSpec{
			Authentication: &strimzi.KafkaUserAuthentication{Type: string(at)},
			Authorization:  &strimzi.KafkaUserAuthorization{Type: "simple", ACLs: acls},
		},
	}
}

func acl(resourceType, name, pattern string, ops ...string) strimzi.ACL {
	return strimzi.ACL{
		Resource:   strimzi.ACLResource{Type: resourceType, Name: name, PatternType: pattern},
		Operations: ops,
		Type:       "allow",
	}
}

func sortedOps(set map[string]bool) []string { return slices.Sorted(maps.Keys(set)) }
