package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

// brokerDiagnostics describes what the broker holds for the entities' groups and topics: the
// committed offsets (plain and with RequireStable), the end offsets (high watermark and last
// stable offset), the groups' members and assignments, and the open transactions. A failed
// fault test logs it before it stops the processes, so that a stall can be told apart: a
// partition nobody owns, an offset fetch held by a pending transactional commit, a last stable
// offset held by an open transaction, or a sidecar that owns the partition and does not read it.
func brokerDiagnostics(t *testing.T, k *testenv.Kafka, entities ...*testenv.Entity) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	js := func(v any) string { out, _ := json.Marshal(v); return string(out) }
	for _, e := range entities {
		group := e.Config.GroupID
		fmt.Fprintf(&b, "== group %s\n", group)
		if committed, err := k.Admin.FetchOffsets(ctx, group); err != nil {
			fmt.Fprintf(&b, "fetch offsets: %v\n", err)
		} else {
			committed.Each(func(o kadm.OffsetResponse) {
				fmt.Fprintf(&b, "committed %s/%d: %d err=%v\n", o.Topic, o.Partition, o.At, o.Err)
			})
		}
		req := kmsg.NewPtrOffsetFetchRequest()
		req.RequireStable = true
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		rg.MemberEpoch = -1
		req.Groups = append(req.Groups, rg)
		if resp, err := req.RequestWith(ctx, k.Client); err != nil {
			fmt.Fprintf(&b, "offset fetch (require stable): %v\n", err)
		} else {
			for _, g := range resp.Groups {
				for _, tp := range g.Topics {
					for _, p := range tp.Partitions {
						fmt.Fprintf(&b, "stable %s/%d: %d code=%d\n", tp.Topic, p.Partition, p.Offset, p.ErrorCode)
					}
				}
			}
		}
		dreq := kmsg.NewPtrConsumerGroupDescribeRequest()
		dreq.Groups = []string{group}
		if resp, err := dreq.RequestWith(ctx, k.Client); err != nil {
			fmt.Fprintf(&b, "consumer group describe: %v\n", err)
		} else {
			for _, g := range resp.Groups {
				fmt.Fprintf(&b, "group state=%s epoch=%d assignmentEpoch=%d code=%d\n", g.State, g.Epoch, g.AssignmentEpoch, g.ErrorCode)
				for _, m := range g.Members {
					fmt.Fprintf(&b, "member %s instance=%v client=%s epoch=%d assignment=%s target=%s\n", m.MemberID, m.InstanceID, m.ClientID, m.MemberEpoch, js(m.Assignment.TopicPartitions), js(m.TargetAssignment.TopicPartitions))
				}
			}
		}
		for _, topic := range e.Topics() {
			hw, err := k.Admin.ListEndOffsets(ctx, topic)
			if err != nil {
				fmt.Fprintf(&b, "end offsets %s: %v\n", topic, err)
				continue
			}
			lso, err := k.Admin.ListCommittedOffsets(ctx, topic)
			if err != nil {
				fmt.Fprintf(&b, "committed end offsets %s: %v\n", topic, err)
				continue
			}
			hw.Each(func(o kadm.ListedOffset) {
				l, _ := lso.Lookup(o.Topic, o.Partition)
				fmt.Fprintf(&b, "topic %s/%d: high watermark %d, last stable %d\n", o.Topic, o.Partition, o.Offset, l.Offset)
			})
		}
	}
	if txs, err := k.Admin.ListTransactions(ctx, nil, nil); err != nil {
		fmt.Fprintf(&b, "list transactions: %v\n", err)
	} else {
		var ids []string
		for _, tx := range txs.Sorted() {
			ids = append(ids, tx.TxnID)
		}
		if dts, err := k.Admin.DescribeTransactions(ctx, ids...); err != nil {
			fmt.Fprintf(&b, "describe transactions: %v\n", err)
		} else {
			for _, d := range dts.Sorted() {
				fmt.Fprintf(&b, "transaction %s state=%s producer=%d epoch=%d timeout=%dms started=%d topics=%s err=%v\n", d.TxnID, d.State, d.ProducerID, d.ProducerEpoch, d.TimeoutMillis, d.StartTimestamp, js(d.Topics), d.Err)
			}
		}
	}
	return b.String()
}

// dataDiagnostics tells where words went missing: per word, how many the words topic holds
// (read_committed) against the truth, and where its sequence of counts breaks.
func dataDiagnostics(t *testing.T, wc *wordCount, truth map[string]int) string {
	var b strings.Builder
	inWords := map[string]int{}
	for _, r := range wc.k.ReadAll(t, wc.words, true) {
		inWords[string(r.Key)]++
	}
	seen := wc.observed(t)
	for w, n := range truth {
		s := seen[w]
		brk := -1
		for i, c := range s {
			if c != i+1 {
				brk = i
				break
			}
		}
		ctx := ""
		if brk >= 0 {
			ctx = fmt.Sprint(s[max(0, brk-3):min(len(s), brk+4)])
		}
		fmt.Fprintf(&b, "word %s: truth %d, in words topic %d, counts emitted %d, last %v, sequence breaks at #%d %s\n", w, n, inWords[w], len(s), lastCounts(map[string][]int{w: s})[w], brk+1, ctx)
	}
	return b.String()
}
