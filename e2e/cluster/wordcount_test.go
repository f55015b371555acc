//go:build cluster

package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const sample = "config/samples/streaming_v1alpha1_pipeline_wordcount.yaml"

// TestWordCount applies the word-count sample of config/samples (only its Kafka cluster name
// changed) in a namespace that enforces the restricted Pod Security Standard, feeds it the
// sample input and expects the exact count of every word in `counts`: the last count of each
// word read with read_committed equals its number of occurrences.
func TestWordCount(t *testing.T) {
	wordCount(t, sample)
}

// TestPythonWordCount runs the Python SDK's word count (executor-runtime/sdk/python/examples,
// the image `make images` assembles from Debian's python3.11) the same way, under the same
// restricted namespace, and expects the same exact counts as the Go functions give.
func TestPythonWordCount(t *testing.T) {
	wordCount(t, "executor-runtime/sdk/python/examples/wordcount.yaml")
}

func wordCount(t *testing.T, file string) {
	ns := namespace(t, map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	p := pipelineFromFile(t, file)
	strimziKafka(t, ns, p)
	start := time.Now()
	create(t, ns, p)
	p = waitReady(t, ns, p.Name, 3*time.Minute)
	record(t, p.Name+": apply to Ready (2 entities, 3 pods)", time.Since(start), "")

	// Every pod the StatefulSets asked for was admitted by the restricted level and runs.
	for _, e := range p.Spec.Entities {
		sts := statefulSet(t, ns, p.Name+"-"+e.Name)
		ps := pods(t, ns, sts)
		want := int32(1)
		if e.Replicas != nil {
			want = *e.Replicas
		}
		if int32(len(ps)) != want {
			t.Fatalf("entity %s: %d pods, want %d", e.Name, len(ps), want)
		}
		for _, pod := range ps {
			if pod.Status.Phase != corev1.PodRunning || !podReady(&pod) {
				t.Fatalf("pod %s: phase %s, ready %v", pod.Name, pod.Status.Phase, podReady(&pod))
			}
		}
	}

	input, err := os.ReadFile(filepath.Join(repoRoot(), "config/samples/wordcount-input.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	var in []string
	for _, line := range strings.Split(strings.TrimSpace(string(input)), "\n") {
		in = append(in, line)
		for _, w := range strings.FieldsFunc(line, func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsNumber(c) }) {
			want[strings.ToLower(w)]++
		}
	}
	// Twice, so that counts continue from the state of the first pass.
	produce(t, topicOf(t, p, "lines"), lines(in...))
	produce(t, topicOf(t, p, "lines"), lines(in...))
	total := 0
	for w := range want {
		want[w] *= 2
		total += want[w]
	}

	got := map[string]int{}
	consumeUntil(t, topicOf(t, p, "counts"), 3*time.Minute, func(rs []*kgo.Record) bool {
		for _, r := range rs {
			n, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatalf("count %q of %q is not a number", r.Value, r.Key)
			}
			if n > got[string(r.Key)] {
				got[string(r.Key)] = n
			}
		}
		return len(rs) >= total
	})
	for w, n := range want {
		if got[w] != n {
			t.Errorf("count of %q = %d, want %d", w, got[w], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d words counted, want %d: %v", len(got), len(want), got)
	}
	// Exactly once: sum emits one count per word it reads, so counts holds exactly one record per
	// word of the input, none twice.
	if rs := consumeIdle(t, topicOf(t, p, "counts"), 5*time.Second); len(rs) != total {
		t.Errorf("counts holds %d records, want %d (one per word)", len(rs), total)
	}
}

// TestRestrictedNamespaceRejectsNonCompliantPods makes sure the restricted level is really
// enforced in this cluster, so that TestWordCount's pods passing it means something.
func TestRestrictedNamespaceRejectsNonCompliantPods(t *testing.T) {
	ns := namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "root", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "ghcr.io/millrace-dev/millrace-io:v0.1.0"}}},
	}
	_, err := env.cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
		t.Fatalf("a pod without a restricted security context was admitted (err %v)", err)
	}
}
