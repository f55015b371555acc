package pipeline

// Benchmarks of the operator on the envtest API server (run with -run '^$', see
// docs/benchmarks.md "## Operator"). They measure; they assert nothing.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/millrace-dev/millrace/apis/streaming/v1alpha1"
)

// fiveEntities is a chain s0 -> e1 -> s1 -> ... -> e5 -> s5.
func fiveEntities(ns, name string) *v1alpha1.Pipeline {
	p := &v1alpha1.Pipeline{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.PipelineSpec{
			Kafka: v1alpha1.KafkaSpec{StrimziCluster: "kafka", BootstrapServers: "kafka-bootstrap:9092"},
		},
	}
	for i := 0; i <= 5; i++ {
		p.Spec.Streams = append(p.Spec.Streams, v1alpha1.Stream{Name: fmt.Sprintf("s%d", i), Partitions: 6})
	}
	for i := 1; i <= 5; i++ {
		p.Spec.Entities = append(p.Spec.Entities, v1alpha1.Entity{
			Name: fmt.Sprintf("e%d", i), Image: "example/stage:1",
			Inputs: []string{fmt.Sprintf("s%d", i-1)}, Outputs: []string{fmt.Sprintf("s%d", i)},
		})
	}
	return p
}

func statusWritten(p *v1alpha1.Pipeline) bool {
	return p.Generation > 0 && p.Status.ObservedGeneration == p.Generation && p.Status.UpdateRevision != "" && p.Status.EntityCount == int32(len(p.Spec.Entities))
}

// convergedCount is how many Pipelines of namespace ns have their status written.
func convergedCount(ctx context.Context, b *testing.B, e *env, ns string) int {
	b.Helper()
	var list v1alpha1.PipelineList
	if err := e.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		b.Fatal(err)
	}
	done := 0
	for k := range list.Items {
		if statusWritten(&list.Items[k]) {
			done++
		}
	}
	return done
}

// BenchmarkReconcileFiveEntities: time from creating a 5-entity Pipeline to all its children
// applied and its status written (status is written after the last apply of the reconcile), seen
// through a watch. Reports mean, p50 and p99 in ms and API writes per Pipeline.
func BenchmarkReconcileFiveEntities(b *testing.B) {
	t := &testing.T{}
	e := envV1
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	defer op.stop(t)
	wc, err := client.NewWithWatch(e.cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	w, err := wc.Watch(ctx, &v1alpha1.PipelineList{}, client.InNamespace(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()

	// The first Pipeline also starts the operator's informers for the composed kinds; it is
	// reported apart as the cold start and left out of the distribution.
	durations := make([]time.Duration, 0, b.N)
	var cold time.Duration
	b.ResetTimer()
	for i := -1; i < b.N; i++ {
		name := "p" + strconv.Itoa(i+1)
		start := time.Now()
		if err := e.client.Create(ctx, fiveEntities(ns, name)); err != nil {
			b.Fatal(err)
		}
		for done := false; !done; {
			select {
			case ev := <-w.ResultChan():
				if ev.Type == watch.Error {
					b.Fatalf("watch: %v", ev.Object)
				}
				if p, ok := ev.Object.(*v1alpha1.Pipeline); ok && p.Name == name && statusWritten(p) {
					done = true
				}
			case <-time.After(60 * time.Second):
				b.Fatalf("pipeline %s did not converge", name)
			}
		}
		if i < 0 {
			cold = time.Since(start)
			continue
		}
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	writes, _ := op.writes.writes(ns)
	reportDurations(b, durations)
	b.ReportMetric(float64(cold)/float64(time.Millisecond), "ms/cold-first")
	b.ReportMetric(float64(writes)/float64(b.N+1), "writes/pipeline")
}

func reportDurations(b *testing.B, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sum)/float64(len(ds)), "ms/mean")
	b.ReportMetric(ms(ds[len(ds)/2]), "ms/p50")
	b.ReportMetric(ms(ds[min(len(ds)-1, len(ds)*99/100)]), "ms/p99")
}

// BenchmarkConverge100 and BenchmarkConverge1000: time for that many 5-entity Pipelines,
// created at once, to all have their children applied and status written; API writes per
// Pipeline; the resident memory of the process (operator and benchmark client; the API server
// and etcd are other processes) once converged.
func BenchmarkConverge100(b *testing.B)  { benchmarkConverge(b, 100) }
func BenchmarkConverge1000(b *testing.B) { benchmarkConverge(b, 1000) }

func benchmarkConverge(b *testing.B, n int) {
	profile := os.Getenv("MILLRACE_BENCH_HEAPPROFILE")
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		t := &testing.T{}
		e := envV1
		ns := e.namespace(t)
		op := e.startOperator(t, ns)
		start := time.Now()
		for j := 0; j < n; j++ {
			if err := e.client.Create(ctx, fiveEntities(ns, "p"+strconv.Itoa(j))); err != nil {
				b.Fatal(err)
			}
		}
		created := time.Since(start)
		deadline := time.Now().Add(30 * time.Minute)
		for {
			done := convergedCount(ctx, b, e, ns)
			if done == n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d/%d converged after 30 minutes", done, n)
			}
			time.Sleep(200 * time.Millisecond)
		}
		took := time.Since(start)
		writes, _ := op.writes.writes(ns)
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if profile != "" {
			if f, err := os.Create(profile); err == nil {
				_ = pprof.WriteHeapProfile(f)
				_ = f.Close()
			}
		}
		b.ReportMetric(took.Seconds(), "s/converge")
		b.ReportMetric(created.Seconds(), "s/create-calls")
		b.ReportMetric(float64(writes)/float64(n), "writes/pipeline")
		b.ReportMetric(float64(rssBytes())/(1<<20), "MiB-rss")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MiB-heap-inuse")
		op.stop(t)
	}
}

// rssBytes is the resident set size of this process, from /proc.
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// BenchmarkReconcileUnchanged: one reconcile of a converged, unchanged 5-entity Pipeline, called
// directly on the running operator's reconciler (ns/op), and the API writes it made (counted by
// the operator's write-counting client; any write by the running controller meanwhile counts
// too).
func BenchmarkReconcileUnchanged(b *testing.B) {
	t := &testing.T{}
	e := envV1
	ns := e.namespace(t)
	op := e.startOperator(t, ns)
	defer op.stop(t)
	ctx := context.Background()
	if err := e.client.Create(ctx, fiveEntities(ns, "p")); err != nil {
		b.Fatal(err)
	}
	for convergedCount(ctx, b, e, ns) != 1 {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the reconciles the children's own events bring
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: "p"}}
	before, _ := op.writes.writes(ns)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := op.r.Reconcile(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after, log := op.writes.writes(ns)
	if after != before {
		b.Logf("writes: %v", log[before:])
	}
	b.ReportMetric(float64(after-before)/float64(b.N), "writes/op")
}
