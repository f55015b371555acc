package render

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// update rewrites the golden files: go test ./controllers/render/... -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenCase is a rendering whose whole output is pinned in testdata/<name>.yaml.
type goldenCase struct {
	reason   string
	pipeline *v1alpha1.Pipeline
	facts    Facts
}

// retiring adds entity of p, as render configures it, to the retiring entities.
func retiring(p *v1alpha1.Pipeline, entity string) func(*Facts) {
	return func(f *Facts) {
		cfg, err := ExecutorConfig(p, entity, *f)
		if err != nil {
			panic(err)
		}
		f.Retiring = append(f.Retiring, RetiringEntity{Name: entity, Executor: cfg})
	}
}

func goldenCases() map[string]goldenCase {
	return map[string]goldenCase{
		"minimal": {
			reason:   "One stream, one entity, every field defaulted: a KafkaTopic per topic, the executor objects.",
			pipeline: minimal(),
			facts:    newFacts(),
		},
		"wordcount": {
			reason:   "The Invoker word count: split is stateless; sum keeps state with a changelog and Static assignment, exactly once, monitored.",
			pipeline: wordCount(withMonitoring(map[string]string{"release": "prometheus"})),
			facts:    newFacts(withPrometheus(), withKEDA()),
		},
		"autoscaling-scale-to-zero": {
			reason: "With KEDA the StatefulSet leaves replicas to the HPA and a ScaledObject scales it from zero, one trigger per input.",
			pipeline: newPipeline(withStream("clicks", partitions(4)), withStream("views", partitions(4)), withStream("joined", partitions(4)),
				withEntity("join", "example.com/join:v1", []string{"clicks", "views"}, []string{"joined"}, autoscaling(0, 4))),
			facts: newFacts(withKEDA()),
		},
		"autoscaling-without-keda": {
			reason:   "Autoscaling asked for but KEDA missing: fixed replicas at the minimum, at least one, and no ScaledObject.",
			pipeline: minimal(onEntity("handle", autoscaling(0, 1))),
			facts:    newFacts(),
		},
		"entity-runtime": {
			reason: "runtime.sessionTimeout and runtime.livenessTimeout reach executor.json; with a KafkaUser, the entity's group ACL allows AlterConfigs, which asking a KIP-848 broker for the session timeout needs.",
			pipeline: minimal(withAuth(v1alpha1.AuthScramSha512, ""), onEntity("handle", func(e *v1alpha1.Entity) {
				e.Runtime = &v1alpha1.EntityRuntime{SessionTimeout: &metav1.Duration{Duration: 20 * time.Second}, LivenessTimeout: &metav1.Duration{Duration: 5 * time.Minute}}
			})),
			facts: newFacts(),
		},
		"removal-policy": {
			reason: "A removal policy that retires the entity (drain, delete its group) is recorded on its StatefulSet, outside the pod template: prune finds it once the entity is gone from the spec.",
			pipeline: minimal(onEntity("handle", func(e *v1alpha1.Entity) {
				e.Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupDelete}
			})),
			facts: newFacts(),
		},
		"retiring-entity": {
			reason: "sum was removed and is retiring: no objects of its own are rendered, but the KafkaUser keeps what its pods use (words, its dead-letter topic, counts, its changelog, its group with Delete, its transactional ids) until the retirement is done.",
			pipeline: wordCount(withAuth(v1alpha1.AuthScramSha512, ""), func(p *v1alpha1.Pipeline) {
				p.Spec.Entities = p.Spec.Entities[:1]
			}),
			facts: newFacts(retiring(wordCount(withAuth(v1alpha1.AuthScramSha512, "")), "sum")),
		},
		"exactly-once": {
			reason:   "ExactlyOnce sets a transactional id prefix in the executor config.",
			pipeline: minimal(withStream("out"), onEntity("handle", exactlyOnce()), func(p *v1alpha1.Pipeline) { p.Spec.Entities[0].Outputs = []string{"out"} }),
			facts:    newFacts(),
		},
		"auth-scram-strimzi-v1": {
			reason:   "scram-sha-512 with Strimzi 1.x: a kafka.strimzi.io/v1 KafkaUser scoped to the pipeline, credentials mounted into the sidecars.",
			pipeline: wordCount(withAuth(v1alpha1.AuthScramSha512, "")),
			facts:    newFacts(),
		},
		"auth-scram-strimzi-v1beta2": {
			reason:   "The same with Strimzi before 0.49, which serves only v1beta2.",
			pipeline: wordCount(withAuth(v1alpha1.AuthScramSha512, "")),
			facts:    newFacts(strimziVersion("v1beta2")),
		},
		"auth-scram-autoscaled": {
			reason:   "KEDA must read lag with the executors' credentials: a TriggerAuthentication with the KafkaUser's password and, since Strimzi's Secret has no username key, a ConfigMap with the username.",
			pipeline: wordCount(withAuth(v1alpha1.AuthScramSha512, ""), onEntity("split", autoscaling(0, 6))),
			facts:    newFacts(withKEDA()),
		},
		"auth-scram-over-tls": {
			reason:   "SCRAM on an encrypting Strimzi listener (the usual production one): executors and KEDA use SASL and TLS, trusting the cluster CA mounted from its Secret.",
			pipeline: wordCount(withAuth(v1alpha1.AuthScramSha512, ""), onEntity("split", autoscaling(0, 6))),
			facts:    newFacts(withKEDA(), func(f *Facts) { f.BootstrapTLS = true; f.BootstrapServers = "kafka-kafka-bootstrap.default.svc:9094" }),
		},
		"auth-tls-autoscaled": {
			reason:   "TLS client authentication for KEDA: the cluster CA and the user's certificate and key from their Secrets.",
			pipeline: minimal(withAuth(v1alpha1.AuthTLS, ""), onEntity("handle", autoscaling(0, 1))),
			facts:    newFacts(withKEDA()),
		},
		"auth-scram-user-secret": {
			reason: "scram-sha-512 without Strimzi: no KafkaUser; the user's Secret is mounted, the executors read username and password from its files, and KEDA reads both keys from it.",
			pipeline: minimal(withoutStrimzi(), withBootstrap("kafka.example:9096"), withTopics(v1alpha1.TopicsUnmanaged),
				withAuth(v1alpha1.AuthScramSha512, "orders-kafka-credentials"), onEntity("handle", autoscaling(0, 1))),
			facts: newFacts(strimziVersion(""), withKEDA()),
		},
		"auth-tls-strimzi": {
			reason:   "TLS client authentication: the user certificate from the KafkaUser Secret, the brokers' CA from the cluster CA Secret.",
			pipeline: minimal(withAuth(v1alpha1.AuthTLS, "")),
			facts:    newFacts(),
		},
		"direct-topics": {
			reason: "Direct topics: no KafkaTopics, the topics are only listed for the admin API; Delete policy and topic config carried over.",
			pipeline: wordCount(withoutStrimzi(), withBootstrap("kafka-0.kafka:9092,kafka-1.kafka:9092"), withTopics(v1alpha1.TopicsDirect),
				onStreams(deletion(v1alpha1.DeletionDelete), topicConfig("retention.ms", "86400000"))),
			facts: newFacts(strimziVersion("")),
		},
		"strimzi-v1beta2-topics": {
			reason:   "KafkaTopics in v1beta2; an existing topic name is kept as is.",
			pipeline: minimal(onStreams(topicName("legacy.events"), partitions(3))),
			facts:    newFacts(strimziVersion("v1beta2")),
		},
		"suspend": {
			reason:   "Suspended: fixed-replica StatefulSets at zero, ScaledObjects paused at zero; topics and maps unchanged.",
			pipeline: wordCount(suspended(), onEntity("split", autoscaling(1, 6))),
			facts:    newFacts(withKEDA()),
		},
		"long-names": {
			reason: "63-character pipeline and entity names: every object name shortened with a hash, within its kind's limits.",
			pipeline: newPipeline(
				withName(strings.Repeat("p", 63)),
				withStream(strings.Repeat("s", 63)),
				withEntity(strings.Repeat("e", 63), "example.com/e:v1", []string{strings.Repeat("s", 63)}, nil, withState(v1alpha1.StatePebble), static())),
			facts: newFacts(withKEDA(), withPrometheus()),
		},
	}
}

func TestGolden(t *testing.T) {
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			res, err := Render(tc.pipeline, tc.facts)
			if err != nil {
				t.Fatalf("%s\nRender: %v", tc.reason, err)
			}
			got := marshalResult(t, res)
			path := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run go test ./controllers/render/... -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s\nRender: -%s, +got (run go test ./controllers/render/... -update if the change is intended):\n%s", tc.reason, path, diff)
			}
		})
	}
}

// marshalResult writes a Result as YAML: the objects as documents in render's order, then the
// topics and assignments as a trailing document.
func marshalResult(t testing.TB, res *Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range res.Objects {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatalf("marshal %T: %v", o, err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	b, err := yaml.Marshal(struct {
		Topics      []Topic                      `json:"topics"`
		Assignments map[string]config.Assignment `json:"assignments,omitempty"`
	}{res.Topics, res.Assignments})
	if err != nil {
		t.Fatal(err)
	}
	buf.WriteString("--- # render.Result topics and assignments (not an object)\n")
	buf.Write(b)
	return buf.Bytes()
}
