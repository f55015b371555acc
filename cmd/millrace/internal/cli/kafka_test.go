package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestProduceConsume(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "default.wordcount.lines", "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	seeds := strings.Join(fake.ListenAddrs(), ",")

	// A stream of a Pipeline, keyed lines from stdin.
	res := run(t, "millrace", "alpha\tone\nbeta\ttwo\nno key here\nalpha\tthree\n",
		"produce", "-f", samplePath(t), "lines", "--bootstrap-servers", seeds, "--key-separator", `\t`)
	if res.code != 0 || !strings.Contains(res.errOut, "produced 4 records to default.wordcount.lines") {
		t.Fatalf("produce: exit %d, stderr %q", res.code, res.errOut)
	}
	// A topic by name, from a file, one key for all; the bootstrap address from the environment.
	t.Setenv(EnvBootstrapServers, seeds)
	res = run(t, "millrace", "", "produce", "plain", "--file", "testdata/pipelines/cycle.yaml", "--key", "k")
	if res.code != 0 {
		t.Fatalf("produce --file: exit %d, stderr %q", res.code, res.errOut)
	}

	res = run(t, "millrace", "", "consume", "-f", samplePath(t), "lines", "--follow=false", "--key-separator", "=")
	if res.code != 0 {
		t.Fatalf("consume: exit %d, stderr %q", res.code, res.errOut)
	}
	// Partitions interleave, but records of one key keep their order.
	got := strings.Split(strings.TrimSuffix(res.out, "\n"), "\n")
	want := map[string]bool{"alpha=one": true, "beta=two": true, "=no key here": true, "alpha=three": true}
	if len(got) != len(want) {
		t.Fatalf("consume printed %q, want the 4 records %v", got, want)
	}
	for _, l := range got {
		if !want[l] {
			t.Errorf("consume printed %q, which was not produced", l)
		}
	}
	if strings.Index(res.out, "alpha=one") > strings.Index(res.out, "alpha=three") {
		t.Errorf("records of key alpha out of order:\n%s", res.out)
	}

	res = run(t, "millrace", "", "consume", "plain", "--follow=false", "--max", "2", "--key-separator", ":")
	if lines := strings.Count(res.out, "\n"); res.code != 0 || lines != 2 || !strings.HasPrefix(res.out, "k:") {
		t.Errorf("consume --max 2: exit %d, %d lines %q, want 2 lines keyed k", res.code, lines, res.out)
	}

	// Following: a record produced after the consumer started is printed.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result)
	go func() { done <- runContext(ctx, t, "millrace", "", "consume", "plain", "--from-end", "--max", "1") }()
	deadline := time.After(30 * time.Second)
	var followed result
	for following := true; following; {
		run(t, "millrace", "late record\n", "produce", "plain")
		select {
		case followed = <-done:
			following = false
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			cancel()
			t.Fatal("consume did not print a record produced while it followed the topic")
		}
	}
	cancel()
	if followed.code != 0 || followed.out != "late record\n" {
		t.Errorf("followed consume: exit %d, stdout %q, stderr %q", followed.code, followed.out, followed.errOut)
	}

	res = run(t, "millrace", "", "consume", "-f", samplePath(t), "nosuch")
	if res.code == 0 || !strings.Contains(res.errOut, `has no stream "nosuch"`) {
		t.Errorf("consume of an unknown stream: exit %d, stderr %q", res.code, res.errOut)
	}
}

// TestConsumeHeaders: a dead-lettered record carries its origin and error in headers, which
// --headers prints before the record, quoted so that a tab or newline in a value stays on the line.
func TestConsumeHeaders(t *testing.T) {
	fake, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: "in.dlq", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: "millrace.source.topic", Value: []byte("in")},
		{Key: "millrace.source.offset", Value: []byte("7")},
		{Key: "millrace.error", Value: []byte("bad\tinput\n")},
	}}
	if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	seeds := strings.Join(fake.ListenAddrs(), ",")
	res := run(t, "millrace", "", "consume", "in.dlq", "--bootstrap-servers", seeds, "--follow=false", "--headers", "--key-separator", "=")
	want := `millrace.source.topic="in" millrace.source.offset="7" millrace.error="bad\tinput\n"` + "\tk=v\n"
	if res.code != 0 || res.out != want {
		t.Errorf("consume --headers: exit %d, stderr %q\n got %q\nwant %q", res.code, res.errOut, res.out, want)
	}
	res = run(t, "millrace", "", "consume", "in.dlq", "--bootstrap-servers", seeds, "--follow=false")
	if res.code != 0 || res.out != "v\n" {
		t.Errorf("consume without --headers: exit %d, stdout %q, want the value only", res.code, res.out)
	}
}
