package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/cmd/millrace/internal/kafkaio"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/local"
	"github.com/millrace-dev/millrace/cmd/millrace/internal/manifest"
	"github.com/millrace-dev/millrace/controllers/validate"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// TestRunReloadsConfiguration changes an entity's configuration while the Pipeline runs: the
// replicas' executor.json files change in place (as a ConfigMap's do), and a change of shape is
// refused.
func TestRunReloadsConfiguration(t *testing.T) {
	bin := binaries(t)
	work := t.TempDir()
	if d := os.Getenv("MILLRACE_TEST_WORK"); d != "" {
		work = d
	}
	runStarted = func(ctx context.Context, r *local.Runner) error {
		// Reload a Pipeline that is processing: counts have come out.
		if _, err := r.Produce(ctx, "lines", strings.NewReader("one two\nthree"), kafkaio.Format{}); err != nil {
			return err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for r.Progress(ctx)[1].Out < 3 {
			if time.Now().After(deadline) {
				t.Fatal("no counts came out")
			}
			time.Sleep(50 * time.Millisecond)
		}
		p, err := manifest.ReadOne(samplePath(t), nil, "default")
		if err != nil {
			return err
		}
		p.Spec.Entities[1].Config = map[string]string{"greeting": "hello"}
		if p, err = validate.Default(p); err != nil {
			return err
		}
		changed, err := r.Reload(p)
		if err != nil {
			t.Errorf("reload of a config change: %v", err)
		}
		if strings.Join(changed, ",") != "sum-0,sum-1" {
			t.Errorf("reload changed %v, want the two replicas of sum", changed)
		}
		for _, replica := range []string{"sum-0", "sum-1"} {
			cfg, err := config.Load(filepath.Join(work, replica, config.FileName))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.UserConfig["greeting"] != "hello" {
				t.Errorf("%s: userConfig %v after reload, want greeting=hello", replica, cfg.UserConfig)
			}
		}
		p.Spec.Entities[1].Replicas = nil
		if _, err := r.Reload(p); err == nil || !strings.Contains(err.Error(), "the replicas of entity sum changed: restart millrace run") {
			t.Errorf("reload of a replica change: %v, want a refusal", err)
		}
		return nil
	}
	defer func() { runStarted = nil }()
	res := run(t, "millrace", "", "run", "-f", samplePath(t), "--bin-dir", bin, "--work-dir", work, "--until-idle", "--timeout", "2m")
	if res.code != 0 {
		t.Fatalf("run: exit %d\nstderr:\n%s", res.code, res.errOut)
	}
	if _, err := os.Stat(filepath.Join(work, "sum-1", "io.log")); err != nil {
		t.Errorf("the work folder lacks the I/O sidecar's log: %v", err)
	}
}
