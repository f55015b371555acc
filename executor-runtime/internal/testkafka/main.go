// Command testkafka gives the Python SDK's tests (executor-runtime/sdk/python/tests) a Kafka: an
// embedded one (franz-go's kfake, configured as the Go tests' testenv.Fake and as `millrace run`
// runs it) or the real broker given with --bootstrap, driven over stdin and stdout with one JSON
// object a line. Its first line of output is {"bootstrap": "host:port"}; then it answers each
// request line with one line:
//
//	{"op":"create","topics":["t"],"partitions":4,"compact":false} → {}
//	{"op":"produce","topic":"t","records":[{"key":"<base64>","value":"<base64>","partition":-1}]} → {}
//	{"op":"read","topic":"t","committed":true} → {"records":[{"partition":0,"offset":0,"key":..,"value":..,"headers":[{"key":"k","value":"<base64>"}]}]}
//	{"op":"offsets","group":"g"} → {"offsets":{"t":{"0":12}}}
//
// A failed request answers {"error":"..."}. It exits when stdin closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

type header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

type record struct {
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Key       []byte   `json:"key"`
	Value     []byte   `json:"value"`
	Headers   []header `json:"headers,omitempty"`
}

type request struct {
	Op         string   `json:"op"`
	Topics     []string `json:"topics"`
	Topic      string   `json:"topic"`
	Partitions int32    `json:"partitions"`
	Compact    bool     `json:"compact"`
	Records    []record `json:"records"`
	Committed  bool     `json:"committed"`
	Group      string   `json:"group"`
}

type response struct {
	Error     string                      `json:"error,omitempty"`
	Bootstrap string                      `json:"bootstrap,omitempty"`
	Records   []record                    `json:"records,omitempty"`
	Offsets   map[string]map[string]int64 `json:"offsets,omitempty"`
}

type kafka struct {
	seeds         []string
	admin         *kadm.Client
	byKey, byPart *kgo.Client
}

func main() {
	bootstrap := flag.String("bootstrap", "", "a real broker; empty starts an embedded one (kfake)")
	flag.Parse()
	if err := run(*bootstrap); err != nil {
		fmt.Fprintln(os.Stderr, "testkafka:", err)
		os.Exit(1)
	}
}

func run(bootstrap string) error {
	var seeds []string
	if bootstrap == "" {
		c, err := kfake.NewCluster(
			kfake.NumBrokers(1),
			kfake.GroupMinSessionTimeout(time.Second),
			kfake.BrokerConfigs(map[string]string{
				"group.consumer.heartbeat.interval.ms": "250",
				"group.consumer.session.timeout.ms":    "2000",
			}),
		)
		if err != nil {
			return fmt.Errorf("start kfake: %w", err)
		}
		defer c.Close()
		seeds = c.ListenAddrs()
	} else {
		seeds = strings.Split(bootstrap, ",")
	}
	byKey, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		return err
	}
	defer byKey.Close()
	byPart, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer byPart.Close()
	k := &kafka{seeds: seeds, admin: kadm.NewClient(byKey), byKey: byKey, byPart: byPart}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(response{Bootstrap: strings.Join(seeds, ",")}); err != nil {
		return err
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 256<<20)
	for in.Scan() {
		var req request
		var res response
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			res.Error = err.Error()
		} else if res, err = k.handle(req); err != nil {
			res = response{Error: err.Error()}
		}
		if err := out.Encode(res); err != nil {
			return err
		}
	}
	return in.Err()
}

func (k *kafka) handle(req request) (response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch req.Op {
	case "create":
		return response{}, k.create(ctx, req.Topics, req.Partitions, req.Compact)
	case "produce":
		var byKey, byPart []*kgo.Record
		for _, r := range req.Records {
			kr := &kgo.Record{Topic: req.Topic, Key: r.Key, Value: r.Value, Partition: r.Partition}
			for _, h := range r.Headers {
				kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			if r.Partition < 0 {
				byKey = append(byKey, kr)
			} else {
				byPart = append(byPart, kr)
			}
		}
		if err := k.byKey.ProduceSync(ctx, byKey...).FirstErr(); err != nil {
			return response{}, fmt.Errorf("produce to %s: %w", req.Topic, err)
		}
		return response{}, k.byPart.ProduceSync(ctx, byPart...).FirstErr()
	case "read":
		recs, err := k.readAll(ctx, req.Topic, req.Committed)
		return response{Records: recs}, err
	case "offsets":
		offs, err := k.admin.FetchOffsets(ctx, req.Group)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			return response{}, fmt.Errorf("fetch offsets of group %s: %w", req.Group, err)
		}
		res := response{Offsets: map[string]map[string]int64{}}
		offs.Each(func(o kadm.OffsetResponse) {
			if res.Offsets[o.Topic] == nil {
				res.Offsets[o.Topic] = map[string]int64{}
			}
			res.Offsets[o.Topic][strconv.Itoa(int(o.Partition))] = o.At
		})
		return res, nil
	default:
		return response{}, fmt.Errorf("unknown op %q", req.Op)
	}
}

func (k *kafka) create(ctx context.Context, topics []string, partitions int32, compact bool) error {
	var cfg map[string]*string
	if compact {
		c := "compact"
		cfg = map[string]*string{"cleanup.policy": &c}
	}
	for _, t := range topics {
		res, err := k.admin.CreateTopic(ctx, partitions, -1, cfg, t)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			return fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	// A created topic is not at once known to every part of the broker: wait until each
	// partition lists its offsets.
	for {
		ends, err := k.admin.ListEndOffsets(ctx, topics...)
		ready := err == nil
		for _, t := range topics {
			if !ready {
				break
			}
			ps := ends[t]
			ready = int32(len(ps)) == partitions
			for _, o := range ps {
				ready = ready && o.Err == nil
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topics %v not listable after their creation: %v", topics, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// readAll returns the records of topic up to its end (its last stable offset, read_committed).
func (k *kafka) readAll(ctx context.Context, topic string, committed bool) ([]record, error) {
	ends, err := k.admin.ListEndOffsets(ctx, topic)
	if committed {
		ends, err = k.admin.ListCommittedOffsets(ctx, topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	out := []record{}
	if len(remaining) == 0 {
		return out, nil
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.seeds...), kgo.ConsumeTopics(topic), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read %s: timed out with partitions %v unread", topic, remaining)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				rec := record{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
				for _, h := range r.Headers {
					rec.Headers = append(rec.Headers, header{Key: h.Key, Value: h.Value})
				}
				out = append(out, rec)
			}
			if r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
		})
	}
	return out, nil
}
