package e2e

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// testLivenessFailsWhenStuck stalls a session that holds partitions (its function never answers,
// so the interval can neither drain nor commit) and requires /healthz, the I/O sidecar's liveness
// probe, to fail, so that the kubelet restarts the container instead of leaving it sitting still.
// Before the stall, with records flowing, /healthz is healthy.
func testLivenessFailsWhenStuck(t *testing.T, k *testenv.Kafka) {
	e := k.NewEntity(t, "stuck", []string{k.Prefix + "in"}, []string{k.Prefix + "out"}, 1, false, config.ExactlyOnce)
	k.CreateTopics(t, 1, e.Topics()...)
	var received atomic.Int32
	release := make(chan struct{})
	defer close(release)
	stuck := sdk.Map(func(ctx context.Context, r sdk.Record) (sdk.Output, error) {
		if string(r.Value) == "stall" {
			received.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return sdk.Output{Value: r.Value}, nil
	})
	sock := filepath.Join(e.Dir, "fn.sock")
	fnCtx, stopFn := context.WithCancel(context.Background())
	defer stopFn()
	go func() { _ = sdk.Serve(fnCtx, stuck, sdk.WithSocket(sock), sdk.WithLogger(testenv.Logger())) }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- iosidecar.Run(ctx, e.Path, iosidecar.WithFunctionSocket(sock), iosidecar.WithOrdinal(0),
			iosidecar.WithMetricsAddr("127.0.0.1:0", func(a net.Addr) { addr <- a }), iosidecar.WithLogger(testenv.Logger()),
			iosidecar.WithLivenessTimeout(2*time.Second), iosidecar.WithShutdownTimeout(500*time.Millisecond))
	}()
	base := "http://" + (<-addr).String()
	k.Produce(t, false, &kgo.Record{Topic: k.Prefix + "in", Value: []byte("ok")})
	waitRecords(t, k, k.Prefix+"out", 1)
	// Healthy for longer than the liveness timeout while the loop turns.
	for range 15 {
		if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
			t.Fatalf("/healthz = %d %s while records are processed", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}

	k.Produce(t, false, &kgo.Record{Topic: k.Prefix + "in", Value: []byte("stall")})
	for received.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := httpGet(t, base+"/healthz")
		if code == http.StatusServiceUnavailable {
			t.Logf("/healthz while stuck: %s", body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz = %d %s a minute into a stall with a liveness timeout of 2s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestLivenessFailsWhenTheSessionIsStuck(t *testing.T) {
	testLivenessFailsWhenStuck(t, testenv.Fake(t))
}

func TestRealBrokerLivenessFailsWhenTheSessionIsStuck(t *testing.T) {
	testLivenessFailsWhenStuck(t, testenv.Real(t))
}
