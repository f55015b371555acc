//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
)

// TestAuthenticatedPipeline: a Pipeline with scram-sha-512 on a Strimzi cluster whose listeners
// are a PLAINTEXT one without authentication and a SCRAM one. The operator's KafkaUser gets a
// credential and least-privilege ACLs; the executors and KEDA's trigger authenticate on the SCRAM
// listener; records flow; and with the user's own credential a topic outside the Pipeline is
// denied.
func TestAuthenticatedPipeline(t *testing.T) {
	if env.scram == "" {
		t.Skip("MILLRACE_E2E_KAFKA_SCRAM unset: no SCRAM listener to authenticate on")
	}
	ns := namespace(t, nil)
	p := identityPipeline("auth", 2, v1alpha1.Entity{Autoscaling: &v1alpha1.AutoscalingSpec{
		MinReplicas: ptr.To[int32](1), MaxReplicas: 2, LagThreshold: 50, PollingInterval: 5}})
	strimziKafka(t, ns, p)
	p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	in, out := topicOf(t, p, "in"), topicOf(t, p, "out")

	produce(t, in, numbered("a", 0, 50))
	consumeUntil(t, out, 2*time.Minute, func(rs []*kgo.Record) bool { return len(rs) >= 50 })

	// The executors authenticated: their group commits as the Pipeline's user, on the SCRAM listener.
	waitLagZero(t, render.GroupID(p, "id"), in, 2*time.Minute)

	// The user's own credential, from the Secret the user operator made.
	user := render.KafkaUserName(p)
	var sec corev1.Secret
	waitFor(t, time.Minute, "KafkaUser secret", func(ctx context.Context) error {
		return env.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: user}, &sec)
	})
	password := string(sec.Data["password"])
	if password == "" {
		t.Fatalf("secret %s has no password", user)
	}
	foreign := fmt.Sprintf("foreign-%s", ns)
	adm := kadm.NewClient(kafkaClient(t))
	if _, err := adm.CreateTopic(context.Background(), 1, 1, nil, foreign); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), foreign) })

	as := func(topic string) error {
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(env.scram, ",")...),
			kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()), kgo.DefaultProduceTopic(topic),
			kgo.RecordRetries(2), kgo.RequestRetries(2))
		if err != nil {
			return err
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	// The Pipeline's user writes its own output stream ...
	if err := as(out); err != nil {
		t.Fatalf("the Pipeline's user cannot write its own output %s: %v", out, err)
	}
	// ... and nothing else.
	if err := as(foreign); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("writing the foreign topic %s as the Pipeline's user: %v, want TOPIC_AUTHORIZATION_FAILED", foreign, err)
	}
}
