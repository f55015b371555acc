// Package configwatch notices when the mounted executor config changes.
//
// Kubernetes updates a mounted ConfigMap by writing a new timestamped directory and swapping the
// `..data` symlink to it; the file itself is a symlink through `..data`. Watching the file with
// inotify misses that swap, so this package re-reads the file (following the symlinks) on an
// interval and compares contents, which sees every kind of update at the cost of one small read.
package configwatch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// DefaultInterval is how often the file is read.
const DefaultInterval = time.Second

// Watch calls onChange with each new valid configuration at path until ctx ends. A file that does
// not parse is logged and ignored: the running configuration stays in force.
func Watch(ctx context.Context, path string, interval time.Duration, current []byte, log *slog.Logger, onChange func(*config.Executor, []byte)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := current
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			log.Warn("read executor config", "path", path, "err", err)
			continue
		}
		if bytes.Equal(b, last) {
			continue
		}
		cfg, err := config.Parse(b)
		if err != nil {
			log.Error("ignoring invalid executor config update", "path", path, "err", err)
			last = b
			continue
		}
		last = b
		onChange(cfg, b)
	}
}
