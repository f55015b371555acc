package iosidecar

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	recordsIn    *prometheus.CounterVec
	recordsOut   *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	batchLatency prometheus.Histogram
	functionLat  prometheus.Histogram
	lag          *prometheus.GaugeVec
	commits      *prometheus.CounterVec
	rebalances   prometheus.Counter
	assigned     *prometheus.GaugeVec
	sessions     *prometheus.CounterVec
	inFlight     prometheus.Gauge
	// droppedDeleted counts the partitions of dropped inputs whose committed offsets the pod
	// deleted; droppedWaiting is the number of dropped inputs whose offsets are still in the
	// group (waiting for an heir to commit or for a member to stop reading them).
	droppedDeleted *prometheus.CounterVec
	droppedWaiting *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	lat := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m := &metrics{
		recordsIn:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_records_in_total", Help: "Input records handed to the function."}, []string{"topic"}),
		recordsOut:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_records_out_total", Help: "Output records produced."}, []string{"topic"}),
		deadLettered:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_records_dead_lettered_total", Help: "Input records sent to the dead-letter topic."}, []string{"topic"}),
		batchLatency:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "millrace_batch_latency_seconds", Help: "Time from fetching a batch to handling its result.", Buckets: lat}),
		functionLat:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "millrace_function_latency_seconds", Help: "Round trip of a batch over the function socket.", Buckets: lat}),
		lag:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "millrace_consumer_lag", Help: "Records between the consumer's position and the high watermark, per assigned partition."}, []string{"topic", "partition"}),
		commits:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_commits_total", Help: "Commit intervals by result: committed, aborted or failed."}, []string{"result"}),
		rebalances:     prometheus.NewCounter(prometheus.CounterOpts{Name: "millrace_rebalances_total", Help: "Assignment changes seen by this pod."}),
		assigned:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "millrace_assigned_partitions", Help: "Partitions of each input topic assigned to this pod."}, []string{"topic"}),
		sessions:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_sessions_total", Help: "Sessions (Kafka client, function stream, state session) by how they ended."}, []string{"end"}),
		inFlight:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "millrace_batches_in_flight", Help: "Batches sent to the function and not yet answered."}),
		droppedDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "millrace_dropped_input_offsets_deleted_total", Help: "Partitions of inputs the entity no longer reads whose committed offsets this pod deleted from the group."}, []string{"topic"}),
		droppedWaiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "millrace_dropped_inputs_pending", Help: "Inputs the entity no longer reads whose committed offsets are still in the group, by what the deletion waits for: heirs (the entities that take them over have not committed yet), subscribed (a member still reads them), deleted (deleted, not yet seen gone) or error."}, []string{"reason"}),
	}
	reg.MustRegister(m.recordsIn, m.recordsOut, m.deadLettered, m.batchLatency, m.functionLat, m.lag, m.commits, m.rebalances, m.assigned, m.sessions, m.inFlight, m.droppedDeleted, m.droppedWaiting)
	return m
}
