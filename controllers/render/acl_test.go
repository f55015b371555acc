package render

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
)

// kafkaResource is one resource an executor uses: a topic, a consumer group or a transactional id.
type kafkaResource struct{ kind, name string }

// grants reports whether the ACLs allow something on r (literal ACLs by name, prefixed ones by
// prefix), as Kafka's authorizer decides it.
func grants(acls []strimzi.ACL, r kafkaResource) bool {
	for _, a := range acls {
		if a.Resource.Type != r.kind {
			continue
		}
		switch a.Resource.PatternType {
		case "prefix":
			if strings.HasPrefix(r.name, a.Resource.Name) {
				return true
			}
		default:
			if r.name == a.Resource.Name {
				return true
			}
		}
	}
	return false
}

// usedBy is every topic, group and transactional id the executors of entity e of p use, read
// from the executor configuration render writes. A pod's transactional id is the prefix, "-" and
// its identity (the ordinal, or its hostname), as the I/O sidecar builds it.
func usedBy(t *testing.T, p *v1alpha1.Pipeline, e string) []kafkaResource {
	t.Helper()
	p = withDefaults(p)
	var ent *v1alpha1.Entity
	for i := range p.Spec.Entities {
		if p.Spec.Entities[i].Name == e {
			ent = &p.Spec.Entities[i]
		}
	}
	cfg, err := executorConfig(p, ent, Facts{StrimziAPIVersion: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	out := []kafkaResource{{"group", cfg.GroupID}}
	for _, in := range cfg.Inputs {
		out = append(out, kafkaResource{"topic", in.Topic}, kafkaResource{"topic", in.DeadLetterTopic})
	}
	for _, o := range cfg.Outputs {
		out = append(out, kafkaResource{"topic", o.Topic})
	}
	if cfg.State != nil {
		out = append(out, kafkaResource{"topic", cfg.State.ChangelogTopic})
	}
	if cfg.TransactionalIDPrefix != "" {
		for _, id := range []string{"0", "1", "17", p.Name + "-" + e + "-0"} {
			out = append(out, kafkaResource{"transactionalId", cfg.TransactionalIDPrefix + "-" + id})
		}
	}
	return out
}

// TestKafkaUserACLsAreDisjoint: the KafkaUser of one Pipeline grants nothing that an executor of
// another Pipeline (or of another entity) uses, in the same namespace or another, for names that
// nest: Pipeline "p" with entity "e" and Pipeline "p.e" with entity "x" once shared the
// transactional id prefix "team.p.e." (the first's prefix ACL matched the second's ids), so one
// Pipeline's user could take over, and fence, the other's transactions.
func TestKafkaUserACLsAreDisjoint(t *testing.T) {
	pipeline := func(ns, name string, entities ...string) *v1alpha1.Pipeline {
		mods := []pipelineModifier{withName(name), withNamespace(ns), withStream("in"), withStream("out"),
			func(p *v1alpha1.Pipeline) {
				p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			}}
		for _, e := range entities {
			mods = append(mods, withEntity(e, "example.com/f:v1", []string{"in"}, []string{"out"}, exactlyOnce(), withState(v1alpha1.StateMemory)))
		}
		return newPipeline(mods...)
	}
	pipelines := []*v1alpha1.Pipeline{
		pipeline("team", "p", "e", "ex", "x"),
		pipeline("team", "p.e", "x", "e"),
		pipeline("team", "p.e.x", "y"),
		pipeline("team", "p-e", "x"),
		pipeline("team", "p.ex", "y"),
		pipeline("team2", "p", "e"),
		pipeline("team", "team2.p", "e"),
	}
	type owner struct{ ns, pipeline, entity string }
	var checked int
	for _, a := range pipelines {
		user := kafkaUser(withDefaults(a), Facts{StrimziAPIVersion: "v1"})
		if user == nil {
			t.Fatalf("no KafkaUser for %s/%s", a.Namespace, a.Name)
		}
		for _, b := range pipelines {
			for _, e := range b.Spec.Entities {
				if a == b {
					// A Pipeline's user may use everything its own entities use.
					for _, r := range usedBy(t, b, e.Name) {
						if !grants(user.Spec.Authorization.ACLs, r) {
							t.Errorf("the KafkaUser of %s/%s does not grant its own entity %s the %s %q", a.Namespace, a.Name, e.Name, r.kind, r.name)
						}
					}
					continue
				}
				for _, r := range usedBy(t, b, e.Name) {
					checked++
					if grants(user.Spec.Authorization.ACLs, r) {
						t.Errorf("the KafkaUser of %s/%s grants the %s %q of %v", a.Namespace, a.Name, r.kind, r.name,
							owner{b.Namespace, b.Name, e.Name})
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing was checked")
	}
	t.Log(fmt.Sprintf("%d resources of other Pipelines checked", checked))
}

// TestKafkaUserACLsOfAHandover: an entity that takes an input over from an entity removed in the
// same change may Describe that entity's group (its members and committed offsets) and nothing
// more; a handover from an entity still in the spec adds no ACL.
func TestKafkaUserACLsOfAHandover(t *testing.T) {
	p := newPipeline(withStream("s1"), withStream("s2"),
		withEntity("x", "example.com/f:v1", []string{"s1"}, []string{"s2"}),
		func(p *v1alpha1.Pipeline) {
			p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			p.Spec.Entities[0].Start = []v1alpha1.InputStart{{Stream: "s1", Position: v1alpha1.StartEntity, Entity: "b"}}
		})
	user := kafkaUser(withDefaults(p), Facts{StrimziAPIVersion: "v1"})
	var got []string
	for _, a := range user.Spec.Authorization.ACLs {
		if a.Resource.Type == "group" && a.Resource.Name == GroupID(p, "b") {
			got = append(got, a.Operations...)
		}
	}
	if strings.Join(got, ",") != aclDescribe {
		t.Errorf("the group of the removed entity b is granted %v, want only Describe", got)
	}
	// With b still in the spec, its group keeps exactly its own Read, Describe and Delete (the
	// I/O sidecar deletes b's committed offsets on the input it no longer reads).
	withB := p.DeepCopy()
	withB.Spec.Entities = append(withB.Spec.Entities, v1alpha1.Entity{Name: "b", Image: "example.com/f:v1", Inputs: []string{"s2"}})
	user = kafkaUser(withDefaults(withB), Facts{StrimziAPIVersion: "v1"})
	n := 0
	for _, a := range user.Spec.Authorization.ACLs {
		if a.Resource.Type == "group" && a.Resource.Name == GroupID(p, "b") {
			n++
			if got := strings.Join(a.Operations, ","); got != aclDelete+","+aclDescribe+","+aclRead {
				t.Errorf("entity b's group is granted %v, want Delete, Describe and Read", a.Operations)
			}
		}
	}
	if n != 1 {
		t.Errorf("entity b's group has %d ACLs, want 1", n)
	}
}

// TestKafkaUserACLsOfARetiringEntity: an entity removed from the spec and being retired keeps
// the ACLs its pods use (Facts.Retiring) until the retirement is done: its inputs and their
// dead-letter topics, its outputs, its changelog, its group with Delete (DeleteGroups), its
// transactional ids; without it in Facts.Retiring, none of them.
func TestKafkaUserACLsOfARetiringEntity(t *testing.T) {
	full := newPipeline(withStream("s1"), withStream("s2"), withStream("s3"),
		withEntity("a", "example.com/f:v1", []string{"s1"}, []string{"s2"}),
		withEntity("b", "example.com/f:v1", []string{"s2"}, []string{"s3"}, exactlyOnce()),
		withAuth(v1alpha1.AuthScramSha512, ""))
	cfg, err := ExecutorConfig(full, "b", newFacts())
	if err != nil {
		t.Fatal(err)
	}
	removed := full.DeepCopy()
	removed.Spec.Entities = removed.Spec.Entities[:1]
	removed.Spec.Streams = removed.Spec.Streams[:2] // s3 goes in the same change
	want := []struct {
		kind, name string
		ops        []string
	}{
		{"topic", TopicName(full, "s2"), []string{aclDescribe, aclRead, aclWrite}},
		{"topic", DeadLetterTopicName(TopicName(full, "s2")), []string{aclDescribe, aclWrite}},
		{"topic", TopicName(full, "s3"), []string{aclDescribe, aclWrite}},
		{"group", GroupID(full, "b"), []string{aclDelete, aclDescribe, aclRead}},
		{"transactionalId", TransactionalIDPrefix(full, "b"), []string{aclDescribe, aclWrite}},
	}
	ops := func(u *strimzi.KafkaUser, kind, name string) []string {
		for _, a := range u.Spec.Authorization.ACLs {
			if a.Resource.Type == kind && a.Resource.Name == name {
				return a.Operations
			}
		}
		return nil
	}
	retiringUser := kafkaUser(withDefaults(removed), newFacts(func(f *Facts) {
		f.Retiring = []RetiringEntity{{Name: "b", Executor: cfg}}
	}))
	goneUser := kafkaUser(withDefaults(removed), newFacts())
	for _, w := range want {
		if got := ops(retiringUser, w.kind, w.name); !slices.Equal(got, w.ops) {
			t.Errorf("retiring b: %s %q is granted %v, want %v", w.kind, w.name, got, w.ops)
		}
		if w.name == TopicName(full, "s2") {
			continue // a writes s2 itself
		}
		if got := ops(goneUser, w.kind, w.name); got != nil {
			t.Errorf("b retired: %s %q is still granted %v", w.kind, w.name, got)
		}
	}
}
