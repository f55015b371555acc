package pipeline

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers the children the operator is applying and has just applied, so that the
// watch event of that very write does not bring the Pipeline back to the queue: the reconcile
// that wrote it computes the status from the API server's answer (see apply). Without it a new
// Pipeline was reconciled again for its children's creations, which wrote its status again and,
// when the cache had not caught up yet, applied again what it did not see yet.
//
// The event may come before the apply's answer (the watch and the request are different
// streams). So the write is expected before the request, with its applied-hash: an event of that
// object with that hash while the request is in flight is taken for the write's and dropped, and
// the answer's resource version confirms it; after the answer, only the event of exactly that
// resource version is dropped. A change by anybody else has another resource version and
// reconciles as before; if a dropped event turns out not to have been the write's, wrote says
// so and the caller requeues. An entry lives until the next event of its object, whichever it is.
type ownWrites struct {
	mu sync.Mutex
	w  map[ownWriteKey]*ownWrite
}

type ownWriteKey struct {
	kind      schema.GroupKind
	namespace string
	name      string
}

type ownWrite struct {
	hash string // the applied configuration's AnnotationAppliedHash
	rv   string // the answer's resource version, "" while the request is in flight
	// dropped is the resource version of the event dropped while the request was in flight.
	dropped string
}

func newOwnWrites() *ownWrites { return &ownWrites{w: map[ownWriteKey]*ownWrite{}} }

func keyOf(kind schema.GroupKind, o client.Object) ownWriteKey {
	return ownWriteKey{kind, o.GetNamespace(), o.GetName()}
}

// expect records that the operator is about to apply o.
func (w *ownWrites) expect(kind schema.GroupKind, o client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w[keyOf(kind, o)] = &ownWrite{hash: o.GetAnnotations()[AnnotationAppliedHash]}
}

// wrote records the API server's answer to the apply of o (nil err), or forgets the write. It
// reports false when an event dropped during the request was not the write's own: the caller
// must reconcile again.
func (w *ownWrites) wrote(kind schema.GroupKind, o client.Object, err error) bool {
	k := keyOf(kind, o)
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.w[k]
	if !ok {
		return true
	}
	switch {
	case err != nil || o.GetResourceVersion() == "":
		delete(w.w, k)
		return e.dropped == ""
	case e.dropped != "":
		delete(w.w, k)
		return e.dropped == o.GetResourceVersion()
	}
	e.rv = o.GetResourceVersion()
	return true
}

// seen reports whether o, as a create or update event shows it, is the operator's own write,
// whose event is to be dropped.
func (w *ownWrites) seen(kind schema.GroupKind, o client.Object) bool {
	k := keyOf(kind, o)
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.w[k]
	if !ok {
		return false
	}
	if e.rv == "" {
		// In flight: the write's event, if it carries the write's hash and none was taken yet.
		if e.dropped == "" && e.hash != "" && o.GetAnnotations()[AnnotationAppliedHash] == e.hash {
			e.dropped = o.GetResourceVersion()
			return true
		}
		return false
	}
	delete(w.w, k)
	return e.rv == o.GetResourceVersion()
}

// forget drops what is known of o's writes.
func (w *ownWrites) forget(kind schema.GroupKind, o client.Object) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.w, keyOf(kind, o))
}

// predicate drops the create and update events of kind that the operator's own writes caused.
// Deletions always pass (and forget the write).
func (w *ownWrites) predicate(kind schema.GroupKind) predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !w.seen(kind, e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !w.seen(kind, e.ObjectNew) },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.forget(kind, e.Object)
			return true
		},
	}
}

// pending is the number of writes whose event has not been seen yet (tests).
func (w *ownWrites) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.w)
}

// keys are the writes whose event has not been seen yet (tests).
func (w *ownWrites) keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k, e := range w.w {
		out = append(out, k.kind.String()+" "+k.namespace+"/"+k.name+"@"+e.rv)
	}
	return out
}
