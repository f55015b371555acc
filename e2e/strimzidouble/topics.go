package strimzidouble

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Reasons of the KafkaTopic conditions, as Strimzi's topic operator reports them.
const (
	ReasonNotSupported     = "NotSupported"
	ReasonResourceConflict = "ResourceConflict"
	ReasonKafkaError       = "KafkaError"
	ReasonInvalidResource  = "InvalidResource"
)

// topicSpec is the part of a KafkaTopic's spec the double acts on.
type topicSpec struct {
	TopicName  string         `json:"topicName,omitempty"`
	Partitions *int32         `json:"partitions,omitempty"`
	Replicas   *int32         `json:"replicas,omitempty"`
	Config     map[string]any `json:"config,omitempty"`
}

// topicReconciler plays Strimzi's topic operator.
type topicReconciler struct {
	client  client.Client
	kafka   *kgo.Client
	adm     *kadm.Client
	gvk     schema.GroupVersionKind
	cluster string
}

func (r *topicReconciler) setup(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("strimzi-double-topics").
		For(object(r.gvk)).
		// A KafkaTopic's change can settle a conflict for the others naming the same topic.
		Watches(object(r.gvk), handler.EnqueueRequestsFromMapFunc(r.peers)).
		WithOptions(controller.Options{RateLimiter: rateLimiter()}).
		Complete(r)
}

func rateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](50*time.Millisecond, 5*time.Second)
}

// topicName is the Kafka topic a KafkaTopic names: spec.topicName, else metadata.name.
func topicName(kt *unstructured.Unstructured) string {
	if n, _, _ := unstructured.NestedString(kt.Object, "spec", "topicName"); n != "" {
		return n
	}
	return kt.GetName()
}

// managed is false for a KafkaTopic annotated strimzi.io/managed: "false".
func managed(u *unstructured.Unstructured) bool {
	return u.GetAnnotations()[annotationManaged] != "false"
}

func (r *topicReconciler) listPeers(ctx context.Context, namespace string) ([]unstructured.Unstructured, error) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(r.gvk.GroupVersion().WithKind(r.gvk.Kind + "List"))
	if err := r.client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{labelCluster: r.cluster}); err != nil {
		return nil, fmt.Errorf("list KafkaTopics in %s: %w", namespace, err)
	}
	return list.Items, nil
}

func (r *topicReconciler) peers(ctx context.Context, o client.Object) []reconcile.Request {
	kt, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	items, err := r.listPeers(ctx, kt.GetNamespace())
	if err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range items {
		if items[i].GetName() != kt.GetName() && topicName(&items[i]) == topicName(kt) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: kt.GetNamespace(), Name: items[i].GetName()}})
		}
	}
	return out
}

// owner picks, among the managed KafkaTopics naming a topic, the one that manages it: the one
// already reporting the topic in its status, else the oldest (then by name). The others are in
// conflict with it.
func owner(topics []unstructured.Unstructured, name string) *unstructured.Unstructured {
	var contenders []*unstructured.Unstructured
	for i := range topics {
		if managed(&topics[i]) && topicName(&topics[i]) == name {
			contenders = append(contenders, &topics[i])
		}
	}
	established := func(u *unstructured.Unstructured) bool {
		n, _, _ := unstructured.NestedString(u.Object, "status", "topicName")
		return n == name
	}
	sort.SliceStable(contenders, func(i, j int) bool {
		a, b := contenders[i], contenders[j]
		if established(a) != established(b) {
			return established(a)
		}
		if ta, tb := a.GetCreationTimestamp().Time, b.GetCreationTimestamp().Time; !ta.Equal(tb) {
			return ta.Before(tb)
		}
		return a.GetName() < b.GetName()
	})
	if len(contenders) == 0 {
		return nil
	}
	return contenders[0]
}

func (r *topicReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	kt := object(r.gvk)
	if err := r.client.Get(ctx, req.NamespacedName, kt); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mine(kt, r.cluster) {
		return ctrl.Result{}, nil
	}
	name := topicName(kt)
	peers, err := r.listPeers(ctx, kt.GetNamespace())
	if err != nil {
		return ctrl.Result{}, err
	}
	own := owner(peers, name)
	owns := own != nil && own.GetUID() == kt.GetUID()

	if kt.GetDeletionTimestamp() != nil {
		// Only the managing KafkaTopic deletes the topic; an unmanaged or conflicting one lets go.
		if managed(kt) && owns {
			if err := r.deleteTopic(ctx, name); err != nil {
				return ctrl.Result{}, err
			}
		}
		return ctrl.Result{}, removeFinalizer(ctx, r.client, kt, TopicFinalizer)
	}
	if err := addFinalizer(ctx, r.client, kt, TopicFinalizer); err != nil {
		return ctrl.Result{}, err
	}

	old, _, _ := unstructured.NestedSlice(kt.Object, "status", "conditions")
	status := map[string]any{"observedGeneration": kt.GetGeneration()}
	result := ctrl.Result{RequeueAfter: resyncPeriod}
	var cond condition
	switch {
	case !managed(kt):
		cond = condition{Type: "Unmanaged", Status: "True"}
	case !owns:
		cond = condition{Type: "Ready", Status: "False", Reason: ReasonResourceConflict,
			Message: fmt.Sprintf("Managed by KafkaTopic %s/%s", own.GetNamespace(), own.GetName())}
	default:
		status["topicName"] = name
		var spec topicSpec
		raw, _, _ := unstructured.NestedMap(kt.Object, "spec")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
			cond = condition{Type: "Ready", Status: "False", Reason: ReasonInvalidResource, Message: err.Error()}
			break
		}
		var id string
		id, cond, err = r.sync(ctx, name, spec)
		if errors.Is(err, kerr.TopicAlreadyExists) {
			// Created a moment ago and not yet in the metadata this broker answered with: look
			// again soon rather than report an error.
			return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
		}
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("topic not in sync", "topic", name, "error", err.Error())
			cond = condition{Type: "Ready", Status: "False", Reason: ReasonKafkaError, Message: err.Error()}
			result.RequeueAfter = retryPeriod
		}
		if id == "" {
			id, _, _ = unstructured.NestedString(kt.Object, "status", "topicId")
		}
		if id != "" {
			status["topicId"] = id
		}
	}
	status["conditions"] = conditionsFor(old, time.Now(), cond)
	return result, writeStatus(ctx, r.client, kt, status)
}

// sync makes the Kafka topic match the spec and says how that went: the topic's id, and the
// Ready condition (NotSupported when the spec asks for what Strimzi refuses). An error is a
// failure to talk to Kafka or a change Kafka rejected.
func (r *topicReconciler) sync(ctx context.Context, name string, spec topicSpec) (string, condition, error) {
	ready := condition{Type: "Ready", Status: "True"}
	desired, err := desiredConfig(spec.Config)
	if err != nil {
		return "", condition{Type: "Ready", Status: "False", Reason: ReasonInvalidResource, Message: err.Error()}, nil
	}
	td, err := describeTopic(ctx, r.kafka, name)
	if err != nil {
		return "", condition{}, err
	}
	if !td.exists {
		partitions, replicas := int32(-1), int16(-1)
		if spec.Partitions != nil {
			partitions = *spec.Partitions
		}
		if spec.Replicas != nil {
			replicas = int16(*spec.Replicas)
		}
		configs := map[string]*string{}
		for k, v := range desired {
			configs[k] = &v
		}
		resp, err := r.adm.CreateTopic(ctx, partitions, replicas, configs, name)
		if err != nil {
			return "", condition{}, fmt.Errorf("create topic %s: %w", name, err)
		}
		return topicID(resp.ID), ready, nil
	}
	id := td.id
	current := td.partitions
	if spec.Partitions != nil && *spec.Partitions < current {
		return id, condition{Type: "Ready", Status: "False", Reason: ReasonNotSupported, Message: "Decreasing partitions not supported"}, nil
	}
	if spec.Replicas != nil && *spec.Replicas != td.replicas {
		return id, condition{Type: "Ready", Status: "False", Reason: ReasonNotSupported,
			Message: fmt.Sprintf("Replication factor change not supported (from %d to %d)", td.replicas, *spec.Replicas)}, nil
	}

	rcs, err := r.adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return id, condition{}, fmt.Errorf("describe configs of topic %s: %w", name, err)
	}
	rc, err := rcs.On(name, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return id, condition{}, fmt.Errorf("describe configs of topic %s: %w", name, err)
	}
	if alter := configChanges(dynamicConfig(rc.Configs), desired); len(alter) > 0 {
		resp, err := r.adm.AlterTopicConfigs(ctx, alter, name)
		if err == nil {
			var ar kadm.AlterConfigsResponse
			if ar, err = resp.On(name, nil); err == nil {
				err = ar.Err
			}
		}
		if err != nil {
			return id, condition{}, fmt.Errorf("alter configs of topic %s: %w", name, err)
		}
	}
	if spec.Partitions != nil && *spec.Partitions > current {
		resp, err := r.adm.UpdatePartitions(ctx, int(*spec.Partitions), name)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return id, condition{}, fmt.Errorf("raise partitions of topic %s to %d: %w", name, *spec.Partitions, err)
		}
	}
	return id, ready, nil
}

// topicState is a topic as Kafka's metadata describes it.
type topicState struct {
	exists     bool
	id         string
	partitions int32
	replicas   int32
}

// describeTopic reads a topic's metadata from the broker. It does not use kadm.ListTopics,
// which answers from the client's metadata cache and so can miss a topic just created or report
// the partitions it had before they were raised.
func describeTopic(ctx context.Context, kafka *kgo.Client, name string) (topicState, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(name)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, kafka)
	if err != nil {
		return topicState{}, fmt.Errorf("describe topic %s: %w", name, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != name {
			continue
		}
		err := kerr.ErrorForCode(t.ErrorCode)
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return topicState{}, nil
		}
		if err != nil {
			return topicState{}, fmt.Errorf("describe topic %s: %w", name, err)
		}
		st := topicState{exists: true, id: topicID(t.TopicID), partitions: int32(len(t.Partitions))}
		if len(t.Partitions) > 0 {
			st.replicas = int32(len(t.Partitions[0].Replicas))
		}
		return st, nil
	}
	return topicState{}, nil
}

// deleteTopic deletes a Kafka topic; one already gone is fine.
func (r *topicReconciler) deleteTopic(ctx context.Context, name string) error {
	resp, err := r.adm.DeleteTopic(ctx, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("delete topic %s: %w", name, err)
	}
	return nil
}

// topicID renders a topic id as Kafka does (Uuid.toString: URL-safe base64 without padding).
func topicID(id [16]byte) string {
	if id == ([16]byte{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// desiredConfig renders spec.config values (strings, numbers, booleans, lists) as Kafka config
// strings.
func desiredConfig(config map[string]any) (map[string]string, error) {
	out := make(map[string]string, len(config))
	for k, v := range config {
		s, err := configValue(v)
		if err != nil {
			return nil, fmt.Errorf("spec.config.%s: %w", k, err)
		}
		out[k] = s
	}
	return out, nil
}

func configValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("unsupported value %v (%T)", v, v)
}

// dynamicConfig is the config set on the topic itself, as opposed to broker defaults.
func dynamicConfig(configs []kadm.Config) map[string]string {
	out := map[string]string{}
	for _, c := range configs {
		if c.Source == kmsg.ConfigSourceDynamicTopicConfig && c.Value != nil && !c.Sensitive {
			out[c.Key] = *c.Value
		}
	}
	return out
}

// configChanges turns the topic's dynamic config into the desired one: set what differs, delete
// (revert to the broker default) what the spec does not name.
func configChanges(current, desired map[string]string) []kadm.AlterConfig {
	var out []kadm.AlterConfig
	for k, v := range desired {
		if cur, ok := current[k]; !ok || cur != v {
			out = append(out, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
		}
	}
	for k := range current {
		if _, ok := desired[k]; !ok {
			out = append(out, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
