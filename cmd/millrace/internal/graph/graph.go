// Package graph draws the topology of a Pipeline: its streams, the entities between them, their
// partitions and parallelism, as text for a terminal, as Graphviz DOT or as Mermaid.
package graph

import (
	"fmt"
	"io"
	"strings"

	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Format is an output format of the drawing.
type Format string

const (
	ASCII   Format = "ascii"
	DOT     Format = "dot"
	Mermaid Format = "mermaid"
)

// Formats lists the supported formats.
var Formats = []Format{ASCII, DOT, Mermaid}

// Write draws p in format f. p should be defaulted (validate.Default) so partitions show as the
// API server would store them.
func Write(w io.Writer, p *v1alpha1.Pipeline, f Format) error {
	switch f {
	case ASCII:
		return writeASCII(w, p)
	case DOT:
		return writeDOT(w, p)
	case Mermaid:
		return writeMermaid(w, p)
	default:
		return fmt.Errorf("unknown graph format %q: want one of %v", f, Formats)
	}
}

// Parallelism describes how many replicas run an entity: "2 replicas", or "autoscaled 0-6".
func Parallelism(e *v1alpha1.Entity) string {
	if a := e.Autoscaling; a != nil {
		return fmt.Sprintf("autoscaled %d-%d", ptr.Deref(a.MinReplicas, 0), a.MaxReplicas)
	}
	n := int32(1)
	switch {
	case e.Replicas != nil:
		n = *e.Replicas
	case e.Assignment != nil && len(e.Assignment.Partitions) > 0:
		n = int32(len(e.Assignment.Partitions))
	}
	if n == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", n)
}

// traits are the properties of an entity worth seeing in a drawing, beside its parallelism.
func traits(e *v1alpha1.Entity) []string {
	var out []string
	if e.Assignment != nil && e.Assignment.Mode == v1alpha1.AssignmentStatic {
		out = append(out, "static")
	}
	if e.State != nil && e.State.Enabled {
		out = append(out, "state")
	}
	if e.Guarantee == v1alpha1.ExactlyOnce {
		out = append(out, "exactly-once")
	}
	return out
}

func partitions(p *v1alpha1.Pipeline, stream string) int32 {
	for _, s := range p.Spec.Streams {
		if s.Name == stream {
			return s.Partitions
		}
	}
	return 0
}

func partitionsLabel(n int32) string {
	if n == 1 {
		return "1 partition"
	}
	return fmt.Sprintf("%d partitions", n)
}

// order returns the entities of p in topological order of the stream graph (producers before
// consumers), keeping spec order among independent entities; a cycle, which validation rejects,
// leaves the rest in spec order.
func order(p *v1alpha1.Pipeline) []*v1alpha1.Entity {
	writers := map[string][]int{}
	for i, e := range p.Spec.Entities {
		for _, o := range e.Outputs {
			writers[o] = append(writers[o], i)
		}
	}
	placed := make([]bool, len(p.Spec.Entities))
	var out []*v1alpha1.Entity
	for len(out) < len(p.Spec.Entities) {
		progress := false
		for i := range p.Spec.Entities {
			if placed[i] {
				continue
			}
			ready := true
			for _, in := range p.Spec.Entities[i].Inputs {
				for _, w := range writers[in] {
					if !placed[w] && w != i {
						ready = false
					}
				}
			}
			if ready {
				placed[i] = true
				out = append(out, &p.Spec.Entities[i])
				progress = true
			}
		}
		if !progress {
			for i := range p.Spec.Entities {
				if !placed[i] {
					placed[i] = true
					out = append(out, &p.Spec.Entities[i])
				}
			}
		}
	}
	return out
}

// streamRoles tells, per stream, whether some entity reads it and whether some entity writes it.
func streamRoles(p *v1alpha1.Pipeline) (read, written map[string]bool) {
	read, written = map[string]bool{}, map[string]bool{}
	for _, e := range p.Spec.Entities {
		for _, s := range e.Inputs {
			read[s] = true
		}
		for _, s := range e.Outputs {
			written[s] = true
		}
	}
	return read, written
}

func writeASCII(w io.Writer, p *v1alpha1.Pipeline) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Pipeline %s/%s: %d streams, %d entities", p.Namespace, p.Name, len(p.Spec.Streams), len(p.Spec.Entities))
	if p.Spec.Suspend {
		b.WriteString(" (suspended)")
	}
	b.WriteString("\n\n")

	streamList := func(names []string) string {
		if len(names) == 0 {
			return "(no outputs)"
		}
		parts := make([]string, len(names))
		for i, s := range names {
			parts[i] = fmt.Sprintf("(%s:%d)", s, partitions(p, s))
		}
		return strings.Join(parts, " ")
	}
	type row struct{ in, node, out string }
	var rows []row
	var inWidth, nodeWidth int
	for _, e := range order(p) {
		node := "[" + strings.Join(append([]string{e.Name, Parallelism(e)}, traits(e)...), " | ") + "]"
		r := row{in: streamList(e.Inputs), node: node, out: streamList(e.Outputs)}
		inWidth, nodeWidth = max(inWidth, len(r.in)), max(nodeWidth, len(r.node))
		rows = append(rows, r)
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s --> %-*s --> %s\n", inWidth, r.in, nodeWidth, r.node, r.out)
	}

	read, written := streamRoles(p)
	var sources, sinks, unused []string
	for _, s := range p.Spec.Streams {
		switch {
		case !read[s.Name] && !written[s.Name]:
			unused = append(unused, s.Name)
		case !written[s.Name]:
			sources = append(sources, s.Name)
		case !read[s.Name]:
			sinks = append(sinks, s.Name)
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  inputs:  %s\n", orNone(sources))
	fmt.Fprintf(&b, "  outputs: %s\n", orNone(sinks))
	if len(unused) > 0 {
		fmt.Fprintf(&b, "  unused:  %s\n", strings.Join(unused, ", "))
	}
	b.WriteString("\n  (stream:partitions)  [entity | parallelism | traits]\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func entityLabel(e *v1alpha1.Entity, newline string) string {
	return strings.Join(append([]string{e.Name, Parallelism(e)}, traits(e)...), newline)
}

func writeDOT(w io.Writer, p *v1alpha1.Pipeline) error {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n", p.Namespace+"/"+p.Name)
	b.WriteString("  rankdir=LR;\n")
	b.WriteString("  node [fontname=\"Helvetica\"];\n")
	for _, s := range p.Spec.Streams {
		fmt.Fprintf(&b, "  %q [shape=cylinder, label=%q];\n", "stream/"+s.Name, s.Name+"\n"+partitionsLabel(s.Partitions))
	}
	for _, e := range order(p) {
		fmt.Fprintf(&b, "  %q [shape=box, style=rounded, label=%q];\n", "entity/"+e.Name, entityLabel(e, "\n"))
	}
	for _, e := range order(p) {
		for _, s := range e.Inputs {
			fmt.Fprintf(&b, "  %q -> %q;\n", "stream/"+s, "entity/"+e.Name)
		}
		for _, s := range e.Outputs {
			fmt.Fprintf(&b, "  %q -> %q;\n", "entity/"+e.Name, "stream/"+s)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidID turns a DNS label into a Mermaid node id; names never hold "_", so ids stay unique.
func mermaidID(kind, name string) string { return kind + "_" + strings.ReplaceAll(name, "-", "_") }

func writeMermaid(w io.Writer, p *v1alpha1.Pipeline) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	for _, s := range p.Spec.Streams {
		fmt.Fprintf(&b, "  %s[(\"%s<br/>%s\")]\n", mermaidID("s", s.Name), s.Name, partitionsLabel(s.Partitions))
	}
	for _, e := range order(p) {
		fmt.Fprintf(&b, "  %s[\"%s\"]\n", mermaidID("e", e.Name), entityLabel(e, "<br/>"))
	}
	for _, e := range order(p) {
		for _, s := range e.Inputs {
			fmt.Fprintf(&b, "  %s --> %s\n", mermaidID("s", s), mermaidID("e", e.Name))
		}
		for _, s := range e.Outputs {
			fmt.Fprintf(&b, "  %s --> %s\n", mermaidID("e", e.Name), mermaidID("s", s))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
