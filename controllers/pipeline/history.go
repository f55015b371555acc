package pipeline

import (
	"context"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/revision"
	"github.com/millrace-dev/millrace/controllers/reconfig"
	"github.com/millrace-dev/millrace/controllers/render"
)

// Event reasons.
const (
	EventCreated        = "Created"
	EventScaled         = "Scaled"
	EventRolledBack     = v1alpha1.ReasonRolledBack
	EventRollbackFailed = v1alpha1.ReasonRollbackFailed
	EventDegraded       = "Degraded"
	EventRecovered      = "Recovered"
	// EventRetiring: a removed entity's retirement began (its removal policy drains its inputs
	// or deletes its group first); EventRetired: it is done and its children are deleted.
	EventRetiring   = "Retiring"
	EventRetired    = "Retired"
	EventTopicsKept = "TopicsKept"
	// EventReconfigured says, for a new revision of the spec, what the change is by the
	// reconfiguration contract (controllers/reconfig): its class, fields and the restarts.
	EventReconfigured = "Reconfigured"
)

// revisions lists the ControllerRevisions this Pipeline controls.
func (r *Reconciler) revisions(ctx context.Context, p *v1alpha1.Pipeline) ([]appsv1.ControllerRevision, error) {
	var list appsv1.ControllerRevisionList
	if err := r.listChildren(ctx, &list, p); err != nil {
		return nil, fmt.Errorf("list revisions of %s/%s: %w", p.Namespace, p.Name, err)
	}
	out := list.Items[:0]
	for _, cr := range list.Items {
		if metav1.IsControlledBy(&cr, p) {
			out = append(out, cr)
		}
	}
	return out, nil
}

// rollback restores the spec of the revision named by the rollback-to annotation and removes the
// annotation, in one update. It reports done when it changed the Pipeline: the next reconcile
// then records the restored spec as the newest revision. A rollback to a revision that does not
// exist removes the annotation and says so in a warning event, rather than retrying forever.
func (r *Reconciler) rollback(ctx context.Context, s *scope) (bool, error) {
	p := s.p
	value, ok := p.Annotations[v1alpha1.AnnotationRollbackTo]
	if !ok {
		return false, nil
	}
	revs, err := r.revisions(ctx, p)
	if err != nil {
		return false, err
	}
	var target *appsv1.ControllerRevision
	number, perr := strconv.ParseInt(value, 10, 64)
	if perr == nil {
		target = revision.ByNumber(revs, number)
	}
	updated := p.DeepCopy()
	delete(updated.Annotations, v1alpha1.AnnotationRollbackTo)
	if target == nil {
		if err := r.client.Patch(ctx, updated, client.MergeFromWithOptions(p, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldManager)); err != nil {
			return false, fmt.Errorf("remove rollback annotation of %s/%s: %w", p.Namespace, p.Name, err)
		}
		r.recorder.Eventf(p, nil, corev1.EventTypeWarning, EventRollbackFailed, "Rollback",
			"no revision %q to roll back to; `kubectl get controllerrevisions -l %s=%s` lists them", value, render.LabelPipeline, p.Name)
		p.Annotations = updated.Annotations
		p.ResourceVersion = updated.ResourceVersion
		return false, nil
	}
	spec, err := revision.Spec(target)
	if err != nil {
		return false, err
	}
	updated.Spec = *spec
	if err := r.client.Update(ctx, updated, client.FieldOwner(FieldManager)); err != nil {
		return false, fmt.Errorf("roll back %s/%s to revision %d: %w", p.Namespace, p.Name, number, err)
	}
	r.recorder.Eventf(p, nil, corev1.EventTypeNormal, EventRolledBack, "Rollback", "rolled back to revision %d (%s)", number, target.Name)
	ctrl.LoggerFrom(ctx).Info("rolled back", "revision", number)
	return true, nil
}

// recordRevision makes the current spec the newest revision: a new ControllerRevision for a new
// spec, or the old revision of an equal spec renumbered as newest (after a rollback), and
// deletes the revisions beyond spec.revisionHistoryLimit.
func (r *Reconciler) recordRevision(ctx context.Context, s *scope) error {
	p := s.p
	revs, err := r.revisions(ctx, p)
	if err != nil {
		return err
	}
	d, err := revision.For(&p.Spec)
	if err != nil {
		return err
	}
	name := revision.Name(p, d.Hash)
	existing := revision.ByName(revs, name)
	latest := revision.Latest(revs)
	if latest != nil && latest.Name != name {
		r.recordReconfiguration(p, latest)
	}
	switch {
	case existing == nil:
		cr := revision.New(p, d, revision.Next(revs), render.PipelineLabels(p))
		if err := r.client.Create(ctx, cr, client.FieldOwner(FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create revision %s/%s: %w", cr.Namespace, cr.Name, err)
		}
		revs = append(revs, *cr)
	case latest != nil && latest.Name != existing.Name:
		bumped := existing.DeepCopy()
		bumped.Revision = revision.Next(revs)
		if err := r.client.Patch(ctx, bumped, client.MergeFromWithOptions(existing, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("renumber revision %s/%s: %w", existing.Namespace, existing.Name, err)
		}
		*existing = *bumped
	}
	s.updateRevision = name
	s.revisions = revs
	for _, old := range revision.Excess(revs, revision.Limit(p), name, p.Status.CurrentRevision) {
		if err := r.client.Delete(ctx, &old, client.Preconditions{UID: &old.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete old revision %s/%s: %w", old.Namespace, old.Name, err)
		}
	}
	return nil
}

// recordReconfiguration emits the event of a change from revision prev to the current spec, in
// the contract's words, so that `kubectl describe pipeline` says which pods restart and why.
func (r *Reconciler) recordReconfiguration(p *v1alpha1.Pipeline, prev *appsv1.ControllerRevision) {
	spec, err := revision.Spec(prev)
	if err != nil {
		return
	}
	changes := reconfig.Changes(spec, &p.Spec)
	if len(changes) == 0 {
		return
	}
	r.recorder.Eventf(p, nil, corev1.EventTypeNormal, EventReconfigured, "Reconfigure", "from revision %d: %s",
		prev.Revision, reconfig.Summary(changes, p.Spec.Entities))
}

// needsFinalizer: only Pipelines whose topics the operator manages have something to do on
// deletion.
func needsFinalizer(p *v1alpha1.Pipeline) bool {
	return p.Spec.Kafka.Topics != v1alpha1.TopicsUnmanaged
}

func (r *Reconciler) ensureFinalizer(ctx context.Context, p *v1alpha1.Pipeline) error {
	want := needsFinalizer(p)
	if want == controllerutil.ContainsFinalizer(p, Finalizer) {
		return nil
	}
	updated := p.DeepCopy()
	if want {
		controllerutil.AddFinalizer(updated, Finalizer)
	} else {
		controllerutil.RemoveFinalizer(updated, Finalizer)
	}
	if err := r.client.Patch(ctx, updated, client.MergeFromWithOptions(p, client.MergeFromWithOptimisticLock{}), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("update finalizer of %s/%s: %w", p.Namespace, p.Name, err)
	}
	p.Finalizers, p.ResourceVersion = updated.Finalizers, updated.ResourceVersion
	return nil
}
