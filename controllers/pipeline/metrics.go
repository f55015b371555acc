package pipeline

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Millrace's own metrics, served with controller-runtime's on the manager's metrics endpoint.
var (
	pipelinesByPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "millrace_pipelines",
		Help: "Pipelines by phase.",
	}, []string{"phase"})
	reconcileErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_reconcile_errors_total",
		Help: "Reconciles of Pipelines that failed, by reason.",
	}, []string{"reason"})
	childrenApplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "millrace_children_applied_total",
		Help: "Children written by server-side apply, by kind. Applies skipped because nothing changed are not counted.",
	}, []string{"kind"})
)

func init() {
	metrics.Registry.MustRegister(pipelinesByPhase, reconcileErrors, childrenApplied)
	for _, ph := range []v1alpha1.Phase{v1alpha1.PhasePending, v1alpha1.PhaseRunning, v1alpha1.PhaseDegraded, v1alpha1.PhaseSuspended, v1alpha1.PhaseFailed} {
		pipelinesByPhase.WithLabelValues(string(ph)).Set(0)
	}
}

// phases remembers the phase of every Pipeline to keep millrace_pipelines{phase} exact.
var phases = struct {
	sync.Mutex
	m map[types.NamespacedName]v1alpha1.Phase
}{m: map[types.NamespacedName]v1alpha1.Phase{}}

func recordPhase(key types.NamespacedName, ph v1alpha1.Phase) {
	phases.Lock()
	defer phases.Unlock()
	old, ok := phases.m[key]
	if ok && old == ph {
		return
	}
	if ok {
		pipelinesByPhase.WithLabelValues(string(old)).Dec()
	}
	phases.m[key] = ph
	pipelinesByPhase.WithLabelValues(string(ph)).Inc()
}

func forgetPhase(key types.NamespacedName) {
	phases.Lock()
	defer phases.Unlock()
	if old, ok := phases.m[key]; ok {
		pipelinesByPhase.WithLabelValues(string(old)).Dec()
		delete(phases.m, key)
	}
}
