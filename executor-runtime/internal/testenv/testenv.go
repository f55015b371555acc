// Package testenv starts Kafka (franz-go's kfake in process, or the real broker of
// MILLRACE_KAFKA_BOOTSTRAP) and Millrace entities for the executor runtime's tests.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// EnvKafkaBootstrap names a real broker (hack/kafka.sh start prints it) for the integration tier.
const EnvKafkaBootstrap = "MILLRACE_KAFKA_BOOTSTRAP"

// Kafka is a cluster under test.
type Kafka struct {
	Bootstrap []string
	Admin     *kadm.Client
	Client    *kgo.Client
	// Fake is the in-process cluster, nil on a real broker.
	Fake *kfake.Cluster
	// Prefix makes topic and group names unique on a shared real broker.
	Prefix string
}

// Fake starts an in-process kfake cluster listening on 127.0.0.1, reachable by child processes.
func Fake(tb testing.TB) *Kafka {
	tb.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(time.Second),
		// A SIGKILLed KIP-848 member holds its partitions until this timeout.
		kfake.BrokerConfigs(map[string]string{
			"group.consumer.heartbeat.interval.ms": "250",
			"group.consumer.session.timeout.ms":    "2000",
		}),
	)
	if err != nil {
		tb.Fatalf("start kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return connect(tb, c.ListenAddrs(), c, "")
}

// Real connects to the broker in MILLRACE_KAFKA_BOOTSTRAP and skips the test when it is unset.
func Real(tb testing.TB) *Kafka {
	tb.Helper()
	bs := os.Getenv(EnvKafkaBootstrap)
	if bs == "" {
		tb.Skipf("%s is not set: start a broker with `hack/kafka.sh start` and export the address it prints to run the real-broker tier", EnvKafkaBootstrap)
	}
	return connect(tb, strings.Split(bs, ","), nil, fmt.Sprintf("t%d-", time.Now().UnixNano()%1_000_000_000))
}

func connect(tb testing.TB, bootstrap []string, fake *kfake.Cluster, prefix string) *Kafka {
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...))
	if err != nil {
		tb.Fatalf("kafka client: %v", err)
	}
	tb.Cleanup(cl.Close)
	return &Kafka{Bootstrap: bootstrap, Admin: kadm.NewClient(cl), Client: cl, Fake: fake, Prefix: prefix}
}

// CreateTopics creates topics with partitions each; names ending in ".changelog" are compacted.
func (k *Kafka) CreateTopics(tb testing.TB, partitions int32, topics ...string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, t := range topics {
		var cfg map[string]*string
		if strings.HasSuffix(t, ".changelog") {
			compact := "compact"
			cfg = map[string]*string{"cleanup.policy": &compact}
		}
		res, err := k.Admin.CreateTopic(ctx, partitions, 1, cfg, t)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			tb.Fatalf("create topic %s: %v", t, err)
		}
	}
	// A created topic is not at once known to every part of the broker (under load its
	// partitions answer UNKNOWN_TOPIC_OR_PARTITION for a moment): wait until each partition of
	// each topic lists its offsets, so that tests start on topics that exist everywhere.
	for {
		ends, err := k.Admin.ListEndOffsets(ctx, topics...)
		ready := err == nil
		if ready {
			for _, t := range topics {
				ps := ends[t]
				if int32(len(ps)) != partitions {
					ready = false
				}
				for _, o := range ps {
					if o.Err != nil {
						ready = false
					}
				}
			}
		}
		if ready {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("topics %v not listable 30s after their creation: %v", topics, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Produce writes records synchronously; with transactional set it writes them in one committed
// transaction (so that the topic holds transaction markers, as a Millrace entity's output does).
func (k *Kafka) Produce(tb testing.TB, transactional bool, recs ...*kgo.Record) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if !transactional {
		if err := k.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			tb.Fatalf("produce: %v", err)
		}
		return
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Bootstrap...), kgo.TransactionalID(fmt.Sprintf("%sproducer-%d", k.Prefix, time.Now().UnixNano())))
	if err != nil {
		tb.Fatalf("transactional client: %v", err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		tb.Fatalf("begin: %v", err)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatalf("produce: %v", err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		tb.Fatalf("commit: %v", err)
	}
}

// ReadAll returns every record of topic up to its current end, read_committed or not.
func (k *Kafka) ReadAll(tb testing.TB, topic string, committed bool) []*kgo.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ends, err := k.Admin.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if committed {
		ends, err = k.Admin.ListCommittedOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
	}
	if err != nil {
		tb.Fatalf("list end offsets of %s: %v", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Bootstrap...), kgo.ConsumeTopics(topic), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		tb.Fatalf("consumer: %v", err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %s: timed out with partitions %v unread", topic, remaining)
		}
		fs.EachError(func(t string, p int32, err error) { tb.Fatalf("fetch %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return out
}

// Entity is the configuration of one entity under test, written to a file the sidecars read.
type Entity struct {
	Dir    string
	Path   string
	Config *config.Executor
	mu     sync.Mutex
}

// NewEntity writes the executor config of an entity reading inputs and writing outputs (stream
// name = topic name). stateful adds a state section with the entity's changelog topic.
func (k *Kafka) NewEntity(tb testing.TB, name string, inputs, outputs []string, partitions int32, stateful bool, g config.Guarantee) *Entity {
	tb.Helper()
	// Unix socket paths are limited to about 100 bytes; t.TempDir() paths can be longer.
	dir, err := os.MkdirTemp("", "mr-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	c := &config.Executor{
		APIVersion: config.APIVersion, Namespace: "test", Pipeline: "wc", Entity: name,
		Kafka:                 config.Kafka{BootstrapServers: k.Bootstrap},
		GroupID:               k.Prefix + "test.wc." + name,
		TransactionalIDPrefix: k.Prefix + "test.wc." + name,
		Guarantee:             g,
		Assignment:            config.Assignment{Mode: config.GroupAssignment},
		Runtime: config.Runtime{
			SocketDir: dir, MetricsPort: 1, StateMetricsPort: 1,
			MaxBatchRecords: 100, MaxInFlightBatches: 4,
			CommitInterval: config.Duration{Duration: 100 * time.Millisecond},
		},
	}
	for _, in := range inputs {
		c.Inputs = append(c.Inputs, config.Input{Stream: in, Topic: in, Partitions: partitions, DeadLetterTopic: in + ".dlq"})
	}
	for _, out := range outputs {
		c.Outputs = append(c.Outputs, config.Output{Stream: out, Topic: out})
	}
	if stateful {
		c.State = &config.State{ChangelogTopic: k.Prefix + "test.wc." + name + ".changelog", Backend: "memory", Dir: filepath.Join(dir, "state")}
	}
	c.Default()
	e := &Entity{Dir: dir, Path: filepath.Join(dir, config.FileName), Config: c}
	e.Write(tb)
	return e
}

// Update changes the configuration and rewrites the file the way Kubernetes does: a new
// directory, then an atomic swap of the `..data` symlink the file points through.
func (e *Entity) Update(tb testing.TB, change func(*config.Executor)) {
	tb.Helper()
	e.mu.Lock()
	change(e.Config)
	e.mu.Unlock()
	e.Write(tb)
}

// Write writes the configuration through a `..data` symlink, as a mounted ConfigMap is laid out.
func (e *Entity) Write(tb testing.TB) {
	tb.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := config.Marshal(e.Config)
	if err != nil {
		tb.Fatal(err)
	}
	ts := filepath.Join(e.Dir, fmt.Sprintf("..%d", time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, config.FileName), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	tmp := filepath.Join(e.Dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.Dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	if _, err := os.Lstat(e.Path); err != nil {
		if err := os.Symlink(filepath.Join("..data", config.FileName), e.Path); err != nil {
			tb.Fatal(err)
		}
	}
}

// Topics lists every topic an entity needs: inputs, dead-letter topics, outputs, changelog.
func (e *Entity) Topics() []string {
	var ts []string
	for _, in := range e.Config.Inputs {
		ts = append(ts, in.Topic, in.DeadLetterTopic)
	}
	for _, out := range e.Config.Outputs {
		ts = append(ts, out.Topic)
	}
	if e.Config.State != nil {
		ts = append(ts, e.Config.State.ChangelogTopic)
	}
	slices.Sort(ts)
	return slices.Compact(ts)
}
