package sdk_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
	"github.com/millrace-dev/millrace/executor-runtime/sdk/sdktest"
)

func TestFilterPassesOnlyKeptRecords(t *testing.T) {
	h := sdktest.New(t, sdk.Filter(func(_ context.Context, r sdk.Record) (bool, error) {
		return strings.HasPrefix(string(r.Value), "keep"), nil
	}))
	outs := h.Outputs(sdktest.KV("1", "keep me"), sdktest.KV("2", "drop me"), sdktest.KV("3", "keep too"))
	if len(outs) != 2 || string(outs[0].Key) != "1" || string(outs[1].Key) != "3" {
		t.Fatalf("outputs %v, want records 1 and 3", outs)
	}
}

func TestAFailedRecordDropsItsStateWritesAndOutputs(t *testing.T) {
	h := sdktest.New(t, sdk.Stateful(func(_ context.Context, r sdk.Record, st sdk.State, emit func(sdk.Output)) error {
		if err := st.Put(r.Value); err != nil {
			return err
		}
		emit(sdk.Output{Value: r.Value})
		if string(r.Value) == "bad" {
			return errors.New("bad record")
		}
		return nil
	}))
	res := h.Process(sdktest.KV("k", "good"), sdktest.KV("k", "bad"))
	if res[1].Err == nil || len(res[1].Outputs) != 0 {
		t.Fatalf("bad record result = %+v, want an error and no outputs", res[1])
	}
	if v, _ := h.State(0, "k"); v != "good" {
		t.Fatalf("state = %q, want the write of the good record only", v)
	}
}

func TestAPanicIsARecordError(t *testing.T) {
	h := sdktest.New(t, sdk.Map(func(_ context.Context, r sdk.Record) (sdk.Output, error) {
		if string(r.Value) == "boom" {
			panic("boom")
		}
		return sdk.Output{Value: r.Value}, nil
	}))
	res := h.Process(sdktest.KV("", "boom"), sdktest.KV("", "ok"))
	if res[0].Err == nil || !strings.Contains(res[0].Err.Error(), "panicked") {
		t.Fatalf("panicking record: err = %v, want a panic error", res[0].Err)
	}
	if len(res[1].Outputs) != 1 {
		t.Fatalf("the record after a panic produced %d outputs, want 1", len(res[1].Outputs))
	}
}

func TestUserConfigAndHooks(t *testing.T) {
	var batches, errs int
	h := sdktest.New(t, sdk.Map(func(ctx context.Context, r sdk.Record) (sdk.Output, error) {
		if string(r.Value) == "fail" {
			return sdk.Output{}, errors.New("fail")
		}
		return sdk.Output{Value: []byte(sdk.UserConfig(ctx)["greeting"] + " " + string(r.Value))}, nil
	}), sdk.WithUserConfig(map[string]string{"greeting": "hello"}), sdk.WithHooks(sdk.Hooks{
		OnBatch:       func(b sdk.BatchInfo) { batches++ },
		OnRecordError: func(sdk.Record, error) { errs++ },
	}))
	res := h.Process(sdktest.KV("", "world"), sdktest.KV("", "fail"))
	if got := string(res[0].Outputs[0].Value); got != "hello world" {
		t.Errorf("output %q, want %q", got, "hello world")
	}
	if batches != 1 || errs != 1 {
		t.Errorf("hooks saw %d batches and %d errors, want 1 and 1", batches, errs)
	}
}
