// Package profile writes Go CPU and allocation profiles of an executor process when
// MILLRACE_PROFILE_DIR names a directory: the way to see where the sidecars and a function
// spend their time as deployed, as separate processes (the peer benchmark passes its environment
// to every process it starts). Unset, it does nothing.
package profile

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// EnvDir is the environment variable that turns profiling on.
const EnvDir = "MILLRACE_PROFILE_DIR"

// Start starts a CPU profile of this process into $MILLRACE_PROFILE_DIR/<name>-<pid>.cpu.pprof;
// the returned stop ends it and writes the allocations so far to <name>-<pid>.allocs.pprof.
// Call stop when the process ends normally (after SIGTERM): a killed process leaves an empty
// CPU profile.
func Start(name string) (stop func()) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return func() {}
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%d", name, os.Getpid()))
	f, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		slog.Warn("no CPU profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		slog.Warn("no CPU profile", "err", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		runtime.GC()
		a, err := os.Create(base + ".allocs.pprof")
		if err != nil {
			slog.Warn("no allocation profile", "err", err)
			return
		}
		defer a.Close()
		if err := pprof.Lookup("allocs").WriteTo(a, 0); err != nil {
			slog.Warn("no allocation profile", "err", err)
		}
	}
}
