package reconfig

import (
	"time"

	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/validate"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// TestEveryFieldIsClassified walks the Go type of the spec: a field added to the API without a
// rule fails here, as does a rule whose field no longer exists.
func TestEveryFieldIsClassified(t *testing.T) {
	fields := Fields()
	if len(fields) < 40 {
		t.Fatalf("the walk found only %d fields of PipelineSpec: %v", len(fields), fields)
	}
	for _, f := range fields {
		r, ok := Lookup(f)
		if !ok {
			t.Errorf("field %s has no rule in reconfig.Rules: classify it (Hot, Scale, Rolling, Structural or Refused)", f)
			continue
		}
		if r.Class.Rank() < 0 {
			t.Errorf("field %s: unknown class %q", f, r.Class)
		}
		if r.Effect == "" {
			t.Errorf("field %s: the rule says nothing of its effect", f)
		}
	}
	seen := map[string]bool{}
	for _, r := range Rules {
		if seen[r.Path] {
			t.Errorf("rule %s appears twice", r.Path)
		}
		seen[r.Path] = true
		if !slices.Contains(fields, r.Path) {
			t.Errorf("rule %s names no field of PipelineSpec", r.Path)
		}
	}
}

// TestWalkSeesNestedFields keeps the walk honest: it must see fields at every depth, lists'
// items, optional structs themselves, and stop at Kubernetes' own types.
func TestWalkSeesNestedFields(t *testing.T) {
	fields := Fields()
	for _, want := range []string{
		"spec.kafka.authentication.secretName", "spec.streams", "spec.streams[].partitions",
		"spec.entities[].autoscaling", "spec.entities[].autoscaling.cooldownPeriod", "spec.entities[].resources",
		"spec.suspend",
	} {
		if !slices.Contains(fields, want) {
			t.Errorf("the walk misses %s", want)
		}
	}
	for _, f := range fields {
		if strings.HasPrefix(f, "spec.entities[].resources.") || f == "spec.kafka" {
			t.Errorf("the walk lists %s: Kubernetes' types and plain structs are not fields of their own", f)
		}
	}
}

// base is a Pipeline using every feature, so that each field's change has something to act on:
// authentication, an autoscaled entity, a Static stateful ExactlyOnce entity, monitoring.
func base() *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Pipeline"},
		ObjectMeta: metav1.ObjectMeta{Name: "wc", Namespace: "team", UID: "3f1c2a9e-0000-4000-8000-000000000002"},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "my-cluster", Authentication: &v1alpha1.KafkaAuthentication{Type: v1alpha1.AuthScramSha512}},
			Streams: []v1alpha1.Stream{
				{Name: "lines", Partitions: 6},
				{Name: "words", Partitions: 6, Config: map[string]string{"retention.ms": "3600000"}},
				{Name: "counts", Partitions: 1},
			},
			Entities: []v1alpha1.Entity{
				{Name: "split", Image: "example.com/split:v1", Command: []string{"split"}, Inputs: []string{"lines"}, Outputs: []string{"words"},
					Autoscaling: &v1alpha1.AutoscalingSpec{MaxReplicas: 6}},
				{Name: "sum", Image: "example.com/sum:v1", Command: []string{"sum"}, Inputs: []string{"words"}, Outputs: []string{"counts"},
					Replicas: ptr.To[int32](2), Assignment: &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic},
					Guarantee: v1alpha1.ExactlyOnce, State: &v1alpha1.StateSpec{Enabled: true}, Config: map[string]string{"window": "1m"},
					Runtime: &v1alpha1.EntityRuntime{SessionTimeout: &metav1.Duration{Duration: 20 * time.Second}, LivenessTimeout: &metav1.Duration{Duration: 5 * time.Minute}}},
			},
			Monitoring:           &v1alpha1.MonitoringSpec{Enabled: true},
			RevisionHistoryLimit: ptr.To[int32](10),
		},
	}
	d, err := validate.Default(p)
	if err != nil {
		panic(err)
	}
	return d
}

func entity(p *v1alpha1.Pipeline, name string) *v1alpha1.Entity {
	for i := range p.Spec.Entities {
		if p.Spec.Entities[i].Name == name {
			return &p.Spec.Entities[i]
		}
	}
	panic("no entity " + name)
}

func stream(p *v1alpha1.Pipeline, name string) *v1alpha1.Stream {
	for i := range p.Spec.Streams {
		if p.Spec.Streams[i].Name == name {
			return &p.Spec.Streams[i]
		}
	}
	panic("no stream " + name)
}

// mutation changes one field of base. reported is the contract field Changes must report when it
// is not the field itself (a renamed item is reported as an item removed and one added).
type mutation struct {
	mutate   func(p *v1alpha1.Pipeline)
	reported []string
	// from, when set, is the Pipeline the mutation starts from instead of base (a field that is
	// valid only with other settings).
	from func() *v1alpha1.Pipeline
}

// mutations changes each field of the contract; TestClassesMatchRender fails on a field without
// one, so every rule is checked.
var mutations = map[string]mutation{
	"spec.kafka.strimziCluster":      {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.StrimziCluster = "other-cluster" }},
	"spec.kafka.bootstrapServers":    {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.BootstrapServers = "kafka.example.com:9092" }},
	"spec.kafka.topics":              {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Topics = v1alpha1.TopicsDirect }},
	"spec.kafka.authentication":      {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Authentication = nil }},
	"spec.kafka.authentication.type": {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Authentication.Type = v1alpha1.AuthTLS }},
	"spec.kafka.authentication.adminSecretName": {
		from: func() *v1alpha1.Pipeline {
			p := base()
			p.Spec.Kafka.Topics = v1alpha1.TopicsDirect
			p.Spec.Kafka.StrimziCluster, p.Spec.Kafka.BootstrapServers = "", "kafka.example.com:9092"
			p.Spec.Kafka.Authentication.SecretName = "executors"
			return p
		},
		mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Authentication.AdminSecretName = "topic-admin" },
	},
	"spec.kafka.authentication.secretName": {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Kafka.Authentication.SecretName = "my-credentials" }},
	"spec.streams": {mutate: func(p *v1alpha1.Pipeline) {
		p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "extra", Partitions: 1, DeletionPolicy: v1alpha1.DeletionRetain})
	}},
	"spec.streams[].name": {mutate: func(p *v1alpha1.Pipeline) {
		stream(p, "counts").Name = "totals"
		entity(p, "sum").Outputs = []string{"totals"}
	}, reported: []string{"spec.streams", "spec.entities[].outputs"}},
	"spec.streams[].topicName":      {mutate: func(p *v1alpha1.Pipeline) { stream(p, "counts").TopicName = "legacy.counts" }},
	"spec.streams[].partitions":     {mutate: func(p *v1alpha1.Pipeline) { stream(p, "counts").Partitions = 3 }},
	"spec.streams[].replicas":       {mutate: func(p *v1alpha1.Pipeline) { stream(p, "lines").Replicas = ptr.To[int32](3) }},
	"spec.streams[].config":         {mutate: func(p *v1alpha1.Pipeline) { stream(p, "words").Config["retention.ms"] = "7200000" }},
	"spec.streams[].deletionPolicy": {mutate: func(p *v1alpha1.Pipeline) { stream(p, "lines").DeletionPolicy = v1alpha1.DeletionDelete }},
	"spec.entities": {mutate: func(p *v1alpha1.Pipeline) {
		p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: "audit", Image: "example.com/audit:v1", Inputs: []string{"counts"}, Guarantee: v1alpha1.AtLeastOnce})
	}},
	"spec.entities[].name":     {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Name = "splitter" }, reported: []string{"spec.entities"}},
	"spec.entities[].image":    {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Image = "example.com/sum:v2" }},
	"spec.entities[].command":  {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Command = []string{"sum", "--fast"} }},
	"spec.entities[].inputs":   {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Inputs = []string{"words", "lines"} }},
	"spec.entities[].outputs":  {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Outputs = []string{"words", "counts"} }},
	"spec.entities[].replicas": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Replicas = ptr.To[int32](3) }},
	"spec.entities[].autoscaling": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "split").Autoscaling = nil
	}},
	"spec.entities[].autoscaling.minReplicas":            {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.MinReplicas = ptr.To[int32](1) }},
	"spec.entities[].autoscaling.maxReplicas":            {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.MaxReplicas = 3 }},
	"spec.entities[].autoscaling.lagThreshold":           {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.LagThreshold = 500 }},
	"spec.entities[].autoscaling.activationLagThreshold": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.ActivationLagThreshold = 5 }},
	"spec.entities[].autoscaling.pollingInterval":        {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.PollingInterval = 30 }},
	"spec.entities[].autoscaling.cooldownPeriod":         {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Autoscaling.CooldownPeriod = ptr.To[int32](0) }},
	"spec.entities[].assignment": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "split").Assignment = &v1alpha1.AssignmentSpec{Mode: v1alpha1.AssignmentStatic}
	}},
	"spec.entities[].assignment.mode": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Assignment.Mode = v1alpha1.AssignmentGroup }},
	"spec.entities[].assignment.partitions": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Assignment.Partitions = []v1alpha1.PartitionList{{0, 2, 4}, {1, 3, 5}}
	}},
	"spec.entities[].runtime": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "split").Runtime = &v1alpha1.EntityRuntime{LivenessTimeout: &metav1.Duration{Duration: time.Minute}}
	}},
	"spec.entities[].runtime.sessionTimeout": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Runtime.SessionTimeout = &metav1.Duration{Duration: 30 * time.Second}
	}},
	"spec.entities[].runtime.livenessTimeout": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Runtime.LivenessTimeout = &metav1.Duration{Duration: 10 * time.Minute}
	}},
	"spec.entities[].removal": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "split").Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupDelete}
	}},
	"spec.entities[].removal.drain": {from: func() *v1alpha1.Pipeline {
		p := base()
		entity(p, "split").Removal = &v1alpha1.RemovalSpec{ConsumerGroup: v1alpha1.ConsumerGroupKeep}
		return p
	}, mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Removal.Drain = true }},
	"spec.entities[].removal.consumerGroup": {from: func() *v1alpha1.Pipeline {
		p := base()
		entity(p, "split").Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: v1alpha1.ConsumerGroupKeep}
		return p
	}, mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Removal.ConsumerGroup = v1alpha1.ConsumerGroupDelete }},
	"spec.entities[].guarantee": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Guarantee = v1alpha1.ExactlyOnce }},
	"spec.entities[].state": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "split").State = &v1alpha1.StateSpec{Enabled: true, Backend: v1alpha1.StateMemory}
	}},
	"spec.entities[].state.enabled": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").State.Enabled = false
		entity(p, "sum").Guarantee = v1alpha1.ExactlyOnce
	}},
	"spec.entities[].state.backend": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").State.Backend = v1alpha1.StatePebble }},
	"spec.entities[].start": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartLatest}}
	}},
	"spec.entities[].start[].stream": {from: func() *v1alpha1.Pipeline {
		p := base()
		e := entity(p, "split")
		p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: "more", Partitions: 6})
		e.Inputs = append(e.Inputs, "more")
		e.Start = []v1alpha1.InputStart{{Stream: "lines", Position: v1alpha1.StartLatest}}
		d, err := validate.Default(p)
		if err != nil {
			panic(err)
		}
		return d
	}, mutate: func(p *v1alpha1.Pipeline) { entity(p, "split").Start[0].Stream = "more" },
		// Items are matched by stream: another stream is an item removed and one added.
		reported: []string{"spec.entities[].start", "spec.entities[].start"}},
	"spec.entities[].start[].position": {from: func() *v1alpha1.Pipeline {
		p := base()
		entity(p, "sum").Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartLatest}}
		return p
	}, mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Start[0].Position = v1alpha1.StartTimestamp
		entity(p, "sum").Start[0].Timestamp = &metav1.Time{Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	}, reported: []string{"spec.entities[].start[].position", "spec.entities[].start[].timestamp"}},
	"spec.entities[].start[].timestamp": {from: func() *v1alpha1.Pipeline {
		p := base()
		entity(p, "sum").Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartTimestamp, Timestamp: &metav1.Time{Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}}}
		return p
	}, mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Start[0].Timestamp = &metav1.Time{Time: time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)}
	}},
	"spec.entities[].start[].entity": {from: func() *v1alpha1.Pipeline {
		p := base()
		entity(p, "sum").Start = []v1alpha1.InputStart{{Stream: "words", Position: v1alpha1.StartEntity, Entity: "split"}}
		return p
	}, mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Start[0].Entity = "former" }},
	"spec.entities[].config": {mutate: func(p *v1alpha1.Pipeline) { entity(p, "sum").Config["window"] = "5m" }},
	"spec.entities[].resources": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	}},
	"spec.entities[].env": {mutate: func(p *v1alpha1.Pipeline) {
		entity(p, "sum").Env = []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "debug"}}
	}},
	"spec.monitoring":           {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Monitoring = nil }},
	"spec.monitoring.enabled":   {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Monitoring.Enabled = false }},
	"spec.monitoring.interval":  {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Monitoring.Interval = "30s" }},
	"spec.monitoring.labels":    {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Monitoring.Labels = map[string]string{"release": "prom"} }},
	"spec.revisionHistoryLimit": {mutate: func(p *v1alpha1.Pipeline) { p.Spec.RevisionHistoryLimit = ptr.To[int32](5) }},
	"spec.suspend":              {mutate: func(p *v1alpha1.Pipeline) { p.Spec.Suspend = true }},
}

// operatorOnly are fields that change nothing render produces (the operator alone reads them).
var operatorOnly = []string{"spec.revisionHistoryLimit", "spec.kafka.authentication.adminSecretName"}

func facts(p *v1alpha1.Pipeline) render.Facts {
	f := render.Facts{StrimziAPIVersion: "v1", KEDA: true, PrometheusOperator: true, Replicas: map[string]int32{}}
	// The StatefulSets exist: an autoscaled entity runs 2 pods, which KEDA set.
	for _, e := range p.Spec.Entities {
		if e.Autoscaling != nil {
			f.Replicas[e.Name] = 2
		}
	}
	return f
}

type rendered struct {
	templates map[string]corev1.PodTemplateSpec // by entity
	replicas  map[string]string                 // by entity, the StatefulSet's spec.replicas
	objects   map[string]any                    // by kind/name, the object without metadata noise
	shape     []string                          // topics, groups, what they read and write, workloads
}

func renderOf(t *testing.T, p *v1alpha1.Pipeline) rendered {
	t.Helper()
	res, err := render.Render(p, facts(p))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	out := rendered{templates: map[string]corev1.PodTemplateSpec{}, replicas: map[string]string{}, objects: map[string]any{}}
	for _, o := range res.Objects {
		kind := reflect.TypeOf(o).Elem().Name()
		out.objects[kind+"/"+o.GetName()] = o
		switch obj := o.(type) {
		case *appsv1.StatefulSet:
			e := obj.Labels[render.LabelEntity]
			out.templates[e] = obj.Spec.Template
			out.replicas[e] = fmt.Sprint(ptr.Deref(obj.Spec.Replicas, -1))
			out.shape = append(out.shape, "object "+kind+"/"+o.GetName())
		case *corev1.ConfigMap:
			if _, ok := obj.Data[config.FileName]; !ok {
				continue // KEDA's, with the TriggerAuthentication
			}
			cfg, err := config.Parse([]byte(obj.Data[config.FileName]))
			if err != nil {
				t.Fatalf("parse %s: %v", obj.Name, err)
			}
			var in, outs []string
			for _, i := range cfg.Inputs {
				in = append(in, fmt.Sprintf("%s:%d", i.Topic, i.Partitions))
			}
			for _, o := range cfg.Outputs {
				outs = append(outs, o.Topic)
			}
			out.shape = append(out.shape, fmt.Sprintf("group %s reads %v writes %v", cfg.GroupID, in, outs))
		case *strimzi.KafkaTopic:
			out.shape = append(out.shape, fmt.Sprintf("object KafkaTopic/%s cluster %s", obj.Name, obj.Labels[strimzi.LabelCluster]))
		case *corev1.Service, *strimzi.KafkaUser:
			out.shape = append(out.shape, "object "+kind+"/"+o.GetName())
		}
		// Autoscaling and monitoring objects (ScaledObject, TriggerAuthentication,
		// ServiceMonitor, PrometheusRule) are no part of the shape: they come and go with Scale
		// and Hot changes.
	}
	for _, tp := range res.Topics {
		out.shape = append(out.shape, fmt.Sprintf("topic %s partitions %d", tp.Name, tp.Partitions))
	}
	slices.Sort(out.shape)
	return out
}

// TestClassesMatchRender changes each field of the contract on a running Pipeline and checks
// that render does what its class says: Hot and Scale leave every pod template as it was, Hot
// also the replicas; Rolling changes the pod template of exactly the entities the change
// concerns; Structural changes topics, groups or entities; Refused is rejected as an update.
func TestClassesMatchRender(t *testing.T) {
	old := base()
	if errs := validate.Pipeline(context.Background(), old, nil); len(errs) > 0 {
		t.Fatalf("the base Pipeline is invalid: %v", errs)
	}
	before := renderOf(t, old)
	base0, before0 := old, before
	for _, r := range Rules {
		t.Run(r.Path, func(t *testing.T) {
			m, ok := mutations[r.Path]
			if !ok {
				t.Fatalf("no mutation of %s in the test: add one so that its class %s is checked", r.Path, r.Class)
			}
			old, before := base0, before0
			if m.from != nil {
				old = m.from()
				before = renderOf(t, old)
			}
			p := old.DeepCopy()
			m.mutate(p)
			p, err := validate.Default(p)
			if err != nil {
				t.Fatal(err)
			}
			errs := validate.Pipeline(context.Background(), p, old)
			changes := Changes(&old.Spec, &p.Spec)
			var reported []string
			for _, c := range changes {
				reported = append(reported, c.Field)
			}
			want := m.reported
			if want == nil {
				want = []string{r.Path}
			}
			if !equalSets(reported, want) {
				t.Errorf("Changes reports fields %v, want %v", reported, want)
			}
			if r.Class == Refused {
				if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), r.Refused) {
					t.Errorf("the update is not refused with %q: %v", r.Refused, errs)
				}
				if Worst(changes) != Refused {
					t.Errorf("Changes classifies the refused update as %s", Worst(changes))
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("the mutated Pipeline is invalid: %v", errs)
			}
			if got := Worst(changes); got != r.Class && m.reported == nil {
				t.Errorf("Changes classifies it %s, want %s", got, r.Class)
			}
			after := renderOf(t, p)
			if !slices.Contains(operatorOnly, r.Path) && equality.Semantic.DeepEqual(before.objects, after.objects) {
				t.Fatalf("the mutation changed nothing render produces: the test does not exercise %s", r.Path)
			}
			restarted := map[string]bool{}
			for name, tmpl := range before.templates {
				if a, ok := after.templates[name]; ok && !equality.Semantic.DeepEqual(tmpl, a) {
					restarted[name] = true
				}
			}
			shapeChanged := !slices.Equal(before.shape, after.shape)
			switch r.Class {
			case Hot, Scale:
				if len(restarted) > 0 {
					t.Errorf("a %s change restarts pods of %v: their pod template changed", r.Class, slices.Sorted(maps.Keys(restarted)))
				}
				if shapeChanged {
					t.Errorf("a %s change changes topics, groups or objects:\n before %v\n after  %v", r.Class, before.shape, after.shape)
				}
				if r.Class == Hot && !maps.Equal(before.replicas, after.replicas) {
					t.Errorf("a Hot change scales: replicas %v -> %v", before.replicas, after.replicas)
				}
			case Rolling, Structural:
				for name := range before.templates {
					e := entity(old, name)
					concerned := false
					for _, c := range EntityChanges(changes, e) {
						concerned = concerned || c.Class.Rank() >= Rolling.Rank()
					}
					if restarted[name] && !concerned {
						t.Errorf("entity %s restarts although no change concerns it", name)
					}
					if r.Class == Rolling && concerned && !restarted[name] {
						t.Errorf("entity %s does not restart although the Rolling change concerns it", name)
					}
				}
				if r.Class == Rolling && len(restarted) == 0 {
					t.Errorf("a Rolling change restarts no entity")
				}
				if r.Class == Structural && !shapeChanged {
					t.Errorf("a Structural change leaves topics, groups and objects as they were: %v", after.shape)
				}
			}
		})
	}
}

// TestPartitionsCannotDecrease checks the refused part of a Structural field.
func TestPartitionsCannotDecrease(t *testing.T) {
	old := base()
	p := old.DeepCopy()
	stream(p, "lines").Partitions = 3
	changes := Changes(&old.Spec, &p.Spec)
	if len(changes) != 1 || changes[0].Class != Refused || changes[0].Refused != "spec.streams[].partitions cannot decrease" {
		t.Errorf("Changes = %+v, want one Refused change of the partitions", changes)
	}
	errs := validate.Pipeline(context.Background(), p, old)
	if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), changes[0].Refused) {
		t.Errorf("the API server's rules do not refuse it with the contract's message: %v", errs)
	}
	stream(p, "lines").Partitions = 12
	if c := Changes(&old.Spec, &p.Spec); len(c) != 1 || c[0].Class != Structural {
		t.Errorf("raising partitions: %+v, want one Structural change", c)
	}
}

func equalSets(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// TestStatefulInputPartitionsAreRefused: raising the partitions of a stream a stateful entity
// reads is refused, by the contract and by the API server's rules with the same message; the
// input of a stateless entity may grow.
func TestStatefulInputPartitionsAreRefused(t *testing.T) {
	old := base()
	p := old.DeepCopy()
	stream(p, "words").Partitions = 12 // read by sum, which has state
	changes := Changes(&old.Spec, &p.Spec)
	if len(changes) != 1 || changes[0].Class != Refused || changes[0].Refused != RefusedStatefulPartitions {
		t.Fatalf("Changes = %+v, want one Refused change of the partitions", changes)
	}
	errs := validate.Pipeline(context.Background(), p, old)
	if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), RefusedStatefulPartitions) {
		t.Errorf("the API server's rules do not refuse it with the contract's message: %v", errs)
	}
	p = old.DeepCopy()
	stream(p, "lines").Partitions = 12 // read by split, stateless
	if c := Changes(&old.Spec, &p.Spec); len(c) != 1 || c[0].Class != Structural {
		t.Errorf("raising a stateless entity's input: %+v, want one Structural change", c)
	}
	if errs := validate.Pipeline(context.Background(), p, old); len(errs) > 0 {
		t.Errorf("raising a stateless entity's input is refused: %v", errs)
	}
}

// TestTakingOverADeletedGroupIsRefused: removing an entity whose removal policy deletes its
// consumer group while another entity takes an input over from it is refused, by the contract
// and by the API server's rules with the same message; with consumerGroup: Keep it is allowed.
func TestTakingOverADeletedGroupIsRefused(t *testing.T) {
	for _, tc := range []struct {
		reason  string
		policy  v1alpha1.ConsumerGroupPolicy
		refused bool
	}{
		{reason: "Delete would lose the offsets the new entity starts from", policy: v1alpha1.ConsumerGroupDelete, refused: true},
		{reason: "Keep leaves the offsets for the new entity", policy: v1alpha1.ConsumerGroupKeep},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			old := base()
			entity(old, "split").Removal = &v1alpha1.RemovalSpec{Drain: true, ConsumerGroup: tc.policy}
			p := old.DeepCopy()
			next := *entity(p, "split").DeepCopy()
			next.Name, next.Removal = "split2", nil
			next.Start = []v1alpha1.InputStart{{Stream: "lines", Position: v1alpha1.StartEntity, Entity: "split"}}
			p.Spec.Entities = slices.DeleteFunc(p.Spec.Entities, func(e v1alpha1.Entity) bool { return e.Name == "split" })
			p.Spec.Entities = append(p.Spec.Entities, next)
			changes := Changes(&old.Spec, &p.Spec)
			var refused []string
			for _, c := range changes {
				if c.Class == Refused {
					refused = append(refused, c.Refused)
				}
			}
			errs := validate.Pipeline(context.Background(), p, old)
			if tc.refused {
				if len(refused) != 1 || refused[0] != RefusedDeletedGroupTakeover {
					t.Errorf("%s: refused changes %q, want one with RefusedDeletedGroupTakeover", tc.reason, refused)
				}
				if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), RefusedDeletedGroupTakeover) {
					t.Errorf("%s: the API server's rules do not refuse it with the contract's message: %v", tc.reason, errs)
				}
				return
			}
			if len(refused) > 0 || len(errs) > 0 {
				t.Errorf("%s: refused %q, errors %v; want allowed", tc.reason, refused, errs)
			}
		})
	}
}
