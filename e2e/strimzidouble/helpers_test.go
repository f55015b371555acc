package strimzidouble

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func TestConfigChanges(t *testing.T) {
	type change struct {
		Op    kadm.IncrementalOp
		Name  string
		Value string
	}
	cases := []struct {
		reason           string
		current, desired map[string]string
		want             []change
	}{
		{reason: "in sync: nothing to do",
			current: map[string]string{"retention.ms": "1"}, desired: map[string]string{"retention.ms": "1"}},
		{reason: "a new and a changed value are set",
			current: map[string]string{"retention.ms": "1"}, desired: map[string]string{"retention.ms": "2", "cleanup.policy": "compact"},
			want: []change{{kadm.SetConfig, "cleanup.policy", "compact"}, {kadm.SetConfig, "retention.ms", "2"}}},
		{reason: "config missing from the spec is reverted to the broker default, as Strimzi does on adoption",
			current: map[string]string{"retention.ms": "1", "cleanup.policy": "compact"}, desired: map[string]string{"cleanup.policy": "compact"},
			want: []change{{kadm.DeleteConfig, "retention.ms", ""}}},
		{reason: "an empty spec reverts everything",
			current: map[string]string{"segment.ms": "5"}, desired: nil,
			want: []change{{kadm.DeleteConfig, "segment.ms", ""}}},
	}
	for _, tc := range cases {
		var got []change
		for _, a := range configChanges(tc.current, tc.desired) {
			c := change{Op: a.Op, Name: a.Name}
			if a.Value != nil {
				c.Value = *a.Value
			}
			got = append(got, c)
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.reason, d)
		}
	}
}

func TestDesiredConfigRendersValues(t *testing.T) {
	got, err := desiredConfig(map[string]any{
		"retention.ms": int64(86400000), "min.cleanable.dirty.ratio": 0.5, "unclean.leader.election.enable": true,
		"cleanup.policy": []any{"compact", "delete"}, "compression.type": "zstd",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"retention.ms": "86400000", "min.cleanable.dirty.ratio": "0.5", "unclean.leader.election.enable": "true",
		"cleanup.policy": "compact,delete", "compression.type": "zstd",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := desiredConfig(map[string]any{"x": map[string]any{"nested": 1}}); err == nil {
		t.Error("a nested object was accepted as a config value")
	}
}

func TestDesiredACLs(t *testing.T) {
	rule := func(typ, name, pattern string, ops ...string) aclRule {
		var r aclRule
		r.Resource.Type, r.Resource.Name, r.Resource.PatternType, r.Operations = typ, name, pattern, ops
		return r
	}
	deprecated := rule("group", "g", "", "Read")
	deprecated.Operations, deprecated.Operation = nil, "Read"
	deny := rule("topic", "secret", "literal", "Read")
	deny.Type, deny.Host = "deny", "10.0.0.1"

	got, err := desiredACLs([]aclRule{
		rule("topic", "t", "literal", "Write", "Describe"),
		rule("transactionalId", "tx-", "prefix", "Write"),
		rule("cluster", "", "", "IdempotentWrite"),
		deprecated,
		deny,
	})
	if err != nil {
		t.Fatal(err)
	}
	allow := kmsg.ACLPermissionTypeAllow
	lit, pre := kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLResourcePatternTypePrefixed
	want := []acl{
		{kmsg.ACLResourceTypeTopic, "t", lit, kmsg.ACLOperationWrite, allow, "*"},
		{kmsg.ACLResourceTypeTopic, "t", lit, kmsg.ACLOperationDescribe, allow, "*"},
		{kmsg.ACLResourceTypeTransactionalId, "tx-", pre, kmsg.ACLOperationWrite, allow, "*"},
		{kmsg.ACLResourceTypeCluster, "kafka-cluster", lit, kmsg.ACLOperationIdempotentWrite, allow, "*"},
		{kmsg.ACLResourceTypeGroup, "g", lit, kmsg.ACLOperationRead, allow, "*"},
		{kmsg.ACLResourceTypeTopic, "secret", lit, kmsg.ACLOperationRead, kmsg.ACLPermissionTypeDeny, "10.0.0.1"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, bad := range []aclRule{rule("user", "u", "", "Read"), rule("topic", "t", "match", "Read"), rule("topic", "t", "", "Fly"), rule("topic", "t", "")} {
		if _, err := desiredACLs([]aclRule{bad}); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestACLChanges(t *testing.T) {
	a := acl{kmsg.ACLResourceTypeTopic, "a", kmsg.ACLResourcePatternTypeLiteral, kmsg.ACLOperationRead, kmsg.ACLPermissionTypeAllow, "*"}
	b, c := a, a
	b.ResourceName, c.Operation = "b", kmsg.ACLOperationWrite
	create, remove := aclChanges([]acl{a, b}, []acl{a, c, c})
	if d := cmp.Diff([]acl{c}, create); d != "" {
		t.Errorf("create (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]acl{b}, remove); d != "" {
		t.Errorf("remove (-want +got):\n%s", d)
	}
	if create, remove := aclChanges([]acl{a}, nil); len(create) != 0 || !cmp.Equal(remove, []acl{a}) {
		t.Errorf("no desired ACLs: create %v remove %v, want every ACL removed", create, remove)
	}
}

func TestOwner(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	kt := func(name, topic string, created time.Time, mods ...func(*unstructured.Unstructured)) unstructured.Unstructured {
		u := unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{}}}
		u.SetName(name)
		u.SetUID(types.UID(name))
		u.SetCreationTimestamp(metav1.NewTime(created))
		if topic != "" {
			u.Object["spec"] = map[string]any{"topicName": topic}
		}
		for _, m := range mods {
			m(&u)
		}
		return u
	}
	established := func(topic string) func(*unstructured.Unstructured) {
		return func(u *unstructured.Unstructured) { u.Object["status"] = map[string]any{"topicName": topic} }
	}
	cases := []struct {
		reason string
		topics []unstructured.Unstructured
		want   string
	}{
		{reason: "the oldest wins", want: "old",
			topics: []unstructured.Unstructured{kt("young", "t", t0.Add(time.Second)), kt("old", "t", t0)}},
		{reason: "same second: by name", want: "a",
			topics: []unstructured.Unstructured{kt("b", "t", t0), kt("a", "t", t0)}},
		{reason: "the one already managing the topic keeps it, even if younger", want: "young",
			topics: []unstructured.Unstructured{kt("old", "t", t0), kt("young", "t", t0.Add(time.Hour), established("t"))}},
		{reason: "metadata.name is the topic name when spec.topicName is unset", want: "t",
			topics: []unstructured.Unstructured{kt("t", "", t0.Add(time.Second)), kt("other", "other", t0)}},
		{reason: "an unmanaged KafkaTopic manages nothing", want: "managed",
			topics: []unstructured.Unstructured{kt("unmanaged", "t", t0, unmanaged), kt("managed", "t", t0.Add(time.Second))}},
		{reason: "no contender", want: "",
			topics: []unstructured.Unstructured{kt("x", "other", t0)}},
	}
	for _, tc := range cases {
		got := ""
		if o := owner(tc.topics, "t"); o != nil {
			got = o.GetName()
		}
		if got != tc.want {
			t.Errorf("%s: owner %q, want %q", tc.reason, got, tc.want)
		}
	}
}

func TestConditionsKeepTransitionTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first := conditionsFor(nil, t0, condition{Type: "Ready", Status: "True"})
	same := conditionsFor(first, t0.Add(time.Hour), condition{Type: "Ready", Status: "True"})
	if !equalJSON(first, same) {
		t.Errorf("an unchanged condition changed: %v → %v", first, same)
	}
	flipped := conditionsFor(same, t0.Add(time.Hour), condition{Type: "Ready", Status: "False", Reason: ReasonNotSupported})
	if got := flipped[0].(map[string]any)["lastTransitionTime"]; got != "2026-01-01T01:00:00Z" {
		t.Errorf("lastTransitionTime after a transition = %v", got)
	}
}
