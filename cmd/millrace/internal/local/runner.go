// Package local runs a whole Pipeline on one machine: an embedded Kafka (franz-go's kfake, in
// process) or a real broker, the Pipeline's topics, and each replica of each entity as local
// processes (the I/O sidecar, the state sidecar, the function), with the same binaries and the
// same executor configuration files as in a pod, hot reload included.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/kafkaio"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// Binaries of the executor runtime, looked up in Options.BinDir, next to the running millrace
// executable, then in PATH.
const (
	IOBinary    = "millrace-io"
	StateBinary = "millrace-state"
)

// Options configure a local run.
type Options struct {
	// Pipeline is the validated, defaulted Pipeline to run.
	Pipeline *v1alpha1.Pipeline
	// BootstrapServers of a real Kafka; empty starts an embedded one.
	BootstrapServers []string
	// KafkaPort is the port of the embedded Kafka on 127.0.0.1; 0 picks a free one.
	KafkaPort int
	// KafkaDataDir, when set, persists the embedded Kafka there across runs.
	KafkaDataDir string
	// Functions maps an entity to the command line of its function; entities not listed run
	// their spec.entities[].command.
	Functions map[string][]string
	// BinDir is searched first for the sidecars and for function commands without a "/".
	BinDir string
	// WorkDir holds configuration files and logs; empty uses a temporary folder removed by Close.
	WorkDir string
	// Log receives what the runner does (not the processes' output, which goes to log files).
	Log io.Writer
}

// Runner is a running local Pipeline.
type Runner struct {
	opts      Options
	p         *v1alpha1.Pipeline
	seeds     []string
	fake      *kfake.Cluster
	admin     *kadm.Client
	client    *kgo.Client
	workDir   string
	ownWork   bool
	socketDir string
	topics    []render.Topic

	mu        sync.Mutex
	replicas  map[string][]*replica
	order     []string // entities, producers before consumers
	stopped   bool
	lastInput map[string]int

	// Where counting started (see counts.go): per entity on its inputs, and on every stream.
	inFrom  map[string]baseline
	outFrom map[string]map[int32]int64
	counter *recordCounter
}

// replica is one pod's worth of processes.
type replica struct {
	entity     string
	ordinal    int
	dir        string
	configPath string
	config     []byte
	processes  []*Process // in start order: state, function, io
}

// Start starts Kafka, creates the topics and starts every replica.
func Start(ctx context.Context, o Options) (_ *Runner, err error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	r := &Runner{opts: o, p: o.Pipeline.DeepCopy(), replicas: map[string][]*replica{}}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.workDir = o.WorkDir; r.workDir == "" {
		if r.workDir, err = os.MkdirTemp("", "millrace-run-"); err != nil {
			return nil, err
		}
		r.ownWork = true
	} else if err = os.MkdirAll(r.workDir, 0o755); err != nil {
		return nil, err
	}
	// Unix socket paths are limited to about 100 bytes: sockets go to a short temporary folder.
	if r.socketDir, err = os.MkdirTemp("", "mr-"); err != nil {
		return nil, err
	}
	if err = r.startKafka(); err != nil {
		return nil, err
	}
	if err = r.createTopics(ctx); err != nil {
		return nil, err
	}
	if err = r.startCounting(ctx); err != nil {
		return nil, err
	}
	r.order = entityOrder(r.p)
	for _, name := range r.order {
		if err = r.startEntity(ctx, entity(r.p, name)); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *Runner) logf(format string, args ...any) { fmt.Fprintf(r.opts.Log, format+"\n", args...) }

func (r *Runner) startKafka() error {
	if len(r.opts.BootstrapServers) > 0 {
		r.seeds = r.opts.BootstrapServers
	} else {
		opts := []kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second)}
		if r.opts.KafkaPort != 0 {
			opts = append(opts, kfake.Ports(r.opts.KafkaPort))
		}
		if r.opts.KafkaDataDir != "" {
			opts = append(opts, kfake.DataDir(r.opts.KafkaDataDir))
		}
		fake, err := kfake.NewCluster(opts...)
		if err != nil {
			return fmt.Errorf("start the embedded Kafka: %w", err)
		}
		r.fake, r.seeds = fake, fake.ListenAddrs()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.seeds...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	r.client, r.admin = cl, kadm.NewClient(cl)
	return nil
}

// Bootstrap is the address of the Kafka the Pipeline runs on.
func (r *Runner) Bootstrap() []string { return r.seeds }

// Embedded reports whether the runner started its own Kafka.
func (r *Runner) Embedded() bool { return r.fake != nil }

// WorkDir holds the configuration files and the processes' logs.
func (r *Runner) WorkDir() string { return r.workDir }

// Topics are the topics of the Pipeline.
func (r *Runner) Topics() []render.Topic { return r.topics }

func (r *Runner) createTopics(ctx context.Context) error {
	res, err := render.Render(r.p, render.Facts{})
	if err != nil {
		return err
	}
	r.topics = res.Topics
	for _, t := range r.topics {
		replication := int16(-1)
		if r.fake != nil {
			replication = 1
		} else if t.Replicas != nil {
			replication = int16(*t.Replicas)
		}
		cfg := map[string]*string{}
		for k, v := range t.Config {
			cfg[k] = ptr.To(v)
		}
		resp, err := r.admin.CreateTopic(ctx, t.Partitions, replication, cfg, t.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
			r.logf("topic %s exists", t.Name)
		case err != nil:
			return fmt.Errorf("create topic %s: %w", t.Name, err)
		default:
			r.logf("created topic %s (%d partitions)", t.Name, t.Partitions)
		}
	}
	return nil
}

// Replicas is the number of replicas an entity runs locally: its fixed replicas, or the
// minimum of its autoscaling range but at least one (there is no KEDA locally), as the operator
// runs it when KEDA is not installed.
func Replicas(e *v1alpha1.Entity) int {
	switch {
	case e.Autoscaling != nil:
		return int(max(ptr.Deref(e.Autoscaling.MinReplicas, 0), 1))
	case e.Replicas != nil:
		return int(*e.Replicas)
	case e.Assignment != nil && len(e.Assignment.Partitions) > 0:
		return len(e.Assignment.Partitions)
	default:
		return 1
	}
}

// executorConfig is the entity's executor configuration as the operator renders it, pointed at
// the local Kafka. Credentials are a cluster's concern: locally there are none.
func (r *Runner) executorConfig(p *v1alpha1.Pipeline, e *v1alpha1.Entity) (*config.Executor, error) {
	cfg, err := render.ExecutorConfig(p, e.Name, render.Facts{})
	if err != nil {
		return nil, err
	}
	cfg.Kafka = config.Kafka{BootstrapServers: slices.Clone(r.seeds)}
	return cfg, nil
}

// replicaConfig is the configuration file of one replica: the entity's, with the replica's own
// socket folder and state folder.
func (r *Runner) replicaConfig(cfg *config.Executor, rep *replica) ([]byte, error) {
	c := *cfg
	c.Runtime.SocketDir = rep.dir
	if c.State != nil {
		st := *c.State
		if st.Dir != "" {
			st.Dir = filepath.Join(r.workDir, fmt.Sprintf("%s-%d", rep.entity, rep.ordinal), "state")
		}
		c.State = &st
	}
	return config.Marshal(&c)
}

func (r *Runner) functionCommand(e *v1alpha1.Entity) ([]string, error) {
	argv := r.opts.Functions[e.Name]
	if len(argv) == 0 {
		argv = e.Command
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("entity %q has no local function: give one with --function %s=COMMAND, or set spec.entities[].command", e.Name, e.Name)
	}
	bin, err := r.lookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("function of entity %q: %w", e.Name, err)
	}
	return append([]string{bin}, argv[1:]...), nil
}

// lookPath finds a program: a path as given, else in BinDir, next to this executable, or in PATH.
func (r *Runner) lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		abs, err := filepath.Abs(name)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err == nil || !filepath.IsAbs(name) {
			return abs, err
		}
		// An absolute path is usually the function's path inside its container image
		// (spec.entities[].command): locally, the binary of that name is looked up instead.
		name = filepath.Base(name)
	}
	var dirs []string
	if r.opts.BinDir != "" {
		dirs = append(dirs, r.opts.BinDir)
	}
	if self, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Dir(self))
	}
	for _, d := range dirs {
		candidate := filepath.Join(d, name)
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
			return filepath.Abs(candidate)
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	where := "PATH"
	if r.opts.BinDir != "" {
		where = r.opts.BinDir + " or PATH"
	}
	return "", fmt.Errorf("%s not found in %s: build it (make build puts every binary in bin/) or pass --bin-dir", name, where)
}

func (r *Runner) startEntity(ctx context.Context, e *v1alpha1.Entity) error {
	cfg, err := r.executorConfig(r.p, e)
	if err != nil {
		return err
	}
	fn, err := r.functionCommand(e)
	if err != nil {
		return err
	}
	ioBin, err := r.lookPath(IOBinary)
	if err != nil {
		return err
	}
	stateBin := ""
	if cfg.State != nil {
		if stateBin, err = r.lookPath(StateBinary); err != nil {
			return err
		}
	}
	n := Replicas(e)
	r.logf("starting entity %s: %d replica(s), function %s", e.Name, n, strings.Join(fn, " "))
	for ord := 0; ord < n; ord++ {
		rep := &replica{entity: e.Name, ordinal: ord, dir: filepath.Join(r.socketDir, fmt.Sprintf("%s-%d", e.Name, ord))}
		if err := os.MkdirAll(rep.dir, 0o755); err != nil {
			return err
		}
		confDir := filepath.Join(r.workDir, fmt.Sprintf("%s-%d", e.Name, ord))
		if err := os.MkdirAll(confDir, 0o755); err != nil {
			return err
		}
		rep.configPath = filepath.Join(confDir, config.FileName)
		if rep.config, err = r.replicaConfig(cfg, rep); err != nil {
			return err
		}
		if err := writeConfig(confDir, rep.config); err != nil {
			return err
		}
		env := append(os.Environ(),
			render.EnvConfigFile+"="+rep.configPath,
			"MILLRACE_ORDINAL="+strconv.Itoa(ord),
			fmt.Sprintf("POD_NAME=%s-%d", render.StatefulSetName(r.p, e.Name), ord),
			"POD_NAMESPACE="+r.p.Namespace,
		)
		newProcess := func(container string, argv, env []string) *Process {
			return &Process{Entity: e.Name, Ordinal: ord, Container: container, argv: argv, env: env,
				logPath: filepath.Join(confDir, container+".log")}
		}
		if cfg.State != nil {
			rep.processes = append(rep.processes, newProcess(ContainerState,
				[]string{stateBin, "--config", rep.configPath, "--metrics-addr", "-"}, env))
		}
		fnEnv := append([]string(nil), env...)
		for _, v := range e.Env {
			if v.ValueFrom != nil {
				r.logf("entity %s: env %s comes from %s, which exists only on a cluster; it is left unset", e.Name, v.Name, "valueFrom")
				continue
			}
			fnEnv = append(fnEnv, v.Name+"="+v.Value)
		}
		fnEnv = append(fnEnv, render.EnvFunctionSocket+"="+filepath.Join(rep.dir, cfg.Runtime.FunctionSocket))
		rep.processes = append(rep.processes, newProcess(ContainerFunction, fn, fnEnv))
		port, err := freePort()
		if err != nil {
			return err
		}
		io := newProcess(ContainerIO, []string{ioBin, "--config", rep.configPath, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port)}, env)
		io.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		rep.processes = append(rep.processes, io)

		for _, p := range rep.processes {
			if err := p.start(r.onExit); err != nil {
				return err
			}
			// The I/O sidecar needs the function's socket (and the state sidecar's) to open a
			// session; waiting for them saves it a failed session and a back-off.
			switch p.Container {
			case ContainerFunction:
				waitForFile(ctx, filepath.Join(rep.dir, cfg.Runtime.FunctionSocket), 10*time.Second)
			case ContainerState:
				waitForFile(ctx, filepath.Join(rep.dir, cfg.Runtime.StateSocket), 10*time.Second)
			}
		}
		r.mu.Lock()
		r.replicas[e.Name] = append(r.replicas[e.Name], rep)
		r.mu.Unlock()
	}
	return nil
}

func (r *Runner) onExit(p *Process, err error) {
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if !stopped {
		r.logf("%s exited (%v); restarting it (log: %s)", p, err, p.logPath)
	}
}

func waitForFile(ctx context.Context, path string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeConfig writes executor.json the way the kubelet updates a mounted ConfigMap: into a new
// folder, then an atomic swap of the ..data link the file points through, so a reader never
// sees half a file.
func writeConfig(dir string, data []byte) error {
	ts := filepath.Join(dir, fmt.Sprintf("..%d", time.Now().UnixNano()))
	if err := os.Mkdir(ts, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ts, config.FileName), data, 0o644); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	if old != "" {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	link := filepath.Join(dir, config.FileName)
	if _, err := os.Lstat(link); err != nil {
		return os.Symlink(filepath.Join("..data", config.FileName), link)
	}
	return nil
}

// Processes lists every process of every replica.
func (r *Runner) Processes() []*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Process
	for _, name := range r.order {
		for _, rep := range r.replicas[name] {
			out = append(out, rep.processes...)
		}
	}
	return out
}

// Process finds the container of a replica of an entity.
func (r *Runner) Process(entity string, ordinal int, container string) *Process {
	for _, p := range r.Processes() {
		if p.Entity == entity && p.Ordinal == ordinal && p.Container == container {
			return p
		}
	}
	return nil
}

// TopicOf is the Kafka topic of a stream.
func (r *Runner) TopicOf(stream string) (string, error) {
	for _, s := range r.p.Spec.Streams {
		if s.Name == stream {
			return render.TopicName(r.p, stream), nil
		}
	}
	return "", fmt.Errorf("pipeline %s has no stream %q", r.p.Name, stream)
}

// Produce writes the lines of in to a stream.
func (r *Runner) Produce(ctx context.Context, stream string, in io.Reader, f kafkaio.Format) (int, error) {
	topic, err := r.TopicOf(stream)
	if err != nil {
		return 0, err
	}
	return kafkaio.Produce(ctx, r.client, topic, in, f)
}

// ReadStream returns the committed records of a stream up to its current end.
func (r *Runner) ReadStream(ctx context.Context, stream string) ([]*kgo.Record, error) {
	topic, err := r.TopicOf(stream)
	if err != nil {
		return nil, err
	}
	return kafkaio.ReadAll(ctx, r.seeds, topic)
}

// Sinks are the streams no entity reads: the Pipeline's outputs.
func (r *Runner) Sinks() []string {
	read := map[string]bool{}
	for _, e := range r.p.Spec.Entities {
		for _, in := range e.Inputs {
			read[in] = true
		}
	}
	var out []string
	for _, s := range r.p.Spec.Streams {
		if !read[s.Name] {
			out = append(out, s.Name)
		}
	}
	return out
}

// Stop shuts the Pipeline down cleanly: the I/O sidecars first, which stop fetching, wait for
// the function's answers, produce and commit; then the functions and the state sidecars.
func (r *Runner) Stop() error {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return nil
	}
	r.stopped = true
	r.mu.Unlock()
	procs := r.Processes()
	var errs []error
	stopAll := func(container string, grace time.Duration) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, p := range procs {
			if p.Container != container {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := p.stop(grace); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	// The I/O sidecar's own drain is bounded by 20s (Kubernetes' grace period is 30s).
	stopAll(ContainerIO, 30*time.Second)
	stopAll(ContainerFunction, 10*time.Second)
	stopAll(ContainerState, 10*time.Second)
	return errors.Join(errs...)
}

// Close stops everything still running and releases Kafka and the temporary folders.
func (r *Runner) Close() {
	_ = r.Stop()
	r.counter.close()
	if r.client != nil {
		r.client.Close()
	}
	if r.fake != nil {
		r.fake.Close()
	}
	if r.socketDir != "" {
		os.RemoveAll(r.socketDir)
	}
	if r.ownWork && r.workDir != "" {
		os.RemoveAll(r.workDir)
	}
}

func entity(p *v1alpha1.Pipeline, name string) *v1alpha1.Entity {
	for i := range p.Spec.Entities {
		if p.Spec.Entities[i].Name == name {
			return &p.Spec.Entities[i]
		}
	}
	return nil
}

// entityOrder lists entities producers first, so the lag of consumers is read after the lag of
// their producers.
func entityOrder(p *v1alpha1.Pipeline) []string {
	writers := map[string][]string{}
	for _, e := range p.Spec.Entities {
		for _, o := range e.Outputs {
			writers[o] = append(writers[o], e.Name)
		}
	}
	placed := map[string]bool{}
	var out []string
	for len(out) < len(p.Spec.Entities) {
		progress := false
		for _, e := range p.Spec.Entities {
			if placed[e.Name] {
				continue
			}
			ready := true
			for _, in := range e.Inputs {
				for _, w := range writers[in] {
					if !placed[w] {
						ready = false
					}
				}
			}
			if ready {
				placed[e.Name], progress = true, true
				out = append(out, e.Name)
			}
		}
		if !progress {
			for _, e := range p.Spec.Entities {
				if !placed[e.Name] {
					placed[e.Name] = true
					out = append(out, e.Name)
				}
			}
		}
	}
	return out
}
