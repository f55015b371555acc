package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/term"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/kafkaio"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/local"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/validate"
)

type runFlags struct {
	file             string
	namespace        string
	bootstrapServers string
	kafkaPort        int
	kafkaDataDir     string
	functions        []string
	binDir           string
	replicas         map[string]string
	inputs           []string
	outputs          []string
	keySeparator     string
	print            string
	untilIdle        bool
	timeout          time.Duration
	interval         time.Duration
	workDir          string
	watch            bool
}

// runStarted, when set (by tests), is called once the Pipeline runs, before the inputs are
// written and progress is followed.
var runStarted func(context.Context, *local.Runner) error

func newRunCommand(streams IO) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run -f FILE",
		Short: "Run a whole Pipeline on this machine, on an embedded Kafka",
		Long: `Run a whole Pipeline on this machine: an embedded Kafka (unless --bootstrap-servers names a
real one) with the Pipeline's topics, and each replica of each entity as local processes: the I/O
sidecar (millrace-io), the state sidecar (millrace-state) when the entity has state, and the
function. These are the binaries and the executor configuration files a pod runs with; editing
the Pipeline file while it runs hot-reloads the entities' configuration, as on a cluster.

The function of an entity is the command given with --function ENTITY=COMMAND, else the entity's
spec.entities[].command (an absolute path from a container image is looked up by its base name).
Programs are found in --bin-dir, next to the millrace executable, then in PATH.

Progress (records in and out per entity, lag) is refreshed in place on a terminal and printed as
lines otherwise. Records are counted in Kafka, so killed processes lose none: in is the records of
the entity's inputs its consumer group committed during the run, out the records its outputs
received during the run (committed ones only, transaction markers not counted); a trailing "+"
means the count is still catching up. Ctrl-C stops cleanly: the I/O sidecars drain and commit, then a summary and the
Pipeline's output streams (those no entity reads) are printed; with --print latest (the default),
the latest value of each key, like a compacted topic.`,
		Example: `  # Build the binaries, then count words until the input is consumed:
  make build
  bin/millrace run -f config/samples/streaming_v1alpha1_pipeline_wordcount.yaml \
    --function split=wordcount-split --function sum=wordcount-sum --bin-dir bin \
    --input lines=input.txt --until-idle

  # Keep it running and feed it from another terminal:
  millrace run -f pipeline.yaml --kafka-port 9092
  millrace produce -f pipeline.yaml lines --bootstrap-servers 127.0.0.1:9092 < more.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runLocal(cmd.Context(), &f, streams) },
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "filename", "f", "", "Pipeline manifest to run")
	_ = cmd.MarkFlagRequired("filename")
	fl.StringVarP(&f.namespace, "namespace", "n", "default", "namespace of a Pipeline whose manifest names none (it is part of default topic names)")
	fl.StringVar(&f.bootstrapServers, "bootstrap-servers", "", "run on this Kafka instead of an embedded one (host:port[,host:port])")
	fl.IntVar(&f.kafkaPort, "kafka-port", 0, "port of the embedded Kafka on 127.0.0.1 (0: any free port)")
	fl.StringVar(&f.kafkaDataDir, "kafka-data-dir", "", "keep the embedded Kafka's data in this folder across runs")
	fl.StringArrayVar(&f.functions, "function", nil, "ENTITY=COMMAND: run the entity's function with this command line (repeatable)")
	fl.StringVar(&f.binDir, "bin-dir", "", "folder searched first for millrace-io, millrace-state and function commands")
	fl.StringToStringVar(&f.replicas, "replicas", nil, "ENTITY=N: run the entity with N replicas instead of its spec's")
	fl.StringArrayVar(&f.inputs, "input", nil, "STREAM=FILE: write the lines of FILE (- for stdin) to the stream at the start (repeatable)")
	fl.StringArrayVar(&f.outputs, "output", nil, "STREAM=FILE: save every record of the stream to FILE at the end (repeatable)")
	fl.StringVar(&f.keySeparator, "key-separator", "", `split input lines into key and value at this separator (for example "\t")`)
	fl.StringVar(&f.print, "print", "latest", "print the output streams at the end: latest (value per key), all, or none")
	fl.BoolVar(&f.untilIdle, "until-idle", false, "stop once every input is consumed and committed (lag 0 everywhere)")
	fl.DurationVar(&f.timeout, "timeout", 0, "stop after this long, idle or not (0: no limit)")
	fl.DurationVar(&f.interval, "progress-interval", time.Second, "how often progress is measured and shown")
	fl.StringVar(&f.workDir, "work-dir", "", "keep configuration files and process logs here (default: a temporary folder, removed at the end)")
	fl.BoolVar(&f.watch, "watch", true, "hot-reload the entities' configuration when the Pipeline file changes")
	return cmd
}

// loadForRun reads, adjusts and validates the Pipeline to run.
func loadForRun(ctx context.Context, f *runFlags, in io.Reader) (*v1alpha1.Pipeline, error) {
	d, err := manifest.ReadOneDocument(f.file, in, f.namespace)
	if err != nil {
		return nil, err
	}
	p := d.Pipeline
	// As written first: the typed Pipeline has lost the zero values the API server rejects.
	if errs := validate.Object(ctx, d.Object, nil); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", f.file, strings.TrimSuffix(invalidMessage(p, errs), "\n"))
	}
	for name, v := range f.replicas {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--replicas %s=%s: want a positive replica count", name, v)
		}
		i := slices.IndexFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("--replicas %s=%s: pipeline %s has no entity %q", name, v, p.Name, name)
		}
		e := &p.Spec.Entities[i]
		e.Autoscaling = nil
		e.Replicas = ptr.To(int32(n))
	}
	if errs := validate.Pipeline(ctx, p, nil); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %s", f.file, strings.TrimSuffix(invalidMessage(p, errs), "\n"))
	}
	return validate.Default(p)
}

func splitAssignment(flag, v string) (string, string, error) {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" {
		return "", "", fmt.Errorf("--%s %q: want NAME=VALUE", flag, v)
	}
	return k, val, nil
}

func runLocal(ctx context.Context, f *runFlags, streams IO) error {
	if f.print != "latest" && f.print != "all" && f.print != "none" {
		return fmt.Errorf("--print %q: want latest, all or none", f.print)
	}
	p, err := loadForRun(ctx, f, streams.In)
	if err != nil {
		return err
	}
	functions := map[string][]string{}
	for _, v := range f.functions {
		name, command, err := splitAssignment("function", v)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == name }) {
			return fmt.Errorf("--function %s: pipeline %s has no entity %q", v, p.Name, name)
		}
		functions[name] = strings.Fields(command)
	}
	type io2 struct{ stream, file string }
	var inputs, outputs []io2
	for _, v := range f.inputs {
		s, file, err := splitAssignment("input", v)
		if err != nil {
			return err
		}
		inputs = append(inputs, io2{s, file})
	}
	for _, v := range f.outputs {
		s, file, err := splitAssignment("output", v)
		if err != nil {
			return err
		}
		outputs = append(outputs, io2{s, file})
	}
	var seeds []string
	if f.bootstrapServers != "" {
		seeds = strings.Split(f.bootstrapServers, ",")
	}
	if p.Spec.Suspend {
		fmt.Fprintln(streams.ErrOut, "spec.suspend is true: a local run ignores it")
	}

	runner, err := local.Start(ctx, local.Options{
		Pipeline: p, BootstrapServers: seeds, KafkaPort: f.kafkaPort, KafkaDataDir: f.kafkaDataDir,
		Functions: functions, BinDir: f.binDir, WorkDir: f.workDir, Log: streams.ErrOut,
	})
	if err != nil {
		return err
	}
	defer runner.Close()
	where := "Kafka"
	if runner.Embedded() {
		where = "embedded Kafka"
	}
	fmt.Fprintf(streams.ErrOut, "pipeline %s/%s running on %s at %s (logs in %s)\n", p.Namespace, p.Name, where, strings.Join(runner.Bootstrap(), ","), runner.WorkDir())
	fmt.Fprintf(streams.ErrOut, "  to feed or tail it from another terminal: export %s=%s\n", EnvBootstrapServers, strings.Join(runner.Bootstrap(), ","))
	if runStarted != nil {
		if err := runStarted(ctx, runner); err != nil {
			return err
		}
	}

	format := kafkaio.Format{KeySeparator: unescape(f.keySeparator)}
	for _, in := range inputs {
		var r io.Reader = streams.In
		if in.file != "-" {
			file, err := os.Open(in.file)
			if err != nil {
				return err
			}
			r = file
			defer file.Close()
		}
		n, err := runner.Produce(ctx, in.stream, r, format)
		if err != nil {
			return err
		}
		fmt.Fprintf(streams.ErrOut, "wrote %d records from %s to stream %s\n", n, in.file, in.stream)
	}

	runCtx := ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	view := newProgressView(streams.ErrOut)
	watcher := newFileWatcher(f.file)
	streak := 0
	ticker := time.NewTicker(f.interval)
	defer ticker.Stop()
	stopReason := "interrupted"
loop:
	for {
		progress := runner.Progress(runCtx)
		view.show(progress)
		if f.untilIdle {
			if local.Idle(progress) {
				streak++
			} else {
				streak = 0
			}
			// Two idle measurements in a row: the second sees what the last commit of the first
			// may have produced.
			if streak >= 2 {
				stopReason = "idle: every input consumed"
				break
			}
		}
		if f.watch && f.file != "-" && watcher.changed() {
			reload(runCtx, f, runner, streams)
		}
		select {
		case <-runCtx.Done():
			if ctx.Err() == nil {
				stopReason = "timeout"
			}
			break loop
		case <-ticker.C:
		}
	}
	view.done()
	fmt.Fprintf(streams.ErrOut, "stopping (%s): draining and committing\n", stopReason)
	stopErr := runner.Stop()

	final, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writeSummary(streams.ErrOut, runner.Progress(final))
	for _, out := range outputs {
		recs, err := runner.ReadStream(final, out.stream)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		for _, r := range recs {
			writeLine(&b, r)
		}
		if err := os.WriteFile(out.file, b.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(streams.ErrOut, "saved %d records of stream %s to %s\n", len(recs), out.stream, out.file)
	}
	if f.print != "none" {
		for _, s := range runner.Sinks() {
			recs, err := runner.ReadStream(final, s)
			if err != nil {
				return err
			}
			if f.print == "latest" {
				recs = latestPerKey(recs)
			}
			fmt.Fprintf(streams.ErrOut, "stream %s (%d records%s):\n", s, len(recs), map[bool]string{true: ", latest per key", false: ""}[f.print == "latest"])
			for _, r := range recs {
				writeLine(streams.Out, r)
			}
		}
	}
	if stopErr != nil {
		return fmt.Errorf("stop: %w", stopErr)
	}
	if stopReason == "timeout" && f.untilIdle {
		return fmt.Errorf("the pipeline was not idle after %v", f.timeout)
	}
	return nil
}

func reload(ctx context.Context, f *runFlags, runner *local.Runner, streams IO) {
	p, err := loadForRun(ctx, f, streams.In)
	if err != nil {
		fmt.Fprintf(streams.ErrOut, "%s changed but is not applied: %v\n", f.file, err)
		return
	}
	changed, err := runner.Reload(p)
	switch {
	case err != nil:
		fmt.Fprintf(streams.ErrOut, "%s changed but is not applied: %v\n", f.file, err)
	case len(changed) == 0:
		fmt.Fprintf(streams.ErrOut, "%s changed; no entity's configuration differs\n", f.file)
	default:
		fmt.Fprintf(streams.ErrOut, "%s changed: reloaded the configuration of %s\n", f.file, strings.Join(changed, ", "))
	}
}

// writeLine prints a record as "key<TAB>value", or the value alone when it has no key.
func writeLine(w io.Writer, r *kgo.Record) {
	if r.Key != nil {
		fmt.Fprintf(w, "%s\t%s\n", r.Key, r.Value)
		return
	}
	fmt.Fprintf(w, "%s\n", r.Value)
}

// latestPerKey keeps the last record of each key, sorted by key, as a compacted topic would
// (in offset order per partition, which is the order of a key's records); records without a key
// are all kept, after the keyed ones.
func latestPerKey(recs []*kgo.Record) []*kgo.Record {
	latest := map[string]*kgo.Record{}
	var keyless []*kgo.Record
	for _, r := range recs {
		if r.Key == nil {
			keyless = append(keyless, r)
			continue
		}
		latest[string(r.Key)] = r
	}
	var out []*kgo.Record
	for _, k := range sortedKeys(latest) {
		out = append(out, latest[k])
	}
	return append(out, keyless...)
}

func sortedKeys(m map[string]*kgo.Record) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func writeSummary(w io.Writer, progress []local.EntityProgress) {
	fmt.Fprintln(w, "summary:")
	writeProgressTable(w, progress)
}

func writeProgressTable(w io.Writer, progress []local.EntityProgress) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tREPLICAS\tIN\tOUT\tDEAD-LETTERED\tLAG\tRESTARTS")
	for _, ep := range progress {
		lag := strconv.FormatInt(ep.Lag, 10)
		if ep.LagErr != nil {
			lag = "?"
		}
		in, out := counts(ep)
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%d\t%s\t%d\n", ep.Entity, ep.Running, ep.Replicas, in, out, ep.DeadLettered, lag, ep.Restarts)
	}
	tw.Flush()
}

// counts shows an entity's records in and out: "?" when Kafka could not tell, and a trailing
// "+" while the runner is still reading up to what they count.
func counts(ep local.EntityProgress) (in, out string) {
	if ep.CountErr != nil {
		return "?", "?"
	}
	in, out = strconv.FormatInt(ep.In, 10), strconv.FormatInt(ep.Out, 10)
	if !ep.Counted {
		in, out = in+"+", out+"+"
	}
	return in, out
}

// progressView shows progress in place on a terminal, as lines when it changes otherwise.
type progressView struct {
	w        io.Writer
	tty      bool
	lines    int
	last     string
	lastTime time.Time
}

func newProgressView(w io.Writer) *progressView {
	v := &progressView{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		v.tty = true
	}
	return v
}

func (v *progressView) show(progress []local.EntityProgress) {
	if v.tty {
		var b bytes.Buffer
		writeProgressTable(&b, progress)
		if v.lines > 0 {
			// Up to the first line of the previous table, then clear to the end of the screen.
			fmt.Fprintf(v.w, "\x1b[%dA\x1b[J", v.lines)
		}
		v.lines = bytes.Count(b.Bytes(), []byte("\n"))
		v.w.Write(b.Bytes())
		return
	}
	var parts []string
	for _, ep := range progress {
		lag := strconv.FormatInt(ep.Lag, 10)
		if ep.LagErr != nil {
			lag = "?"
		}
		in, out := counts(ep)
		parts = append(parts, fmt.Sprintf("%s in=%s out=%s lag=%s replicas=%d/%d", ep.Entity, in, out, lag, ep.Running, ep.Replicas))
	}
	line := "progress: " + strings.Join(parts, "; ")
	// Plain output (a log, CI) gets a line when something changed, and at most every 10 s
	// when it keeps changing.
	if line != v.last && (v.last == "" || time.Since(v.lastTime) >= 10*time.Second || isQuiet(progress)) {
		fmt.Fprintln(v.w, line)
		v.last, v.lastTime = line, time.Now()
	}
}

// isQuiet reports whether every lag is zero: worth a line even if the last was recent.
func isQuiet(progress []local.EntityProgress) bool { return local.Idle(progress) }

func (v *progressView) done() { v.lines = 0 }

// fileWatcher notices when a file's content changes.
type fileWatcher struct {
	path string
	data []byte
}

func newFileWatcher(path string) *fileWatcher {
	w := &fileWatcher{path: path}
	w.data, _ = os.ReadFile(path)
	return w
}

func (w *fileWatcher) changed() bool {
	data, err := os.ReadFile(w.path)
	if err != nil || bytes.Equal(data, w.data) {
		return false
	}
	w.data = data
	return true
}
