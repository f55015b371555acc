// Command millrace-bench measures the executor runtime against a bare franz-go loop on one broker:
//
//	(a) a bare franz-go consume→produce loop with the executor's batching,
//	(b) the I/O sidecar with the identity function over the Unix socket, AtLeastOnce,
//	(c) the same with ExactlyOnce (transactions every commit interval),
//	(p) as (b), with the function a separate process: --python-function, by default the Python
//	    SDK's identity function (executor-runtime/sdk/python).
//
// For each it reports records/s draining a backlog, and p50/p99 end-to-end latency (output
// consumed minus input produced, read_committed) at a fixed input rate. Sidecar and function run
// in this process, talking over a real Unix socket.
//
//	millrace-bench --bootstrap 127.0.0.1:19092   # a real broker (hack/kafka.sh start)
//	millrace-bench                               # in-process kfake, for a smoke run
//
// `millrace-bench peer` is the peer benchmark against Kafka Streams (see peer.go; run it with
// hack/peer-bench.sh, which builds both sides).
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

type params struct {
	bootstrap      []string
	records        int
	size           int
	partitions     int
	batch          int
	inFlight       int
	commitInterval time.Duration
	rate           int
	rateFor        time.Duration
	prefix         string
	// sidecarGOGC is the GC target while (b) and (c) run, as the millrace-io binary sets it
	// (iosidecar.GCPercent); (a) runs with Go's default, as a hand-written loop would.
	sidecarGOGC int
	// function is the command line of scenario (p)'s function process.
	function string
}

type result struct {
	name      string
	perSecond float64
	p50, p99  time.Duration
	// cpuPerRecord is this process's CPU time per record while draining the backlog: the
	// processor plus the output-reading client (the same in every scenario).
	cpuPerRecord time.Duration
	// interval is the mean time from one commit to the next while draining: the commit
	// interval's polling plus what draining and committing add (the executor's OnCommit hook,
	// the bare loop's own commits).
	interval time.Duration
}

// commits counts the processor's commits (intervals that committed input offsets).
var commits atomic.Int64

// processCPU is the CPU time of this process and of the function process of scenario (p) while
// it runs, so that (p)'s CPU per record counts its function as (b)'s counts the in-process one.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()+ru.Stime.Nano()) + childCPU()
}

var functionPID atomic.Int64

// childCPU reads utime and stime of the function process from /proc (in clock ticks of 10 ms,
// fine over a drain of seconds).
func childCPU() time.Duration {
	pid := functionPID.Load()
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func main() {
	if fn := os.Getenv(envBenchFunction); fn != "" {
		benchFunction(fn)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "peer" {
		peerMain(os.Args[2:])
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		bareMain(os.Args[2:])
		return
	}
	var p params
	bootstrap := flag.String("bootstrap", "", "Kafka bootstrap servers (comma separated); empty runs an in-process kfake cluster")
	flag.IntVar(&p.records, "records", 1_000_000, "records in the throughput backlog")
	flag.IntVar(&p.size, "size", 100, "record value size in bytes")
	flag.IntVar(&p.partitions, "partitions", 4, "partitions of the input and output topics")
	flag.IntVar(&p.batch, "batch", 500, "records per batch (runtime.maxBatchRecords)")
	flag.IntVar(&p.inFlight, "in-flight", 4, "batches in flight (runtime.maxInFlightBatches)")
	flag.DurationVar(&p.commitInterval, "commit-interval", 100*time.Millisecond, "commit interval")
	flag.IntVar(&p.rate, "rate", 5000, "input records/s of the latency phase")
	flag.DurationVar(&p.rateFor, "rate-for", 5*time.Second, "duration of the latency phase")
	flag.IntVar(&p.sidecarGOGC, "sidecar-gogc", iosidecar.GCPercent, "GOGC while the executor scenarios run, as millrace-io sets it (100 = Go's default); the whole benchmark process, function and output reader included, runs with it during (b) and (c)")
	only := flag.String("only", "a,b,c", "scenarios to run (a, b, c, p)")
	flag.StringVar(&p.function, "python-function", "python3 -m millrace.examples.identity", "command line of scenario (p)'s function process, which serves on $MILLRACE_FUNCTION_SOCKET")
	rounds := flag.Int("rounds", 3, "rounds of all scenarios; figures are medians")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	if *bootstrap == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			fail(err)
		}
		defer c.Close()
		p.bootstrap = c.ListenAddrs()
	} else {
		p.bootstrap = strings.Split(*bootstrap, ",")
	}
	// Scenarios alternate round by round, and each figure is the median of its rounds: on a
	// shared machine the broker's speed drifts, and interleaving spreads the drift evenly.
	scenarios := strings.Split(*only, ",")
	all := map[string][]result{}
	for round := 0; round < *rounds; round++ {
		for _, s := range scenarios {
			var r result
			var err error
			p.prefix = fmt.Sprintf("bench-%d-%d-", time.Now().Unix(), round)
			switch s {
			case "a":
				r, err = run(p, "(a) bare franz-go loop", "a", bareLoop)
			case "b":
				r, err = run(p, "(b) executor, identity, AtLeastOnce", "b", executor(config.AtLeastOnce))
			case "c":
				r, err = run(p, "(c) executor, identity, ExactlyOnce", "c", executor(config.ExactlyOnce))
			case "p":
				r, err = run(p, "(p) executor, identity in Python, AtLeastOnce", "p", external(config.AtLeastOnce))
			default:
				err = fmt.Errorf("unknown scenario %q", s)
			}
			if err != nil {
				fail(err)
			}
			all[s] = append(all[s], r)
			fmt.Fprintf(os.Stderr, "round %d %s: %.0f records/s, p50 %v, p99 %v, interval %v\n", round+1, r.name, r.perSecond, r.p50, r.p99, r.interval)
		}
	}
	fmt.Printf("| scenario | records/s (median of %d) | range | p50 latency | p99 latency | client CPU/record | commit to commit while draining |\n|---|---:|---:|---:|---:|---:|---:|\n", *rounds)
	med := map[string]result{}
	for _, s := range scenarios {
		rs := all[s]
		slices.SortFunc(rs, func(x, y result) int { return cmp.Compare(x.perSecond, y.perSecond) })
		m := rs[len(rs)/2]
		lat := slices.Clone(rs)
		slices.SortFunc(lat, func(x, y result) int { return cmp.Compare(x.p50, y.p50) })
		m.p50 = lat[len(lat)/2].p50
		slices.SortFunc(lat, func(x, y result) int { return cmp.Compare(x.p99, y.p99) })
		m.p99 = lat[len(lat)/2].p99
		slices.SortFunc(lat, func(x, y result) int { return cmp.Compare(x.cpuPerRecord, y.cpuPerRecord) })
		m.cpuPerRecord = lat[len(lat)/2].cpuPerRecord
		slices.SortFunc(lat, func(x, y result) int { return cmp.Compare(x.interval, y.interval) })
		m.interval = lat[len(lat)/2].interval
		med[s] = m
		fmt.Printf("| %s | %.0f | %.0f–%.0f | %v | %v | %v | %v |\n", m.name, m.perSecond, rs[0].perSecond, rs[len(rs)-1].perSecond, m.p50.Round(10*time.Microsecond), m.p99.Round(10*time.Microsecond), m.cpuPerRecord, m.interval.Round(100*time.Microsecond))
	}
	if a, b, c := med["a"], med["b"], med["c"]; a.perSecond > 0 && b.perSecond > 0 && c.perSecond > 0 {
		fmt.Printf("\n(b)/(a) = %.0f%%, (c)/(b) = %.0f%%\n", 100*b.perSecond/a.perSecond, 100*c.perSecond/b.perSecond)
	}
	if b, py := med["b"], med["p"]; b.perSecond > 0 && py.perSecond > 0 {
		fmt.Printf("\n(p)/(b) = %.2f× records/s, CPU per record %.1f×\n", py.perSecond/b.perSecond, float64(py.cpuPerRecord)/float64(b.cpuPerRecord))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "millrace-bench:", err)
	os.Exit(1)
}

// processor consumes in and produces to out until ctx ends.
type processor func(ctx context.Context, p params, in, out, group string) error

func run(p params, name, id string, proc processor) (result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, out, group := p.prefix+id+"-in", p.prefix+id+"-out", p.prefix+id
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap...), kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []string{in, out, in + ".dlq"} {
		if _, err := adm.CreateTopic(ctx, int32(p.partitions), 1, nil, t); err != nil {
			return result{}, fmt.Errorf("create %s: %w", t, err)
		}
	}
	value := make([]byte, p.size)
	produce := func(n int) error {
		var firstErr atomic.Pointer[error]
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			cl.Produce(ctx, &kgo.Record{Topic: in, Key: fmt.Appendf(nil, "%08d", i), Value: value}, func(_ *kgo.Record, err error) {
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
				wg.Done()
			})
		}
		wg.Wait()
		if e := firstErr.Load(); e != nil {
			return *e
		}
		return nil
	}

	// Throughput: a backlog, drained by the processor; the clock runs from its start to the last
	// output read.
	if err := produce(p.records); err != nil {
		return result{}, err
	}
	counter, err := newOutputCounter(p, out)
	if err != nil {
		return result{}, err
	}
	defer counter.close()
	procErr := make(chan error, 1)
	go func() { procErr <- proc(ctx, p, in, out, group) }()
	// The clock starts at the first output, so that joining the group is not measured.
	if err := counter.waitFor(ctx, 1, procErr); err != nil {
		return result{}, err
	}
	start, startN, startCPU, startCommits := time.Now(), counter.n.Load(), processCPU(), commits.Load()
	if err := counter.waitFor(ctx, p.records, procErr); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	cpu := processCPU() - startCPU
	var interval time.Duration
	if n := commits.Load() - startCommits; n > 0 {
		interval = elapsed / time.Duration(n)
	}
	measured := p.records - int(startN)

	// Latency: a steady input rate; every output's latency is its consume time minus the
	// input's produce timestamp (the function keeps the timestamp).
	counter.startLatency()
	tick := time.NewTicker(10 * time.Millisecond)
	perTick := max(1, p.rate/100)
	sent := 0
	for end := time.Now().Add(p.rateFor); time.Now().Before(end); <-tick.C {
		for i := 0; i < perTick; i++ {
			cl.Produce(ctx, &kgo.Record{Topic: in, Value: value}, nil)
		}
		sent += perTick
	}
	tick.Stop()
	if err := cl.Flush(ctx); err != nil {
		return result{}, err
	}
	if err := counter.waitFor(ctx, p.records+sent, procErr); err != nil {
		return result{}, err
	}
	lat := counter.latencies()
	cancel()
	<-procErr
	return result{name: name, perSecond: float64(measured) / elapsed.Seconds(), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), cpuPerRecord: cpu / time.Duration(measured), interval: interval}, nil
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[int(float64(len(d)-1)*q)]
}

type outputCounter struct {
	cl      *kgo.Client
	n       atomic.Int64
	mu      sync.Mutex
	measure bool
	lat     []time.Duration
	done    chan struct{}
}

func newOutputCounter(p params, topic string) (*outputCounter, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap...), kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(20*time.Millisecond))
	if err != nil {
		return nil, err
	}
	c := &outputCounter{cl: cl, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			now := time.Now()
			c.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				if c.measure {
					c.lat = append(c.lat, now.Sub(r.Timestamp))
				}
			})
			c.mu.Unlock()
			c.n.Add(int64(fs.NumRecords()))
		}
	}()
	return c, nil
}

func (c *outputCounter) startLatency() {
	c.mu.Lock()
	c.measure = true
	c.mu.Unlock()
}

func (c *outputCounter) latencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lat)
}

func (c *outputCounter) waitFor(ctx context.Context, n int, procErr <-chan error) error {
	for c.n.Load() < int64(n) {
		select {
		case err := <-procErr:
			return fmt.Errorf("processor stopped after %d of %d outputs: %v", c.n.Load(), n, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (c *outputCounter) close() {
	c.cl.Close()
	<-c.done
}

// bareLoop is what a hand-written franz-go service does: poll, produce each record, and every
// commit interval flush and commit.
func bareLoop(ctx context.Context, p params, in, out, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(in),
		kgo.DisableAutoCommit(), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ProducerLinger(0),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	last := time.Now()
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, p.commitInterval)
		fs := cl.PollRecords(pctx, p.batch*p.inFlight)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			cl.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, nil)
		})
		if time.Since(last) >= p.commitInterval {
			if err := cl.Flush(ctx); err != nil {
				return err
			}
			if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
				return err
			}
			commits.Add(1)
			last = time.Now()
		}
	}
	return nil
}

func executor(g config.Guarantee) processor { return sidecar(g, false) }

// external is (b) with the function in its own process (p.function).
func external(g config.Guarantee) processor { return sidecar(g, true) }

func sidecar(g config.Guarantee, externalFunction bool) processor {
	return func(ctx context.Context, p params, in, out, group string) error {
		defer debug.SetGCPercent(debug.SetGCPercent(p.sidecarGOGC))
		dir, err := os.MkdirTemp("", "mr-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg := &config.Executor{
			APIVersion: config.APIVersion, Namespace: "bench", Pipeline: "bench", Entity: group,
			Kafka:   config.Kafka{BootstrapServers: p.bootstrap},
			Inputs:  []config.Input{{Stream: "in", Topic: in, Partitions: int32(p.partitions), DeadLetterTopic: in + ".dlq"}},
			Outputs: []config.Output{{Stream: "out", Topic: out}},
			GroupID: group, TransactionalIDPrefix: group, Guarantee: g,
			Runtime: config.Runtime{
				SocketDir: dir, MaxBatchRecords: int32(p.batch), MaxInFlightBatches: int32(p.inFlight),
				CommitInterval: config.Duration{Duration: p.commitInterval},
			},
		}
		cfg.Default()
		b, err := config.Marshal(cfg)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, config.FileName)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
		sock := filepath.Join(dir, cfg.Runtime.FunctionSocket)
		fnErr := make(chan error, 1)
		if externalFunction {
			argv := strings.Fields(p.function)
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), sdk.EnvFunctionSocket+"="+sock)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return fmt.Errorf("start the function %q: %w", p.function, err)
			}
			functionPID.Store(int64(cmd.Process.Pid))
			go func() {
				<-ctx.Done()
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}()
			go func() { fnErr <- cmd.Wait(); functionPID.Store(0) }()
			for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
				if _, err := os.Stat(sock); err == nil {
					break
				}
				if time.Since(start) > 30*time.Second {
					return fmt.Errorf("the function %q did not listen on %s", p.function, sock)
				}
			}
		} else {
			go func() {
				fnErr <- sdk.Serve(ctx, identity.Handler(), sdk.WithSocket(sock), sdk.WithLogger(slog.Default()))
			}()
		}
		err = iosidecar.Run(ctx, path, iosidecar.WithOrdinal(0), iosidecar.WithMetricsAddr("-", nil),
			iosidecar.WithHooks(iosidecar.Hooks{OnCommit: func() { commits.Add(1) }}))
		<-fnErr
		return err
	}
}
