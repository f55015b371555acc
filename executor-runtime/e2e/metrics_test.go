package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestMetricsAndReadiness(t *testing.T) {
	k := testenv.Fake(t)
	wc, e := sumEntity(t, k, config.ExactlyOnce, nil)
	addr := make(chan net.Addr, 1)
	pod := testenv.StartPod(t, e, 0, wordcount.Sum(), iosidecar.WithMetricsAddr("127.0.0.1:0", func(a net.Addr) { addr <- a }))
	defer pod.Stop(t)
	base := "http://" + (<-addr).String()
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s", code, body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _ := httpGet(t, base+"/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never became ready (last %d)", code)
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.Produce(t, false, wordRecords(wc.words, "a", "b")...)
	k.Produce(t, false, &kgo.Record{Topic: wc.words, Key: []byte("a"), Value: []byte("poison")})
	wc.waitCounts(t, map[string]int{"a": 1, "b": 1}, 30*time.Second)
	waitRecords(t, k, e.Config.Inputs[0].DeadLetterTopic, 1)
	_, body := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`millrace_records_in_total{topic="words"} 3`,
		`millrace_records_out_total{topic="counts"} 2`,
		`millrace_records_dead_lettered_total{topic="words"} 1`,
		`millrace_assigned_partitions{topic="words"} 4`,
		`millrace_commits_total{result="committed"}`,
		`millrace_batch_latency_seconds_count`,
		`millrace_function_latency_seconds_count`,
		`millrace_consumer_lag{partition=`,
		`millrace_rebalances_total`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
