// Package pipeline is the reconciler of Millrace Pipelines. A reconcile is four visible steps over a
// per-request scope:
//
//  1. observe: read the Pipeline, its children (by label, and by owner for deletion), and the
//     facts render needs (which composed operators the cluster serves, the Kafka bootstrap
//     address, the current replicas and Static assignments);
//  2. render: the pure controllers/render turns the Pipeline and the facts into desired objects;
//  3. apply: server-side apply every desired object under one field manager, create Direct-mode
//     topics, and delete the children that are no longer desired;
//  4. status: compute the status once from what was observed and the reconcile error, and write
//     it only when it changed.
//
// History (ControllerRevisions), declarative rollback and deletion (finalizer) wrap these steps.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/validate/topology"
)

// FieldManager is the one field owner of everything the operator applies.
const FieldManager = "millrace-operator"

// Finalizer holds a Pipeline's deletion until its topics were dealt with according to their
// deletionPolicy (see finalize.go).
const Finalizer = "streaming.millrace.dev/topics"

// AnnotationAppliedHash, on every applied child, is a hash of the applied configuration. With a
// field-by-field comparison against the live object it lets a reconcile skip an apply that
// would change nothing, so an unchanged Pipeline costs no API writes.
const AnnotationAppliedHash = "streaming.millrace.dev/applied-hash"

// indexPipeline indexes Millrace's cached children by the Pipeline they belong to (its label),
// so that a reconcile lists its own children rather than filtering all of the namespace's by
// label: with a thousand Pipelines in a namespace, that filtering made every reconcile cost in
// proportion to all Pipelines.
const indexPipeline = "metadata.labels.pipeline"

// pipelineOfChild is the indexPipeline value of a cached object.
func pipelineOfChild(o client.Object) []string {
	l := o.GetLabels()
	if l[render.LabelManagedBy] != render.ValueManagedBy || l[render.LabelPipeline] == "" {
		return nil
	}
	return []string{l[render.LabelPipeline]}
}

// indexStrimziCluster indexes Pipelines by spec.kafka.strimziCluster, to find the Pipelines of a
// Kafka whose status changed.
const indexStrimziCluster = "spec.kafka.strimziCluster"

// RBAC, least privilege: the operator reads and writes exactly the kinds it composes, with the
// verbs it uses (server-side apply is patch, and create for new objects; no update of children).
// Of Secrets it only gets, uncached, the ones a topics: Direct Pipeline names for the operator's
// own Kafka admin client (see kafkaadmin.go): no list, no watch, no informer; executors mount
// theirs.
//
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
//
// +kubebuilder:rbac:groups=streaming.millrace.dev,resources=pipelines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=streaming.millrace.dev,resources=pipelines/status,verbs=get;patch
// +kubebuilder:rbac:groups=streaming.millrace.dev,resources=pipelines/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets;controllerrevisions,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiregistration.k8s.io,resources=apiservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=kafka.strimzi.io,resources=kafkatopics;kafkausers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=kafka.strimzi.io,resources=kafkas,verbs=get;list;watch
// +kubebuilder:rbac:groups=keda.sh,resources=scaledobjects;triggerauthentications,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=servicemonitors;prometheusrules,verbs=get;list;watch;create;patch;delete

// Options configure the reconciler.
type Options struct {
	Images render.Images
	// MaxConcurrentReconciles is the number of Pipelines reconciled at once; default 4.
	MaxConcurrentReconciles int
	// Client, when set, is used instead of the manager's client (tests wrap it to count writes).
	Client client.Client
	// Namespace is the namespace the manager's cache is limited to (see CacheOptions), "" for
	// all; the cache of unowned objects (UnownedCacheOptions) is limited to it too.
	Namespace string
	// ConfigProber asks executor pods which configuration they applied; default: their I/O
	// sidecar's GET /status through the API server's pods/proxy.
	ConfigProber ConfigProber
	// ConfigApplyBound is how long a configuration change may take to reach every running pod
	// before ConfigApplied turns ConfigNotApplied; default DefaultConfigApplyBound.
	ConfigApplyBound time.Duration
	// Clock tells the time (tests); default time.Now.
	Clock func() time.Time
}

// defaultWorkers is the default of Options.MaxConcurrentReconciles.
const defaultWorkers = 4

// Reconciler reconciles Pipelines.
type Reconciler struct {
	client client.Client
	// reader reads from the API server, not the cache: to find, by name, an object that another
	// Pipeline controls (the cache holds children by label; a per-name check needs no informer).
	reader client.Reader
	cache  cache.Cache
	// unowned caches the objects read but not owned, which carry no Millrace label (Strimzi
	// Kafkas): the manager's cache holds only labelled objects.
	unowned  cache.Cache
	recorder events.EventRecorder
	images   render.Images
	caps     *capabilities
	watches  *dynamicWatches
	kafka    *topics.Admin
	// topicDeletionTimeout bounds how long a deleted Pipeline waits for Kafka to delete its
	// Direct-mode Delete topics.
	// Direct-mode Delete topics (nanoseconds; atomic so that tests can shorten it).
	topicDeletionTimeout atomic.Int64

	// indexed are the composed kinds (unstructured) whose cached objects are indexed by
	// Pipeline; the core kinds are indexed at setup.
	indexedMu sync.Mutex
	indexed   map[schema.GroupVersionKind]bool
	// adminRetryPeriod is how often a Direct-mode Pipeline whose admin client is refused, or
	// whose deletion is blocked, is retried (nanoseconds; atomic so that tests can shorten it).
	adminRetryPeriod atomic.Int64
	prober           ConfigProber
	configApplyBound time.Duration
	clock            func() time.Time
	// ownWrites keeps the watch events of the operator's own applies from reconciling again.
	ownWrites *ownWrites
}

// DefaultAdminRetryPeriod is how often the operator retries a Kafka admin client that the
// broker refused, or a blocked deletion.
const DefaultAdminRetryPeriod = 30 * time.Second

func (r *Reconciler) adminRetry() time.Duration { return time.Duration(r.adminRetryPeriod.Load()) }

// DefaultTopicDeletionTimeout is how long a deleted Pipeline in Direct mode waits for its Delete
// topics to be deleted before it gives up, keeps them and goes.
const DefaultTopicDeletionTimeout = 10 * time.Minute

// SetupWithManager builds the reconciler and registers its controller with the manager. The
// controller watches Pipelines, the core children (filtered to Millrace's by the cache), and the
// CustomResourceDefinitions of the composed operators by name, so that installing KEDA, the
// Prometheus Operator or Strimzi later is noticed and watches for their kinds start then.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, o Options) (*Reconciler, error) {
	disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("build discovery client: %w", err)
	}
	c := o.Client
	if c == nil {
		c = mgr.GetClient()
	}
	uo := UnownedCacheOptions(o.Namespace)
	uo.Scheme, uo.Mapper, uo.HTTPClient = mgr.GetScheme(), mgr.GetRESTMapper(), mgr.GetHTTPClient()
	unowned, err := cache.New(mgr.GetConfig(), uo)
	if err != nil {
		return nil, fmt.Errorf("build the cache of unowned objects: %w", err)
	}
	if err := mgr.Add(cacheRunnable{unowned}); err != nil {
		return nil, fmt.Errorf("add the cache of unowned objects: %w", err)
	}
	r := &Reconciler{
		client:   c,
		reader:   mgr.GetAPIReader(),
		cache:    mgr.GetCache(),
		unowned:  unowned,
		recorder: mgr.GetEventRecorder(FieldManager),
		images:   o.Images,
		caps:     newCapabilities(disc),
		kafka:    topics.NewAdmin(),

		ownWrites:        newOwnWrites(),
		prober:           o.ConfigProber,
		configApplyBound: o.ConfigApplyBound,
		clock:            o.Clock,
	}
	if r.prober == nil {
		pp, err := newProxyProber(mgr.GetConfig(), mgr.GetHTTPClient())
		if err != nil {
			return nil, fmt.Errorf("build the pods/proxy client: %w", err)
		}
		r.prober = pp
	}
	if r.configApplyBound == 0 {
		r.configApplyBound = DefaultConfigApplyBound
	}
	if r.clock == nil {
		r.clock = time.Now
	}
	r.topicDeletionTimeout.Store(int64(DefaultTopicDeletionTimeout))
	for _, o := range []client.Object{&appsv1.StatefulSet{}, &corev1.ConfigMap{}, &corev1.Service{}, &appsv1.ControllerRevision{}} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, o, indexPipeline, pipelineOfChild); err != nil {
			return nil, fmt.Errorf("index %T by pipeline: %w", o, err)
		}
	}
	r.adminRetryPeriod.Store(int64(DefaultAdminRetryPeriod))
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Pipeline{}, indexStrimziCluster, func(o client.Object) []string {
		if s := o.(*v1alpha1.Pipeline).Spec.Kafka.StrimziCluster; s != "" {
			return []string{s}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("index pipelines by strimzi cluster: %w", err)
	}
	workers := o.MaxConcurrentReconciles
	if workers <= 0 {
		workers = defaultWorkers
	}
	c2, err := ctrl.NewControllerManagedBy(mgr).
		Named("pipeline").
		For(&v1alpha1.Pipeline{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.StatefulSet{}, builder.WithPredicates(r.ownWrites.predicate(gvkStatefulSet.GroupKind()))).
		Owns(&corev1.ConfigMap{}, builder.WithPredicates(r.ownWrites.predicate(gvkConfigMap.GroupKind()))).
		Owns(&corev1.Service{}, builder.WithPredicates(r.ownWrites.predicate(gvkService.GroupKind()))).
		WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{},
			handler.EnqueueRequestsFromMapFunc(r.crdChanged),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return composedCRDs[o.GetName()] }))).
		Watches(apiServiceObject(), handler.EnqueueRequestsFromMapFunc(r.crdChanged),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetName() == kedaAPIService }))).
		// controller-runtime's priority queue (its default, made explicit): the reconciles of
		// Pipelines that changed go before the resyncs of the initial list, so a restart with
		// a thousand Pipelines does not delay a new one. Client-side rate limits are off
		// (ctrl.GetConfig), leaving fairness to the API server's priority and fairness.
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, UsePriorityQueue: ptr.To(true)}).
		Build(r)
	if err != nil {
		return nil, fmt.Errorf("build pipeline controller: %w", err)
	}
	r.watches = newDynamicWatches(c2, mgr.GetCache(), unowned, r)
	return r, nil
}

// cacheRunnable makes the manager start a cache with its own (before the controllers, and
// waiting for it to sync), as it does for a cluster.Cluster.
type cacheRunnable struct{ cache.Cache }

func (c cacheRunnable) GetCache() cache.Cache { return c.Cache }

// listChildren lists p's cached children of list's kind, through indexPipeline. A list of a
// composed kind (unstructured) indexes that kind's informer first, once.
func (r *Reconciler) listChildren(ctx context.Context, list client.ObjectList, p *v1alpha1.Pipeline) error {
	if u, ok := list.(*unstructured.UnstructuredList); ok {
		gvk := u.GroupVersionKind()
		gvk.Kind = strings.TrimSuffix(gvk.Kind, "List")
		if err := r.indexComposed(ctx, gvk); err != nil {
			return err
		}
	}
	return r.cache.List(ctx, list, client.InNamespace(p.Namespace), client.MatchingFields{indexPipeline: p.Name}, childSelector(p))
}

func (r *Reconciler) indexComposed(ctx context.Context, gvk schema.GroupVersionKind) error {
	r.indexedMu.Lock()
	defer r.indexedMu.Unlock()
	if r.indexed[gvk] {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	if err := r.cache.IndexField(ctx, u, indexPipeline, pipelineOfChild); err != nil {
		return fmt.Errorf("index %s by pipeline: %w", gvk.Kind, err)
	}
	if r.indexed == nil {
		r.indexed = map[schema.GroupVersionKind]bool{}
	}
	r.indexed[gvk] = true
	return nil
}

func apiServiceObject() *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvkAPIService)
	return u
}

// Close releases the Kafka admin connections.
func (r *Reconciler) Close() { r.kafka.Close() }

// Reconcile brings one Pipeline's children and status in line with its spec.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	log := ctrl.LoggerFrom(ctx)
	p := &v1alpha1.Pipeline{}
	if err := r.client.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			forgetPhase(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	defer func() {
		if retErr != nil {
			reconcileErrors.WithLabelValues(errorReason(retErr)).Inc()
		}
	}()

	if !p.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, p)
	}

	s := newScope(p)
	if errs := topology.Check(p); len(errs) > 0 {
		s.invalid = errs.ToAggregate().Error()
		return ctrl.Result{}, r.writeStatus(ctx, s)
	}

	// History first: a rollback replaces the spec, and the next reconcile renders that.
	if done, err := r.rollback(ctx, s); done || err != nil {
		return ctrl.Result{}, err
	}

	if err := r.ensureFinalizer(ctx, p); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.recordRevision(ctx, s); err != nil {
		return ctrl.Result{}, err
	}

	// 1. observe
	if err := r.observe(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	res = r.requeueForCRDs(ctx, s)
	if err := r.observeRetiring(ctx, s); err != nil {
		return res, err
	}

	// 2. render
	result, err := render.Render(p, s.facts)
	if err != nil {
		s.renderErr = err
		if waitingForBootstrap(s) {
			// The Kafka watch brings the address; the requeue covers a Kafka without Strimzi.
			log.Info("waiting for the Kafka bootstrap address", "pipeline", klog.KObj(p))
			return ctrl.Result{RequeueAfter: time.Minute}, r.writeStatus(ctx, s)
		}
		log.Error(err, "render failed", "pipeline", klog.KObj(p))
		return res, errors.Join(err, r.writeStatus(ctx, s))
	}
	s.desired = result

	// 3. apply, 4. status
	s.applyErr = r.apply(ctx, s)
	if s.applyErr == nil && s.applied > 0 {
		// What render takes from the children may have changed with this apply (a new
		// autoscaled StatefulSet starts at minReplicas, then hands the field over): render
		// again from the API server's answers and apply what differs, now rather than in a
		// reconcile that the apply's own watch events would have brought (ownWrites).
		if again, err := r.rerender(ctx, s); err != nil || again {
			s.applyErr = err
			if err == nil {
				s.applyErr = r.apply(ctx, s)
			}
		}
	}
	if s.applyErr == nil && len(s.retiring) > 0 {
		s.applyErr = r.retireEntities(ctx, s)
	} else if s.applyErr == nil {
		s.retireObserved = true
	}
	r.observeConfig(ctx, s)
	if len(s.retiringStatus) > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > configRecheck) {
		// The sidecars are asked; nothing notifies the operator of a drain's progress.
		res.RequeueAfter = configRecheck
	}
	if len(s.retired) > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > ownWriteRecheck) {
		// The deferred topics and ACLs go at the next reconcile.
		res.RequeueAfter = ownWriteRecheck
	}
	if len(s.configPending)+len(s.configLate) > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > configRecheck) {
		res.RequeueAfter = configRecheck
	}
	if s.requeue.Load() && (res.RequeueAfter == 0 || res.RequeueAfter > ownWriteRecheck) {
		res.RequeueAfter = ownWriteRecheck
	}
	if err := r.writeStatus(ctx, s); err != nil {
		return res, errors.Join(s.applyErr, err)
	}
	if s.applyErr != nil {
		return res, s.applyErr
	}
	if s.topicsErr != nil && adminRefused(s.topicsErr) {
		// The admin client's Secret or ACLs must be fixed. The operator watches no Secret, so
		// it retries at a fixed period rather than with a backoff that grows to a quarter of
		// an hour: a fixed Secret is used within adminRetryPeriod.
		reconcileErrors.WithLabelValues("KafkaAdmin").Inc()
		log.Info("the Kafka admin client is refused; retrying", "pipeline", klog.KObj(p), "error", s.topicsErr.Error(), "after", r.adminRetry())
		return ctrl.Result{RequeueAfter: r.adminRetry()}, nil
	}
	if s.topicsErr != nil {
		// Direct topics failed (Kafka unreachable): retry with the controller's backoff.
		return res, s.topicsErr
	}
	return res, nil
}

// rerender renders s's Pipeline again with the facts its children give after the apply, and
// reports whether that changes any object to apply (then s.desired is the new result).
func (r *Reconciler) rerender(ctx context.Context, s *scope) (bool, error) {
	s.childFacts(ctrl.LoggerFrom(ctx))
	result, err := render.Render(s.p, s.facts)
	if err != nil {
		return false, err
	}
	if len(result.Objects) != len(s.desiredHashes) {
		s.desired = result
		return true, nil
	}
	for i, obj := range result.Objects {
		now, err := applied(obj)
		if err != nil {
			return false, err
		}
		if s.desiredHashes[i] != now.GetAnnotations()[AnnotationAppliedHash] {
			s.desired = result
			return true, nil
		}
	}
	return false, nil
}

// ownWriteRecheck is how soon a Pipeline is looked at again when a watch event dropped as its
// own write turned out to be another's (ownWrites).
const ownWriteRecheck = time.Second

// requeueForCRDs asks for a short requeue when a composed operator's CRD exists but discovery
// does not serve it yet (it is being established), so recovery does not wait for another event.
func (r *Reconciler) requeueForCRDs(ctx context.Context, s *scope) ctrl.Result {
	if r.caps.pending(ctx, r.cache) {
		r.caps.invalidate()
		return ctrl.Result{RequeueAfter: 2 * time.Second}
	}
	return ctrl.Result{}
}

func errorReason(err error) string {
	switch {
	case apierrors.IsConflict(err):
		return "Conflict"
	case apierrors.IsForbidden(err):
		return "Forbidden"
	case apierrors.IsInvalid(err):
		return "Invalid"
	case apierrors.IsNotFound(err):
		return "NotFound"
	case errors.Is(err, errTopics):
		return "Topics"
	case errors.Is(err, errApply):
		return "Apply"
	default:
		return "Other"
	}
}
