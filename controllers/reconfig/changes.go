package reconfig

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Change is one changed field of the spec, classified by the contract.
type Change struct {
	// Path is where the change is, items named: spec.entities[sum].image.
	Path string `json:"path"`
	// Field is the contract's path of the field: spec.entities[].image.
	Field string `json:"field"`
	Class Class  `json:"class"`
	// Entity and Stream are the list item the change is in, if any.
	Entity string `json:"entity,omitempty"`
	Stream string `json:"stream,omitempty"`
	// Old and New are the values as JSON; empty when absent (an item added or removed).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
	// Refused is the API server's message when this particular transition is refused.
	Refused string `json:"refused,omitempty"`
}

// Changes lists, in the spec's field order, the fields that differ between old and new. Both
// should be defaulted the same way (as the API server stores them); streams and entities are
// matched by name, so an added or removed item is one change of spec.streams or spec.entities.
func Changes(old, new *v1alpha1.PipelineSpec) []Change {
	var out []Change
	compare(&out, "spec", "spec", "", "", reflect.ValueOf(*old), reflect.ValueOf(*new))
	for i := range out {
		out[i].Refused = refusal(out[i])
		if out[i].Refused == "" && raisesStatefulInput(out[i], new) {
			out[i].Refused = RefusedStatefulPartitions
		}
		if out[i].Refused == "" && deletesTakenOverGroup(out[i], old, new) {
			out[i].Refused = RefusedDeletedGroupTakeover
		}
		if out[i].Refused != "" {
			out[i].Class = Refused
		}
	}
	return out
}

// Worst is the most disruptive class of the changes; Hot when there are none.
func Worst(changes []Change) Class {
	worst := Hot
	for _, c := range changes {
		if c.Class.Rank() > worst.Rank() {
			worst = c.Class
		}
	}
	return worst
}

// raisesStatefulInput reports whether c raises the partitions of a stream that a stateful entity
// of new reads (the PipelineSpec's transition rule with RefusedStatefulPartitions).
func raisesStatefulInput(c Change, new *v1alpha1.PipelineSpec) bool {
	var o, n int64
	if c.Field != "spec.streams[].partitions" || json.Unmarshal([]byte(c.Old), &o) != nil || json.Unmarshal([]byte(c.New), &n) != nil || n <= o {
		return false
	}
	for _, e := range new.Entities {
		if e.State != nil && e.State.Enabled && slices.Contains(e.Inputs, c.Stream) {
			return true
		}
	}
	return false
}

// deletesTakenOverGroup reports whether c removes an entity whose removal policy deletes its
// group while an entity of new takes an input over from it (the PipelineSpec's transition rule
// with RefusedDeletedGroupTakeover).
func deletesTakenOverGroup(c Change, old, new *v1alpha1.PipelineSpec) bool {
	if c.Field != "spec.entities" || c.Entity == "" || c.New != "" {
		return false
	}
	i := slices.IndexFunc(old.Entities, func(e v1alpha1.Entity) bool { return e.Name == c.Entity })
	if i < 0 || old.Entities[i].Removal == nil || old.Entities[i].Removal.ConsumerGroup != v1alpha1.ConsumerGroupDelete {
		return false
	}
	for _, e := range new.Entities {
		for _, st := range e.Start {
			if st.Position == v1alpha1.StartEntity && st.Entity == c.Entity {
				return true
			}
		}
	}
	return false
}

// refusal is the transition rule a change breaks, if any: the rules of the CRD that compare a
// field with its old value (see the +kubebuilder:validation:XValidation markers with oldSelf).
func refusal(c Change) string {
	r := mustRule(c.Field)
	switch c.Field {
	case "spec.streams[].topicName":
		return r.Refused
	case "spec.streams[].partitions":
		var o, n int64
		if json.Unmarshal([]byte(c.Old), &o) == nil && json.Unmarshal([]byte(c.New), &n) == nil && n < o {
			return r.Refused
		}
	}
	return ""
}

func compare(out *[]Change, path, field, entity, stream string, a, b reflect.Value) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := jsonName(f)
		if name == "" {
			continue
		}
		p, fp := path+"."+name, field+"."+name
		av, bv := a.Field(i), b.Field(i)
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == apiPackage:
			compareList(out, p, fp, entity, stream, av, bv)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == apiPackage:
			switch {
			case av.IsNil() && bv.IsNil():
			case av.IsNil() || bv.IsNil():
				*out = append(*out, change(p, fp, entity, stream, av, bv))
			default:
				compare(out, p, fp, entity, stream, av.Elem(), bv.Elem())
			}
		case ft.Kind() == reflect.Struct && ft.PkgPath() == apiPackage:
			compare(out, p, fp, entity, stream, av, bv)
		default:
			if !equalValues(av, bv) {
				*out = append(*out, change(p, fp, entity, stream, av, bv))
			}
		}
	}
}

// compareList matches items by their list map key: name, or stream (spec.entities[].start).
func compareList(out *[]Change, path, field, entity, stream string, a, b reflect.Value) {
	name := func(v reflect.Value) string {
		if n := v.FieldByName("Name"); n.IsValid() {
			return n.String()
		}
		return v.FieldByName("Stream").String()
	}
	index := func(l reflect.Value) map[string]reflect.Value {
		m := map[string]reflect.Value{}
		for i := range l.Len() {
			m[name(l.Index(i))] = l.Index(i)
		}
		return m
	}
	olds, news := index(a), index(b)
	isEntity := strings.HasSuffix(field, ".entities")
	scoped := func(n string) (string, string) {
		if isEntity {
			return n, stream
		}
		return entity, n
	}
	for i := range a.Len() {
		n := name(a.Index(i))
		e, s := scoped(n)
		if nv, ok := news[n]; ok {
			compare(out, fmt.Sprintf("%s[%s]", path, n), field+"[]", e, s, a.Index(i), nv)
			continue
		}
		*out = append(*out, change(fmt.Sprintf("%s[%s]", path, n), field, e, s, a.Index(i), reflect.Value{}))
	}
	for i := range b.Len() {
		n := name(b.Index(i))
		if _, ok := olds[n]; ok {
			continue
		}
		e, s := scoped(n)
		*out = append(*out, change(fmt.Sprintf("%s[%s]", path, n), field, e, s, reflect.Value{}, b.Index(i)))
	}
}

func change(path, field, entity, stream string, a, b reflect.Value) Change {
	return Change{
		Path: path, Field: field, Class: mustRule(field).Class, Entity: entity, Stream: stream,
		Old: jsonOf(a), New: jsonOf(b),
	}
}

// equalValues compares two field values, an empty list or map equal to an absent one (the API
// server does not keep the difference either).
func equalValues(a, b reflect.Value) bool {
	empty := func(v reflect.Value) bool {
		switch v.Kind() {
		case reflect.Slice, reflect.Map:
			return v.Len() == 0
		}
		return false
	}
	if empty(a) && empty(b) {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

func jsonOf(v reflect.Value) string {
	if !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return ""
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return string(b)
}

// EntityChanges are the changes that concern an entity: its own fields, the streams it reads or
// writes, and the Pipeline-wide fields (Kafka, suspend).
func EntityChanges(changes []Change, e *v1alpha1.Entity) []Change {
	var out []Change
	for _, c := range changes {
		switch {
		case c.Entity != "":
			if c.Entity == e.Name {
				out = append(out, c)
			}
		case c.Stream != "":
			if slices.Contains(e.Inputs, c.Stream) || slices.Contains(e.Outputs, c.Stream) {
				out = append(out, c)
			}
		case strings.HasPrefix(c.Field, "spec.kafka") || c.Field == "spec.suspend":
			out = append(out, c)
		}
	}
	return out
}

// Summary says in one line what changes mean for a running Pipeline: the most disruptive class,
// each field with its class, and the entities whose pods the contract says restart. The
// operator puts it in the event of a new revision.
func Summary(changes []Change, entities []v1alpha1.Entity) string {
	if len(changes) == 0 {
		return "no change of the spec"
	}
	var fields []string
	for _, c := range changes {
		fields = append(fields, fmt.Sprintf("%s (%s)", c.Path, c.Class))
	}
	s := fmt.Sprintf("%s change: %s", Worst(changes), strings.Join(fields, ", "))
	var restart []string
	for i := range entities {
		for _, c := range EntityChanges(changes, &entities[i]) {
			if c.Class == Rolling || c.Class == Structural {
				restart = append(restart, entities[i].Name)
				break
			}
		}
	}
	if len(restart) > 0 {
		s += "; pods restart: " + strings.Join(restart, ", ")
	} else {
		s += "; no pod restarts"
	}
	return s
}
