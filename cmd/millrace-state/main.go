// Command millrace-state is the Millrace state sidecar.
//
//	millrace-state --config /etc/millrace/config/executor.json
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/profile"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

func main() {
	var cfgPath, metricsAddr, socketDir string
	cmd := &cobra.Command{
		Use:           "millrace-state",
		Short:         "Millrace state sidecar: per-partition key-value state backed by a changelog topic",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			var opts []state.Option
			if socketDir != "" {
				opts = append(opts, state.WithSocketDir(socketDir))
			}
			if metricsAddr != "" {
				opts = append(opts, state.WithMetricsAddr(metricsAddr, nil))
			}
			defer profile.Start("millrace-state")()
			return state.Run(ctx, cfgPath, opts...)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.PathFromEnv(), "path of executor.json (default: $"+config.EnvFile+", else "+config.DefaultPath+")")
	cmd.Flags().StringVar(&socketDir, "socket-dir", "", "directory of the pod's Unix sockets (default runtime.socketDir)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", `listen address of /metrics, /healthz, /readyz (default ":<runtime.stateMetricsPort>"; "-" disables)`)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		slog.Error("millrace-state failed", "err", err)
		os.Exit(1)
	}
}
