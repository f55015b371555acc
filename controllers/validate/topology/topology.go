// Package topology checks a Pipeline's stream graph, the one rule the CRD's CEL cannot express.
// It is apart from package validate so that the operator, which runs this check in every
// reconcile, does not link the API server's schema and CEL libraries that validate uses for the
// CLI (the API server runs the CRD's own CEL).
package topology

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Check checks what CEL cannot: the stream graph of a Pipeline must be acyclic, since a cycle
// feeds an entity its own output forever.
func Check(p *v1alpha1.Pipeline) field.ErrorList {
	if cycle := findCycle(p.Spec.Entities); cycle != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "entities"), strings.Join(cycle, " -> "),
			"the stream graph must be acyclic: entities feed each other in a cycle")}
	}
	return nil
}

// findCycle returns a cycle of streams and entities ("lines", "split", "words", ..., "lines"), or
// nil. Entities are visited in spec order so the reported cycle is deterministic.
func findCycle(entities []v1alpha1.Entity) []string {
	readers := map[string][]int{} // stream -> entities reading it
	for i, e := range entities {
		for _, in := range e.Inputs {
			readers[in] = append(readers[in], i)
		}
	}
	const (
		unvisited = iota
		onPath
		done
	)
	stateOf := make([]int, len(entities))
	var path []string
	var visit func(i int) []string
	visit = func(i int) []string {
		stateOf[i] = onPath
		path = append(path, entities[i].Name)
		for _, out := range entities[i].Outputs {
			path = append(path, out)
			for _, next := range readers[out] {
				switch stateOf[next] {
				case onPath:
					start := indexOf(path, entities[next].Name)
					return append(append([]string{}, path[start:]...), entities[next].Name)
				case unvisited:
					if c := visit(next); c != nil {
						return c
					}
				}
			}
			path = path[:len(path)-1]
		}
		path = path[:len(path)-1]
		stateOf[i] = done
		return nil
	}
	for i := range entities {
		if stateOf[i] == unvisited {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

func indexOf(path []string, name string) int {
	// Entity and stream names may coincide; entities sit at even offsets from the path's start.
	for i := 0; i < len(path); i += 2 {
		if path[i] == name {
			return i
		}
	}
	return 0
}
