package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/validate"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// The peer benchmark: the same jobs as Kafka Streams applications (hack/peer-bench, one stream
// thread) and as Millrace Pipelines run as deployed (millrace-io, the function and, for word
// count, millrace-state as separate processes, configured by the operator's own rendering), one
// after another against one broker. hack/peer-bench.sh builds both and runs this.

type peerParams struct {
	bootstrap      []string
	binDir         string
	baselineBinDir string
	ksClasspath    string
	java           string
	workDir        string
	records        int
	lines          int
	size           int
	partitions     int
	commitInterval time.Duration
	jobs           []string
	guarantees     []string
	contenders     []string
	timeout        time.Duration
	runID          string
}

// peerResult is one contender on one job with one guarantee.
type peerResult struct {
	job, guarantee, contender string
	inputs                    int // input records (lines for word count)
	outputs                   int
	perSecond                 float64       // input records per second, from the outputs' LogAppendTime
	cpuPerMillion             time.Duration // CPU of all the contender's processes per million input records
	processes                 int
	cpuEach                   string // CPU s per million input records of each process
}

// Contenders.
const (
	ctMillrace  = "millrace"
	ctKS        = "ks"         // Kafka Streams with its defaults (record cache on)
	ctKSNoCache = "ks-nocache" // statestore.cache.max.bytes=0: every count is emitted, as Millrace does
	// ctBare is the bare franz-go loop of millrace-bench's scenario (a), as a process of its own
	// (identity, AtLeastOnce only): what the executor as deployed is measured against.
	ctBare = "bare"
	// ctBaseline is Millrace built from an earlier commit (--baseline-bin-dir).
	ctBaseline = "millrace-baseline"
)

func peerMain(args []string) {
	fl := flag.NewFlagSet("peer", flag.ExitOnError)
	var p peerParams
	bootstrap := fl.String("bootstrap", os.Getenv("MILLRACE_KAFKA_BOOTSTRAP"), "Kafka bootstrap servers (default $MILLRACE_KAFKA_BOOTSTRAP)")
	fl.StringVar(&p.binDir, "bin-dir", "", "folder of millrace-io, millrace-state, identity, wordcount-split, wordcount-sum and millrace-bench")
	fl.StringVar(&p.baselineBinDir, "baseline-bin-dir", "", "binaries of an earlier Millrace: adds the contender millrace-baseline, run right before millrace (before/after in the same run)")
	fl.StringVar(&p.ksClasspath, "ks-classpath", "", "class path of the Kafka Streams application (hack/peer-bench.sh builds it)")
	fl.StringVar(&p.java, "java", "java", "java command")
	fl.StringVar(&p.workDir, "work-dir", "", "configuration, state and logs of the contenders (default a temporary folder)")
	fl.IntVar(&p.records, "records", 1_000_000, "input records of identity and upper")
	fl.IntVar(&p.lines, "lines", 1_000_000, "input lines (10 words each) of word count")
	fl.IntVar(&p.size, "size", 100, "record value size in bytes (identity, upper)")
	fl.IntVar(&p.partitions, "partitions", 4, "partitions of every topic")
	fl.DurationVar(&p.commitInterval, "commit-interval", 100*time.Millisecond, "commit interval of both")
	jobs := fl.String("jobs", "identity,upper,wordcount", "jobs to run")
	guarantees := fl.String("guarantees", "alo,eos", "guarantees: alo (AtLeastOnce), eos (ExactlyOnce)")
	contenders := fl.String("contenders", "bare,millrace,ks,ks-nocache", "contenders (ks-nocache runs for word count only, bare for identity AtLeastOnce only)")
	fl.DurationVar(&p.timeout, "timeout", 10*time.Minute, "longest a single contender may take")
	smoke := fl.Bool("smoke", false, "a small run (4,000 records and lines) that checks the outputs")
	_ = fl.Parse(args)
	if *bootstrap == "" || p.binDir == "" || p.ksClasspath == "" {
		fail(errors.New("peer: --bootstrap, --bin-dir and --ks-classpath are required (hack/peer-bench.sh sets them)"))
	}
	if *smoke {
		p.records, p.lines = 4000, 4000
	}
	p.bootstrap = strings.Split(*bootstrap, ",")
	p.jobs, p.guarantees, p.contenders = strings.Split(*jobs, ","), strings.Split(*guarantees, ","), strings.Split(*contenders, ",")
	if p.baselineBinDir != "" {
		var cs []string
		for _, c := range p.contenders {
			if c == ctMillrace {
				cs = append(cs, ctBaseline)
			}
			cs = append(cs, c)
		}
		p.contenders = cs
	}
	p.runID = strconv.FormatInt(time.Now().Unix(), 36)
	if p.workDir == "" {
		d, err := os.MkdirTemp("", "millrace-peer-")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(d)
		p.workDir = d
	}
	results, err := runPeer(p)
	printPeer(os.Stdout, p, results)
	if err != nil {
		fail(err)
	}
}

func runPeer(p peerParams) ([]peerResult, error) {
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.bootstrap...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(200_000), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// One input topic per kind of job, written once: every contender reads the same records.
	inputs := map[string]*peerInput{}
	for _, job := range p.jobs {
		kind := "records"
		if job == "wordcount" {
			kind = "lines"
		}
		if inputs[kind] != nil {
			continue
		}
		in := &peerInput{topic: fmt.Sprintf("peer-%s-%s", p.runID, kind)}
		if err := createTopic(ctx, adm, in.topic, p.partitions, nil); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if kind == "lines" {
			err = in.produceLines(ctx, cl, p.lines)
		} else {
			err = in.produceRecords(ctx, cl, p.records, p.size)
		}
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(os.Stderr, "peer: wrote %d %s to %s in %v\n", in.n, kind, in.topic, time.Since(t0).Round(time.Millisecond))
		inputs[kind] = in
	}

	var results []peerResult
	for _, job := range p.jobs {
		in := inputs["records"]
		if job == "wordcount" {
			in = inputs["lines"]
		}
		for _, g := range p.guarantees {
			for _, c := range p.contenders {
				if (c == ctKSNoCache && job != "wordcount") || (c == ctBare && (job != "identity" || g != "alo")) {
					continue
				}
				r, err := runContender(ctx, p, adm, in, job, g, c)
				if err != nil {
					return results, fmt.Errorf("%s %s %s: %w", job, g, c, err)
				}
				fmt.Fprintf(os.Stderr, "peer: %-9s %-3s %-10s %9.0f records/s  %6.2f CPU s per million  (%d outputs, verified; %s)\n",
					job, g, c, r.perSecond, r.cpuPerMillion.Seconds(), r.outputs, r.cpuEach)
				results = append(results, r)
			}
		}
	}
	return results, nil
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int, cfg map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, int32(partitions), 1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// peerInput is an input topic and what a correct job makes of it.
type peerInput struct {
	topic string
	n     int
	// counts is the exact final count of every word (lines only).
	counts map[string]int64
	words  int64
}

// recordValue is input record i of identity and upper: its number, then lower-case letters.
func recordValue(i, size int) []byte {
	v := make([]byte, size)
	copy(v, fmt.Appendf(nil, "%08d ", i))
	for j := 9; j < size; j++ {
		v[j] = byte('a' + (i+j)%26)
	}
	return v
}

func produceAll(ctx context.Context, cl *kgo.Client, n int, rec func(i int) *kgo.Record) error {
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		cl.Produce(ctx, rec(i), func(_ *kgo.Record, err error) {
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

func (in *peerInput) produceRecords(ctx context.Context, cl *kgo.Client, n, size int) error {
	in.n = n
	return produceAll(ctx, cl, n, func(i int) *kgo.Record {
		return &kgo.Record{Topic: in.topic, Key: fmt.Appendf(nil, "%08d", i), Value: recordValue(i, size)}
	})
}

// produceLines writes n lines of 10 words drawn from 1,000 words of 5 to 13 lower-case letters
// (about 100 bytes a line), and remembers how often each word was written.
func (in *peerInput) produceLines(ctx context.Context, cl *kgo.Client, n int) error {
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := make([]string, 1000)
	for i := range vocab {
		w := make([]byte, 5+rng.IntN(9))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		vocab[i] = string(w)
	}
	in.n, in.counts = n, map[string]int64{}
	var line []byte
	return produceAll(ctx, cl, n, func(int) *kgo.Record {
		line = line[:0]
		for j := 0; j < 10; j++ {
			if j > 0 {
				line = append(line, ' ')
			}
			w := vocab[rng.IntN(len(vocab))]
			in.counts[w]++
			line = append(line, w...)
		}
		in.words += 10
		return &kgo.Record{Topic: in.topic, Value: bytes.Clone(line)}
	})
}

// contender is the set of processes of one side.
type contender struct {
	procs []*exec.Cmd
	names []string
	// stopOrder is the order to stop them in (the I/O sidecars first, as the kubelet's
	// preStop order and `millrace run` do).
	stopOrder []*exec.Cmd
	logs      []*os.File
	exited    chan error
}

func (c *contender) start(dir, name string, argv []string, env []string) (*exec.Cmd, error) {
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	c.names = append(c.names, filepath.Base(dir)+"/"+name)
	c.logs = append(c.logs, log)
	go func() {
		err := cmd.Wait()
		select {
		case c.exited <- fmt.Errorf("%s exited: %v (log %s)", name, err, log.Name()):
		default:
		}
	}()
	return cmd, nil
}

// cpu is the user and system CPU time of every process so far, from /proc/<pid>/stat (all
// threads: the JVM's compiler and GC threads count too).
func (c *contender) cpu() ([]time.Duration, error) {
	out := make([]time.Duration, len(c.procs))
	for i, cmd := range c.procs {
		d, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

const clockTicks = 100 // USER_HZ on Linux

func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields are counted after its ')'.
	s := string(b[bytes.LastIndexByte(b, ')')+2:])
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

func (c *contender) stop() {
	order := c.stopOrder
	if order == nil {
		order = c.procs
	}
	for _, cmd := range order {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() {
			for {
				if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
					close(done)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	for _, l := range c.logs {
		l.Close()
	}
}

func runContender(ctx context.Context, p peerParams, adm *kadm.Client, in *peerInput, job, g, ct string) (peerResult, error) {
	res := peerResult{job: job, guarantee: g, contender: ct, inputs: in.n}
	name := fmt.Sprintf("peer-%s-%s-%s-%s", p.runID, job, g, ct)
	dir := filepath.Join(p.workDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	out := name + "-out"
	// The output's timestamps are the broker's append times: the rate is measured by the broker.
	if err := createTopic(ctx, adm, out, p.partitions, map[string]*string{"message.timestamp.type": ptr.To("LogAppendTime")}); err != nil {
		return res, err
	}
	ver, err := newVerifier(p, job, in, out)
	if err != nil {
		return res, err
	}
	defer ver.close()

	c := &contender{exited: make(chan error, 1)}
	switch ct {
	case ctMillrace:
		err = startMillrace(ctx, p, p.binDir, adm, c, dir, name, in, out, job, g)
	case ctBaseline:
		err = startMillrace(ctx, p, p.baselineBinDir, adm, c, dir, name, in, out, job, g)
	case ctBare:
		_, err = c.start(dir, "bare", []string{filepath.Join(p.binDir, "millrace-bench"), "bare", "--bootstrap", strings.Join(p.bootstrap, ","),
			"--in", in.topic, "--out", out, "--group", name, "--commit-interval", p.commitInterval.String()}, os.Environ())
	default:
		err = startKS(p, c, dir, name, in, out, job, g, ct)
	}
	defer c.stop()
	if err != nil {
		return res, err
	}
	res.processes = len(c.procs)

	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	wait := func(cond func() bool) error {
		for !cond() {
			select {
			case err := <-c.exited:
				return err
			case <-ctx.Done():
				return fmt.Errorf("timed out: %s", ver.progress())
			case <-time.After(5 * time.Millisecond):
			}
			if err := ver.failed(); err != nil {
				return err
			}
		}
		return nil
	}
	// CPU is counted from the first output to the last, the same window as the rate: neither the
	// JVM's start nor the sidecars' group join is in it.
	if err := wait(func() bool { return ver.seen() > 0 }); err != nil {
		return res, err
	}
	cpu0, err := c.cpu()
	if err != nil {
		return res, err
	}
	if err := wait(ver.complete); err != nil {
		return res, err
	}
	cpu1, err := c.cpu()
	if err != nil {
		return res, err
	}
	// Anything late (duplicates, counts beyond the expected total) fails the verification:
	// give it one more commit interval to show up.
	time.Sleep(3 * p.commitInterval)
	if err := ver.check(g == "eos"); err != nil {
		return res, err
	}
	first, last := ver.span()
	res.outputs = int(ver.seen())
	res.perSecond = float64(in.n) / last.Sub(first).Seconds()
	var total time.Duration
	var each []string
	for i := range cpu1 {
		d := cpu1[i] - cpu0[i]
		total += d
		each = append(each, fmt.Sprintf("%s %.2f", c.names[i], (time.Duration(float64(d)*1e6/float64(in.n))).Seconds()))
	}
	res.cpuPerMillion = time.Duration(float64(total) * 1e6 / float64(in.n))
	res.cpuEach = strings.Join(each, ", ")
	return res, nil
}

func startKS(p peerParams, c *contender, dir, name string, in *peerInput, out, job, g, ct string) error {
	guarantee := "at_least_once"
	if g == "eos" {
		guarantee = "exactly_once_v2"
	}
	argv := []string{p.java, "-Xms256m", "-Xmx1g", "-cp", p.ksClasspath, "dev.millrace.peerbench.PeerBench",
		"--job", job, "--bootstrap", strings.Join(p.bootstrap, ","), "--app-id", name,
		"--input", in.topic, "--output", out, "--guarantee", guarantee,
		"--commit-ms", strconv.FormatInt(p.commitInterval.Milliseconds(), 10),
		"--state-dir", filepath.Join(dir, "state")}
	if ct == ctKSNoCache {
		argv = append(argv, "--cache-bytes", "0")
	}
	_, err := c.start(dir, "kafka-streams", argv, os.Environ())
	return err
}

// millracePipeline is the job as a Pipeline: identity and upper are one entity, word count is
// split then sum (keyed by word through the words stream, state in the Memory backend).
func millracePipeline(p peerParams, name string, in *peerInput, out, job, g string) (*v1alpha1.Pipeline, error) {
	guarantee := v1alpha1.AtLeastOnce
	if g == "eos" {
		guarantee = v1alpha1.ExactlyOnce
	}
	parts := int32(p.partitions)
	pl := &v1alpha1.Pipeline{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(name, "_", "-"), Namespace: "bench"},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{BootstrapServers: strings.Join(p.bootstrap, ","), Topics: v1alpha1.TopicsDirect},
		},
	}
	stream := func(s, topic string, extra map[string]string) v1alpha1.Stream {
		return v1alpha1.Stream{Name: s, TopicName: topic, Partitions: parts, Replicas: ptr.To(int32(1)), Config: extra}
	}
	logAppend := map[string]string{"message.timestamp.type": "LogAppendTime"}
	switch job {
	case "identity", "upper":
		pl.Spec.Streams = []v1alpha1.Stream{stream("in", in.topic, nil), stream("out", out, logAppend)}
		pl.Spec.Entities = []v1alpha1.Entity{{Name: job, Image: "bench", Command: []string{job}, Inputs: []string{"in"}, Outputs: []string{"out"}, Guarantee: guarantee}}
	case "wordcount":
		pl.Spec.Streams = []v1alpha1.Stream{stream("lines", in.topic, nil), stream("words", name+"-words", nil), stream("counts", out, logAppend)}
		pl.Spec.Entities = []v1alpha1.Entity{
			{Name: "split", Image: "bench", Command: []string{"wordcount-split"}, Inputs: []string{"lines"}, Outputs: []string{"words"}, Guarantee: guarantee},
			{Name: "sum", Image: "bench", Command: []string{"wordcount-sum"}, Inputs: []string{"words"}, Outputs: []string{"counts"}, Guarantee: guarantee,
				State: &v1alpha1.StateSpec{Enabled: true, Backend: v1alpha1.StateMemory}},
		}
	default:
		return nil, fmt.Errorf("unknown job %q", job)
	}
	if errs := validate.Pipeline(context.Background(), pl, nil); len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return validate.Default(pl)
}

func startMillrace(ctx context.Context, p peerParams, binDir string, adm *kadm.Client, c *contender, dir, name string, in *peerInput, out, job, g string) error {
	pl, err := millracePipeline(p, name, in, out, job, g)
	if err != nil {
		return err
	}
	rendered, err := render.Render(pl, render.Facts{})
	if err != nil {
		return err
	}
	for _, t := range rendered.Topics {
		cfg := map[string]*string{}
		for k, v := range t.Config {
			cfg[k] = ptr.To(v)
		}
		if err := createTopic(ctx, adm, t.Name, int(t.Partitions), cfg); err != nil {
			return err
		}
	}
	// Unix socket paths are short: the sockets go to their own temporary folder.
	sockRoot, err := os.MkdirTemp("", "mrp-")
	if err != nil {
		return err
	}
	var ios []*exec.Cmd
	var rest []*exec.Cmd
	for _, e := range pl.Spec.Entities {
		cfg, err := render.ExecutorConfig(pl, e.Name, render.Facts{})
		if err != nil {
			return err
		}
		cfg.Kafka = config.Kafka{BootstrapServers: p.bootstrap}
		cfg.Runtime.CommitInterval = config.Duration{Duration: p.commitInterval}
		cfg.Runtime.SocketDir = filepath.Join(sockRoot, e.Name)
		if cfg.State != nil && cfg.State.Dir != "" {
			cfg.State.Dir = filepath.Join(dir, e.Name, "state")
		}
		b, err := config.Marshal(cfg)
		if err != nil {
			return err
		}
		edir := filepath.Join(dir, e.Name)
		if err := os.MkdirAll(edir, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.Runtime.SocketDir, 0o755); err != nil {
			return err
		}
		cfgPath := filepath.Join(edir, config.FileName)
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			return err
		}
		env := append(os.Environ(), render.EnvConfigFile+"="+cfgPath, "MILLRACE_ORDINAL=0",
			"POD_NAME="+render.StatefulSetName(pl, e.Name)+"-0", "POD_NAMESPACE="+pl.Namespace)
		if cfg.State != nil {
			st, err := c.start(edir, "state", []string{filepath.Join(binDir, "millrace-state"), "--config", cfgPath, "--metrics-addr", "-"}, env)
			if err != nil {
				return err
			}
			rest = append(rest, st)
			waitFile(filepath.Join(cfg.Runtime.SocketDir, cfg.Runtime.StateSocket))
		}
		fnArgv := []string{filepath.Join(binDir, e.Command[0])}
		fnEnv := append(slicesClone(env), render.EnvFunctionSocket+"="+filepath.Join(cfg.Runtime.SocketDir, cfg.Runtime.FunctionSocket))
		if job == "upper" {
			fnArgv = []string{filepath.Join(binDir, "millrace-bench")}
			fnEnv = append(fnEnv, envBenchFunction+"=upper")
		}
		fn, err := c.start(edir, "function", fnArgv, fnEnv)
		if err != nil {
			return err
		}
		waitFile(filepath.Join(cfg.Runtime.SocketDir, cfg.Runtime.FunctionSocket))
		io, err := c.start(edir, "io", []string{filepath.Join(binDir, "millrace-io"), "--config", cfgPath, "--metrics-addr", "-"}, env)
		if err != nil {
			return err
		}
		ios = append(ios, io)
		rest = append([]*exec.Cmd{fn}, rest...)
	}
	c.stopOrder = append(ios, rest...)
	return nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

func waitFile(path string) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
}
