package render

import (
	"fmt"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// Metrics the alert rules use.
//
// Exposed by the executor sidecars on their metrics ports (labels topic and partition where
// noted; the ServiceMonitor adds namespace, pod, and the pipeline and entity labels of the
// Service as streaming_millrace_dev_pipeline and streaming_millrace_dev_entity):
//
//	millrace_records_in_total             counter  records read from an input (topic, partition)
//	millrace_records_out_total            counter  records written to an output (topic)
//	millrace_records_dead_lettered_total  counter  records sent to a dead-letter topic (topic)
//	millrace_consumer_lag                 gauge    end offset minus committed offset (topic, partition)
//
// From kube-state-metrics, which the rules expect Prometheus to scrape:
//
//	kube_statefulset_replicas               desired replicas (namespace, statefulset)
//	kube_statefulset_status_replicas_ready  ready replicas (namespace, statefulset)
const (
	MetricRecordsIn           = "millrace_records_in_total"
	MetricRecordsOut          = "millrace_records_out_total"
	MetricRecordsDeadLettered = "millrace_records_dead_lettered_total"
	MetricConsumerLag         = "millrace_consumer_lag"

	// Label names Prometheus gives the Service labels listed in the ServiceMonitor's
	// targetLabels: invalid characters become underscores.
	promLabelPipeline = "streaming_millrace_dev_pipeline"
	promLabelEntity   = "streaming_millrace_dev_entity"
)

func monitoringEnabled(p *v1alpha1.Pipeline, f Facts) bool {
	return p.Spec.Monitoring != nil && p.Spec.Monitoring.Enabled && f.PrometheusOperator
}

func monitoringLabels(p *v1alpha1.Pipeline) map[string]string {
	own := PipelineLabels(p)
	own[LabelComponent] = ComponentMonitoring
	return mergeLabels(own, p.Spec.Monitoring.Labels)
}

// serviceMonitor scrapes every executor of the pipeline through the entities' headless
// Services, and copies their pipeline and entity labels onto the series so alerts can name the
// entity.
func serviceMonitor(p *v1alpha1.Pipeline) *monitoringv1.ServiceMonitor {
	interval := monitoringv1.Duration(p.Spec.Monitoring.Interval)
	endpoints := []monitoringv1.Endpoint{{Port: PortMetrics, Path: "/metrics", Interval: interval}}
	for i := range p.Spec.Entities {
		if stateEnabled(&p.Spec.Entities[i]) {
			endpoints = append(endpoints, monitoringv1.Endpoint{Port: PortStateMetrics, Path: "/metrics", Interval: interval})
			break
		}
	}
	return &monitoringv1.ServiceMonitor{
		TypeMeta:   metav1.TypeMeta{APIVersion: monitoringv1.SchemeGroupVersion.String(), Kind: monitoringv1.ServiceMonitorsKind},
		ObjectMeta: objectMeta(p, ServiceMonitorName(p), monitoringLabels(p)),
		Spec: monitoringv1.ServiceMonitorSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{
				LabelPipeline:  p.Name,
				LabelComponent: ComponentExecutor,
				LabelManagedBy: ValueManagedBy,
			}},
			NamespaceSelector: monitoringv1.NamespaceSelector{MatchNames: []string{p.Namespace}},
			Endpoints:         endpoints,
			TargetLabels:      []string{LabelPipeline, LabelEntity},
		},
	}
}

// prometheusRule holds the pipeline's alerts. Each is scoped to this pipeline's series, so that
// alerts of several pipelines never mix, and each says what to look at next.
func prometheusRule(p *v1alpha1.Pipeline) *monitoringv1.PrometheusRule {
	sel := fmt.Sprintf(`namespace=%q,%s=%q`, p.Namespace, promLabelPipeline, p.Name)
	var sets []string
	for _, e := range p.Spec.Entities {
		sets = append(sets, StatefulSetName(p, e.Name))
	}
	stsSel := fmt.Sprintf(`namespace=%q,statefulset=~%q`, p.Namespace, strings.Join(sets, "|"))
	by := fmt.Sprintf("namespace, %s, topic", promLabelEntity)

	rules := []monitoringv1.Rule{
		{
			Alert: "MillraceConsumerLagGrowing",
			// Lag that has only grown for ten minutes means the entity consumes slower than
			// its inputs are produced: it needs more replicas, or it is stuck.
			Expr: intstr.FromString(fmt.Sprintf(
				`sum by (%[1]s) (%[2]s{%[3]s}) > 0 and sum by (%[1]s) (deriv(%[2]s{%[3]s}[10m])) > 0`,
				by, MetricConsumerLag, sel)),
			For:    ptr.To(monitoringv1.Duration("10m")),
			Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     "Consumer lag of a Millrace entity has grown for 10 minutes.",
				"description": fmt.Sprintf("Entity {{ $labels.%s }} of pipeline %s/%s falls behind on topic {{ $labels.topic }}. Check its executors' logs and CPU; raise replicas or autoscaling.maxReplicas (up to the input partitions).", promLabelEntity, p.Namespace, p.Name),
			},
		},
		{
			Alert: "MillraceRecordsDeadLettered",
			Expr: intstr.FromString(fmt.Sprintf(
				`sum by (%s) (increase(%s{%s}[5m])) > 0`, by, MetricRecordsDeadLettered, sel)),
			Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     "A Millrace entity sends records to a dead-letter topic.",
				"description": fmt.Sprintf("Entity {{ $labels.%s }} of pipeline %s/%s could not process records of {{ $labels.topic }}; they are in {{ $labels.topic }}.dlq. Inspect them and the function's logs.", promLabelEntity, p.Namespace, p.Name),
			},
		},
		{
			Alert: "MillraceExecutorsNotReady",
			Expr: intstr.FromString(fmt.Sprintf(
				`kube_statefulset_status_replicas_ready{%[1]s} < on (namespace, statefulset) kube_statefulset_replicas{%[1]s}`, stsSel)),
			For:    ptr.To(monitoringv1.Duration("10m")),
			Labels: map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     "Executors of a Millrace entity are not ready.",
				"description": fmt.Sprintf("StatefulSet {{ $labels.statefulset }} of pipeline %s/%s has had fewer ready pods than desired for 10 minutes. Check `kubectl describe pod` and the io sidecar's /readyz.", p.Namespace, p.Name),
			},
		},
	}
	return &monitoringv1.PrometheusRule{
		TypeMeta:   metav1.TypeMeta{APIVersion: monitoringv1.SchemeGroupVersion.String(), Kind: monitoringv1.PrometheusRuleKind},
		ObjectMeta: objectMeta(p, PrometheusRuleName(p), monitoringLabels(p)),
		Spec: monitoringv1.PrometheusRuleSpec{
			Groups: []monitoringv1.RuleGroup{{Name: "millrace-" + p.Namespace + "-" + p.Name, Rules: rules}},
		},
	}
}
