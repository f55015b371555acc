package pipeline

import (
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// ownWrites remembers the resource version of every child the operator has just applied, so
// that the watch event of that very write does not bring the Pipeline back to the queue: the
// reconcile that wrote it already computed the status from the API server's answer (see
// apply). Without it a new Pipeline was reconciled a second time for its 26 creations, which
// wrote its status again and, when the cache had not caught up yet, applied again what it did not
// see yet.
//
// Only the event of exactly that write is dropped: a change by anybody else, later or earlier,
// has another resource version and reconciles as before. An entry lives until the next event of
// its object, whichever it is.
type ownWrites struct {
	mu sync.Mutex
	rv map[ownWriteKey]string
}

type ownWriteKey struct {
	kind      schema.GroupKind
	namespace string
	name      string
}

func newOwnWrites() *ownWrites { return &ownWrites{rv: map[ownWriteKey]string{}} }

// wrote records that the operator's write of that object produced resourceVersion.
func (w *ownWrites) wrote(kind schema.GroupKind, o client.Object) {
	if o.GetResourceVersion() == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rv[ownWriteKey{kind, o.GetNamespace(), o.GetName()}] = o.GetResourceVersion()
}

// seen reports whether o is the object as the operator's last write of it left it, and forgets
// the write either way.
func (w *ownWrites) seen(kind schema.GroupKind, o client.Object) bool {
	k := ownWriteKey{kind, o.GetNamespace(), o.GetName()}
	w.mu.Lock()
	defer w.mu.Unlock()
	rv, ok := w.rv[k]
	if !ok {
		return false
	}
	delete(w.rv, k)
	return rv == o.GetResourceVersion()
}

// predicate drops the create and update events of kind that the operator's own writes caused.
// Deletions always pass (and forget the write).
func (w *ownWrites) predicate(kind schema.GroupKind) predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return !w.seen(kind, e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool { return !w.seen(kind, e.ObjectNew) },
		DeleteFunc: func(e event.DeleteEvent) bool {
			w.seen(kind, e.Object)
			return true
		},
	}
}

// pending is the number of writes whose event has not been seen yet (tests).
func (w *ownWrites) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.rv)
}
