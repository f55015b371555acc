// Package sdktest tests a Millrace function without Kafka, sockets or sidecars: it runs the
// handler through the SDK's own batch engine with state in memory.
//
//	h := sdktest.New(t, wordcount.Sum())
//	outs := h.Outputs(sdktest.KV("hello", "1"), sdktest.KV("hello", "1"))
//	// outs[1].Value == "2"
package sdktest

import (
	"context"
	"testing"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// Harness runs a function under test.
type Harness struct {
	tb    testing.TB
	local *sdk.Local
}

// New returns a harness for h; opts are the SDK's (WithUserConfig, WithHooks).
func New(tb testing.TB, h sdk.Handler, opts ...sdk.Option) *Harness {
	tb.Helper()
	return &Harness{tb: tb, local: sdk.NewLocal(h, opts...)}
}

// KV builds an input record on partition 0 with a string key and value.
func KV(key, value string) sdk.Record {
	return sdk.Record{Key: []byte(key), Value: []byte(value)}
}

// Process runs records as one batch and returns a result per record. It fails the test on an
// error of the harness itself (never on the handler's errors, which are in the results).
func (h *Harness) Process(records ...sdk.Record) []sdk.Result {
	h.tb.Helper()
	res, err := h.local.Process(context.Background(), records...)
	if err != nil {
		h.tb.Fatalf("process batch: %v", err)
	}
	return res
}

// Outputs runs records as one batch and returns all outputs in order. It fails the test if a
// record's handler failed.
func (h *Harness) Outputs(records ...sdk.Record) []sdk.Output {
	h.tb.Helper()
	var outs []sdk.Output
	for i, r := range h.Process(records...) {
		if r.Err != nil {
			h.tb.Fatalf("record %d failed: %v", i, r.Err)
		}
		outs = append(outs, r.Outputs...)
	}
	return outs
}

// State returns the stored value of key in partition.
func (h *Harness) State(partition int32, key string) (string, bool) {
	v, ok := h.local.State(partition, []byte(key))
	return string(v), ok
}
