package reconfig

import (
	"bytes"
	"fmt"
	"strings"
)

// topologyChanges explains, after the table, how the topology changes are applied.
const topologyChanges = `
## Where a new input starts

An entity's consumer group reads each input from its committed offsets. Where it has none (an
added entity, an input added to a running entity), it starts where ` + "`spec.entities[].start`" + `
says, else at the input's earliest record:

` + "```yaml" + `
entities:
  - name: audit
    inputs: [counts, alerts]
    start:
      - stream: counts          # one of the entity's inputs
        position: Latest        # Earliest (the default), Latest or Timestamp
      - stream: alerts
        position: Timestamp
        timestamp: "2026-12-01T10:00:00Z"   # required with Timestamp, and only then
` + "```" + `

The I/O sidecar applies it, in both topic modes and both assignment modes, when a pod is given a
partition the group has no committed offset for:

- **Timestamp** reads each partition from its first record whose timestamp is at or after the
  given time (its end if it has none). That is a property of the data, so every pod, restart and
  rebalance agrees, and a partition added to the topic later is read whole (its records are newer).
- **Latest** skips what the input holds when the group first reads it: the first pod given a
  partition of the topic (the group has no commit on any of its partitions) resolves the last
  stable offset of every partition and commits them all before it processes a record, so that the
  pods that take the other partitions later (a rolling update, Static ordinals joining one by one, a
  restart) continue from the same offsets and nothing written after the change is skipped. A
  partition without a commit of a topic the group reads already is a new partition (raised
  partitions) and is read from its earliest record, never skipped.
- **Earliest** is the group's offset reset policy, as before; an explicit Earliest changes nothing.

A start position never moves a group that has committed offsets: changing it for an input the group
reads already only reloads the running pods (Hot). Under ExactlyOnce the start offsets are committed
outside the transactions (no output depends on them) and each transaction that follows commits past
them, so a record after the start is processed once and one before it never.

## Inserting a stage

` + "`A -> s1 -> B`" + ` becomes ` + "`A -> s1 -> X -> s2 -> B`" + ` in one change: X reads s1 and writes s2, B reads s2
instead of s1, and X takes s1 over from B:

` + "```yaml" + `
  - name: x
    inputs: [s1]
    outputs: [s2]
    start:
      - stream: s1
        position: Entity
        entity: b               # the entity (of this Pipeline, or removed in this change) that read s1
  - name: b
    inputs: [s2]                # was [s1]
` + "```" + `

X's pods, before they join their group, wait until no member of B's consumer group is subscribed
to s1 any more (B's pods roll out with their new inputs; the old ones commit their last interval
and leave). From then on B's committed offsets on s1 are final; X reads them stable (no
transactional commit pending) and starts each partition there (at its earliest record where B
never committed one), and the first of X's pods commits them for every partition before it
processes a record. Every record of s1 is processed either by B before the change or by X after it,
never both: under ExactlyOnce each reaches B's output exactly once (the e2e test
` + "`TestRealBrokerInsertStageHandsTheInputOver`" + ` checks it with records flowing). X's pods are not ready
while they wait. Once X's group has committed offsets on s1, the start no longer matters. When B
is removed in the change, the KafkaUser grants Describe (only) on B's group so that X can see its
members and offsets.

## A dropped input's offsets

When an entity stops reading a stream (its ` + "`inputs`" + ` lose it, as B loses s1 above), its I/O
sidecar deletes the group's committed offsets on that topic (a Kafka OffsetDelete), so that the
group holds offsets of what it reads only (lag tools and KEDA see no dead lag). Each pod tries it
in the background, two minutes after it applies a configuration (a pod still on the previous
configuration has reloaded the new one by then, so it never deletes the offsets of an input the
change added), in both topic modes (the operator has no Kafka client with Strimzi, so the pods do
it); doing it twice is harmless. Two things hold it back:

- **An heir.** When other entities take the stream over from this one (their
  ` + "`start`" + ` says ` + "`position: Entity, entity: <this entity>`" + `), the operator names their groups in this
  entity's executor.json (` + "`heirs`" + `), and the offsets are deleted only once each of them has
  committed offsets of its own, stable, on every partition this group has an offset on: X starts
  at B's offsets, so they must outlive X's first commit (X commits them for every partition as
  soon as it takes the stream over, also where no new record arrives). If X never starts, B's
  offsets stay.
- **A member that still reads it.** Kafka refuses to delete offsets of a topic a member of the
  group is subscribed to (` + "`GROUP_SUBSCRIBED_TO_TOPIC`" + `): a pod of the previous configuration during
  the rollout. The pod tries again after 2 s, doubling up to a minute, and deletes them once
  the old pods have left.

` + "`millrace plan`" + ` lists it as a step (` + "`group G: offsets on topic T deleted by its pods once H committed its own on every partition`" + `).
The I/O sidecar logs each deletion and each wait once, and exposes
` + "`millrace_dropped_input_offsets_deleted_total{topic}`" + ` and
` + "`millrace_dropped_inputs_pending{reason}`" + ` (` + "`heirs`" + `, ` + "`subscribed`" + `, ` + "`deleted`" + ` until a fetch
sees them gone, ` + "`error`" + `). The executors' Kafka user needs ` + "`Delete`" + ` on the entity's group: the
KafkaUser grants it; in Direct mode grant it yourself (without it the pod logs the refusal once
and leaves the offsets). Adding the stream back later starts it from its start position again
(earliest by default), not where the group had stopped. A removed entity's group and offsets
stay in Kafka (its pods are gone), unless its removal policy deletes the group (below).

## Removing an entity

By default a removed entity's StatefulSet, ConfigMap and Service are deleted at once (its pods
commit what they processed and stop) and its consumer group, with its committed offsets, stays in
Kafka. ` + "`spec.entities[].removal`" + `, set while the entity is still in the spec, changes that:

` + "```yaml" + `
  - name: tap
    inputs: [in]
    outputs: [out2]
    removal:
      drain: true             # process everything the inputs held at the removal time first
      consumerGroup: Delete   # then delete the group (Keep, the default, leaves it)
` + "```" + `

Changing the policy restarts nothing (Hot): the operator records it as an annotation of the
entity's StatefulSet (` + "`streaming.millrace.dev/removal`" + `, not in the pod template), because once the
entity is removed from the spec its policy is no longer there to read. When an entity whose
recorded policy drains or deletes its group disappears from the spec, the operator retires it
instead of pruning it:

1. its ScaledObject is deleted (autoscaling stops) and its StatefulSet is scaled to one pod if it
   ran none;
2. its ConfigMap's ` + "`executor.json`" + ` gains a ` + "`retire`" + ` section with ` + "`since`" + `, the time of the first
   reconcile that saw the removal, kept by every later one (it is in ` + "`status.retiring[].since`" + `). The
   pods reload it (within the kubelet's ConfigMap refresh, about a minute) and, with drain, process
   each input partition up to its first record at or after ` + "`since`" + ` (ListOffsets by timestamp), then
   stop consuming; with ` + "`consumerGroup: Delete`" + ` they leave the group and delete it;
3. meanwhile the KafkaUser keeps the ACLs the entity's pods use (its topics, its group with Delete,
   its transactional ids) and the KafkaTopics of the streams it reads and writes stay, even those of
   streams removed in the same change;
4. the operator asks the pods' I/O sidecars (GET /status) every 10 seconds; ` + "`status.retiring`" + ` lists
   each retiring entity with its phase (Pending until a pod runs the retire section, Draining,
   Drained, Deleted) and the records remaining, and the condition ` + "`Retiring`" + ` is True. Once a pod
   that runs the retire section reports the final phase (Deleted with ` + "`consumerGroup: Delete`" + `, else
   Drained), the StatefulSet, Service and ConfigMap are deleted (event ` + "`Retired`" + `), and the next
   reconcile lets the deferred topics and ACLs go.

So every record written to the entity's inputs before the removal time reaches its outputs (exactly
once under ExactlyOnce; the e2e test ` + "`TestLiveRemoveEntityDrained`" + ` checks it under traffic), and
records after it that the pods processed before they learnt of the removal are in them too, at most
once. ` + "`millrace plan`" + ` and ` + "`kubectl millrace diff`" + ` print the retirement as a step ("tap: drain inputs
up to the removal time, then delete group G; children deleted after").

If a retirement does not progress, ` + "`status.retiring`" + ` and the ` + "`Retiring`" + ` condition name the entity;
` + "`kubectl logs -c io`" + ` of its pod says why (an input it cannot read, a group it may not delete).
Adding the entity back to the spec ends the retirement: its children are applied again without the
` + "`retire`" + ` section (a group already deleted starts over from each input's start position).

An entity that another takes an input over from (start position Entity) must be removed with
` + "`consumerGroup: Keep`" + `, the default: the API server refuses a handover from a group that the
removal deletes.

Limits: a retiring entity runs (at least one pod) even when the Pipeline is suspended. The policy
in force is the one of the last spec that the operator applied with the entity in it.

Limits of the start positions: if the pod that resolved Latest loses its partitions before its first commit (the commit
follows the first poll, within one commit interval), the next owner resolves Latest again, later.
Two pods that resolve Latest in the same group generation both commit the starts of the
partitions that still have no commit; only a commit by the other pod in the moment between that
check and the commit could be moved back to the start (and processed again after a rebalance). KEDA's lag of a Latest input counts from the
earliest record until the first commit.
`

// Markdown is docs/reconfiguration.md, generated from Rules by hack/reconfigdocs (`make api-docs`).
func Markdown() []byte {
	var b bytes.Buffer
	b.WriteString(`# Changing a running Pipeline

<!-- Generated by ` + "`make api-docs`" + ` (hack/reconfigdocs) from controllers/reconfig. DO NOT EDIT. -->

Every field of a Pipeline's spec can be changed on a running Pipeline. What the change does is one
of five classes, the least disruptive first:

| class | what happens |
|---|---|
| Hot | applied in place: running pods reload it from their ConfigMap (` + "`executor.json`" + `), or the operator updates a child no pod depends on. No pod restarts, none is added or removed. |
| Scale | the number of an entity's pods changes (the StatefulSet's replicas, KEDA's ScaledObject). Pods that keep running are not restarted; a Static map moves as few partitions as it can, hot. |
| Rolling | the pod template changes: the entity's pods restart, in one StatefulSet rollout. |
| Structural | topics, consumer groups or entities appear, disappear or are rewired; the pods of the entities concerned restart too. |
| Refused | the API server rejects the update (a CEL transition rule); ` + "`millrace validate --old`" + ` says so offline. |

` + "`millrace plan -f new.yaml --old old.yaml`" + ` (offline) and ` + "`kubectl millrace diff -f pipeline.yaml`" + ` (against
the live Pipeline) print, for a change, the fields and their class, the children that change, the
pods that restart and why, and the topics and consumer groups that appear or go (see [the CLI](cli.md)).

The table below is the contract. It is code (` + "`controllers/reconfig`" + `): a test walks the Go type
of the spec and fails on a field that is not classified, and another changes each field of a running
Pipeline and checks that what the operator renders does what the class says (Hot and Scale leave
every pod template as it is; Rolling changes the pod template of exactly the entities concerned;
Structural changes topics, groups or workloads; Refused is rejected by the API server's rules).

| field | class | effect |
|---|---|---|
`)
	for _, r := range Rules {
		effect := r.Effect
		if r.Refused != "" && r.Class != Refused {
			effect += " Refused: " + r.Refused + "."
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.Path, r.Class, strings.ReplaceAll(effect, "|", `\|`))
	}
	b.WriteString(topologyChanges)
	return b.Bytes()
}
