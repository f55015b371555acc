package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

var (
	gvkStatefulSet = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	gvkConfigMap   = corev1.SchemeGroupVersion.WithKind("ConfigMap")
	gvkService     = corev1.SchemeGroupVersion.WithKind("Service")
)

// childSelector selects the children of one Pipeline.
func childSelector(p *v1alpha1.Pipeline) client.MatchingLabels {
	return client.MatchingLabels{render.LabelManagedBy: render.ValueManagedBy, render.LabelPipeline: p.Name}
}

// observe reads what render needs and what status reports: served APIs, children, facts.
func (r *Reconciler) observe(ctx context.Context, s *scope) error {
	log := ctrl.LoggerFrom(ctx)
	snap, err := r.caps.get()
	if err != nil {
		// Discovery failing is transient; keep the last snapshot and say so.
		log.Error(err, "discovery failed, using the last known API groups")
	}
	s.caps = snap
	if err := r.watches.ensure(snap); err != nil {
		return err
	}

	if err := r.observeCore(ctx, s); err != nil {
		return err
	}
	if snap.keda && usesAutoscaling(s.p) {
		if s.keda, err = r.observeKEDA(ctx); err != nil {
			return err
		}
	}
	for _, gvk := range snap.thirdParty() {
		if err := r.observeUnstructured(ctx, s, gvk); err != nil {
			return err
		}
	}

	s.facts = render.Facts{
		StrimziAPIVersion:  snap.strimzi,
		KEDA:               snap.keda,
		PrometheusOperator: snap.prometheus && snap.promRules,
		Images:             r.images,
	}
	s.childFacts(log)
	if s.facts.BootstrapServers, err = r.bootstrap(ctx, s); err != nil {
		return err
	}
	if s.p.Spec.Kafka.Topics == v1alpha1.TopicsDirect && s.facts.BootstrapServers != "" {
		s.admin, s.adminErr = r.adminCluster(ctx, s, s.facts.BootstrapServers)
	}
	s.facts.TopicPartitions, err = r.adoptedPartitions(ctx, s)
	return err
}

// childFacts sets the facts render takes from the Pipeline's own children: the replicas its
// StatefulSets run with and keep, and the Static assignments its ConfigMaps hold.
func (s *scope) childFacts(log logr.Logger) {
	s.facts.Replicas = map[string]int32{}
	s.facts.Assignments = map[string]config.Assignment{}
	s.facts.KeptReplicas = map[string]int32{}
	for entity, sts := range s.statefulSets {
		if sts.Spec.Replicas == nil {
			continue
		}
		s.facts.Replicas[entity] = *sts.Spec.Replicas
		if kept, err := strconv.ParseInt(sts.Annotations[render.AnnotationKeptReplicas], 10, 32); err == nil {
			s.facts.KeptReplicas[entity] = int32(kept)
		} else if sts.Annotations[render.AnnotationAutoscaled] == "true" {
			// An autoscaler owned the field: if the entity is no longer autoscaled, the
			// operator takes it back at this count.
			s.facts.KeptReplicas[entity] = *sts.Spec.Replicas
		}
	}
	for entity, cm := range s.configMaps {
		raw, ok := cm.Data[config.FileName]
		if !ok {
			continue
		}
		var ex config.Executor
		if err := json.Unmarshal([]byte(raw), &ex); err != nil {
			log.Info("ignoring unreadable executor configuration", "configmap", cm.Name, "error", err.Error())
			continue
		}
		s.facts.Assignments[entity] = ex.Assignment
	}
}

// adoptedPartitions observes the partition counts of the existing topics that streams adopt
// through topicName: in Direct mode from Kafka; in Strimzi mode from a KafkaTopic of that topic
// that is not this Pipeline's (whoever manages the topic). Render gives the stream, and all that
// derives from it, the real count when it is larger than the spec's.
func (r *Reconciler) adoptedPartitions(ctx context.Context, s *scope) (map[string]int32, error) {
	adopted := map[string]bool{}
	var names []string
	for _, st := range s.p.Spec.Streams {
		if st.TopicName != "" {
			adopted[st.TopicName] = true
			names = append(names, st.TopicName)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	switch {
	case s.p.Spec.Kafka.Topics == v1alpha1.TopicsDirect:
		if s.facts.BootstrapServers == "" || s.adminErr != nil {
			return nil, nil
		}
		found, err := r.kafka.Exists(ctx, s.admin, names...)
		if err != nil {
			// Ensure meets the same error and reports it in TopicsReady.
			ctrl.LoggerFrom(ctx).V(1).Info("cannot read the partitions of adopted topics", "error", err.Error())
			return nil, nil
		}
		return found, nil
	case s.caps.strimzi != "":
		// A live read: the KafkaTopics of others are not cached (the cache holds Millrace's
		// objects only, so that memory does not grow with topics Millrace does not own), and
		// only Pipelines that adopt topics make it.
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(s.caps.strimziGVK("KafkaTopicList"))
		if err := r.reader.List(ctx, list, client.InNamespace(s.p.Namespace)); err != nil {
			return nil, fmt.Errorf("list KafkaTopics of namespace %s: %w", s.p.Namespace, err)
		}
		out := map[string]int32{}
		for _, kt := range list.Items {
			if kt.GetLabels()[render.LabelPipeline] == s.p.Name && kt.GetLabels()[render.LabelManagedBy] == render.ValueManagedBy {
				continue
			}
			topic, _, _ := unstructured.NestedString(kt.Object, "spec", "topicName")
			if topic == "" {
				topic = kt.GetName()
			}
			if n, found, _ := unstructured.NestedInt64(kt.Object, "spec", "partitions"); found && adopted[topic] && int32(n) > out[topic] {
				out[topic] = int32(n)
			}
		}
		return out, nil
	}
	return nil, nil
}

func (r *Reconciler) observeCore(ctx context.Context, s *scope) error {
	var stss appsv1.StatefulSetList
	if err := r.listChildren(ctx, &stss, s.p); err != nil {
		return fmt.Errorf("list statefulsets of %s: %w", s.p.Name, err)
	}
	for i := range stss.Items {
		sts := &stss.Items[i]
		if e := sts.Labels[render.LabelEntity]; e != "" {
			s.statefulSets[e] = sts
		}
		if err := s.addTyped(gvkStatefulSet, sts); err != nil {
			return err
		}
	}
	var cms corev1.ConfigMapList
	if err := r.listChildren(ctx, &cms, s.p); err != nil {
		return fmt.Errorf("list configmaps of %s: %w", s.p.Name, err)
	}
	for i := range cms.Items {
		cm := &cms.Items[i]
		if e := cm.Labels[render.LabelEntity]; e != "" {
			s.configMaps[e] = cm
		}
		if err := s.addTyped(gvkConfigMap, cm); err != nil {
			return err
		}
	}
	var svcs corev1.ServiceList
	if err := r.listChildren(ctx, &svcs, s.p); err != nil {
		return fmt.Errorf("list services of %s: %w", s.p.Name, err)
	}
	for i := range svcs.Items {
		if err := s.addTyped(gvkService, &svcs.Items[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *scope) addTyped(gvk schema.GroupVersionKind, o runtime.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return fmt.Errorf("convert %s: %w", gvk.Kind, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	s.addChild(gvk, u)
	return nil
}

// addApplied puts the API server's answer to an apply in place of what was observed before it,
// so that the status written at the end of the reconcile says what the reconcile made (a new
// StatefulSet's replicas, a KafkaTopic that exists) rather than what the cache held before: the
// reconcile that the write's own watch event would have brought only to write that status is
// not needed (ownWrites).
func (s *scope) addApplied(u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	if gvk == gvkStatefulSet && managerOwns(u.GetManagedFields(), FieldManager, "f:spec", "f:replicas") {
		// As the cache marks it (stripUnread), for a handover in this reconcile's second pass.
		ann := u.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[cachedOwnsReplicas] = "true"
		u.SetAnnotations(ann)
	}
	u.SetManagedFields(nil)
	switch gvk {
	case gvkConfigMap:
		cm := &corev1.ConfigMap{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cm); err != nil {
			return fmt.Errorf("read the applied ConfigMap %s: %w", u.GetName(), err)
		}
		if e := cm.Labels[render.LabelEntity]; e != "" {
			s.configMaps[e] = cm
		}
	case gvkStatefulSet:
		sts := &appsv1.StatefulSet{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, sts); err != nil {
			return fmt.Errorf("read the applied StatefulSet %s: %w", u.GetName(), err)
		}
		if e := sts.Labels[render.LabelEntity]; e != "" {
			s.statefulSets[e] = sts
		}
	}
	s.addChild(gvk, u)
	return nil
}

func (s *scope) addChild(gvk schema.GroupVersionKind, u *unstructured.Unstructured) {
	if s.children[gvk] == nil {
		s.children[gvk] = map[string]*unstructured.Unstructured{}
	}
	s.children[gvk][u.GetName()] = u
}

func (r *Reconciler) observeUnstructured(ctx context.Context, s *scope, gvk schema.GroupVersionKind) error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err := r.listChildren(ctx, list, s.p); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			// The CRD went away since discovery: see it again next time.
			r.caps.invalidate()
			return nil
		}
		return fmt.Errorf("list %s of %s: %w", gvk.Kind, s.p.Name, err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		u.SetGroupVersionKind(gvk)
		s.addChild(gvk, u)
	}
	return nil
}

// bootstrap is spec.kafka.bootstrapServers, or the address of the named Strimzi Kafka's
// listener that fits the authentication.
func (r *Reconciler) bootstrap(ctx context.Context, s *scope) (string, error) {
	k := s.p.Spec.Kafka
	if k.BootstrapServers != "" {
		return k.BootstrapServers, nil
	}
	if k.StrimziCluster == "" || !s.caps.strimziKafka {
		return "", nil
	}
	kafka := &unstructured.Unstructured{}
	kafka.SetGroupVersionKind(s.caps.strimziGVK("Kafka"))
	if err := r.unowned.Get(ctx, client.ObjectKey{Namespace: s.p.Namespace, Name: k.StrimziCluster}, kafka); err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			s.kafkaMissing = true
			return "", nil
		}
		return "", fmt.Errorf("read Kafka %s/%s: %w", s.p.Namespace, k.StrimziCluster, err)
	}
	auth := v1alpha1.AuthNone
	if k.Authentication != nil && k.Authentication.Type != "" {
		auth = k.Authentication.Type
	}
	l, problem := chooseListener(kafka, auth)
	s.listenerProblem = problem
	s.facts.BootstrapTLS = l.tls
	return l.addr, nil
}

// listener is one listener of a Strimzi Kafka: its spec (spec.kafka.listeners) joined with its
// address (status.listeners) by name.
type listener struct {
	name, addr, kind, auth string
	tls, specified         bool
}

// chooseListener picks the listener of a Strimzi Kafka that the executors (and KEDA) can use
// with the Pipeline's authentication: one whose authentication type is the Pipeline's (none for
// none), in the cluster (internal or cluster-ip rather than a route, load balancer, node port or
// ingress), encrypting when there is a choice for SCRAM, plain when there is a choice without
// authentication. Names mean nothing to Strimzi, so they decide only when the Kafka's spec is
// unknown (then "plain", or "tls" for TLS authentication). problem says why no listener fits.
func chooseListener(kafka *unstructured.Unstructured, auth v1alpha1.AuthenticationType) (listener, string) {
	specs := map[string]listener{}
	specList, _, _ := unstructured.NestedSlice(kafka.Object, "spec", "kafka", "listeners")
	for _, raw := range specList {
		m, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		l := listener{specified: true}
		l.name, _ = m["name"].(string)
		l.kind, _ = m["type"].(string)
		l.tls, _ = m["tls"].(bool)
		if a, ok := m["authentication"].(map[string]any); ok {
			l.auth, _ = a["type"].(string)
		}
		specs[l.name] = l
	}
	var all []listener
	statusList, _, _ := unstructured.NestedSlice(kafka.Object, "status", "listeners")
	for _, raw := range statusList {
		m, ok := raw.(map[string]any)
		if !ok {
			continue
		}
		name, _ := m["name"].(string)
		addr, _ := m["bootstrapServers"].(string)
		if addr == "" {
			continue
		}
		l := specs[name]
		l.name, l.addr = name, addr
		all = append(all, l)
	}
	if len(all) == 0 {
		return listener{}, ""
	}
	if len(specs) == 0 {
		want := "plain"
		if auth == v1alpha1.AuthTLS {
			want = "tls"
		}
		for _, l := range all {
			if l.name == want {
				return l, ""
			}
		}
		return all[0], ""
	}
	wantAuth := string(auth)
	if auth == v1alpha1.AuthNone {
		wantAuth = ""
	}
	best, bestScore := listener{}, -1
	var offered []string
	for _, l := range all {
		offered = append(offered, fmt.Sprintf("%s (authentication %q, tls %t)", l.name, l.auth, l.tls))
		if !l.specified || l.auth != wantAuth {
			continue
		}
		score := 0
		if l.kind == "internal" || l.kind == "cluster-ip" {
			score += 2
		}
		if (auth == v1alpha1.AuthScramSha512 && l.tls) || (auth == v1alpha1.AuthNone && !l.tls) {
			score++
		}
		if score > bestScore {
			best, bestScore = l, score
		}
	}
	if bestScore < 0 {
		return listener{}, fmt.Sprintf("the Strimzi Kafka %s has no listener with authentication %q: it offers %s; add one, or change spec.kafka.authentication",
			kafka.GetName(), wantAuth, strings.Join(offered, ", "))
	}
	return best, ""
}

func usesAutoscaling(p *v1alpha1.Pipeline) bool {
	for _, e := range p.Spec.Entities {
		if e.Autoscaling != nil {
			return true
		}
	}
	return false
}
