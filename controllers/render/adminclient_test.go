package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

func TestAdminClientOf(t *testing.T) {
	auth := func(typ v1alpha1.AuthenticationType, secret, admin string) pipelineModifier {
		return func(p *v1alpha1.Pipeline) {
			p.Spec.Kafka.Topics = v1alpha1.TopicsDirect
			p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: typ, SecretName: secret, AdminSecretName: admin}
		}
	}
	noStrimzi := func(p *v1alpha1.Pipeline) {
		p.Spec.Kafka.StrimziCluster, p.Spec.Kafka.BootstrapServers = "", "kafka:9092"
	}
	cases := []struct {
		reason string
		p      *v1alpha1.Pipeline
		f      Facts
		want   AdminClient
	}{
		{
			reason: "without authentication the admin client needs no Secret",
			p:      minimal(noStrimzi),
			want:   AdminClient{},
		},
		{
			reason: "SCRAM without Strimzi: the executors' Secret, username and password from it, plaintext",
			p:      minimal(noStrimzi, auth(v1alpha1.AuthScramSha512, "app", "")),
			want:   AdminClient{Secret: "app", SASLMechanism: "SCRAM-SHA-512"},
		},
		{
			reason: "adminSecretName overrides the executors' Secret",
			p:      minimal(noStrimzi, auth(v1alpha1.AuthScramSha512, "app", "ops")),
			want:   AdminClient{Secret: "ops", SASLMechanism: "SCRAM-SHA-512"},
		},
		{
			reason: "SCRAM on an encrypting Strimzi listener: the KafkaUser's Secret and name, TLS trusting the cluster CA",
			p:      minimal(auth(v1alpha1.AuthScramSha512, "", "")),
			f:      Facts{BootstrapServers: "my-cluster-kafka-bootstrap:9093", BootstrapTLS: true},
			want:   AdminClient{Secret: "demo-executor", SASLMechanism: "SCRAM-SHA-512", Username: "demo-executor", TLS: true, CASecret: "my-cluster-cluster-ca-cert"},
		},
		{
			reason: "SCRAM on Strimzi with an admin Secret: the username comes from that Secret, not the KafkaUser's name",
			p:      minimal(auth(v1alpha1.AuthScramSha512, "", "ops")),
			f:      Facts{BootstrapServers: "my-cluster-kafka-bootstrap:9093", BootstrapTLS: true},
			want:   AdminClient{Secret: "ops", SASLMechanism: "SCRAM-SHA-512", TLS: true, CASecret: "my-cluster-cluster-ca-cert"},
		},
		{
			reason: "TLS authentication without Strimzi: client certificate and CA from the admin Secret",
			p:      minimal(noStrimzi, auth(v1alpha1.AuthTLS, "app", "ops")),
			want:   AdminClient{Secret: "ops", TLS: true, CASecret: "ops", ClientCertificate: true},
		},
	}
	for _, c := range cases {
		if d := cmp.Diff(c.want, AdminClientOf(c.p, c.f)); d != "" {
			t.Errorf("%s (-want +got):\n%s", c.reason, d)
		}
	}
}
