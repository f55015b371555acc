//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// TestDirectSCRAMPipeline: a topics: Direct Pipeline on the SCRAM listener, with two users: the
// executors' (read and write the namespace's topics and groups) and the operator's admin user
// (create, alter, describe and delete them), each in its own Secret. The operator creates the
// topics as the admin user, the executors process records as theirs, and deleting the Pipeline
// deletes its Delete topic and lets the Pipeline go without waiting for the deletion bound.
func TestDirectSCRAMPipeline(t *testing.T) {
	if env.scram == "" {
		t.Skip("MILLRACE_E2E_KAFKA_SCRAM unset: no SCRAM listener to authenticate on")
	}
	ns := namespace(t, nil)
	ctx := context.Background()
	adm := kadm.NewClient(kafkaClient(t))
	scramUser := func(name string, acls *kadm.ACLBuilder) string {
		password := fmt.Sprintf("pw-%s-%d", name, time.Now().UnixNano())
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: name, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password}})
		if err == nil {
			err = res.Error()
		}
		if err != nil {
			t.Fatalf("SCRAM user %s: %v", name, err)
		}
		created, err := adm.CreateACLs(ctx, acls)
		for _, c := range created {
			err = errors.Join(err, c.Err)
		}
		if err != nil {
			t.Fatalf("ACLs of %s: %v", name, err)
		}
		t.Cleanup(func() {
			_, _ = adm.DeleteACLs(context.Background(), kadm.NewACLs().Allow("User:"+name).AllowHosts().
				Topics(ns+".").Groups(ns+".").ResourcePatternType(kadm.ACLPatternPrefixed).Operations(kadm.OpAny))
			_, _ = adm.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: name, Mechanism: kadm.ScramSha512}}, nil)
		})
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			StringData: map[string]string{"username": name, "password": password}}
		if err := env.c.Create(ctx, secret); err != nil {
			t.Fatal(err)
		}
		return name
	}
	executor := scramUser(ns+"-executor", kadm.NewACLs().Allow("User:"+ns+"-executor").AllowHosts().
		Topics(ns+".").Groups(ns+".").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe))
	admin := scramUser(ns+"-admin", kadm.NewACLs().Allow("User:"+ns+"-admin").AllowHosts().
		Topics(ns+".").ResourcePatternType(kadm.ACLPatternPrefixed).
		Operations(kadm.OpCreate, kadm.OpAlter, kadm.OpDescribe, kadm.OpDelete))

	p := identityPipeline("direct-scram", 2, v1alpha1.Entity{Replicas: ptr.To[int32](1)})
	p.Spec.Kafka = v1alpha1.KafkaSpec{BootstrapServers: env.scram, Topics: v1alpha1.TopicsDirect,
		Authentication: &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512, SecretName: executor, AdminSecretName: admin}}
	p.Spec.Streams[1].DeletionPolicy = v1alpha1.DeletionDelete
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), in, in+".dlq") })

	produce(t, in, numbered("d", 0, 30))
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool { return len(rs) >= 30 })

	start := time.Now()
	if err := env.c.Delete(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "the Pipeline deleted", func(ctx context.Context) error {
		err := env.c.Get(ctx, client.ObjectKeyFromObject(p), &v1alpha1.Pipeline{})
		if notFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	record(t, "Direct SCRAM Pipeline deletion", time.Since(start), "finalizer deleting the Delete topic as the admin user")
	topics, err := adm.ListTopics(ctx, in, out)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(out) {
		t.Errorf("the Delete topic %s was kept", out)
	}
	if !topics.Has(in) {
		t.Errorf("the Retain topic %s was deleted", in)
	}
}
