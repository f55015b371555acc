package strimzidouble

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
)

// The Secret keys of a scram-sha-512 KafkaUser, as Strimzi writes them: no username key, the
// user name is the KafkaUser's name.
const (
	SecretKeyPassword = "password"
	SecretKeyJAAS     = "sasl.jaas.config"
)

const scramIterations = 4096

// userSpec is the part of a KafkaUser's spec the double acts on.
type userSpec struct {
	Authentication *struct {
		Type string `json:"type"`
	} `json:"authentication,omitempty"`
	Authorization *struct {
		Type string    `json:"type"`
		ACLs []aclRule `json:"acls,omitempty"`
	} `json:"authorization,omitempty"`
}

type aclRule struct {
	Resource struct {
		Type        string `json:"type"`
		Name        string `json:"name,omitempty"`
		PatternType string `json:"patternType,omitempty"`
	} `json:"resource"`
	Operations []string `json:"operations,omitempty"`
	Operation  string   `json:"operation,omitempty"` // v1beta2's deprecated single operation
	Host       string   `json:"host,omitempty"`
	Type       string   `json:"type,omitempty"`
}

// acl is one Kafka ACL binding of a user.
type acl struct {
	ResourceType kmsg.ACLResourceType
	ResourceName string
	Pattern      kmsg.ACLResourcePatternType
	Operation    kmsg.ACLOperation
	Permission   kmsg.ACLPermissionType
	Host         string
}

// userReconciler plays Strimzi's user operator.
type userReconciler struct {
	client  client.Client
	reader  client.Reader // uncached, so that no informer on every Secret is needed
	kafka   *kgo.Client
	adm     *kadm.Client
	gvk     schema.GroupVersionKind
	cluster string
}

func (r *userReconciler) setup(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("strimzi-double-users").
		For(object(r.gvk)).
		WithOptions(controller.Options{RateLimiter: rateLimiter()}).
		Complete(r)
}

func (r *userReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ku := object(r.gvk)
	if err := r.client.Get(ctx, req.NamespacedName, ku); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mine(ku, r.cluster) {
		return ctrl.Result{}, nil
	}
	user := ku.GetName()
	if ku.GetDeletionTimestamp() != nil {
		// The Secret goes with the KafkaUser through its owner reference.
		if err := r.deleteCredential(ctx, user); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.syncACLs(ctx, user, nil); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, removeFinalizer(ctx, r.client, ku, UserFinalizer)
	}
	if err := addFinalizer(ctx, r.client, ku, UserFinalizer); err != nil {
		return ctrl.Result{}, err
	}

	old, _, _ := unstructured.NestedSlice(ku.Object, "status", "conditions")
	status := map[string]any{"observedGeneration": ku.GetGeneration()}
	result := ctrl.Result{RequeueAfter: resyncPeriod}
	cond, err := r.sync(ctx, ku, status)
	if err != nil {
		if apierrors.IsConflict(err) || errors.Is(err, context.Canceled) {
			return ctrl.Result{}, err
		}
		ctrl.LoggerFrom(ctx).Info("user not in sync", "user", user, "error", err.Error())
		cond = condition{Type: "Ready", Status: "False", Reason: ReasonKafkaError, Message: err.Error()}
		result.RequeueAfter = retryPeriod
	}
	status["conditions"] = conditionsFor(old, time.Now(), cond)
	return result, writeStatus(ctx, r.client, ku, status)
}

// sync makes Kafka and the Secret match the KafkaUser, fills status and returns the Ready
// condition.
func (r *userReconciler) sync(ctx context.Context, ku *unstructured.Unstructured, status map[string]any) (condition, error) {
	var spec userSpec
	raw, _, _ := unstructured.NestedMap(ku.Object, "spec")
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
		return condition{Type: "Ready", Status: "False", Reason: ReasonInvalidResource, Message: err.Error()}, nil
	}
	user := ku.GetName()
	var rules []aclRule
	if spec.Authorization != nil {
		if spec.Authorization.Type != "simple" {
			return notSupported("authorization type %q (the test double supports simple)", spec.Authorization.Type), nil
		}
		rules = spec.Authorization.ACLs
	}
	desired, err := desiredACLs(rules)
	if err != nil {
		return condition{Type: "Ready", Status: "False", Reason: ReasonInvalidResource, Message: err.Error()}, nil
	}

	authType := ""
	if spec.Authentication != nil {
		authType = spec.Authentication.Type
	}
	switch authType {
	case "scram-sha-512":
		password, fresh, err := r.applySecret(ctx, ku)
		if err != nil {
			return condition{}, err
		}
		if err := r.ensureCredential(ctx, user, password, fresh); err != nil {
			return condition{}, err
		}
		status["secret"] = user
	case "":
		if err := r.deleteCredential(ctx, user); err != nil {
			return condition{}, err
		}
		if err := r.deleteSecret(ctx, ku); err != nil {
			return condition{}, err
		}
	default:
		return notSupported("authentication type %q (the test double supports scram-sha-512)", authType), nil
	}
	if err := r.syncACLs(ctx, user, desired); err != nil {
		return condition{}, err
	}
	status["username"] = user
	return condition{Type: "Ready", Status: "True"}, nil
}

func notSupported(format string, args ...any) condition {
	return condition{Type: "Ready", Status: "False", Reason: ReasonNotSupported, Message: fmt.Sprintf("Not supported: "+format, args...)}
}

// applySecret applies the user's Secret and returns its password; fresh says whether the
// password was generated now. The password of a Secret that this KafkaUser already controls is
// kept.
func (r *userReconciler) applySecret(ctx context.Context, ku *unstructured.Unstructured) (password string, fresh bool, err error) {
	existing := &corev1.Secret{}
	err = r.reader.Get(ctx, client.ObjectKey{Namespace: ku.GetNamespace(), Name: ku.GetName()}, existing)
	switch {
	case err == nil && metav1.IsControlledBy(existing, ku) && len(existing.Data[SecretKeyPassword]) > 0:
		password = string(existing.Data[SecretKeyPassword])
	case err == nil || apierrors.IsNotFound(err):
		if password, err = randomPassword(32); err != nil {
			return "", false, err
		}
		fresh = true
	default:
		return "", false, fmt.Errorf("read Secret %s/%s: %w", ku.GetNamespace(), ku.GetName(), err)
	}
	ref := controllerOf(ku)
	secret := corev1ac.Secret(ku.GetName(), ku.GetNamespace()).
		WithLabels(map[string]string{labelCluster: r.cluster, labelKind: "KafkaUser"}).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(ref.APIVersion).WithKind(ref.Kind).WithName(ref.Name).WithUID(ref.UID).
			WithController(true).WithBlockOwnerDeletion(true)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{
			SecretKeyPassword: []byte(password),
			SecretKeyJAAS:     []byte(jaasConfig(ku.GetName(), password)),
		})
	if err := r.client.Apply(ctx, secret, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return "", false, fmt.Errorf("apply Secret %s/%s: %w", ku.GetNamespace(), ku.GetName(), err)
	}
	return password, fresh, nil
}

// deleteSecret deletes the user's Secret if this KafkaUser controls it.
func (r *userReconciler) deleteSecret(ctx context.Context, ku *unstructured.Unstructured) error {
	existing := &corev1.Secret{}
	if err := r.reader.Get(ctx, client.ObjectKey{Namespace: ku.GetNamespace(), Name: ku.GetName()}, existing); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(existing, ku) {
		return nil
	}
	return client.IgnoreNotFound(r.client.Delete(ctx, existing))
}

// jaasConfig is the sasl.jaas.config of a SCRAM user.
func jaasConfig(user, password string) string {
	return fmt.Sprintf(`org.apache.kafka.common.security.scram.ScramLoginModule required username="%s" password="%s";`, user, password)
}

const passwordAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomPassword(n int) (string, error) {
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(passwordAlphabet))))
		if err != nil {
			return "", err
		}
		b[i] = passwordAlphabet[k.Int64()]
	}
	return string(b), nil
}

// ensureCredential upserts the user's SCRAM-SHA-512 credential when the password is new or Kafka
// has none.
func (r *userReconciler) ensureCredential(ctx context.Context, user, password string, fresh bool) error {
	if !fresh {
		has, err := r.hasCredential(ctx, user)
		if err != nil {
			return err
		}
		if has {
			return nil
		}
	}
	resp, err := r.adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: scramIterations, Password: password,
	}})
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("upsert the SCRAM-SHA-512 credential of %s: %w", user, err)
	}
	return nil
}

func (r *userReconciler) hasCredential(ctx context.Context, user string) (bool, error) {
	described, err := r.adm.DescribeUserSCRAMs(ctx, user)
	if err != nil {
		return false, fmt.Errorf("describe the SCRAM credentials of %s: %w", user, err)
	}
	d, ok := described[user]
	if !ok || errors.Is(d.Err, kerr.ResourceNotFound) {
		return false, nil
	}
	if d.Err != nil {
		return false, fmt.Errorf("describe the SCRAM credentials of %s: %w", user, d.Err)
	}
	for _, c := range d.CredInfos {
		if c.Mechanism == kadm.ScramSha512 {
			return true, nil
		}
	}
	return false, nil
}

func (r *userReconciler) deleteCredential(ctx context.Context, user string) error {
	has, err := r.hasCredential(ctx, user)
	if err != nil || !has {
		return err
	}
	resp, err := r.adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: user, Mechanism: kadm.ScramSha512}}, nil)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.ResourceNotFound) {
		return fmt.Errorf("delete the SCRAM-SHA-512 credential of %s: %w", user, err)
	}
	return nil
}

// desiredACLs turns simple authorization rules into ACL bindings, with Strimzi's defaults: type
// allow, host "*", pattern literal, and the cluster resource named kafka-cluster.
func desiredACLs(rules []aclRule) ([]acl, error) {
	var out []acl
	for i, rule := range rules {
		rt, err := kmsg.ParseACLResourceType(rule.Resource.Type)
		if err != nil || rt < kmsg.ACLResourceTypeTopic || rt > kmsg.ACLResourceTypeTransactionalId {
			return nil, fmt.Errorf("acls[%d]: resource type %q", i, rule.Resource.Type)
		}
		name := rule.Resource.Name
		if rt == kmsg.ACLResourceTypeCluster {
			name = "kafka-cluster"
		}
		pattern := kmsg.ACLResourcePatternTypeLiteral
		switch rule.Resource.PatternType {
		case "", "literal":
		case "prefix":
			pattern = kmsg.ACLResourcePatternTypePrefixed
		default:
			return nil, fmt.Errorf("acls[%d]: pattern type %q", i, rule.Resource.PatternType)
		}
		permission := kmsg.ACLPermissionTypeAllow
		if rule.Type == "deny" {
			permission = kmsg.ACLPermissionTypeDeny
		} else if rule.Type != "" && rule.Type != "allow" {
			return nil, fmt.Errorf("acls[%d]: type %q", i, rule.Type)
		}
		host := rule.Host
		if host == "" {
			host = "*"
		}
		ops := rule.Operations
		if rule.Operation != "" {
			ops = append(ops, rule.Operation)
		}
		if len(ops) == 0 {
			return nil, fmt.Errorf("acls[%d]: no operations", i)
		}
		for _, o := range ops {
			op, err := kmsg.ParseACLOperation(o)
			if err != nil || op < kmsg.ACLOperationAll {
				return nil, fmt.Errorf("acls[%d]: operation %q", i, o)
			}
			out = append(out, acl{ResourceType: rt, ResourceName: name, Pattern: pattern, Operation: op, Permission: permission, Host: host})
		}
	}
	return out, nil
}

func principal(user string) string { return "User:" + user }

// currentACLs are the ACLs Kafka holds for the user's principal.
func (r *userReconciler) currentACLs(ctx context.Context, user string) ([]acl, error) {
	req := kmsg.NewPtrDescribeACLsRequest()
	req.ResourceType = kmsg.ACLResourceTypeAny
	req.ResourcePatternType = kmsg.ACLResourcePatternTypeAny
	req.Principal = kmsg.StringPtr(principal(user))
	req.Operation = kmsg.ACLOperationAny
	req.PermissionType = kmsg.ACLPermissionTypeAny
	resp, err := req.RequestWith(ctx, r.kafka)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return nil, fmt.Errorf("describe the ACLs of %s: %w", user, err)
	}
	var out []acl
	for _, res := range resp.Resources {
		for _, a := range res.ACLs {
			out = append(out, acl{ResourceType: res.ResourceType, ResourceName: res.ResourceName, Pattern: res.ResourcePatternType,
				Operation: a.Operation, Permission: a.PermissionType, Host: a.Host})
		}
	}
	return out, nil
}

// aclChanges says which ACLs to create and which to delete to get from current to desired.
func aclChanges(current, desired []acl) (create, remove []acl) {
	have := map[acl]bool{}
	for _, a := range current {
		have[a] = true
	}
	want := map[acl]bool{}
	for _, a := range desired {
		if !want[a] && !have[a] {
			create = append(create, a)
		}
		want[a] = true
	}
	for _, a := range current {
		if !want[a] {
			remove = append(remove, a)
		}
	}
	less := func(s []acl) func(i, j int) bool {
		return func(i, j int) bool { return fmt.Sprint(s[i]) < fmt.Sprint(s[j]) }
	}
	sort.Slice(create, less(create))
	sort.Slice(remove, less(remove))
	return create, remove
}

// syncACLs makes the user's ACLs in Kafka exactly the desired ones.
func (r *userReconciler) syncACLs(ctx context.Context, user string, desired []acl) error {
	current, err := r.currentACLs(ctx, user)
	if err != nil {
		return err
	}
	create, remove := aclChanges(current, desired)
	if len(create) > 0 {
		req := kmsg.NewPtrCreateACLsRequest()
		for _, a := range create {
			c := kmsg.NewCreateACLsRequestCreation()
			c.ResourceType, c.ResourceName, c.ResourcePatternType = a.ResourceType, a.ResourceName, a.Pattern
			c.Principal, c.Host, c.Operation, c.PermissionType = principal(user), a.Host, a.Operation, a.Permission
			req.Creations = append(req.Creations, c)
		}
		resp, err := req.RequestWith(ctx, r.kafka)
		if err == nil {
			for _, res := range resp.Results {
				if err = kerr.ErrorForCode(res.ErrorCode); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("create ACLs of %s: %w", user, err)
		}
	}
	if len(remove) > 0 {
		req := kmsg.NewPtrDeleteACLsRequest()
		for _, a := range remove {
			f := kmsg.NewDeleteACLsRequestFilter()
			f.ResourceType, f.ResourceName, f.ResourcePatternType = a.ResourceType, kmsg.StringPtr(a.ResourceName), a.Pattern
			f.Principal, f.Host, f.Operation, f.PermissionType = kmsg.StringPtr(principal(user)), kmsg.StringPtr(a.Host), a.Operation, a.Permission
			req.Filters = append(req.Filters, f)
		}
		resp, err := req.RequestWith(ctx, r.kafka)
		if err == nil {
			for _, res := range resp.Results {
				if err = kerr.ErrorForCode(res.ErrorCode); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("delete ACLs of %s: %w", user, err)
		}
	}
	return nil
}
