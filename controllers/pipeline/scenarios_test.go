package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
	"github.com/millrace-dev/millrace/controllers/pipeline/topics"
	"github.com/millrace-dev/millrace/controllers/render"
	"github.com/millrace-dev/millrace/controllers/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/config"
)

// scaleAsHPA sets an entity's replicas through the StatefulSet's /scale subresource under
// another field manager, as the HPA that KEDA creates does.
func (e *env) scaleAsHPA(t *testing.T, p *v1alpha1.Pipeline, ent string, n int32) {
	t.Helper()
	eventually(t, "scale "+ent+" through /scale", func() error {
		sts, err := e.statefulSet(p, ent)
		if err != nil {
			return err
		}
		scale := &autoscalingv1.Scale{}
		if err := e.client.SubResource("scale").Get(context.Background(), sts, scale); err != nil {
			return err
		}
		scale.Spec.Replicas = n
		return e.client.SubResource("scale").Update(context.Background(), sts, client.WithSubResourceBody(scale), client.FieldOwner("horizontal-pod-autoscaler"))
	})
}

func (e *env) assignment(p *v1alpha1.Pipeline, ent string) (config.Assignment, error) {
	cm, err := e.configMap(p, ent)
	if err != nil {
		return config.Assignment{}, err
	}
	var ex config.Executor
	if err := json.Unmarshal([]byte(cm.Data[config.FileName]), &ex); err != nil {
		return config.Assignment{}, err
	}
	return ex.Assignment, nil
}

func replicasOf(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return -1
	}
	return *sts.Spec.Replicas
}

// ownsReplicas reports whether the operator's field manager owns a StatefulSet's spec.replicas.
func ownsReplicas(sts *appsv1.StatefulSet) bool {
	for _, mf := range sts.ManagedFields {
		if mf.Manager != FieldManager || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		if spec, ok := fields["f:spec"].(map[string]any); ok {
			if _, ok := spec["f:replicas"]; ok {
				return true
			}
		}
	}
	return false
}

// TestAutoscaledReplicasSurvive: the operator never owns spec.replicas of an autoscaled
// StatefulSet, so what the HPA set survives Pipeline updates.
func TestAutoscaledReplicasSurvive(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 1, 3))))
	e.markTopicsReady(t, p) // the ScaledObject waits for its input topics
	eventually(t, "ScaledObject of count", func() error {
		_, err := e.get(gvkScaledObject, ns, render.ScaledObjectName(p, "count"))
		return err
	})
	e.scaleAsHPA(t, p, "count", 3)

	p = e.converged(t, e.update(t, p, withImage("count", "example/count:2"), withImage("split", "example/split:2")))
	consistently(t, "the HPA's replicas stay", 2*time.Second, func() error {
		sts, err := e.statefulSet(p, "count")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 3 {
			return fmt.Errorf("count has %d replicas, the HPA set 3", replicasOf(sts))
		}
		if ownsReplicas(sts) {
			return errors.New("the operator owns spec.replicas of an autoscaled StatefulSet")
		}
		return nil
	})
	if sts, _ := e.statefulSet(p, "split"); !ownsReplicas(sts) {
		t.Errorf("the operator should own spec.replicas of the fixed-size entity split")
	}
}

// TestStaticReassignment: when an entity's replicas change, by the user or by the HPA, the
// Static map in its ConfigMap is recomputed (sticky, minimal moves) and the pod template is not
// touched, so pods hot-reload instead of restarting.
func TestStaticReassignment(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns,
		withStatic("split"), withReplicas("split", 2),
		withStatic("count"), withAutoscaling("count", 1, 3))))

	hashOf := func(ent string) string {
		sts, err := e.statefulSet(p, ent)
		if err != nil {
			t.Fatal(err)
		}
		return sts.Spec.Template.Annotations[render.AnnotationPodTemplateHash]
	}
	wantLists := func(ent string, n int) config.Assignment {
		var a config.Assignment
		eventually(t, fmt.Sprintf("%s's map has %d pods", ent, n), func() error {
			var err error
			if a, err = e.assignment(p, ent); err != nil {
				return err
			}
			if len(a.Static) != n {
				return fmt.Errorf("%d lists: %v", len(a.Static), a.Static)
			}
			return nil
		})
		return a
	}
	splitBefore, countBefore := wantLists("split", 2), wantLists("count", 1)
	splitHash, countHash := hashOf("split"), hashOf("count")
	if splitHash == "" {
		t.Fatalf("no %s annotation on the pod template", render.AnnotationPodTemplateHash)
	}

	// The user scales split.
	p = e.converged(t, e.update(t, p, withReplicas("split", 3)))
	splitAfter := wantLists("split", 3)
	if splitAfter.Generation <= splitBefore.Generation {
		t.Errorf("assignment generation %d -> %d, want it to grow", splitBefore.Generation, splitAfter.Generation)
	}
	// The HPA scales count.
	e.scaleAsHPA(t, p, "count", 3)
	countAfter := wantLists("count", 3)
	if countAfter.Generation <= countBefore.Generation {
		t.Errorf("count assignment generation %d -> %d, want it to grow", countBefore.Generation, countAfter.Generation)
	}
	if h := hashOf("split"); h != splitHash {
		t.Errorf("split's pod template hash changed %s -> %s: pods would restart", splitHash, h)
	}
	if h := hashOf("count"); h != countHash {
		t.Errorf("count's pod template hash changed %s -> %s: pods would restart", countHash, h)
	}
	// Sticky: pod 0 keeps a partition it had.
	if len(countAfter.Static[0]) == 0 || countAfter.Static[0][0] != countBefore.Static[0][0] {
		t.Errorf("pod 0 lost its first partition: %v -> %v", countBefore.Static, countAfter.Static)
	}
}

// TestRollback: every distinct spec is a ControllerRevision; the rollback annotation restores
// one, is removed, and the restored spec becomes the newest revision. The history limit holds.
func TestRollback(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns)))
	p = e.converged(t, e.update(t, p, withImage("split", "example/split:2")))

	revs := func() []appsv1.ControllerRevision {
		var list appsv1.ControllerRevisionList
		if err := e.client.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{render.LabelPipeline: p.Name}); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	eventually(t, "two revisions", func() error {
		if n := len(revs()); n != 2 {
			return fmt.Errorf("%d revisions", n)
		}
		return nil
	})

	e.update(t, p, func(p *v1alpha1.Pipeline) {
		metav1.SetMetaDataAnnotation(&p.ObjectMeta, v1alpha1.AnnotationRollbackTo, "1")
	})
	eventually(t, "rolled back", func() error {
		cur := e.pipeline(t, p)
		if _, ok := cur.Annotations[v1alpha1.AnnotationRollbackTo]; ok {
			return errors.New("annotation still present")
		}
		if img := entity(cur, "split").Image; img != "example/split:1" {
			return fmt.Errorf("split image %s", img)
		}
		if cur.Status.ObservedGeneration != cur.Generation {
			return errNotYet
		}
		for _, r := range revs() {
			if r.Name == cur.Status.UpdateRevision {
				if r.Revision != 3 {
					return fmt.Errorf("restored revision %s is number %d, want 3", r.Name, r.Revision)
				}
				return nil
			}
		}
		return fmt.Errorf("no revision named %s", cur.Status.UpdateRevision)
	})
	p = e.converged(t, p)
	if n := len(revs()); n != 2 {
		t.Errorf("a rollback must not add a revision for a spec already recorded: %d revisions", n)
	}

	// A rollback to a revision that does not exist is dropped, not retried forever.
	gen := p.Generation
	e.update(t, p, func(p *v1alpha1.Pipeline) {
		metav1.SetMetaDataAnnotation(&p.ObjectMeta, v1alpha1.AnnotationRollbackTo, "42")
	})
	eventually(t, "bad rollback annotation removed", func() error {
		cur := e.pipeline(t, p)
		if _, ok := cur.Annotations[v1alpha1.AnnotationRollbackTo]; ok {
			return errors.New("annotation still present")
		}
		if cur.Generation != gen {
			return fmt.Errorf("spec changed: generation %d -> %d", gen, cur.Generation)
		}
		return nil
	})

	// revisionHistoryLimit.
	p = e.update(t, p, func(p *v1alpha1.Pipeline) { p.Spec.RevisionHistoryLimit = ptrTo[int32](2) })
	for _, img := range []string{"example/split:3", "example/split:4"} {
		p = e.converged(t, e.update(t, p, withImage("split", img)))
	}
	eventually(t, "history limited to 2", func() error {
		if n := len(revs()); n != 2 {
			return fmt.Errorf("%d revisions", n)
		}
		return nil
	})
}

// TestSuspendResume: suspend scales executors to zero (and pauses KEDA) without deleting
// anything; resume restores them.
func TestSuspendResume(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withReplicas("split", 2), withAutoscaling("count", 1, 3))))
	e.markTopicsReady(t, p) // the ScaledObject waits for its input topics
	soName := render.ScaledObjectName(p, "count")

	p = e.update(t, p, func(p *v1alpha1.Pipeline) { p.Spec.Suspend = true })
	eventually(t, "suspended", func() error {
		sts, err := e.statefulSet(p, "split")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 0 {
			return fmt.Errorf("split has %d replicas", replicasOf(sts))
		}
		so, err := e.get(gvkScaledObject, ns, soName)
		if err != nil {
			return err
		}
		if so.GetAnnotations()[render.AnnotationPausedReplicas] != "0" {
			return fmt.Errorf("ScaledObject annotations %v: KEDA is not paused at zero", so.GetAnnotations())
		}
		cur := e.pipeline(t, p)
		if cur.Status.Phase != v1alpha1.PhaseSuspended {
			return fmt.Errorf("phase %s", cur.Status.Phase)
		}
		return nil
	})
	for _, s := range []string{"lines", "words"} {
		if _, err := e.kafkaTopic(p, s); err != nil {
			t.Errorf("suspend lost the KafkaTopic of %s: %v", s, err)
		}
	}
	if _, err := e.configMap(p, "split"); err != nil {
		t.Errorf("suspend lost a ConfigMap: %v", err)
	}

	p = e.update(t, p, func(p *v1alpha1.Pipeline) { p.Spec.Suspend = false })
	eventually(t, "resumed", func() error {
		sts, err := e.statefulSet(p, "split")
		if err != nil {
			return err
		}
		if replicasOf(sts) != 2 {
			return fmt.Errorf("split has %d replicas", replicasOf(sts))
		}
		so, err := e.get(gvkScaledObject, ns, soName)
		if err != nil {
			return err
		}
		if _, ok := so.GetAnnotations()[render.AnnotationPausedReplicas]; ok {
			return errors.New("ScaledObject still paused")
		}
		if cur := e.pipeline(t, p); cur.Status.Phase == v1alpha1.PhaseSuspended {
			return errors.New("phase still Suspended")
		}
		return nil
	})
}

// TestDeleteRetainAndDelete: deleting a Pipeline leaves its executors to the garbage collector
// (owner references; envtest runs none, so the test asserts the references), releases Retain
// topics from Strimzi before deleting their KafkaTopics (the Kafka topic stays) and deletes
// Delete topics' KafkaTopics as they are (Strimzi deletes the topic).
func TestDeleteRetainAndDelete(t *testing.T) {
	bothEnvs(t, func(t *testing.T, e *env) {
		ns := e.namespace(t)
		e.startOperator(t, ns)
		p := e.converged(t, e.create(t, newPipeline(ns, withDeletionPolicy("words", v1alpha1.DeletionDelete))))
		var lines, words *unstructured.Unstructured
		eventually(t, "KafkaTopics", func() error {
			var err error
			if lines, err = e.kafkaTopic(p, "lines"); err != nil {
				return err
			}
			words, err = e.kafkaTopic(p, "words")
			return err
		})
		e.holdWithFinalizer(t, lines)
		e.holdWithFinalizer(t, words)
		defer e.release(t, lines.GroupVersionKind(), ns, lines.GetName())
		defer e.release(t, words.GroupVersionKind(), ns, words.GetName())

		if err := e.client.Delete(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		eventually(t, "pipeline deleted", func() error {
			err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), &v1alpha1.Pipeline{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there: %v", err)
		})
		lines, err := e.kafkaTopic(p, "lines")
		if err != nil {
			t.Fatal(err)
		}
		if lines.GetDeletionTimestamp() == nil || lines.GetAnnotations()[AnnotationStrimziManaged] != "false" {
			t.Errorf("the Retain KafkaTopic must be released (strimzi.io/managed=false) and deleted: annotations %v, deleting %v",
				lines.GetAnnotations(), lines.GetDeletionTimestamp() != nil)
		}
		words, err = e.kafkaTopic(p, "words")
		if err != nil {
			t.Fatal(err)
		}
		if words.GetDeletionTimestamp() == nil || words.GetAnnotations()[AnnotationStrimziManaged] == "false" {
			t.Errorf("the Delete KafkaTopic must be deleted while managed: annotations %v, deleting %v",
				words.GetAnnotations(), words.GetDeletionTimestamp() != nil)
		}
		// envtest has no garbage collector: executors remain, owned by the deleted Pipeline.
		for _, ent := range []string{"split", "count"} {
			sts, err := e.statefulSet(p, ent)
			if err != nil {
				t.Fatalf("StatefulSet: %v", err)
			}
			if !metav1.IsControlledBy(sts, p) {
				t.Errorf("StatefulSet %s would not be garbage collected: %v", sts.Name, sts.OwnerReferences)
			}
			cm, err := e.configMap(p, ent)
			if err != nil || !metav1.IsControlledBy(cm, p) {
				t.Errorf("ConfigMap %s would not be garbage collected: %v", render.ConfigMapName(p, ent), err)
			}
		}
	})
}

// TestDirectTopics: in Direct mode the operator creates topics with the Kafka admin API, raises
// partitions, and on deletion deletes only the Delete topics.
func TestDirectTopics(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	bootstrap := strings.Join(cluster.ListenAddrs(), ",")
	admin := topics.NewAdmin()
	defer admin.Close()

	e := envV1
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withDirect(bootstrap), withDeletionPolicy("words", v1alpha1.DeletionDelete))))
	lines, words := render.TopicName(p, "lines"), render.TopicName(p, "words")
	wantPartitions := func(want map[string]int32) {
		eventually(t, fmt.Sprintf("topics %v", want), func() error {
			names := make([]string, 0, len(want))
			for n := range want {
				names = append(names, n)
			}
			got, err := admin.Exists(context.Background(), topics.Cluster{Bootstrap: bootstrap}, names...)
			if err != nil {
				return err
			}
			for n, w := range want {
				if got[n] != w {
					return fmt.Errorf("topic %s has %d partitions, want %d", n, got[n], w)
				}
			}
			return nil
		})
	}
	wantPartitions(map[string]int32{lines: 3, words: 3, render.DeadLetterTopicName(lines): 3})
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)

	p = e.update(t, p, func(p *v1alpha1.Pipeline) { streamOf(p, "lines").Partitions = 5 })
	wantPartitions(map[string]int32{lines: 5})

	if err := e.client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Delete topics deleted, Retain topics kept", func() error {
		got, err := admin.Exists(context.Background(), topics.Cluster{Bootstrap: bootstrap}, lines, words)
		if err != nil {
			return err
		}
		if _, ok := got[words]; ok {
			return fmt.Errorf("Delete topic %s still exists", words)
		}
		if got[lines] != 5 {
			return fmt.Errorf("Retain topic %s: %d partitions", lines, got[lines])
		}
		return nil
	})
}

// TestComposedOperatorsInstalledLater: without KEDA and the Prometheus Operator the pipeline
// runs with fixed replicas and says what to install; installing them is noticed without a
// restart and the ScaledObject and ServiceMonitor appear.
func TestComposedOperatorsInstalledLater(t *testing.T) {
	e := v1beta2Env(t)
	if snap, err := discover(mustDiscovery(t, e)); err != nil || snap.keda || snap.prometheus {
		t.Skip("KEDA or the Prometheus Operator is installed already (test run twice?)")
	}
	ns := e.namespace(t)
	e.startOperator(t, ns)
	p := e.converged(t, e.create(t, newPipeline(ns, withAutoscaling("count", 2, 3), withMonitoring())))
	e.markTopicsReady(t, p) // the ScaledObject waits for its input topics
	p = e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionFalse, v1alpha1.ReasonKEDANotInstalled)
	p = e.wantCondition(t, p, v1alpha1.ConditionMonitoringReady, metav1.ConditionFalse, v1alpha1.ReasonPrometheusNotFound)
	p = e.wantCondition(t, p, v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonDependenciesDegraded)
	if p.Status.Phase != v1alpha1.PhaseDegraded {
		t.Errorf("phase %s, want Degraded", p.Status.Phase)
	}
	if msg := condOf(p, v1alpha1.ConditionAutoscalingReady).Message; !strings.Contains(msg, "install KEDA") {
		t.Errorf("the message should say what to install: %q", msg)
	}
	if sts, _ := e.statefulSet(p, "count"); replicasOf(sts) != 2 {
		t.Errorf("without KEDA count runs minReplicas=2, has %d", replicasOf(sts))
	}

	keda, err := testenv.KEDACRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.te.InstallCRDs(keda...); err != nil {
		t.Fatal(err)
	}
	soName := render.ScaledObjectName(p, "count")
	eventually(t, "ScaledObject created once KEDA is installed", func() error {
		_, err := e.get(gvkScaledObject, ns, soName)
		return err
	})
	// The CRDs are there, KEDA's metrics server is not yet.
	e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionFalse, v1alpha1.ReasonKEDANotRunning)
	e.installKEDAMetrics(t)
	e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionFalse, v1alpha1.ReasonAutoscalingPending)
	e.markScaledObjectReady(t, p, "count")
	p = e.wantCondition(t, p, v1alpha1.ConditionAutoscalingReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	for _, es := range p.Status.Entities {
		if es.Name == "count" && (es.Autoscaling != "2-3" || es.Active == nil || *es.Active) {
			t.Errorf("count's status: %+v", es)
		}
	}

	prom, err := testenv.PrometheusCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.te.InstallCRDs(prom...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ServiceMonitor created once the Prometheus Operator is installed", func() error {
		_, err := e.get(gvkServiceMonitor, ns, render.ServiceMonitorName(p))
		return err
	})
	e.wantCondition(t, p, v1alpha1.ConditionMonitoringReady, metav1.ConditionTrue, v1alpha1.ReasonReconciled)
	e.wantCondition(t, p, v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonAsExpected)
}

// TestRestartConverges: an operator stopped mid-way and started again, after the Pipeline
// changed meanwhile, converges without duplicate revisions and without orphans.
func TestRestartConverges(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	first := e.startOperator(t, ns)
	p := e.create(t, newPipeline(ns))
	eventually(t, "first StatefulSet applied", func() error {
		_, err := e.statefulSet(p, "split")
		return err
	})
	first.stop(t)

	// While no operator runs: count goes, sum comes.
	p = e.update(t, p, withSumEntity(), func(p *v1alpha1.Pipeline) {
		p.Spec.Entities = []v1alpha1.Entity{p.Spec.Entities[0], p.Spec.Entities[2]}
	})

	second := e.startOperator(t, ns)
	p = e.converged(t, p)
	sel := client.MatchingLabels{render.LabelPipeline: p.Name}
	eventually(t, "no orphans", func() error {
		var stss appsv1.StatefulSetList
		if err := e.client.List(context.Background(), &stss, client.InNamespace(ns), sel); err != nil {
			return err
		}
		var names []string
		for _, s := range stss.Items {
			if s.DeletionTimestamp == nil {
				names = append(names, s.Labels[render.LabelEntity])
			}
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "split,sum" {
			return fmt.Errorf("StatefulSets of entities %v, want split,sum", names)
		}
		var cms corev1.ConfigMapList
		if err := e.client.List(context.Background(), &cms, client.InNamespace(ns), sel); err != nil {
			return err
		}
		if len(cms.Items) != 2 {
			return fmt.Errorf("%d ConfigMaps, want 2", len(cms.Items))
		}
		return nil
	})
	var revs appsv1.ControllerRevisionList
	if err := e.client.List(context.Background(), &revs, client.InNamespace(ns), sel); err != nil {
		t.Fatal(err)
	}
	numbers := map[int64]bool{}
	for _, r := range revs.Items {
		if numbers[r.Revision] {
			t.Errorf("two revisions numbered %d", r.Revision)
		}
		numbers[r.Revision] = true
	}
	if len(revs.Items) > 2 {
		t.Errorf("%d revisions for 2 distinct specs", len(revs.Items))
	}
	waitQuiet(t, second, ns)
	before, _ := second.writes.writes(ns)
	if _, err := second.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: p.Name}}); err != nil {
		t.Fatal(err)
	}
	if after, log := second.writes.writes(ns); after != before {
		t.Errorf("converged pipeline still written after restart: %v", log[before:])
	}
}

// TestStrimziInstalledLater: with spec.kafka.topics Strimzi and no Strimzi installed, the
// executors still run, TopicsReady says to install Strimzi, and installing it later is noticed:
// the KafkaTopics appear without a restart.
func TestStrimziInstalledLater(t *testing.T) {
	e, err := startEnv("no-strimzi", testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e.strimzi = "v1"
	defer func() { _ = e.te.Stop() }()
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	defer op.stop(t)
	p := e.converged(t, e.create(t, newPipeline(ns)))
	p = e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonStrimziNotInstalled)
	if msg := condOf(p, v1alpha1.ConditionTopicsReady).Message; !strings.Contains(msg, "install the Strimzi operator") {
		t.Errorf("the message should say what to install: %q", msg)
	}

	crds, err := testenv.StrimziCRDs(testenv.StrimziV1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.te.InstallCRDs(crds...); err != nil {
		t.Fatal(err)
	}
	eventually(t, "KafkaTopics created once Strimzi is installed", func() error {
		_, err := e.kafkaTopic(p, "lines")
		return err
	})
	e.wantCondition(t, p, v1alpha1.ConditionTopicsReady, metav1.ConditionFalse, v1alpha1.ReasonTopicsPending)
}

// TestDirectDeletionDoesNotHang: a Direct-mode Pipeline whose Kafka cannot be reached (or refuses
// the operator) must not be held by its finalizer forever. While the Delete topics cannot be
// deleted the Pipeline says why (DeletionBlocked); after the bound it goes, keeping them.
func TestDirectDeletionDoesNotHang(t *testing.T) {
	e := envV1
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	// Nothing listens on port 1.
	p := e.create(t, newPipeline(ns, withDirect("127.0.0.1:1"), withDeletionPolicy("words", v1alpha1.DeletionDelete)))
	eventually(t, "finalizer added", func() error {
		if len(e.pipeline(t, p).Finalizers) == 0 {
			return errNotYet
		}
		return nil
	})
	if err := e.client.Delete(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the Pipeline says why its deletion waits", func() error {
		cur := &v1alpha1.Pipeline{}
		if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), cur); err != nil {
			return err
		}
		c := condOf(cur, v1alpha1.ConditionReady)
		if c == nil || c.Reason != v1alpha1.ReasonDeletionBlocked || !strings.Contains(c.Message, "Kafka admin API") {
			return fmt.Errorf("Ready is %+v", c)
		}
		return nil
	})
	op.r.topicDeletionTimeout.Store(int64(time.Second))
	eventually(t, "the Pipeline goes after the bound", func() error {
		cur := &v1alpha1.Pipeline{}
		err := e.client.Get(context.Background(), client.ObjectKeyFromObject(p), cur)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there, finalizers %v", cur.Finalizers)
	})
}
