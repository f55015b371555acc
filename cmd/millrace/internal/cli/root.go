// Package cli is the command tree of millrace (and of kubectl-millrace, the same binary run as a
// kubectl plugin).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// PluginBinary is the name kubectl looks for to run `kubectl millrace`.
const PluginBinary = "kubectl-millrace"

// IO are the streams a command reads and writes; tests swap them for buffers.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// exitError ends the program with a code after the command has already said why.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// DisplayName is how usage names the program: `kubectl millrace` when the binary runs as the
// kubectl plugin, else `millrace`.
func DisplayName(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if base == PluginBinary {
		return "kubectl millrace"
	}
	return "millrace"
}

// Main runs the command line args (args[0] is the program) and returns the exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The first Ctrl-C asks for a clean stop; a second one, with the default handler back,
	// ends the program at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	argv0 := "millrace"
	if len(args) > 0 {
		argv0, args = args[0], args[1:]
	}
	return Run(ctx, DisplayName(argv0), args, IO{In: in, Out: out, ErrOut: errOut})
}

// Run runs args against the command tree named name, and returns the exit code.
func Run(ctx context.Context, name string, args []string, streams IO) int {
	root := NewRoot(name, streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var exit exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.code
	default:
		fmt.Fprintf(streams.ErrOut, "Error: %v\n", err)
		return 1
	}
}

// NewRoot builds the command tree.
func NewRoot(name string, streams IO) *cobra.Command {
	root := &cobra.Command{
		Use:   strings.ReplaceAll(name, " ", "-"),
		Short: "Run, check and operate Millrace stream processing Pipelines",
		Long: `Millrace runs stream processing Pipelines on Kubernetes, on Kafka.

Try a Pipeline on this machine, without a cluster (an embedded Kafka unless --bootstrap-servers):
  ` + name + ` run -f pipeline.yaml --input lines=input.txt --until-idle

Check and inspect a Pipeline offline:
  ` + name + ` validate -f pipeline.yaml
  ` + name + ` render -f pipeline.yaml
  ` + name + ` graph -f pipeline.yaml
  ` + name + ` plan -f new.yaml --old deployed.yaml

Operate Pipelines on a cluster (installed as kubectl-millrace, this is "kubectl millrace"):
  ` + name + ` status
  ` + name + ` diff -f pipeline.yaml
  ` + name + ` history PIPELINE / rollback PIPELINE --to-revision N
  ` + name + ` suspend PIPELINE / resume PIPELINE / scale PIPELINE ENTITY --replicas N`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.CompletionOptions.DisableDefaultCmd = true

	root.AddGroup(
		&cobra.Group{ID: "local", Title: "Local mode (no cluster needed):"},
		&cobra.Group{ID: "offline", Title: "Offline tools (no cluster needed):"},
		&cobra.Group{ID: "cluster", Title: "On a cluster (kubeconfig, --context and --namespace as kubectl):"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("local", newRunCommand(streams), newProduceCommand(streams), newConsumeCommand(streams))
	add("offline", newValidateCommand(streams), newRenderCommand(streams), newGraphCommand(streams), newPlanCommand(streams))
	cluster := newClusterFlags()
	add("cluster",
		newStatusCommand(streams, cluster),
		newDiffCommand(streams, cluster),
		newHistoryCommand(streams, cluster),
		newRollbackCommand(streams, cluster),
		newSuspendCommand(streams, cluster, true),
		newSuspendCommand(streams, cluster, false),
		newScaleCommand(streams, cluster),
	)
	return root
}
