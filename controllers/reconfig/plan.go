package reconfig

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Action is what happens to a child object, topic or group.
type Action string

const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// ObjectChange is a child object render wants created, changed or deleted.
type ObjectChange struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action Action `json:"action"`
	// Parts are the changed parts of an updated object: spec.template, spec.replicas,
	// data[executor.json].userConfig...
	Parts []string `json:"parts,omitempty"`
}

// EntityPlan is what happens to one entity.
type EntityPlan struct {
	Name   string `json:"name"`
	Action Action `json:"action,omitempty"`
	// Class is the most disruptive class of the changes that concern the entity.
	Class   Class    `json:"class"`
	Changes []Change `json:"changes,omitempty"`
	// Restart says that the pod template changes: every pod restarts in one rollout.
	Restart bool `json:"restart"`
	// Pods is how many pods restart ("" when the autoscaler sets the count).
	Pods string `json:"pods,omitempty"`
	// Reasons are the changes that restart the pods.
	Reasons []string `json:"reasons,omitempty"`
	// Reload says that running pods reload executor.json (hot).
	Reload []string `json:"reload,omitempty"`
}

// TopicChange is a Kafka topic that appears, goes or gets partitions.
type TopicChange struct {
	Name   string `json:"name"`
	Action Action `json:"action"`
	Detail string `json:"detail"`
}

// GroupChange is a consumer group that appears, goes or reads other topics.
type GroupChange struct {
	Name   string `json:"name"`
	Action Action `json:"action"`
	Detail string `json:"detail"`
}

// Plan is what applying a new spec over an old one does.
type Plan struct {
	Namespace string         `json:"namespace"`
	Pipeline  string         `json:"pipeline"`
	Class     Class          `json:"class"`
	Changes   []Change       `json:"changes"`
	Objects   []ObjectChange `json:"objects"`
	Entities  []EntityPlan   `json:"entities"`
	Topics    []TopicChange  `json:"topics"`
	Groups    []GroupChange  `json:"groups"`
	Steps     []string       `json:"steps"`

	// drops are the inputs groups stop reading, for the steps.
	drops []droppedInput
}

// droppedInput is a topic a group no longer reads, and the groups that take it over.
type droppedInput struct {
	group, topic string
	heirs        []string
}

// Empty reports that applying changes nothing.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 && len(p.Objects) == 0 }

// Refused are the changes the API server refuses.
func (p *Plan) Refused() []Change {
	var out []Change
	for _, c := range p.Changes {
		if c.Class == Refused {
			out = append(out, c)
		}
	}
	return out
}

// NewPlan compares old and new (defaulted as the API server stores them) through the contract
// and through render: the fields that change and their class, then what render wants changed
// with the same facts, so that the restarts it lists are those the pod templates say.
func NewPlan(old, new *v1alpha1.Pipeline, f render.Facts) (*Plan, error) {
	plan := &Plan{Namespace: new.Namespace, Pipeline: new.Name, Changes: Changes(&old.Spec, &new.Spec)}
	plan.Class = Worst(plan.Changes)
	if len(plan.Refused()) > 0 {
		return plan, nil
	}
	before, err := render.Render(old, f)
	if err != nil {
		return nil, fmt.Errorf("render the old Pipeline: %w", err)
	}
	after, err := render.Render(new, f)
	if err != nil {
		return nil, fmt.Errorf("render the new Pipeline: %w", err)
	}
	oldObjs, newObjs := byKey(before.Objects), byKey(after.Objects)
	for _, k := range slices.Sorted(maps.Keys(oldObjs)) {
		o := oldObjs[k]
		n, ok := newObjs[k]
		if !ok {
			plan.Objects = append(plan.Objects, ObjectChange{Kind: kindOf(o), Name: o.GetName(), Action: Delete})
			continue
		}
		if parts := changedParts(o, n); len(parts) > 0 {
			plan.Objects = append(plan.Objects, ObjectChange{Kind: kindOf(o), Name: o.GetName(), Action: Update, Parts: parts})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(newObjs)) {
		if _, ok := oldObjs[k]; !ok {
			plan.Objects = append(plan.Objects, ObjectChange{Kind: kindOf(newObjs[k]), Name: newObjs[k].GetName(), Action: Create})
		}
	}
	plan.entities(old, new, oldObjs, newObjs)
	plan.topics(new, before.Topics, after.Topics)
	plan.groups(old, new, oldObjs, newObjs)
	plan.steps(old, new)
	return plan, nil
}

func byKey(objs []client.Object) map[string]client.Object {
	m := map[string]client.Object{}
	for _, o := range objs {
		m[kindOf(o)+"/"+o.GetName()] = o
	}
	return m
}

func kindOf(o client.Object) string {
	if k := o.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	return reflect.TypeOf(o).Elem().Name()
}

// changedParts lists the changed parts of an object: the fields two levels under the root
// (spec.template, metadata.labels), and for an executor ConfigMap the changed keys of
// executor.json.
func changedParts(a, b client.Object) []string {
	ua, err1 := runtime.DefaultUnstructuredConverter.ToUnstructured(a)
	ub, err2 := runtime.DefaultUnstructuredConverter.ToUnstructured(b)
	if err1 != nil || err2 != nil {
		if !equality.Semantic.DeepEqual(a, b) {
			return []string{"(object)"}
		}
		return nil
	}
	var parts []string
	for _, top := range slices.Sorted(maps.Keys(union(ua, ub))) {
		if top == "status" || top == "apiVersion" || top == "kind" {
			continue
		}
		ma, _ := ua[top].(map[string]any)
		mb, _ := ub[top].(map[string]any)
		if ma == nil || mb == nil {
			if !reflect.DeepEqual(ua[top], ub[top]) {
				parts = append(parts, top)
			}
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(union(ma, mb))) {
			if reflect.DeepEqual(ma[k], mb[k]) {
				continue
			}
			if top == "data" && k == config.FileName {
				parts = append(parts, executorParts(ma[k], mb[k])...)
				continue
			}
			parts = append(parts, top+"."+k)
		}
	}
	return parts
}

func executorParts(a, b any) []string {
	var ea, eb map[string]any
	sa, _ := a.(string)
	sb, _ := b.(string)
	if json.Unmarshal([]byte(sa), &ea) != nil || json.Unmarshal([]byte(sb), &eb) != nil {
		return []string{"data." + config.FileName}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(union(ea, eb))) {
		if !reflect.DeepEqual(ea[k], eb[k]) {
			out = append(out, "data."+config.FileName+"."+k)
		}
	}
	return out
}

func union(a, b map[string]any) map[string]any {
	m := maps.Clone(a)
	if m == nil {
		m = map[string]any{}
	}
	maps.Copy(m, b)
	return m
}

func (plan *Plan) entities(old, new *v1alpha1.Pipeline, oldObjs, newObjs map[string]client.Object) {
	sts := func(objs map[string]client.Object, p *v1alpha1.Pipeline, e string) *appsv1.StatefulSet {
		s, _ := objs["StatefulSet/"+render.StatefulSetName(p, e)].(*appsv1.StatefulSet)
		return s
	}
	cm := func(objs map[string]client.Object, p *v1alpha1.Pipeline, e string) *corev1.ConfigMap {
		c, _ := objs["ConfigMap/"+render.ConfigMapName(p, e)].(*corev1.ConfigMap)
		return c
	}
	olds := map[string]bool{}
	for _, e := range old.Spec.Entities {
		olds[e.Name] = true
	}
	for i := range new.Spec.Entities {
		e := &new.Spec.Entities[i]
		ep := EntityPlan{Name: e.Name, Changes: EntityChanges(plan.Changes, e)}
		ep.Class = Worst(ep.Changes)
		if !olds[e.Name] {
			ep.Action, ep.Class = Create, Structural
			plan.Entities = append(plan.Entities, ep)
			continue
		}
		a, b := sts(oldObjs, old, e.Name), sts(newObjs, new, e.Name)
		if a != nil && b != nil && !equality.Semantic.DeepEqual(a.Spec.Template, b.Spec.Template) {
			ep.Restart = true
			if b.Spec.Replicas != nil {
				ep.Pods = fmt.Sprint(*b.Spec.Replicas)
			} else if a.Spec.Replicas != nil {
				ep.Pods = fmt.Sprint(*a.Spec.Replicas)
			}
			for _, c := range ep.Changes {
				if c.Class.Rank() >= Rolling.Rank() {
					ep.Reasons = append(ep.Reasons, fmt.Sprintf("%s (%s)", c.Path, c.Class))
				}
			}
			if len(ep.Reasons) == 0 {
				ep.Reasons = []string{"the pod template changes"}
			}
		}
		if ca, cb := cm(oldObjs, old, e.Name), cm(newObjs, new, e.Name); ca != nil && cb != nil && !ep.Restart {
			for _, part := range executorParts(ca.Data[config.FileName], cb.Data[config.FileName]) {
				ep.Reload = append(ep.Reload, strings.TrimPrefix(part, "data."+config.FileName+"."))
			}
		}
		if len(ep.Changes) > 0 || ep.Restart || len(ep.Reload) > 0 {
			ep.Action = Update
		}
		plan.Entities = append(plan.Entities, ep)
	}
	for _, e := range old.Spec.Entities {
		if !slices.ContainsFunc(new.Spec.Entities, func(n v1alpha1.Entity) bool { return n.Name == e.Name }) {
			plan.Entities = append(plan.Entities, EntityPlan{Name: e.Name, Action: Delete, Class: Structural})
		}
	}
}

func (plan *Plan) topics(new *v1alpha1.Pipeline, before, after []render.Topic) {
	index := func(ts []render.Topic) map[string]render.Topic {
		m := map[string]render.Topic{}
		for _, t := range ts {
			m[t.Name] = t
		}
		return m
	}
	olds, news := index(before), index(after)
	for _, t := range after {
		o, ok := olds[t.Name]
		switch {
		case !ok:
			plan.Topics = append(plan.Topics, TopicChange{Name: t.Name, Action: Create, Detail: fmt.Sprintf("%s, %d partitions", t.Purpose, t.Partitions)})
		case o.Partitions != t.Partitions:
			plan.Topics = append(plan.Topics, TopicChange{Name: t.Name, Action: Update, Detail: fmt.Sprintf("%s, partitions %d -> %d", t.Purpose, o.Partitions, t.Partitions)})
		}
	}
	for _, t := range before {
		if _, ok := news[t.Name]; ok {
			continue
		}
		detail := fmt.Sprintf("%s, deletionPolicy %s: ", t.Purpose, t.DeletionPolicy)
		switch {
		case new.Spec.Kafka.Topics == v1alpha1.TopicsDirect:
			detail += "no longer used; Direct topics are deleted only with the Pipeline, so it and its data stay"
		case t.DeletionPolicy == v1alpha1.DeletionDelete:
			detail += "its KafkaTopic is deleted, and Strimzi deletes the topic and its data"
		default:
			detail += "its KafkaTopic is deleted unmanaged: the topic and its data stay in Kafka"
		}
		plan.Topics = append(plan.Topics, TopicChange{Name: t.Name, Action: Delete, Detail: detail})
	}
}

// groups compares the consumer groups and what they read, from the executor.json of each entity.
func (plan *Plan) groups(old, new *v1alpha1.Pipeline, oldObjs, newObjs map[string]client.Object) {
	starts := map[string]string{}  // group/topic -> where the new group or input starts
	heirs := map[string][]string{} // group/topic -> the groups that take a dropped input over
	reads := func(objs map[string]client.Object, p *v1alpha1.Pipeline) map[string][]string {
		m := map[string][]string{}
		for _, e := range p.Spec.Entities {
			c, _ := objs["ConfigMap/"+render.ConfigMapName(p, e.Name)].(*corev1.ConfigMap)
			if c == nil {
				continue
			}
			cfg, err := config.Parse([]byte(c.Data[config.FileName]))
			if err != nil {
				continue
			}
			var topics []string
			for _, in := range cfg.Inputs {
				topics = append(topics, in.Topic)
				starts[cfg.GroupID+"/"+in.Topic] = startOf(in.Start)
			}
			for _, h := range cfg.Heirs {
				heirs[cfg.GroupID+"/"+h.Topic] = append(heirs[cfg.GroupID+"/"+h.Topic], h.GroupID)
			}
			m[cfg.GroupID] = topics
		}
		return m
	}
	olds := reads(oldObjs, old)
	clear(starts) // the new Pipeline's start positions and heirs
	clear(heirs)
	news := reads(newObjs, new)
	for _, g := range slices.Sorted(maps.Keys(news)) {
		o, ok := olds[g]
		if !ok {
			var from []string
			for _, t := range news[g] {
				from = append(from, t+" from "+starts[g+"/"+t])
			}
			plan.Groups = append(plan.Groups, GroupChange{Name: g, Action: Create,
				Detail: fmt.Sprintf("reads %s (no committed offsets yet)", strings.Join(from, ", "))})
			continue
		}
		var details []string
		for _, t := range news[g] {
			if !slices.Contains(o, t) {
				details = append(details, "starts reading "+t+" from its committed offsets, else "+starts[g+"/"+t])
			}
		}
		for _, t := range o {
			if !slices.Contains(news[g], t) {
				details = append(details, "stops reading "+t+"; "+dropOf(g, t, heirs[g+"/"+t]))
				plan.drops = append(plan.drops, droppedInput{group: g, topic: t, heirs: heirs[g+"/"+t]})
			}
		}
		if len(details) > 0 {
			plan.Groups = append(plan.Groups, GroupChange{Name: g, Action: Update, Detail: strings.Join(details, "; ")})
		}
	}
	retired := map[string]*v1alpha1.RemovalSpec{}
	for _, e := range old.Spec.Entities {
		retired[render.GroupID(old, e.Name)] = e.Removal
	}
	for _, g := range slices.Sorted(maps.Keys(olds)) {
		if _, ok := news[g]; !ok {
			detail := "its pods stop; the group and its committed offsets stay in Kafka"
			switch r := retired[g]; {
			case r.Retires() && r.ConsumerGroup == v1alpha1.ConsumerGroupDelete && r.Drain:
				detail = "its pods drain its inputs up to the removal time, then delete the group and its committed offsets"
			case r.Retires() && r.ConsumerGroup == v1alpha1.ConsumerGroupDelete:
				detail = "its pods leave and delete the group and its committed offsets"
			case r.Retires():
				detail = "its pods drain its inputs up to the removal time and stop; the group and its committed offsets stay in Kafka"
			}
			plan.Groups = append(plan.Groups, GroupChange{Name: g, Action: Delete, Detail: detail})
		}
	}
}

// dropOf says when the pods of group delete its committed offsets on topic, an input it no
// longer reads.
func dropOf(group, topic string, heirs []string) string {
	if len(heirs) == 0 {
		return "its pods delete the group's committed offsets on " + topic + " once no member of " + group + " reads it"
	}
	return "its pods delete the group's committed offsets on " + topic + " once " + groupList(heirs) + " committed offsets of " + plural(heirs, "its", "their") + " own on every partition " + group + " has one on"
}

func groupList(groups []string) string {
	if len(groups) == 1 {
		return "group " + groups[0] + " has"
	}
	return "groups " + strings.Join(groups, " and ") + " have"
}

func plural(xs []string, one, many string) string {
	if len(xs) == 1 {
		return one
	}
	return many
}

// readsAlready reports whether entity of old read st.Stream with the same start: the handover
// took place in an earlier change.
func readsAlready(old *v1alpha1.Pipeline, entity string, st v1alpha1.InputStart) bool {
	for _, e := range old.Spec.Entities {
		if e.Name == entity && slices.Contains(e.Inputs, st.Stream) && slices.ContainsFunc(e.Start, func(o v1alpha1.InputStart) bool { return o.Stream == st.Stream && o.Entity == st.Entity }) {
			return true
		}
	}
	return false
}

// startOf says where a group without committed offsets starts an input.
func startOf(st *config.Start) string {
	switch {
	case st == nil:
		return "the earliest offset"
	case st.Position == config.StartLatest:
		return "the latest offset (committed for every partition when the group first reads it)"
	case st.Position == config.StartGroup:
		return "where group " + st.Group + " stopped reading it (its pods wait until no member of " + st.Group + " reads it)"
	case st.Position == config.StartTimestamp:
		return "the first record at or after " + time.UnixMilli(st.TimestampMillis).UTC().Format(time.RFC3339)
	}
	return st.Position
}

// removalOf is the removal policy of an entity of p, nil when it has none.
func removalOf(p *v1alpha1.Pipeline, entity string) *v1alpha1.RemovalSpec {
	for _, e := range p.Spec.Entities {
		if e.Name == entity {
			return e.Removal
		}
	}
	return nil
}

// RetireSteps says what retiring an entity with this policy does: the operator's events and
// `millrace plan` say it in the same words.
func RetireSteps(policy v1alpha1.RemovalSpec, group string) string {
	switch {
	case policy.Drain && policy.ConsumerGroup == v1alpha1.ConsumerGroupDelete:
		return "drain inputs up to the removal time, then delete group " + group + "; children deleted after"
	case policy.Drain:
		return "drain inputs up to the removal time (group " + group + " and its offsets stay); children deleted after"
	default:
		return "its pods leave and delete group " + group + "; children deleted after"
	}
}

// steps are the operator's steps, in its order: topics first (an input must exist before its
// readers start), then the children by server-side apply, then the pruning of what is no longer
// wanted; rollouts and reloads follow from the kubelet and the StatefulSet controller.
func (plan *Plan) steps(old, new *v1alpha1.Pipeline) {
	var s []string
	for _, t := range plan.Topics {
		switch t.Action {
		case Create:
			if new.Spec.Kafka.Topics == v1alpha1.TopicsDirect {
				s = append(s, "create topic "+t.Name+" with the Kafka admin API")
			} else {
				s = append(s, "create topic "+t.Name+" (KafkaTopic)")
			}
		case Update:
			s = append(s, "raise the partitions of "+t.Name+" ("+t.Detail+"); Kafka never lowers them")
		}
	}
	for _, e := range plan.Entities {
		switch {
		case e.Action == Create:
			s = append(s, "create entity "+e.Name+": ConfigMap, Service, StatefulSet; its pods start")
		case e.Restart:
			s = append(s, fmt.Sprintf("roll out entity %s: %s restart, one StatefulSet rollout", e.Name, podCount(e.Pods)))
		case len(e.Reload) > 0:
			s = append(s, fmt.Sprintf("entity %s: running pods reload %s from executor.json, no restart", e.Name, strings.Join(e.Reload, ", ")))
		}
	}
	for _, e := range new.Spec.Entities {
		for _, st := range e.Start {
			if st.Position != v1alpha1.StartEntity || readsAlready(old, e.Name, st) {
				continue
			}
			s = append(s, fmt.Sprintf("entity %s takes %s over from entity %s: its pods wait until no pod of %s reads %s, then start at %s's final committed offsets (a group that has committed offsets on %s already continues from them)",
				e.Name, st.Stream, st.Entity, st.Entity, st.Stream, render.GroupID(new, st.Entity), st.Stream))
		}
	}
	for _, o := range plan.Objects {
		if o.Kind == "StatefulSet" && o.Action == Update && slices.Contains(o.Parts, "spec.replicas") {
			s = append(s, "scale StatefulSet "+o.Name)
		}
	}
	for _, d := range plan.drops {
		if len(d.heirs) == 0 {
			s = append(s, fmt.Sprintf("group %s: offsets on topic %s deleted by its pods once no member reads %s", d.group, d.topic, d.topic))
			continue
		}
		s = append(s, fmt.Sprintf("group %s: offsets on topic %s deleted by its pods once %s committed %s own on every partition", d.group, d.topic, strings.Join(d.heirs, " and "), plural(d.heirs, "its", "theirs")))
	}
	retiring := false
	for _, e := range plan.Entities {
		if e.Action != Delete {
			continue
		}
		if r := removalOf(old, e.Name); r.Retires() {
			retiring = true
			s = append(s, "retire entity "+e.Name+": "+RetireSteps(*r, render.GroupID(old, e.Name))+" (its ScaledObject goes at once, one pod at least keeps running; status.retiring follows it)")
			continue
		}
		s = append(s, "delete entity "+e.Name+": its StatefulSet, ConfigMap and Service (pods commit and stop)")
	}
	for _, t := range plan.Topics {
		if t.Action == Delete {
			step := "drop topic " + t.Name + " (" + t.Detail + ")"
			if retiring {
				step += ", once no retiring entity uses it"
			}
			s = append(s, step)
		}
	}
	plan.Steps = s
}

// Write prints the plan for people.
func Write(w io.Writer, plan *Plan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Pipeline %s/%s: ", plan.Namespace, plan.Pipeline)
	if plan.Empty() {
		b.WriteString("no changes\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	noun := "field changes"
	if len(plan.Changes) == 1 {
		noun = "field change"
	}
	fmt.Fprintf(&b, "%d %s, the most disruptive %s\n", len(plan.Changes), noun, plan.Class)
	if r := plan.Refused(); len(r) > 0 {
		b.WriteString("\nRefused by the API server:\n")
		for _, c := range r {
			fmt.Fprintf(&b, "  %s: %s\n", c.Path, c.Refused)
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\nFields:\n")
	for _, c := range plan.Changes {
		fmt.Fprintf(&b, "  %-10s %s: %s\n", c.Class, c.Path, fromTo(c))
	}
	b.WriteString("\nEntities:\n")
	for _, e := range plan.Entities {
		switch {
		case e.Action == Create:
			fmt.Fprintf(&b, "  %s: added (Structural)\n", e.Name)
		case e.Action == Delete:
			fmt.Fprintf(&b, "  %s: removed (Structural)\n", e.Name)
		case e.Action == "":
			fmt.Fprintf(&b, "  %s: unchanged\n", e.Name)
		case e.Restart:
			fmt.Fprintf(&b, "  %s: %s, %s restart, because of %s\n", e.Name, e.Class, podCount(e.Pods), strings.Join(e.Reasons, ", "))
		case len(e.Reload) > 0:
			fmt.Fprintf(&b, "  %s: %s, no restart; running pods reload %s from executor.json\n", e.Name, e.Class, strings.Join(e.Reload, ", "))
		default:
			fmt.Fprintf(&b, "  %s: %s, no restart\n", e.Name, e.Class)
		}
	}
	if len(plan.Objects) > 0 {
		b.WriteString("\nObjects:\n")
		for _, o := range plan.Objects {
			fmt.Fprintf(&b, "  %-6s %s/%s", o.Action, o.Kind, o.Name)
			if len(o.Parts) > 0 {
				fmt.Fprintf(&b, ": %s", strings.Join(o.Parts, ", "))
			}
			b.WriteString("\n")
		}
	}
	if len(plan.Topics) > 0 {
		b.WriteString("\nTopics:\n")
		for _, t := range plan.Topics {
			fmt.Fprintf(&b, "  %-6s %s: %s\n", t.Action, t.Name, t.Detail)
		}
	}
	if len(plan.Groups) > 0 {
		b.WriteString("\nConsumer groups:\n")
		for _, g := range plan.Groups {
			fmt.Fprintf(&b, "  %-6s %s: %s\n", g.Action, g.Name, g.Detail)
		}
	}
	if len(plan.Steps) > 0 {
		b.WriteString("\nSteps:\n")
		for i, s := range plan.Steps {
			fmt.Fprintf(&b, "  %d. %s\n", i+1, s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// podCount says how many pods: "its 2 pods", "its pod", or "its pods" when the autoscaler sets
// the count.
func podCount(n string) string {
	switch n {
	case "":
		return "its pods"
	case "1":
		return "its pod"
	}
	return "its " + n + " pods"
}

func fromTo(c Change) string {
	switch {
	case c.Old == "":
		return "added " + short(c.New)
	case c.New == "":
		return "removed"
	default:
		return short(c.Old) + " -> " + short(c.New)
	}
}

func short(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
