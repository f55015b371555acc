package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

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

// bareMain runs the bare franz-go loop (scenario (a)) as a process of its own, for the peer
// benchmark's "bare" contender: millrace-bench bare --bootstrap B --in T --out T --group G.
func bareMain(args []string) {
	fl := flag.NewFlagSet("bare", flag.ExitOnError)
	var p params
	bootstrap := fl.String("bootstrap", "", "Kafka bootstrap servers")
	in := fl.String("in", "", "input topic")
	out := fl.String("out", "", "output topic")
	group := fl.String("group", "", "consumer group")
	fl.IntVar(&p.batch, "batch", 500, "records per batch")
	fl.IntVar(&p.inFlight, "in-flight", 4, "batches in flight")
	fl.DurationVar(&p.commitInterval, "commit-interval", 100*time.Millisecond, "commit interval")
	_ = fl.Parse(args)
	p.bootstrap = strings.Split(*bootstrap, ",")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := bareLoop(ctx, p, *in, *out, *group); err != nil && ctx.Err() == nil {
		fail(err)
	}
}
