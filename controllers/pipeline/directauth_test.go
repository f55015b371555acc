package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
)

// scramKafka is a Kafka listener that requires SCRAM-SHA-512, and a user with its password that
// may create, grow and delete the topics of one namespace.
type scramKafka struct {
	bootstrap, user, password string
	// refusal is what the broker answers a wrong password; "" when it only closes the
	// connection (kfake), which tells nothing the condition could show.
	refusal string
}

// cluster is how a test reads the topics back: as that user.
func (k scramKafka) cluster() topics.Cluster {
	return topics.Cluster{Bootstrap: k.bootstrap, SASL: &topics.SASL{Mechanism: "SCRAM-SHA-512", User: k.user, Password: k.password}}
}

// kfakeSCRAM is a kfake cluster on which every connection authenticates with SCRAM-SHA-512.
func kfakeSCRAM(t *testing.T) scramKafka {
	t.Helper()
	k := scramKafka{user: "millrace-admin", password: randomHex(t)}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", k.user, k.password))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	k.bootstrap = strings.Join(c.ListenAddrs(), ",")
	return k
}

// realSCRAM is the real broker's SCRAM-SHA-512 listener with Kafka's StandardAuthorizer, the
// one hack/test.sh starts for the Strimzi test double (MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP is its
// PLAINTEXT listener, where ANONYMOUS is a super user; _SASL its SCRAM listener). A new user
// gets Create, Alter, Describe and Delete (what docs/user-guide.md says the admin user needs) on the topics prefixed with
// "<namespace>.", nothing else.
func realSCRAM(t *testing.T, ns string) scramKafka {
	t.Helper()
	plain, sasl := os.Getenv("MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP"), os.Getenv("MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP_SASL")
	if plain == "" || sasl == "" {
		t.Skip("MILLRACE_STRIMZI_DOUBLE_BOOTSTRAP(_SASL) unset: no real broker with a SCRAM listener (make test starts one)")
	}
	k := scramKafka{bootstrap: sasl, user: "millrace-admin-" + ns, password: randomHex(t), refusal: "SASL_AUTHENTICATION_FAILED"}
	cl, err := kgo.NewClient(kgo.SeedBrokers(plain))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: k.user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: k.password}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("create SCRAM user %s: %v", k.user, err)
	}
	acls := kadm.NewACLs().Allow("User:"+k.user).AllowHosts().
		Topics(ns+".").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpCreate, kadm.OpAlter, kadm.OpDescribe, kadm.OpDelete)
	created, err := adm.CreateACLs(ctx, acls)
	if err == nil {
		for _, c := range created {
			err = errors.Join(err, c.Err)
		}
	}
	if err != nil {
		t.Fatalf("grant ACLs to %s: %v", k.user, err)
	}
	t.Cleanup(func() {
		_, _ = adm.DeleteACLs(context.Background(), kadm.NewACLs().Allow("User:"+k.user).AllowHosts().
			Topics(ns+".").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpAny))
		_, _ = adm.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: k.user, Mechanism: kadm.ScramSha512}}, nil)
	})
	return k
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// withSCRAM authenticates the executors with the Secret secret; admin, when set, names the
// Secret of the operator's own admin client.
func withSCRAM(secret, admin string) modifier {
	return func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512, SecretName: secret, AdminSecretName: admin}
	}
}

func (e *env) applySecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err := e.client.Get(context.Background(), client.ObjectKeyFromObject(s), s)
	s.StringData = data
	switch {
	case apierrors.IsNotFound(err):
		err = e.client.Create(context.Background(), s)
	case err == nil:
		err = e.client.Update(context.Background(), s)
	}
	if err != nil {
		t.Fatalf("secret %s/%s: %v", ns, name, err)
	}
}

// TestDirectTopicsSCRAM: a topics: Direct Pipeline whose Kafka listener requires SCRAM gets its
// topics created, and deleted with it, by the operator's admin client authenticating with the
// Secret the Pipeline names (here the executors' secretName, which the admin client defaults
// to). Before, the admin client connected without authentication: the topics were never
// created and deleting the Pipeline waited for the bound.
func TestDirectTopicsSCRAM(t *testing.T) {
	t.Run("kfake", func(t *testing.T) { testDirectTopicsSCRAM(t, func(string) scramKafka { return kfakeSCRAM(t) }) })
	t.Run("real-broker", func(t *testing.T) { testDirectTopicsSCRAM(t, func(ns string) scramKafka { return realSCRAM(t, ns) }) })
}

func testDirectTopicsSCRAM(t *testing.T, kafka func(ns string) scramKafka) {
	e := envV1
	ns := e.namespace(t)
	k := kafka(ns)
	admin := topics.NewAdmin()
	defer admin.Close()
	e.applySecret(t, ns, "kafka-credentials", map[string]string{"username": k.user, "password": k.password})
	e.startOperator(t, ns)

	p := e.create(t, newPipeline(ns, withDirect(k.bootstrap), withSCRAM("kafka-credentials", ""), withDeletionPolicy("words", v1alpha1.DeletionDelete)))
	p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	lines, words := render.TopicName(p, "lines"), render.TopicName(p, "words")
	// Created; a real broker lists a topic in its metadata a moment after creating it.
	eventually(t, "the topics exist", func() error {
		got, err := admin.Exists(context.Background(), k.cluster(), lines, words, render.DeadLetterTopicName(lines))
		if err != nil {
			return err
		}
		if got[lines] != 3 || got[words] != 3 || got[render.DeadLetterTopicName(lines)] != 3 {
			return fmt.Errorf("topics %v", got)
		}
		return nil
	})

	if err := e.client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Pipeline goes, its Delete topic with it", func() error {
		err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), &v1alpha1.Pipeline{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("pipeline still there: %v", err)
		}
		return nil
	})
	// Deleted before the finalizer went, not after a bound: the topic is gone now.
	got, err := admin.Exists(context.Background(), k.cluster(), lines, words)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[words]; ok {
		t.Errorf("Delete topic %s still exists", words)
	}
	if got[lines] != 3 {
		t.Errorf("Retain topic %s: %v", lines, got)
	}
}

// TestDirectAdminRefused: the operator's admin client with the credentials of
// adminSecretName; when that Secret is missing or the broker refuses it, TopicsReady says so
// with the broker's reason (KafkaAdminFailed), a fixed Secret is picked up without any event,
// and a deletion the refused client cannot carry out says why (DeletionBlocked) and has a way
// out before the bound: setting the streams' deletionPolicy to Retain.
func TestDirectAdminRefused(t *testing.T) {
	t.Run("kfake", func(t *testing.T) { testDirectAdminRefused(t, func(string) scramKafka { return kfakeSCRAM(t) }) })
	t.Run("real-broker", func(t *testing.T) { testDirectAdminRefused(t, func(ns string) scramKafka { return realSCRAM(t, ns) }) })
}

func testDirectAdminRefused(t *testing.T, kafka func(ns string) scramKafka) {
	e := envV1
	ns := e.namespace(t)
	k := kafka(ns)
	admin := topics.NewAdmin()
	defer admin.Close()
	e.startOperator(t, ns)

	// The executors' Secret is not the operator's concern; the admin Secret does not exist yet.
	p := e.create(t, newPipeline(ns, withDirect(k.bootstrap), withSCRAM("executor-credentials", "kafka-admin"),
		withDeletionPolicy("words", v1alpha1.DeletionDelete)))
	wantTopicsMessage := func(want string) {
		t.Helper()
		eventually(t, "TopicsReady says "+want, func() error {
			c := condOf(e.pipeline(t, p), v1alpha1.ConditionTopicsReady)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonKafkaAdminFailed || !strings.Contains(c.Message, want) {
				return fmt.Errorf("TopicsReady is %+v", c)
			}
			return nil
		})
	}
	wantTopicsMessage("Secret " + ns + "/kafka-admin does not exist")

	// A wrong password: the broker's reason reaches the condition.
	if k.refusal != "" {
		e.applySecret(t, ns, "kafka-admin", map[string]string{"username": k.user, "password": "not-" + k.password})
		wantTopicsMessage(k.refusal)
	}

	// Fixed: no Secret watch, the periodic retry picks it up.
	e.applySecret(t, ns, "kafka-admin", map[string]string{"username": k.user, "password": k.password})
	p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	words := render.TopicName(p, "words")

	// The Secret goes first (as when the namespace is deleted): the deletion is blocked, says
	// why, and setting Retain lets the Pipeline go at once, keeping the topic.
	if err := e.client.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kafka-admin"}}); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Pipeline says why its deletion waits", func() error {
		c := condOf(e.pipeline(t, p), v1alpha1.ConditionReady)
		if c == nil || c.Reason != v1alpha1.ReasonDeletionBlocked || !strings.Contains(c.Message, "kafka-admin does not exist") || !strings.Contains(c.Message, "Retain") {
			return fmt.Errorf("Ready is %+v", c)
		}
		return nil
	})
	e.update(t, p, withDeletionPolicy("words", v1alpha1.DeletionRetain))
	eventually(t, "the Pipeline goes once nothing is to be deleted", func() error {
		err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), &v1alpha1.Pipeline{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("pipeline still there: %v", err)
		}
		return nil
	})
	got, err := admin.Exists(context.Background(), k.cluster(), words)
	if err != nil {
		t.Fatal(err)
	}
	if got[words] != 3 {
		t.Errorf("topic %s, kept by Retain, is %v", words, got)
	}
}

// TestDirectSCRAMWithTheOperatorsRBAC runs the Direct SCRAM Pipeline with an operator that has
// only the permissions of its ClusterRole (config/rbac/role.yaml, generated from the RBAC
// markers): the admin client's Secret is read with get alone. An informer on Secrets would need
// list and watch, which the role does not grant (checked here too), and would leave the
// Pipeline's topics uncreated.
func TestDirectSCRAMWithTheOperatorsRBAC(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	ctx := context.Background()
	raw, err := os.ReadFile("../../config/rbac/role.yaml")
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	user := "millrace-operator-" + ns
	role.ObjectMeta = metav1.ObjectMeta{Name: user}
	scheme := runtime.NewScheme()
	if err := rbacv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(e.cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := admin.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.Delete(context.Background(), o) })
	}
	cfg := rest.CopyConfig(e.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	asOperator, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the role is in force (get allowed, list forbidden)", func() error {
		err := asOperator.Get(ctx, client.ObjectKey{Namespace: ns, Name: "nothing"}, &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get a Secret as the operator: %v, want NotFound", err)
		}
		if err := asOperator.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
			return fmt.Errorf("list Secrets as the operator: %v, want Forbidden", err)
		}
		return nil
	})

	k := kfakeSCRAM(t)
	e.applySecret(t, ns, "kafka-admin", map[string]string{"username": k.user, "password": k.password})
	e.startOperatorWith(t, ns, cfg)
	p := e.create(t, newPipeline(ns, withDirect(k.bootstrap), withSCRAM("executor-credentials", "kafka-admin")))
	p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	topicsAdmin := topics.NewAdmin()
	defer topicsAdmin.Close()
	got, err := topicsAdmin.Exists(ctx, k.cluster(), render.TopicName(p, "lines"))
	if err != nil || got[render.TopicName(p, "lines")] != 3 {
		t.Fatalf("topic %s: %v %v", render.TopicName(p, "lines"), got, err)
	}
}
