// Command millrace-io is the Millrace I/O sidecar.
//
//	millrace-io --config /etc/millrace/config/executor.json
//
// The pod ordinal comes from MILLRACE_ORDINAL, else the -N suffix of POD_NAME or the hostname.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/profile"
)

func main() {
	var cfgPath, metricsAddr, socketDir, functionSocket string
	cmd := &cobra.Command{
		Use:           "millrace-io",
		Short:         "Millrace I/O sidecar: Kafka in, function over a Unix socket, Kafka out",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(iosidecar.GCPercent) // see iosidecar.GCPercent for why
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			var opts []iosidecar.Option
			if socketDir != "" {
				opts = append(opts, iosidecar.WithSocketDir(socketDir))
			}
			if metricsAddr != "" {
				opts = append(opts, iosidecar.WithMetricsAddr(metricsAddr, nil))
			}
			if functionSocket != "" {
				opts = append(opts, iosidecar.WithFunctionSocket(functionSocket))
			}
			defer profile.Start("millrace-io")()
			return iosidecar.Run(ctx, cfgPath, opts...)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.PathFromEnv(), "path of executor.json (default: $"+config.EnvFile+", else "+config.DefaultPath+")")
	cmd.Flags().StringVar(&socketDir, "socket-dir", "", "directory of the pod's Unix sockets (default runtime.socketDir)")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", `listen address of /metrics, /healthz, /readyz (default ":<runtime.metricsPort>"; "-" disables)`)
	cmd.Flags().StringVar(&functionSocket, "function-socket", "", "path of the function socket (default runtime.socketDir/runtime.functionSocket)")
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		slog.Error("millrace-io failed", "err", err)
		os.Exit(1)
	}
}
