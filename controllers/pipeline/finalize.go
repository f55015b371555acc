package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/conditions"
	"github.com/millrace-dev/millrace/controllers/render"
)

// finalize runs when a Pipeline is being deleted. Executors, ConfigMaps, Services,
// ScaledObjects, ServiceMonitors and revisions carry the Pipeline as controller owner, so the
// garbage collector deletes them; Kafka data is deleted only for streams that say
// deletionPolicy: Delete.
//
// What Strimzi does, read from its Unidirectional Topic Operator (strimzi-kafka-operator,
// topic-operator/.../BatchingTopicController.java, deleteInternal, and TopicOperatorUtil.isManaged):
// deleting a KafkaTopic deletes the Kafka topic (Admin.deleteTopics, then the topic operator's
// finalizer is removed) unless the KafkaTopic carries the annotation strimzi.io/managed: "false";
// then only the finalizer is removed and the topic and its data stay in Kafka.
//
// So, in Strimzi mode:
//   - a Delete stream's KafkaTopic has the Pipeline as controller owner (render sets it): the
//     garbage collector deletes it with the Pipeline and Strimzi deletes the topic. finalize also
//     deletes it explicitly, so the outcome does not depend on the garbage collector's timing.
//   - a Retain stream's KafkaTopic has no owner reference (render leaves it out), so the garbage
//     collector never touches it. finalize annotates it strimzi.io/managed=false and then deletes
//     it: Strimzi lets go of the topic, the Kafka topic keeps its data, and no KafkaTopic is left
//     behind pretending to manage it. Recreating the Pipeline adopts the existing topic again
//     (Strimzi treats "topic already exists" as success).
//
// In Direct mode the operator deletes Delete topics with the Kafka admin API and leaves Retain
// topics alone. A stream removed from a Direct-mode Pipeline keeps its topic whatever its policy
// was: once the stream is gone from the spec the policy is gone too, and keeping data is the safe
// mistake. In Unmanaged mode there is nothing to do and no finalizer.
func (r *Reconciler) finalize(ctx context.Context, p *v1alpha1.Pipeline) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx)
	s := newScope(p)
	snap, err := r.caps.get()
	if err != nil {
		return ctrl.Result{}, err
	}
	s.caps = snap

	var errs []error
	if snap.strimzi != "" {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(snap.strimziGVK("KafkaTopicList"))
		if err := r.listChildren(ctx, list, p); err != nil {
			errs = append(errs, fmt.Errorf("list KafkaTopics of %s/%s: %w", p.Namespace, p.Name, err))
		}
		for i := range list.Items {
			kt := &list.Items[i]
			kt.SetGroupVersionKind(snap.strimziGVK("KafkaTopic"))
			if err := r.deleteChild(ctx, p, kt); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if p.Spec.Kafka.Topics == v1alpha1.TopicsDirect {
		if err := r.deleteDirectTopics(ctx, s); err != nil {
			timeout := time.Duration(r.topicDeletionTimeout.Load())
			if waited := time.Since(p.DeletionTimestamp.Time); waited < timeout {
				// Say why the Pipeline does not go away, and retry.
				conditions.False(&s.p.Status.Conditions, p.Generation, v1alpha1.ConditionReady, v1alpha1.ReasonDeletionBlocked,
					fmt.Sprintf("deleting the Pipeline waits to delete its Delete topics through the Kafka admin API, which fails: %v; "+
						"fix the cause, or set the streams' deletionPolicy to Retain to let the Pipeline go now and keep the topics; after %s the operator gives up and keeps them",
						err, timeout.Round(time.Second)))
				// Retried at a fixed period, and at the bound, rather than with a growing backoff
				// that would hold the Pipeline well past it.
				reconcileErrors.WithLabelValues(errorReason(err)).Inc()
				log.Info("deletion blocked: the Delete topics cannot be deleted yet", "error", err.Error(), "gives up in", timeout-waited)
				return ctrl.Result{RequeueAfter: min(r.adminRetry(), timeout-waited)}, r.writeDeletionStatus(ctx, s)
			}
			// Kafka stayed unreachable (or refused the operator): the topics are kept rather
			// than the Pipeline held forever.
			log.Error(err, "giving up deleting the Delete topics; they are kept", "after", timeout)
			r.recorder.Eventf(p, nil, corev1.EventTypeWarning, EventTopicsKept, "Delete",
				"the Delete topics were not deleted (%v) and are kept: delete them in Kafka", err)
		}
	}
	if len(errs) > 0 {
		return ctrl.Result{}, errors.Join(errs...)
	}
	updated := p.DeepCopy()
	controllerutil.RemoveFinalizer(updated, Finalizer)
	if err := r.client.Patch(ctx, updated, client.MergeFrom(p), client.FieldOwner(FieldManager)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("remove finalizer of %s/%s: %w", p.Namespace, p.Name, err))
	}
	forgetPhase(client.ObjectKeyFromObject(p))
	log.Info("finalized pipeline")
	return ctrl.Result{}, nil
}

// writeDeletionStatus writes the conditions finalize set, when they changed.
func (r *Reconciler) writeDeletionStatus(ctx context.Context, s *scope) error {
	if equality.Semantic.DeepEqual(s.before.Conditions, s.p.Status.Conditions) {
		return nil
	}
	orig := s.p.DeepCopy()
	orig.Status = *s.before
	if err := r.client.Status().Patch(ctx, s.p, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("write status of %s/%s: %w", s.p.Namespace, s.p.Name, err))
	}
	return nil
}

// deleteDirectTopics deletes the Direct-mode topics whose deletionPolicy is Delete. When the
// named Strimzi Kafka is gone there is no Kafka to delete from, and deletion proceeds.
func (r *Reconciler) deleteDirectTopics(ctx context.Context, s *scope) error {
	bootstrap, err := r.bootstrap(ctx, s)
	if err != nil {
		return err
	}
	if s.kafkaMissing {
		return nil
	}
	s.facts.BootstrapServers = bootstrap
	res, err := render.Render(s.p, s.facts)
	if err != nil {
		return fmt.Errorf("render topics of %s/%s for deletion: %w", s.p.Namespace, s.p.Name, err)
	}
	var names []string
	for _, t := range res.Topics {
		if t.DeletionPolicy == v1alpha1.DeletionDelete {
			names = append(names, t.Name)
		}
	}
	if len(names) == 0 {
		// Nothing to delete (every stream Retain, the way out of a blocked deletion): no
		// credentials needed either.
		return nil
	}
	admin, err := r.adminCluster(ctx, s, bootstrap)
	if err != nil {
		return fmt.Errorf("%w: delete topics of %s/%s: %w", errTopics, s.p.Namespace, s.p.Name, err)
	}
	if err := r.kafka.Delete(ctx, admin, names...); err != nil {
		return fmt.Errorf("%w: delete topics of %s/%s: %w", errTopics, s.p.Namespace, s.p.Name, err)
	}
	return nil
}
