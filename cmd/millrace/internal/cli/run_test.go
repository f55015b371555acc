package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/kafkaio"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/local"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the executor runtime and the word count functions, as `make build` does, into
// a temporary folder shared by the tests.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "millrace-bin-")
		if err != nil {
			buildErr = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/millrace-io", "./cmd/millrace-state", "./cmd/wordcount-split", "./cmd/wordcount-sum")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	stopEnvtest()
	os.Exit(code)
}

var vocabulary = strings.Fields("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango")

// corpus returns n lines of random words.
func corpus(seed uint64, n int) []string {
	r := rand.New(rand.NewPCG(seed, seed))
	lines := make([]string, n)
	for i := range lines {
		words := make([]string, 1+r.IntN(8))
		for j := range words {
			words[j] = vocabulary[r.IntN(len(vocabulary))]
			if r.IntN(5) == 0 {
				words[j] = strings.ToUpper(words[j][:1]) + words[j][1:] + ","
			}
		}
		lines[i] = strings.Join(words, " ")
	}
	return lines
}

// truth counts the words of lines as the word count defines a word: a lower-cased run of
// letters and digits.
func truth(lines []string) map[string]int {
	out := map[string]int{}
	for _, l := range lines {
		for _, w := range strings.FieldsFunc(l, func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsNumber(c) }) {
			out[strings.ToLower(w)]++
		}
	}
	return out
}

// parseCounts reads the "word<TAB>count" lines run prints.
func parseCounts(t *testing.T, out string) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		w, n, ok := strings.Cut(l, "\t")
		c, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("output line %q is not word<TAB>count", l)
		}
		got[w] = c
	}
	return got
}

func writeLines(t *testing.T, lines []string) string {
	path := filepath.Join(t.TempDir(), "input.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunWordCountSample(t *testing.T) {
	bin := binaries(t)
	input, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "samples", "wordcount-input.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := append(strings.Split(strings.TrimSpace(string(input)), "\n"), corpus(7, 300)...)
	want := truth(lines)
	saved := filepath.Join(t.TempDir(), "counts.txt")
	res := run(t, "millrace", "", "run", "-f", samplePath(t), "--bin-dir", bin,
		"--input", "lines="+writeLines(t, lines), "--output", "counts="+saved, "--until-idle", "--timeout", "3m")
	if res.code != 0 {
		t.Fatalf("run: exit %d\nstderr:\n%s", res.code, res.errOut)
	}
	got := parseCounts(t, res.out)
	if len(got) != len(want) {
		t.Errorf("run printed %d words, want %d", len(got), len(want))
	}
	for w, n := range want {
		if got[w] != n {
			t.Errorf("word %q: count %d, want %d", w, got[w], n)
		}
	}
	for w := range got {
		if _, ok := want[w]; !ok {
			t.Errorf("word %q was counted but never written", w)
		}
	}
	if !strings.Contains(res.errOut, "stopping (idle: every input consumed)") {
		t.Errorf("run did not stop because it was idle:\n%s", res.errOut)
	}
	// The saved stream holds every count the sum emitted: with ExactlyOnce, exactly one record
	// per word occurrence.
	all, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range want {
		total += n
	}
	if n := strings.Count(string(all), "\n"); n != total {
		t.Errorf("saved %d count records, want one per word occurrence, %d", n, total)
	}
}

// TestRunSurvivesKilledProcesses kills processes of both entities while the word count runs
// and checks the counts: exact when every entity is ExactlyOnce, never below the truth when an
// entity is AtLeastOnce (the sample's split replays what it had not committed).
func TestRunSurvivesKilledProcesses(t *testing.T) {
	bin := binaries(t)
	sample, err := os.ReadFile(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.Pipeline
	if err := yaml.UnmarshalStrict(sample, &p); err != nil {
		t.Fatal(err)
	}
	allExactlyOnce := p.DeepCopy()
	for i := range allExactlyOnce.Spec.Entities {
		allExactlyOnce.Spec.Entities[i].Guarantee = v1alpha1.ExactlyOnce
	}
	exactFile := filepath.Join(t.TempDir(), "wordcount-exactly-once.yaml")
	y, err := yaml.Marshal(allExactlyOnce)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exactFile, y, 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		reason string
		file   string
		exact  bool
	}{
		{reason: "the sample (split AtLeastOnce, sum ExactlyOnce): never below the truth", file: samplePath(t)},
		{reason: "every entity ExactlyOnce: exact", file: exactFile, exact: true},
	}
	for _, tc := range cases {
		t.Run(tc.reason, func(t *testing.T) {
			lines := corpus(11, 1000)
			want := truth(lines)
			var killed []string
			runStarted = func(ctx context.Context, r *local.Runner) error {
				// The first half, then kills once counts come out, then the second half: the
				// processes die with work before and after them.
				if _, err := r.Produce(ctx, "lines", strings.NewReader(strings.Join(lines[:500], "\n")), kafkaio.Format{}); err != nil {
					return err
				}
				deadline := time.Now().Add(2 * time.Minute)
				for {
					progress := r.Progress(ctx)
					if progress[1].Out > 0 {
						break
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("no counts came out: %+v", progress)
					}
					time.Sleep(50 * time.Millisecond)
				}
				for _, target := range []struct {
					entity    string
					ordinal   int
					container string
				}{{"split", 0, local.ContainerFunction}, {"sum", 0, local.ContainerIO}, {"sum", 1, local.ContainerState}} {
					proc := r.Process(target.entity, target.ordinal, target.container)
					if proc == nil {
						return fmt.Errorf("no process %s-%d/%s", target.entity, target.ordinal, target.container)
					}
					if err := proc.Signal(syscall.SIGKILL); err != nil {
						return err
					}
					killed = append(killed, proc.String())
				}
				_, err := r.Produce(ctx, "lines", strings.NewReader(strings.Join(lines[500:], "\n")), kafkaio.Format{})
				return err
			}
			defer func() { runStarted = nil }()
			res := run(t, "millrace", "", "run", "-f", tc.file, "--bin-dir", bin, "--until-idle", "--timeout", "4m")
			if res.code != 0 {
				t.Fatalf("run: exit %d\nstderr:\n%s", res.code, res.errOut)
			}
			if len(killed) != 3 {
				t.Fatalf("killed %v, want 3 processes", killed)
			}
			for _, k := range killed {
				if !strings.Contains(res.errOut, k+" exited") {
					t.Errorf("run did not report that %s exited:\n%s", k, res.errOut)
				}
			}
			got := parseCounts(t, res.out)
			for w, n := range want {
				switch {
				case tc.exact && got[w] != n:
					t.Errorf("word %q: count %d, want exactly %d", w, got[w], n)
				case got[w] < n:
					t.Errorf("word %q: count %d, below the truth %d", w, got[w], n)
				}
			}
			if len(got) != len(want) {
				t.Errorf("run printed %d words, want %d", len(got), len(want))
			}
		})
	}
}

// summaryCounts reads the IN and OUT columns of the summary table run prints at the end.
func summaryCounts(t *testing.T, errOut string) map[string][2]int64 {
	t.Helper()
	_, table, ok := strings.Cut(errOut, "summary:\n")
	if !ok {
		t.Fatalf("run printed no summary:\n%s", errOut)
	}
	got := map[string][2]int64{}
	for _, l := range strings.Split(table, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) != 7 {
			break
		}
		in, err1 := strconv.ParseInt(f[2], 10, 64)
		out, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("summary line %q: IN and OUT are not complete counts", l)
		}
		got[f[0]] = [2]int64{in, out}
	}
	return got
}

// TestRunCountsSurviveKilledIOSidecars SIGKILLs the I/O sidecar of both entities after they
// have handled the first half of the input, before progress is first measured, and checks that
// the summary's records in and out still count every record (issue 10 item 10): the counts come
// from Kafka, not from the metrics the killed sidecars took with them. On a real broker too when
// MILLRACE_KAFKA_BOOTSTRAP is set.
func TestRunCountsSurviveKilledIOSidecars(t *testing.T) {
	bin := binaries(t)
	sample, err := os.ReadFile(samplePath(t))
	if err != nil {
		t.Fatal(err)
	}
	type variant struct {
		name, bootstrap string
		exactlyOnce     bool
	}
	variants := []variant{{name: "kfake, the sample"}, {name: "kfake, every entity ExactlyOnce", exactlyOnce: true}}
	if b := os.Getenv("MILLRACE_KAFKA_BOOTSTRAP"); b != "" {
		variants = append(variants, variant{name: "real broker, every entity ExactlyOnce", bootstrap: b, exactlyOnce: true})
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			var p v1alpha1.Pipeline
			if err := yaml.UnmarshalStrict(sample, &p); err != nil {
				t.Fatal(err)
			}
			// Its own topics and groups on a shared broker.
			p.Name = fmt.Sprintf("wordcount-kill-%d", time.Now().UnixNano())
			if v.exactlyOnce {
				for i := range p.Spec.Entities {
					p.Spec.Entities[i].Guarantee = v1alpha1.ExactlyOnce
				}
			}
			file := filepath.Join(t.TempDir(), "pipeline.yaml")
			y, err := yaml.Marshal(&p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, y, 0o644); err != nil {
				t.Fatal(err)
			}
			lines := corpus(13, 1000)
			words := int64(0)
			for _, n := range truth(lines) {
				words += int64(n)
			}
			firstHalfWords := int64(0)
			for _, n := range truth(lines[:500]) {
				firstHalfWords += int64(n)
			}
			runStarted = func(ctx context.Context, r *local.Runner) error {
				if _, err := r.Produce(ctx, "lines", strings.NewReader(strings.Join(lines[:500], "\n")), kafkaio.Format{}); err != nil {
					return err
				}
				// Wait, in Kafka, for the counts of the first half: the sidecars to kill have
				// handled them, and progress (the sidecars' metrics) has not been read yet.
				cl, err := kgo.NewClient(kgo.SeedBrokers(r.Bootstrap()...))
				if err != nil {
					return err
				}
				defer cl.Close()
				adm := kadm.NewClient(cl)
				counts, err := r.TopicOf("counts")
				if err != nil {
					return err
				}
				deadline := time.Now().Add(2 * time.Minute)
				for {
					ends, err := adm.ListCommittedOffsets(ctx, counts)
					total := int64(0)
					if err == nil {
						ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
					}
					if total >= firstHalfWords {
						break
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("the counts of the first half did not come out (%d offsets of %d)", total, firstHalfWords)
					}
					time.Sleep(50 * time.Millisecond)
				}
				for _, e := range []string{"split", "sum"} {
					proc := r.Process(e, 0, local.ContainerIO)
					if proc == nil {
						return fmt.Errorf("no process %s-0/%s", e, local.ContainerIO)
					}
					if err := proc.Signal(syscall.SIGKILL); err != nil {
						return err
					}
				}
				_, err = r.Produce(ctx, "lines", strings.NewReader(strings.Join(lines[500:], "\n")), kafkaio.Format{})
				return err
			}
			defer func() { runStarted = nil }()
			args := []string{"run", "-f", file, "--bin-dir", bin, "--until-idle", "--timeout", "4m", "--print", "none"}
			if v.bootstrap != "" {
				args = append(args, "--bootstrap-servers", v.bootstrap)
			}
			res := run(t, "millrace", "", args...)
			if res.code != 0 {
				t.Fatalf("run: exit %d\nstderr:\n%s", res.code, res.errOut)
			}
			for _, e := range []string{"split", "sum"} {
				if !strings.Contains(res.errOut, e+"-0/"+local.ContainerIO+" exited") {
					t.Errorf("run did not report that the I/O sidecar of %s exited:\n%s", e, res.errOut)
				}
			}
			got := summaryCounts(t, res.errOut)
			split, sum := got["split"], got["sum"]
			if split[0] != int64(len(lines)) {
				t.Errorf("split: %d records in, want the %d lines", split[0], len(lines))
			}
			switch {
			case v.exactlyOnce && split[1] != words:
				t.Errorf("split (ExactlyOnce): %d records out, want exactly the %d words", split[1], words)
			case split[1] < words:
				t.Errorf("split (AtLeastOnce): %d records out, below the %d words", split[1], words)
			}
			if sum[0] != split[1] {
				t.Errorf("sum: %d records in, want every record split wrote, %d", sum[0], split[1])
			}
			// The sum writes one count per word it reads, exactly once.
			if sum[1] != sum[0] {
				t.Errorf("sum: %d records out, want one per record in, %d", sum[1], sum[0])
			}
			if t.Failed() {
				t.Logf("stderr:\n%s", res.errOut)
			}
		})
	}
}
