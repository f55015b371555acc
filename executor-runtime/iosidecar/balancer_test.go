package iosidecar

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

func member(t *testing.T, id string, ordinal int, a config.Assignment) kmsg.JoinGroupResponseMember {
	t.Helper()
	b := newStaticBalancer(ordinal, a)
	m := kmsg.NewJoinGroupResponseMember()
	m.MemberID = id
	m.ProtocolMetadata = b.JoinGroupMetadata([]string{"in"}, nil, 1)
	return m
}

func TestStaticBalancer(t *testing.T) {
	gen1 := config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
	gen2 := config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1, 2}, {3}}, Generation: 2}
	cases := []struct {
		reason  string
		members []kmsg.JoinGroupResponseMember
		want    map[string]map[string][]int32
	}{
		{
			reason:  "each ordinal gets its partitions",
			members: []kmsg.JoinGroupResponseMember{member(t, "m-a", 0, gen1), member(t, "m-b", 1, gen1)},
			want:    map[string]map[string][]int32{"m-a": {"in": {0, 1}}, "m-b": {"in": {2, 3}}},
		},
		{
			reason:  "the newest map wins even when the leader has an older one",
			members: []kmsg.JoinGroupResponseMember{member(t, "m-a", 0, gen1), member(t, "m-b", 1, gen2)},
			want:    map[string]map[string][]int32{"m-a": {"in": {0, 1, 2}}, "m-b": {"in": {3}}},
		},
		{
			reason:  "an absent ordinal's partitions stay unassigned",
			members: []kmsg.JoinGroupResponseMember{member(t, "m-a", 0, gen1)},
			want:    map[string]map[string][]int32{"m-a": {"in": {0, 1}}},
		},
		{
			reason:  "two members with one ordinal: the lowest member id gets the partitions",
			members: []kmsg.JoinGroupResponseMember{member(t, "m-z", 0, gen1), member(t, "m-a", 0, gen1)},
			want:    map[string]map[string][]int32{"m-a": {"in": {0, 1}}, "m-z": {}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			leader := newStaticBalancer(0, gen1)
			mb, topics, err := leader.MemberBalancer(tc.members)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := topics["in"]; !ok {
				t.Fatalf("member topics %v lack the input", topics)
			}
			plan, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(map[string]int32{"in": 4})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, plan.(*kgo.BalancePlan).AsMemberIDMap()); diff != "" {
				t.Errorf("%s: plan (-want +got):\n%s", tc.reason, diff)
			}
		})
	}
}

func TestStaticMetadataCarriesTheMap(t *testing.T) {
	a := config.Assignment{Static: [][]int32{{1}}, Generation: 9}
	meta := kmsg.NewConsumerMemberMetadata()
	if err := meta.ReadFrom(newStaticBalancer(4, a).JoinGroupMetadata([]string{"in"}, nil, 1)); err != nil {
		t.Fatal(err)
	}
	var got staticMeta
	if err := json.Unmarshal(meta.UserData, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(staticMeta{Ordinal: 4, Generation: 9, Static: [][]int32{{1}}}, got); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
}
