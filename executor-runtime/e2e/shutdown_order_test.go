package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
)

// testShutdownFunctionFirst stops a pod the way the kubelet does: SIGTERM to the function
// container first, and to the native sidecars only once the function has exited. The function
// must not wait for the I/O sidecar (which is still running and has not been signalled): it tells
// the sidecar it is stopping, the sidecar commits the interval in flight and closes the session,
// and the function exits without its hard stop. Records keep arriving throughout, so an interval
// cut off by a hard stop would leave outputs the committed offsets do not cover (AtLeastOnce).
func testShutdownFunctionFirst(t *testing.T, k *testenv.Kafka, g config.Guarantee) {
	bin := binaries(t)
	wc, e := sumEntity(t, k, g, nil)
	dir := filepath.Join(e.Config.Runtime.SocketDir, "pod0")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := startBinary(t, bin, "millrace-state", 0, "--config", e.Path, "--socket-dir", dir, "--metrics-addr", "-")
	fn := startBinary(t, bin, "wordcount-sum", 0, "--socket", filepath.Join(dir, e.Config.Runtime.FunctionSocket))
	io := startIO(t, bin, e, 0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ctx.Err() == nil; i++ {
			// Not with ctx: a produce cut off by the cancel could still land.
			if err := k.Client.ProduceSync(context.Background(), wordRecords(wc.words, vocabulary[i%len(vocabulary)])...).FirstErr(); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitRecords(t, k, wc.counts, 50)

	begin := time.Now()
	fnErr := fn.terminate(t)
	fnTook := time.Since(begin)
	cancel()
	<-produced
	if fnErr != nil {
		t.Errorf("the function exited with %v after SIGTERM, want 0: it did not get its session closed and stopped hard", fnErr)
	}
	if fn.logContains("stopping hard") {
		t.Error("the function took its hard-stop path")
	}
	if !io.logContains("the function is stopping") {
		t.Error("the I/O sidecar never heard that the function is stopping")
	}
	begin = time.Now()
	if err := io.terminate(t); err != nil {
		t.Errorf("the I/O sidecar exited with %v after SIGTERM, want 0", err)
	}
	ioTook := time.Since(begin)
	if err := st.terminate(t); err != nil {
		t.Errorf("the state sidecar exited with %v after SIGTERM, want 0", err)
	}
	t.Logf("shutdown in kubelet order: function exited %v after SIGTERM, then the I/O sidecar %v after its SIGTERM", fnTook.Round(time.Millisecond), ioTook.Round(time.Millisecond))

	// Everything the sidecar sent the function was committed, and nothing beyond: the committed
	// input offsets cover exactly the outputs (sum emits one count per input).
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	offs, err := k.Admin.FetchOffsets(fctx, e.Config.GroupID)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	consumed := 0
	for _, r := range k.ReadAll(t, wc.words, false) {
		if o, ok := offs.Lookup(wc.words, r.Partition); ok && r.Offset < o.At {
			consumed++
		}
	}
	outputs := len(k.ReadAll(t, wc.counts, g == config.ExactlyOnce))
	if consumed == 0 || consumed != outputs {
		t.Fatalf("after the shutdown, committed offsets cover %d inputs but there are %d outputs; want equal and > 0", consumed, outputs)
	}
	t.Logf("%d inputs committed, %d outputs", consumed, outputs)
}

func TestShutdownFunctionFirst(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testShutdownFunctionFirst(t, testenv.Fake(t), g) })
	}
}

func TestRealBrokerShutdownFunctionFirst(t *testing.T) {
	for _, g := range []config.Guarantee{config.AtLeastOnce, config.ExactlyOnce} {
		t.Run(string(g), func(t *testing.T) { testShutdownFunctionFirst(t, testenv.Real(t), g) })
	}
}
