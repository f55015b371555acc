package render

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// TestKafkaUserAllowsDeletingDroppedInputOffsets grants a kfake broker's user exactly the
// KafkaUser's ACLs of an inserted stage (x takes s1 over from b, which reads s2 now) and makes, as
// that user, the calls of b's I/O sidecar that deletes b's offsets on s1: read b's offsets, read
// x's stable, delete b's.
func TestKafkaUserAllowsDeletingDroppedInputOffsets(t *testing.T) {
	p := newPipeline(withStream("s1"), withStream("s2"),
		withEntity("x", "example.com/f:v1", []string{"s1"}, []string{"s2"}),
		withEntity("b", "example.com/f:v1", []string{"s2"}, nil),
		func(p *v1alpha1.Pipeline) {
			p.Spec.Kafka.Authentication = &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}
			p.Spec.Entities[0].Start = []v1alpha1.InputStart{{Stream: "s1", Position: v1alpha1.StartEntity, Entity: "b"}}
		})
	user := kafkaUser(withDefaults(p), Facts{StrimziAPIVersion: "v1"})

	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(), kfake.Superuser("SCRAM-SHA-512", "admin", "admin-pw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	connect := func(name, pw string) *kadm.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
			kgo.SASL(scram.Auth{User: name, Pass: pw}.AsSha512Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return kadm.NewClient(cl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := connect("admin", "admin-pw")
	if res, err := admin.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "pipeline", Mechanism: kadm.ScramSha512, Iterations: 4096, Password: "pw"}}); err != nil || res.Error() != nil {
		t.Fatalf("create the user: %v %v", err, res.Error())
	}
	for _, a := range user.Spec.Authorization.ACLs {
		b := kadm.NewACLs().Allow("User:pipeline").AllowHosts()
		switch a.Resource.Type {
		case "topic":
			b.Topics(a.Resource.Name)
		case "group":
			b.Groups(a.Resource.Name)
		case "transactionalId":
			b.TransactionalIDs(a.Resource.Name)
		case "cluster":
			b.Clusters()
		}
		if a.Resource.PatternType == "prefix" {
			b.ResourcePatternType(kadm.ACLPatternPrefixed)
		}
		var ops []kadm.ACLOperation
		for _, op := range a.Operations {
			o, err := kmsg.ParseACLOperation(strings.ToLower(op))
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, o)
		}
		b.Operations(ops...)
		res, err := admin.CreateACLs(ctx, b)
		if err == nil {
			for _, r := range res {
				err = r.Err
			}
		}
		if err != nil {
			t.Fatalf("create ACL %+v: %v", a, err)
		}
	}
	s1 := TopicName(p, "s1")
	if _, err := admin.CreateTopic(ctx, 2, 1, nil, s1); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: s1, Partition: 0, At: 3})
	offsets.Add(kadm.Offset{Topic: s1, Partition: 1, At: 4})
	for _, g := range []string{GroupID(p, "b"), GroupID(p, "x")} {
		if res, err := admin.CommitOffsets(ctx, g, offsets); err != nil || res.Error() != nil {
			t.Fatalf("commit offsets of %s: %v %v", g, err, res.Error())
		}
	}

	pipeline := connect("pipeline", "pw")
	if _, err := pipeline.FetchOffsets(ctx, GroupID(p, "b")); err != nil {
		t.Errorf("fetch b's offsets as the pipeline's user: %v", err)
	}
	heir, err := pipeline.FetchOffsetsForTopics(kadm.RequireStable(ctx), GroupID(p, "x"), s1)
	if err == nil {
		err = heir.Error()
	}
	if err != nil {
		t.Errorf("fetch the heir x's offsets as the pipeline's user: %v", err)
	}
	res, err := pipeline.DeleteOffsets(ctx, GroupID(p, "b"), kadm.TopicsSet{s1: {0: {}, 1: {}}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("delete b's offsets on s1 as the pipeline's user: %v", err)
	}
	left, err := admin.FetchOffsets(ctx, GroupID(p, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(left.Sorted()); n != 0 {
		t.Errorf("b's group still has %d committed offsets on s1", n)
	}
}
