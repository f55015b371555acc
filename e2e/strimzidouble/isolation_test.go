package strimzidouble

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/testenv"
)

// TestNestedPipelineUsersAreIsolated: the KafkaUsers the operator renders for Pipeline "p"
// (entity "e") and Pipeline "p.e" (entity "x"), ExactlyOnce both, applied as real ACLs on the
// real broker. p's user initializes its own transactional id and reads its own group, but is
// denied p.e's transactional id and group. When the transactional id prefix was
// <namespace>.<pipeline>.<entity>. for both, p's prefix ACL "ns.p.e." covered p.e's ids
// "ns.p.e.x.-<ordinal>", and p's user could take over (and fence) p.e's transactions.
func TestNestedPipelineUsersAreIsolated(t *testing.T) {
	f := start(t, testenv.StrimziV1)
	ctx := f.ctx
	sasl := saslBootstrap(t)
	// Kafka users are cluster-wide and the broker outlives a run: the names are new each time.
	base := "iso" + randomSuffix()
	pipeline := func(name, entity string) *v1alpha1.Pipeline {
		return &v1alpha1.Pipeline{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name, UID: "00000000-0000-4000-8000-000000000001"},
			Spec: v1alpha1.PipelineSpec{
				Kafka:   v1alpha1.KafkaSpec{StrimziCluster: testCluster, Authentication: &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}},
				Streams: []v1alpha1.Stream{{Name: "in", Partitions: 1}, {Name: "out", Partitions: 1}},
				Entities: []v1alpha1.Entity{{Name: entity, Image: "example/f:1", Inputs: []string{"in"}, Outputs: []string{"out"},
					Guarantee: v1alpha1.ExactlyOnce}},
			},
		}
	}
	p, pe := pipeline(base, "e"), pipeline(base+".e", "x")
	// p asks for a session timeout: under KIP-848 its sidecar sets the group's
	// consumer.session.timeout.ms, which needs AlterConfigs on the group.
	p.Spec.Entities[0].Runtime = &v1alpha1.EntityRuntime{SessionTimeout: &metav1.Duration{Duration: 50 * time.Second}}
	for _, pl := range []*v1alpha1.Pipeline{p, pe} {
		res, err := render.Render(pl, render.Facts{StrimziAPIVersion: f.gv.Version})
		if err != nil {
			t.Fatal(err)
		}
		var user *strimzi.KafkaUser
		for _, o := range res.Objects {
			if ku, ok := o.(*strimzi.KafkaUser); ok {
				user = ku
			}
		}
		if user == nil {
			t.Fatalf("no KafkaUser rendered for %s", pl.Name)
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(user)
		if err != nil {
			t.Fatal(err)
		}
		ku := &unstructured.Unstructured{Object: m}
		ku.SetOwnerReferences(nil) // no Pipeline exists here; the garbage collector would delete it
		if err := f.c.Create(ctx, ku); err != nil {
			t.Fatal(err)
		}
		f.waitCondition(t, ku, "Ready", "True", "")
	}

	user := render.KafkaUserName(p)
	secret := &corev1.Secret{}
	if err := f.c.Get(ctx, client.ObjectKey{Namespace: f.ns, Name: user}, secret); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sasl), kgo.SASL(scram.Auth{User: user, Pass: string(secret.Data[SecretKeyPassword])}.AsSha512Mechanism()),
		kgo.RequestRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	initProducer := func(id string) error {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = kmsg.StringPtr(id)
		req.TransactionTimeoutMillis = 10000
		resp, err := req.RequestWith(rctx, cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.ErrorCode)
	}
	fetchOffsets := func(group string) error {
		_, err := kadm.NewClient(cl).FetchOffsets(ctx, group)
		return err
	}
	own, others := render.TransactionalIDPrefix(p, "e")+"-0", render.TransactionalIDPrefix(pe, "x")+"-0"
	// Retried: the broker applies the ACLs from its metadata log a moment after accepting them,
	// and creates its transaction and offsets topics on first use.
	eventually(t, "p's user initializes its own transactional id "+own, func() error { return initProducer(own) })
	eventually(t, "p's user reads its own group", func() error { return fetchOffsets(render.GroupID(p, "e")) })

	if err := initProducer(others); !errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
		t.Errorf("p's user initializing p.e's transactional id %s: %v, want TRANSACTIONAL_ID_AUTHORIZATION_FAILED", others, err)
	}
	if err := fetchOffsets(render.GroupID(pe, "x")); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("p's user reading p.e's group %s: %v, want GROUP_AUTHORIZATION_FAILED", render.GroupID(pe, "x"), err)
	}
	// The group session timeout p's entity asks for, on its own group only.
	alterGroup := func(group string) error {
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType = kmsg.ConfigResourceTypeGroupConfig
		res.ResourceName = group
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = "consumer.session.timeout.ms", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("50000")
		res.Configs = append(res.Configs, c)
		req.Resources = append(req.Resources, res)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return err
		}
		if len(resp.Resources) == 0 {
			return errors.New("no resource in the response")
		}
		return kerr.ErrorForCode(resp.Resources[0].ErrorCode)
	}
	if err := alterGroup(render.GroupID(p, "e")); err != nil {
		t.Errorf("p's user setting its group's consumer.session.timeout.ms: %v", err)
	}
	if err := alterGroup(render.GroupID(pe, "x")); !errors.Is(err, kerr.GroupAuthorizationFailed) {
		t.Errorf("p's user setting p.e's group's consumer.session.timeout.ms: %v, want GROUP_AUTHORIZATION_FAILED", err)
	}
	t.Logf("own transactional id %s, p.e's %s", own, others)
}
