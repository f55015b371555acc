package pipeline

import (
	"sync/atomic"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
)

// scope is everything one reconcile of one Pipeline learns and decides. observe fills the
// observed part, render the desired part, apply the outcome; status reads it all once.
type scope struct {
	p *v1alpha1.Pipeline
	// before is the status as read, to write the status only when it changed.
	before *v1alpha1.PipelineStatus

	// observed
	caps         snapshot
	facts        render.Facts
	kafkaMissing bool // the named Strimzi Kafka does not exist
	// listenerProblem says why no listener of the named Strimzi Kafka fits the authentication.
	listenerProblem string
	// admin is where and as whom the operator's Kafka admin client connects in Direct mode;
	// adminErr says why its credentials could not be read.
	admin        topics.Cluster
	adminErr     error
	keda         kedaHealth                     // KEDA's metrics server, when KEDA is served
	statefulSets map[string]*appsv1.StatefulSet // by entity
	configMaps   map[string]*corev1.ConfigMap   // by entity
	// children are the live children by kind and name, as unstructured objects.
	children map[schema.GroupVersionKind]map[string]*unstructured.Unstructured
	// revisions
	revisions      []appsv1.ControllerRevision
	updateRevision string

	// desired
	desired *render.Result
	// desiredHashes are the applied-hashes of desired.Objects, by index (apply).
	desiredHashes []string

	// outcome
	invalid     string
	renderErr   error
	applyErr    error
	topicsErr   error
	topicStates []topics.State
	applied     int // objects written by this reconcile
	created     int // objects that did not exist before
	// entityConfig is, by entity, what its running pods applied (observeConfig).
	entityConfig map[string]*v1alpha1.EntityConfigStatus
	// configPending and configLate are the entities (with their pods) that have not applied
	// their configuration yet, within and beyond the bound.
	configPending, configLate []string
	configErr                 error
	// waitingForTopics are the entities whose ScaledObject is not created yet because an input
	// topic is not ready (KEDA's first polls would fail on a topic that does not exist).
	waitingForTopics []string
	// retiring are the removed entities being retired (observeRetiring); retiringStatus their
	// progress and retired those whose children this reconcile deleted (retireEntities, which
	// sets retireObserved when it ran).
	retiring       []*retiring
	retiringStatus []v1alpha1.RetiringStatus
	retired        []string
	retireObserved bool
	// requeue: a watch event dropped as the operator's own write may have been another's.
	requeue atomic.Bool
}

func newScope(p *v1alpha1.Pipeline) *scope {
	return &scope{
		p:            p,
		before:       p.Status.DeepCopy(),
		statefulSets: map[string]*appsv1.StatefulSet{},
		configMaps:   map[string]*corev1.ConfigMap{},
		children:     map[schema.GroupVersionKind]map[string]*unstructured.Unstructured{},
	}
}

// child returns the live child of that kind and name, or nil.
func (s *scope) child(gvk schema.GroupVersionKind, name string) *unstructured.Unstructured {
	return s.children[gvk][name]
}
