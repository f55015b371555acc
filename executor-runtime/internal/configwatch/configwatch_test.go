package configwatch

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// writeConfigMap lays a config out as kubelet does: a timestamped directory, a `..data` symlink
// to it swapped atomically, and the file a symlink through `..data`.
func writeConfigMap(t *testing.T, dir string, c *config.Executor, n int) {
	t.Helper()
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(dir, "..v"+string(rune('0'+n)))
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, config.FileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, config.FileName)); err != nil {
		if err := os.Symlink(filepath.Join("..data", config.FileName), filepath.Join(dir, config.FileName)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatchSeesASymlinkSwapAndIgnoresInvalidFiles(t *testing.T) {
	dir := t.TempDir()
	c := &config.Executor{
		APIVersion: config.APIVersion, Entity: "e", GroupID: "g",
		Kafka:  config.Kafka{BootstrapServers: []string{"k:9092"}},
		Inputs: []config.Input{{Stream: "in", Topic: "in", DeadLetterTopic: "in.dlq"}},
	}
	writeConfigMap(t, dir, c, 1)
	path := filepath.Join(dir, config.FileName)
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *config.Executor, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Watch(ctx, path, 10*time.Millisecond, first, slog.New(slog.DiscardHandler), func(c *config.Executor, _ []byte) { got <- c })

	// An invalid update is ignored...
	bad := *c
	bad.GroupID = ""
	writeConfigMap(t, dir, &bad, 2)
	// ...and the next valid one is delivered.
	c.UserConfig = map[string]string{"k": "v2"}
	writeConfigMap(t, dir, c, 3)
	select {
	case u := <-got:
		if u.UserConfig["k"] != "v2" {
			t.Fatalf("update has user config %v, want k=v2", u.UserConfig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the swapped config was never delivered")
	}
	select {
	case u := <-got:
		t.Fatalf("unexpected second update %+v", u)
	case <-time.After(100 * time.Millisecond):
	}
}
