package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// envBenchFunction makes millrace-bench a Millrace function (the peer benchmark's upper-case
// map), so that the benchmark needs no binary of its own for it.
const envBenchFunction = "MILLRACE_BENCH_FUNCTION"

// Upper is the stateless map of the peer benchmark: the value upper-cased (ASCII).
func Upper() sdk.Handler {
	return sdk.Map(func(_ context.Context, r sdk.Record) (sdk.Output, error) {
		return sdk.Output{Key: r.Key, Value: bytes.ToUpper(r.Value), Headers: r.Headers, Timestamp: r.Timestamp}, nil
	})
}

func benchFunction(name string) {
	switch name {
	case "upper":
		os.Args = os.Args[:1]
		sdk.Main(Upper())
	default:
		fail(fmt.Errorf("%s=%q: unknown function", envBenchFunction, name))
	}
}
