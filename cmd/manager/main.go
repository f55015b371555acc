// Command manager runs the Millrace operator: the Pipeline reconciler in a controller-runtime
// manager with leader election, health probes and metrics.
package main

import (
	"flag"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/millrace-dev/millrace/controllers/pipeline"
	"github.com/millrace-dev/millrace/controllers/render"
)

func main() {
	var (
		metricsAddr, probeAddr, pprofAddr string
		watchNamespace                    string
		ioImage, stateImage               string
		leaderElect                       bool
		workers                           int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address the metrics endpoint binds to; 0 disables it")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address the /healthz and /readyz probes bind to")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0", "address Go's pprof endpoints bind to; 0 disables them")
	flag.BoolVar(&leaderElect, "leader-elect", false, "elect a leader, so that only one replica of the operator reconciles")
	flag.StringVar(&ioImage, "io-sidecar-image", render.DefaultIOSidecarImage, "image of the executors' I/O sidecar")
	flag.StringVar(&stateImage, "state-sidecar-image", render.DefaultStateSidecarImage, "image of the executors' state sidecar")
	flag.StringVar(&watchNamespace, "watch-namespace", "", "reconcile Pipelines of this namespace only; empty means all namespaces")
	flag.IntVar(&workers, "max-concurrent-reconciles", 4, "Pipelines reconciled at once")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	mo := Options(metricsAddr, probeAddr, watchNamespace, leaderElect)
	mo.PprofBindAddress = pprofAddr
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), mo)
	if err != nil {
		log.Error(err, "create manager")
		os.Exit(1)
	}
	ctx := ctrl.SetupSignalHandler()
	r, err := pipeline.SetupWithManager(ctx, mgr, pipeline.Options{
		Images:                  render.Images{IOSidecar: ioImage, StateSidecar: stateImage},
		MaxConcurrentReconciles: workers,
		Namespace:               watchNamespace,
	})
	if err != nil {
		log.Error(err, "set up the pipeline controller")
		os.Exit(1)
	}
	defer r.Close()
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "add health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "add readiness check")
		os.Exit(1)
	}
	log.Info("starting the Millrace operator", "watchNamespace", watchNamespace, "leaderElect", leaderElect)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "run manager")
		os.Exit(1)
	}
}

// Options are the manager options: the operator's scheme and label-filtered cache, metrics,
// probes and leader election.
func Options(metricsAddr, probeAddr, watchNamespace string, leaderElect bool) ctrl.Options {
	return ctrl.Options{
		Scheme:                        pipeline.Scheme(),
		Cache:                         pipeline.CacheOptions(watchNamespace),
		Metrics:                       metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "millrace-operator.streaming.millrace.dev",
		LeaderElectionReleaseOnCancel: true,
	}
}
