package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// testStatusReportsAppliedConfig: GET /status on the I/O sidecar's metrics port says which
// executor.json its running session applied (the digest the operator compares with the
// ConfigMap's) and whether that session is ready; a hot change of the file moves the digest once
// the new session runs, in the same process.
func testStatusReportsAppliedConfig(t *testing.T, k *testenv.Kafka) {
	e := k.NewEntity(t, "status", []string{k.Prefix + "in"}, []string{k.Prefix + "out"}, 1, false, config.AtLeastOnce)
	k.CreateTopics(t, 1, e.Topics()...)
	sock := filepath.Join(e.Dir, "fn.sock")
	fnCtx, stopFn := context.WithCancel(context.Background())
	defer stopFn()
	echo := sdk.Map(func(_ context.Context, r sdk.Record) (sdk.Output, error) { return sdk.Output{Value: r.Value}, nil })
	go func() { _ = sdk.Serve(fnCtx, echo, sdk.WithSocket(sock), sdk.WithLogger(testenv.Logger())) }()

	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- iosidecar.Run(ctx, e.Path, iosidecar.WithFunctionSocket(sock), iosidecar.WithOrdinal(0),
			iosidecar.WithMetricsAddr("127.0.0.1:0", func(a net.Addr) { addr <- a }), iosidecar.WithLogger(testenv.Logger()),
			iosidecar.WithConfigPollInterval(100*time.Millisecond), iosidecar.WithShutdownTimeout(2*time.Second))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("I/O sidecar: %v", err)
		}
	}()
	base := "http://" + (<-addr).String()
	digest := func() string {
		b, err := os.ReadFile(e.Path)
		if err != nil {
			t.Fatal(err)
		}
		return config.Digest(b)
	}
	waitStatus := func(want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last iosidecar.Status
		for time.Now().Before(deadline) {
			code, body := httpGet(t, base+"/status")
			if code != http.StatusOK {
				t.Fatalf("/status = %d %s", code, body)
			}
			if err := json.Unmarshal([]byte(body), &last); err != nil {
				t.Fatalf("/status is not JSON: %v: %s", err, body)
			}
			if last.Config == want && last.Ready {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("/status = %+v, want config %s and ready", last, want)
	}

	first := digest()
	waitStatus(first)
	k.Produce(t, false, &kgo.Record{Topic: k.Prefix + "in", Value: []byte("a")})
	waitRecords(t, k, k.Prefix+"out", 1)

	e.Update(t, func(c *config.Executor) { c.UserConfig = map[string]string{"greeting": "hello"} })
	second := digest()
	if second == first {
		t.Fatal("the update did not change the file")
	}
	waitStatus(second)
}

func TestStatusReportsAppliedConfig(t *testing.T) {
	testStatusReportsAppliedConfig(t, testenv.Fake(t))
}

func TestStatusReportsAppliedConfigRealBroker(t *testing.T) {
	testStatusReportsAppliedConfig(t, testenv.Real(t))
}
