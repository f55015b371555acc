package render

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/apis/strimzi"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

func mustRender(t *testing.T, p *v1alpha1.Pipeline, f Facts) *Result {
	t.Helper()
	res, err := Render(p, f)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return res
}

func find[T client.Object](res *Result, name string) T {
	var zero T
	for _, o := range res.Objects {
		if typed, ok := o.(T); ok && o.GetName() == name {
			return typed
		}
	}
	return zero
}

// TestNoRestartOnHotReload pins which changes restart executors: the StatefulSet must stay
// byte-identical when only hot-reloaded parts change, and change otherwise.
func TestNoRestartOnHotReload(t *testing.T) {
	base := wordCount()
	baseFacts := newFacts()
	cases := map[string]struct {
		reason        string
		pipeline      *v1alpha1.Pipeline
		facts         Facts
		wantSTSChange bool
		wantCMChange  bool
	}{
		"UserConfig": {
			reason:       "entity.config hot-reloads through the ConfigMap: the ConfigMap changes, the StatefulSet does not.",
			pipeline:     wordCount(onEntity("sum", userConfig("window", "1m"))),
			facts:        baseFacts,
			wantCMChange: true,
		},
		"StaticMapMoves": {
			reason:       "A new Static map (here because the replicas changed) hot-reloads too.",
			pipeline:     wordCount(onEntity("sum", replicas(3))),
			facts:        baseFacts,
			wantCMChange: true,
			// spec.replicas changes, but not the pod template.
			wantSTSChange: true,
		},
		"Image": {
			reason:        "A new image needs new pods.",
			pipeline:      wordCount(onEntity("sum", image("ghcr.io/millrace-dev/millrace-example-wordcount-sum:v0.2.0"))),
			facts:         baseFacts,
			wantSTSChange: true,
		},
		"Bootstrap": {
			reason:        "A new Kafka address is read at start only: it restarts the pods.",
			pipeline:      base,
			facts:         newFacts(func(f *Facts) { f.BootstrapServers = "elsewhere:9092" }),
			wantSTSChange: true,
			wantCMChange:  true,
		},
	}
	before := mustRender(t, base, baseFacts)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			after := mustRender(t, tc.pipeline, tc.facts)
			objName := StatefulSetName(base, "sum")
			stsBefore, stsAfter := find[*appsv1.StatefulSet](before, objName), find[*appsv1.StatefulSet](after, objName)
			hashBefore := stsBefore.Spec.Template.Annotations[AnnotationPodTemplateHash]
			hashAfter := stsAfter.Spec.Template.Annotations[AnnotationPodTemplateHash]
			if tc.wantSTSChange != (cmp.Diff(stsBefore, stsAfter) != "") {
				t.Errorf("%s\nStatefulSet changed: %v, want %v:\n%s", tc.reason, !tc.wantSTSChange, tc.wantSTSChange, cmp.Diff(stsBefore, stsAfter))
			}
			templateChanged := cmp.Diff(stsBefore.Spec.Template.Spec, stsAfter.Spec.Template.Spec) != "" || hashBefore != hashAfter
			if name == "StaticMapMoves" && templateChanged {
				t.Errorf("%s\npod template changed", tc.reason)
			}
			cmBefore, cmAfter := find[*corev1.ConfigMap](before, objName), find[*corev1.ConfigMap](after, objName)
			if tc.wantCMChange != (cmp.Diff(cmBefore, cmAfter) != "") {
				t.Errorf("%s\nConfigMap changed: %v, want %v", tc.reason, !tc.wantCMChange, tc.wantCMChange)
			}
		})
	}
}

func TestReplicas(t *testing.T) {
	cases := map[string]struct {
		reason   string
		pipeline *v1alpha1.Pipeline
		facts    Facts
		want     *int32
	}{
		"Default":               {"No replicas means one.", minimal(), newFacts(), ptr.To[int32](1)},
		"Fixed":                 {"Fixed replicas are rendered.", minimal(onEntity("handle", replicas(3))), newFacts(), ptr.To[int32](3)},
		"FixedZero":             {"Zero replicas are allowed.", minimal(onEntity("handle", replicas(0))), newFacts(), ptr.To[int32](0)},
		"Explicit":              {"Explicit partition lists fix one pod per list.", newPipeline(withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, static([]int32{0, 1}, []int32{2}, []int32{3}))), newFacts(), ptr.To[int32](3)},
		"KEDA":                  {"Once the StatefulSet exists the HPA owns replicas: none rendered.", minimal(onEntity("handle", autoscaling(0, 1))), newFacts(withKEDA(), currentReplicas("handle", 1)), nil},
		"KEDANew":               {"A new KEDA-scaled entity starts at minReplicas, zero included, not at the API server's default of one.", minimal(onEntity("handle", autoscaling(0, 1))), newFacts(withKEDA()), ptr.To[int32](0)},
		"KEDANewMin":            {"A new KEDA-scaled entity starts at minReplicas.", newPipeline(withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, autoscaling(2, 4))), newFacts(withKEDA()), ptr.To[int32](2)},
		"KEDAGone":              {"Without KEDA an autoscaled entity keeps the pods the autoscaler started, within its bounds.", newPipeline(withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, autoscaling(1, 4))), newFacts(currentReplicas("e", 3)), ptr.To[int32](3)},
		"KEDAGoneMax":           {"Without KEDA an autoscaled entity runs no more than maxReplicas.", newPipeline(withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, autoscaling(1, 2))), newFacts(currentReplicas("e", 3)), ptr.To[int32](2)},
		"LeftAutoscaling":       {"An entity that left autoscaling without stating replicas keeps the count it ran with.", minimal(), newFacts(func(f *Facts) { f.KeptReplicas = map[string]int32{"handle": 4} }), ptr.To[int32](4)},
		"LeftAutoscalingStated": {"Stated replicas win over the kept count.", minimal(onEntity("handle", replicas(2))), newFacts(func(f *Facts) { f.KeptReplicas = map[string]int32{"handle": 4} }), ptr.To[int32](2)},
		"KEDAGoneZero":          {"Without KEDA an autoscaled entity runs at least one pod, so the pipeline makes progress.", minimal(onEntity("handle", autoscaling(0, 1))), newFacts(currentReplicas("handle", 0)), ptr.To[int32](1)},
		"NoKEDA":                {"Without KEDA, the minimum, at least one.", minimal(onEntity("handle", autoscaling(0, 1))), newFacts(), ptr.To[int32](1)},
		"NoKEDAMin":             {"Without KEDA, the minimum.", newPipeline(withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, autoscaling(2, 4))), newFacts(), ptr.To[int32](2)},
		"Suspended":             {"Suspended fixed replicas are zero.", minimal(suspended(), onEntity("handle", replicas(3))), newFacts(), ptr.To[int32](0)},
		"SuspendKEDA":           {"Suspended autoscaled entities are paused through KEDA, not replicas.", minimal(suspended(), onEntity("handle", autoscaling(0, 1))), newFacts(withKEDA(), currentReplicas("handle", 1)), nil},
		"SuspendKEDANew":        {"A suspended pipeline's new autoscaled entity starts at zero.", newPipeline(suspended(), withStream("s", partitions(4)), withEntity("e", "i", []string{"s"}, nil, autoscaling(2, 4))), newFacts(withKEDA()), ptr.To[int32](0)},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := mustRender(t, tc.pipeline, tc.facts)
			sts := find[*appsv1.StatefulSet](res, StatefulSetName(tc.pipeline, tc.pipeline.Spec.Entities[0].Name))
			if diff := cmp.Diff(tc.want, sts.Spec.Replicas); diff != "" {
				t.Errorf("%s\nspec.replicas: -want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

func TestStaticAssignment(t *testing.T) {
	p := newPipeline(withStream("s", partitions(6)), withEntity("e", "i", []string{"s"}, nil, static(), autoscaling(0, 6)))
	cases := map[string]struct {
		reason string
		facts  Facts
		want   config.Assignment
	}{
		"FirstRender": {
			reason: "Without a current map or replicas, one pod gets everything, generation 1.",
			facts:  newFacts(withKEDA()),
			want:   config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1, 2, 3, 4, 5}}, Generation: 1},
		},
		"FollowsHPA": {
			reason: "The map follows the StatefulSet's current replicas, which the HPA sets.",
			facts:  newFacts(withKEDA(), currentReplicas("e", 3)),
			want:   config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}, {4, 5}}, Generation: 1},
		},
		"Sticky": {
			reason: "Scaling 2→3 moves one partition from each pod and bumps the generation.",
			facts: newFacts(withKEDA(), currentReplicas("e", 3), func(f *Facts) {
				f.Assignments = map[string]config.Assignment{"e": {Mode: config.StaticAssignment, Static: [][]int32{{0, 2, 4}, {1, 3, 5}}, Generation: 7}}
			}),
			want: config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 2}, {1, 3}, {4, 5}}, Generation: 8},
		},
		"Unchanged": {
			reason: "An unchanged map keeps its generation, so pods see no reassignment.",
			facts: newFacts(withKEDA(), currentReplicas("e", 2), func(f *Facts) {
				f.Assignments = map[string]config.Assignment{"e": {Mode: config.StaticAssignment, Static: [][]int32{{0, 2, 4}, {1, 3, 5}}, Generation: 7}}
			}),
			want: config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 2, 4}, {1, 3, 5}}, Generation: 7},
		},
		"ScaledToZero": {
			reason: "At zero replicas the map is kept for one pod, ready for the scale from zero.",
			facts:  newFacts(withKEDA(), currentReplicas("e", 0)),
			want:   config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1, 2, 3, 4, 5}}, Generation: 1},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := mustRender(t, p, tc.facts)
			if diff := cmp.Diff(tc.want, res.Assignments["e"]); diff != "" {
				t.Errorf("%s\nAssignments[e]: -want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

func TestTopicOwnership(t *testing.T) {
	cases := map[string]struct {
		reason    string
		policy    v1alpha1.DeletionPolicy
		wantOwner bool
	}{
		"Retain": {"Retained topics outlive the Pipeline: no owner reference.", v1alpha1.DeletionRetain, false},
		"Delete": {"Deleted topics go with the Pipeline: controller owner reference.", v1alpha1.DeletionDelete, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := mustRender(t, wordCount(onStreams(deletion(tc.policy))), newFacts())
			var n int
			for _, o := range res.Objects {
				if kt, ok := o.(*strimzi.KafkaTopic); ok {
					n++
					if got := len(kt.OwnerReferences) == 1; got != tc.wantOwner {
						t.Errorf("%s\n%s: owned %v, want %v", tc.reason, kt.Name, got, tc.wantOwner)
					}
				}
			}
			// 3 streams, 2 dead-letter topics, 1 changelog.
			if n != 6 {
				t.Errorf("%d KafkaTopics, want 6", n)
			}
		})
	}
}

// TestExecutorConfigParses checks that what render writes, the executor reads back unchanged.
func TestExecutorConfigParses(t *testing.T) {
	for name, tc := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			for _, e := range tc.pipeline.Spec.Entities {
				cfg, err := ExecutorConfig(tc.pipeline, e.Name, tc.facts)
				if err != nil {
					t.Fatalf("ExecutorConfig(%s): %v", e.Name, err)
				}
				b, err := config.Marshal(cfg)
				if err != nil {
					t.Fatal(err)
				}
				parsed, err := config.Parse(b)
				if err != nil {
					t.Fatalf("%s\nconfig.Parse of rendered %s: %v", tc.reason, e.Name, err)
				}
				if diff := cmp.Diff(cfg, parsed); diff != "" {
					t.Errorf("round trip of %s: -rendered, +parsed:\n%s", e.Name, diff)
				}
				cm := find[*corev1.ConfigMap](mustRender(t, tc.pipeline, tc.facts), ConfigMapName(tc.pipeline, e.Name))
				if cm.Data[config.FileName] != string(b) {
					t.Errorf("ConfigMap of %s differs from ExecutorConfig", e.Name)
				}
			}
		})
	}
	if _, err := ExecutorConfig(minimal(), "nope", newFacts()); err == nil {
		t.Error("ExecutorConfig of an unknown entity: no error")
	}
}

func TestRenderRejects(t *testing.T) {
	cases := map[string]struct {
		reason   string
		pipeline *v1alpha1.Pipeline
	}{
		"UnknownInput":    {"An input must be a declared stream.", newPipeline(withStream("a"), withEntity("e", "i", []string{"b"}, nil))},
		"UnknownOutput":   {"An output must be a declared stream.", newPipeline(withStream("a"), withEntity("e", "i", []string{"a"}, []string{"b"}))},
		"NoEntities":      {"A pipeline needs an entity.", newPipeline(withStream("a"))},
		"DuplicateEntity": {"Entity names are unique.", newPipeline(withStream("a"), withEntity("e", "i", []string{"a"}, nil), withEntity("e", "i", []string{"a"}, nil))},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Render(tc.pipeline, newFacts()); err == nil {
				t.Errorf("%s\nRender: no error", tc.reason)
			}
		})
	}
}

func TestKafkaTopicNamesDoNotCollide(t *testing.T) {
	cases := map[string]struct {
		reason   string
		pipeline *v1alpha1.Pipeline
	}{
		"StreamNamedLikeDLQ": {
			reason:   "Stream x-dlq and the dead-letter topic of stream x need distinct KafkaTopics.",
			pipeline: newPipeline(withStream("x"), withStream("x-dlq"), withEntity("e", "i", []string{"x", "x-dlq"}, nil)),
		},
		"StreamNamedLikeChangelog": {
			reason:   "Stream e-changelog and the changelog of entity e need distinct KafkaTopics.",
			pipeline: newPipeline(withStream("x"), withStream("e-changelog"), withEntity("e", "i", []string{"x"}, []string{"e-changelog"}, withState(""))),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res := mustRender(t, tc.pipeline, newFacts())
			seen := map[string]bool{}
			for _, o := range res.Objects {
				if kt, ok := o.(*strimzi.KafkaTopic); ok {
					if seen[kt.Name] {
						t.Errorf("%s\ntwo KafkaTopics named %s", tc.reason, kt.Name)
					}
					seen[kt.Name] = true
				}
			}
		})
	}
}

// TestCooldownPeriodAsWritten decodes the autoscaling block as a user writes it (and as the
// operator reads it from the API server): an explicit cooldownPeriod of 0 must reach the
// ScaledObject as 0, not turn into the default of 120.
func TestCooldownPeriodAsWritten(t *testing.T) {
	cases := map[string]struct {
		reason string
		yaml   string
		want   int32
	}{
		"Zero":    {"An explicit 0 scales to zero at once.", `{"maxReplicas": 1, "cooldownPeriod": 0}`, 0},
		"Omitted": {"An omitted field takes the CRD default.", `{"maxReplicas": 1}`, defaultCooldownPeriod},
		"Set":     {"A value is kept.", `{"maxReplicas": 1, "cooldownPeriod": 30}`, 30},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var a v1alpha1.AutoscalingSpec
			if err := yaml.UnmarshalStrict([]byte(tc.yaml), &a); err != nil {
				t.Fatal(err)
			}
			p := minimal(onEntity("handle", func(e *v1alpha1.Entity) { e.Replicas = nil; e.Autoscaling = &a }))
			so := find[*kedav1alpha1.ScaledObject](mustRender(t, p, newFacts(withKEDA())), ScaledObjectName(p, "handle"))
			if so == nil {
				t.Fatal("no ScaledObject rendered")
			}
			if diff := cmp.Diff(ptr.To(tc.want), so.Spec.CooldownPeriod); diff != "" {
				t.Errorf("%s\nspec.cooldownPeriod: -want, +got:\n%s", tc.reason, diff)
			}
		})
	}
}

// TestDefaultImagesAreReleased: the default sidecar images are the ones the Makefile builds and
// the bundle references for this version.
func TestDefaultImagesAreReleased(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Z_]+) \?= (\S+)$`).FindAllStringSubmatch(string(mk), -1) {
		vars[m[1]] = m[2]
	}
	registry, version := vars["IMAGE_REGISTRY"], vars["VERSION"]
	if registry == "" || version == "" {
		t.Fatalf("the Makefile sets no IMAGE_REGISTRY or VERSION: %v", vars)
	}
	for got, want := range map[string]string{
		DefaultIOSidecarImage:    registry + "/millrace-io:v" + version,
		DefaultStateSidecarImage: registry + "/millrace-state:v" + version,
	} {
		if got != want {
			t.Errorf("default image %s, want %s (what make docker-build builds)", got, want)
		}
	}
}

// TestChildNamesAreUniqueWithinAPipeline: entities named like the pipeline-wide children
// (the kafka-client ConfigMap, the executor KafkaUser, the kafka TriggerAuthentication) must
// not make two objects of one kind and name, which would overwrite each other.
func TestChildNamesAreUniqueWithinAPipeline(t *testing.T) {
	p := newPipeline(withStream("in", partitions(4)), withAuth(v1alpha1.AuthScramSha512, ""), withMonitoring(nil))
	for _, name := range []string{"kafka-client", "kafka", "executor", "demo"} {
		p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{Name: name, Image: "i", Inputs: []string{"in"},
			Autoscaling: &v1alpha1.AutoscalingSpec{MaxReplicas: 2}, State: &v1alpha1.StateSpec{Enabled: true}})
	}
	res := mustRender(t, p, newFacts(withKEDA(), withPrometheus()))
	seen := map[string]bool{}
	for _, o := range res.Objects {
		key := o.GetObjectKind().GroupVersionKind().Kind + "/" + o.GetName()
		if seen[key] {
			t.Errorf("two objects %s", key)
		}
		seen[key] = true
	}
	if !seen["ConfigMap/"+KafkaClientConfigMapName(p)] || !seen["ConfigMap/"+ConfigMapName(p, "kafka-client")] {
		t.Errorf("want both the kafka-client ConfigMap and entity kafka-client's; rendered %v", seen)
	}
}

// TestAdoptedTopic: a stream pointed at an existing topic (topicName) must not have Strimzi
// rewrite that topic, and everything derived from the topic's partitions (its dead-letter
// topic, the executors' view of the input, a Static map) must cover the partitions the topic
// really has, as observed, not the spec's default of one.
func TestAdoptedTopic(t *testing.T) {
	p := newPipeline(
		withStream("events", topicName("legacy.events")),
		withEntity("handle", "example/handle:1", []string{"events"}, nil, static()),
	)
	res := mustRender(t, p, newFacts(func(f *Facts) { f.TopicPartitions = map[string]int32{"legacy.events": 8} }))

	kt := find[*strimzi.KafkaTopic](res, KafkaTopicName(p, "events"))
	if kt == nil {
		t.Fatal("no KafkaTopic for the adopted stream")
	}
	if got := kt.Annotations[strimzi.AnnotationManaged]; got != "false" {
		t.Errorf("the adopted topic's KafkaTopic has %s=%q: Strimzi's Topic Operator would reset its configuration to the spec's", strimzi.AnnotationManaged, got)
	}
	dlq := find[*strimzi.KafkaTopic](res, DeadLetterKafkaTopicName(p, "events"))
	if dlq == nil || ptr.Deref(dlq.Spec.Partitions, 0) != 8 {
		t.Errorf("the dead-letter topic must have the adopted topic's 8 partitions: %+v", dlq)
	}
	if _, managed := dlq.Annotations[strimzi.AnnotationManaged]; managed {
		t.Errorf("the dead-letter topic is Millrace's own and stays managed")
	}
	cm := find[*corev1.ConfigMap](res, ConfigMapName(p, "handle"))
	var ex config.Executor
	if err := json.Unmarshal([]byte(cm.Data[config.FileName]), &ex); err != nil {
		t.Fatal(err)
	}
	if len(ex.Inputs) != 1 || ex.Inputs[0].Partitions != 8 {
		t.Errorf("executor.json must say the input has 8 partitions: %+v", ex.Inputs)
	}
	var assigned []int32
	for _, ps := range ex.Assignment.Static {
		assigned = append(assigned, ps...)
	}
	if len(assigned) != 8 {
		t.Errorf("the Static map must cover all 8 partitions, covers %v", assigned)
	}
}

// TestHeirsOfDroppedInputs: an entity's executor.json lists, for each stream it no longer reads,
// the groups of the entities that take that stream over from it (start position Entity naming
// it), so that its I/O sidecar deletes its offsets there only after they committed their own.
func TestHeirsOfDroppedInputs(t *testing.T) {
	from := func(entity string, streams ...string) entityModifier {
		return func(e *v1alpha1.Entity) {
			for _, s := range streams {
				e.Start = append(e.Start, v1alpha1.InputStart{Stream: s, Position: v1alpha1.StartEntity, Entity: entity})
			}
		}
	}
	latest := func(stream string) entityModifier {
		return func(e *v1alpha1.Entity) {
			e.Start = append(e.Start, v1alpha1.InputStart{Stream: stream, Position: v1alpha1.StartLatest})
		}
	}
	streams := []pipelineModifier{withStream("s1"), withStream("s2"), withStream("s3"), withStream("s4")}
	cases := map[string]struct {
		reason   string
		entities []pipelineModifier
		want     []config.Heir
	}{
		"InsertStage": {
			reason: "x takes s1 over from b, which reads s2 now: b's heir on s1 is x's group",
			entities: []pipelineModifier{
				withEntity("x", "example.com/f:v1", []string{"s1"}, []string{"s2"}, from("b", "s1")),
				withEntity("b", "example.com/f:v1", []string{"s2"}, nil),
			},
			want: []config.Heir{{Topic: "team.demo.s1", GroupID: "team.demo.x"}},
		},
		"TwoHeirs": {
			reason: "two entities take s1 over from b: b waits for both",
			entities: []pipelineModifier{
				withEntity("x", "example.com/f:v1", []string{"s1"}, []string{"s2"}, from("b", "s1")),
				withEntity("y", "example.com/f:v1", []string{"s1"}, []string{"s3"}, from("b", "s1")),
				withEntity("b", "example.com/f:v1", []string{"s2", "s3"}, nil),
			},
			want: []config.Heir{{Topic: "team.demo.s1", GroupID: "team.demo.x"}, {Topic: "team.demo.s1", GroupID: "team.demo.y"}},
		},
		"StillRead": {
			reason: "b still reads s1: no heir, b's pods do not reload when x names b",
			entities: []pipelineModifier{
				withEntity("x", "example.com/f:v1", []string{"s1"}, []string{"s2"}, from("b", "s1")),
				withEntity("b", "example.com/f:v1", []string{"s1"}, nil),
			},
		},
		"OtherPositions": {
			reason: "a start position other than Entity, or one naming another entity, makes no heir of b",
			entities: []pipelineModifier{
				withEntity("x", "example.com/f:v1", []string{"s1", "s3"}, []string{"s2"}, latest("s1"), from("c", "s3")),
				withEntity("c", "example.com/f:v1", []string{"s4"}, nil),
				withEntity("b", "example.com/f:v1", []string{"s2"}, nil),
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := newPipeline(append(slices.Clone(streams), tc.entities...)...)
			cfg, err := ExecutorConfig(p, "b", newFacts())
			if err != nil {
				t.Fatalf("ExecutorConfig(b): %v", err)
			}
			if diff := cmp.Diff(tc.want, cfg.Heirs); diff != "" {
				t.Errorf("%s\nheirs of b: -want, +got:\n%s", tc.reason, diff)
			}
		})
	}
	// An heir changes only executor.json, never b's pod template: b's pods reload, they do not
	// restart.
	with := newPipeline(append(slices.Clone(streams), cases["InsertStage"].entities...)...)
	without := with.DeepCopy()
	without.Spec.Entities[0].Start = nil
	a := find[*appsv1.StatefulSet](mustRender(t, with, newFacts()), StatefulSetName(with, "b"))
	b := find[*appsv1.StatefulSet](mustRender(t, without, newFacts()), StatefulSetName(with, "b"))
	if diff := cmp.Diff(b.Spec.Template, a.Spec.Template); diff != "" {
		t.Errorf("an heir changed b's pod template: -without, +with:\n%s", diff)
	}
}
