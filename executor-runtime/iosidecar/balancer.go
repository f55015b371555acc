package iosidecar

import (
	"encoding/json"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// staticProtocol is the group protocol name of the ordinal balancer.
const staticProtocol = "millrace-static-v1"

// staticMeta is what each member of a Static entity tells the group leader.
type staticMeta struct {
	Ordinal    int       `json:"ordinal"`
	Generation int64     `json:"generation"`
	Static     [][]int32 `json:"static"`
}

// staticBalancer implements Static assignment on top of the classic group protocol: the
// leader gives every member exactly the partitions the operator's map assigns to that member's
// ordinal, using the newest map (highest generation) any member reports. Going through the group
// keeps offsets in the entity's group id (so lag-based scaling sees them) and gives Static mode
// the group's generation fencing, which is what keeps a reassignment exactly-once: a pod that
// still processes a partition under an old generation cannot commit its transaction's offsets.
type staticBalancer struct {
	meta staticMeta
}

func newStaticBalancer(ordinal int, a config.Assignment) *staticBalancer {
	return &staticBalancer{meta: staticMeta{Ordinal: ordinal, Generation: a.Generation, Static: a.Static}}
}

func (*staticBalancer) ProtocolName() string { return staticProtocol }
func (*staticBalancer) IsCooperative() bool  { return false }

func (b *staticBalancer) JoinGroupMetadata(interests []string, _ map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = interests
	meta.UserData, _ = json.Marshal(b.meta)
	meta.Generation = generation
	return meta.AppendTo(nil)
}

func (*staticBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	return kgo.ParseConsumerSyncAssignment(assignment)
}

func (b *staticBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	return cb, cb.MemberTopics(), err
}

// Balance implements kgo.ConsumerBalancerBalance.
func (b *staticBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := cb.NewPlan()
	newest := b.meta
	owners := map[int]*kmsg.JoinGroupResponseMember{}
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, cm *kmsg.ConsumerMemberMetadata) {
		var meta staticMeta
		if json.Unmarshal(cm.UserData, &meta) != nil {
			return
		}
		if meta.Generation > newest.Generation {
			newest = meta
		}
		// Two members claiming one ordinal (a pod and its not yet expired predecessor): the
		// lowest member id wins, so every leader decides the same.
		if cur, ok := owners[meta.Ordinal]; !ok || m.MemberID < cur.MemberID {
			owners[meta.Ordinal] = m
		}
	})
	for ord, parts := range newest.Static {
		m, ok := owners[ord]
		if !ok {
			continue
		}
		for topic, n := range topics {
			for _, p := range parts {
				if p < n && !slices.Contains(plan.AsMemberIDMap()[m.MemberID][topic], p) {
					plan.AddPartition(m, topic, p)
				}
			}
		}
	}
	return plan
}
