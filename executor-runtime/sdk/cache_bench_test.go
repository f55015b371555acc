package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
	"github.com/millrace-dev/millrace/executor-runtime/state"
)

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStatefulBatch measures the state path of word count's sum, function and state
// sidecar (the real service on a Unix socket) in this process, side by side in one run:
// proto=2 reads the batch's keys with one GetMany and writes them with one Write per batch,
// as functions before protocol version 3 do; proto=3 keeps the state in the function and hands
// the state sidecar one Write of the interval's last values per key every 20 batches, as the I/O
// sidecar does at the end of an interval. Batches of 500 words drawn from 1,000;
// cpu-ns/record is this process's CPU per word.
func BenchmarkStatefulBatch(b *testing.B) {
	for _, proto := range []uint32{2, 3} {
		b.Run(fmt.Sprintf("proto=%d", proto), func(b *testing.B) { benchStateful(b, proto) })
	}
}

func benchStateful(b *testing.B, proto uint32) {
	svc := &countingState{Server: state.NewServer(state.NewMemoryStore(), noRestore{}, slog.New(slog.DiscardHandler))}
	st, session := startState(b, svc)
	e := newEngine(counter(), Hooks{}, st, SessionInfo{})
	e.reuse = true
	if proto == 3 {
		e.cache = newStateCache(DefaultStateCacheKeys)
	}
	const size, words, perInterval = 500, 1000, 20
	r := rand.New(rand.NewPCG(1, 2))
	batches := make([]*functionv1.Batch, 64)
	for i := range batches {
		keys := make([]string, size)
		for j := range keys {
			keys[j] = fmt.Sprintf("w%03d", r.IntN(words))
		}
		batches[i] = countBatch(uint64(i), session, keys...)
	}
	ctx := context.Background()
	pending := map[string][]byte{}
	handOver := func() {
		if len(pending) == 0 {
			return
		}
		var muts []*statev1.Mutation
		for k, v := range pending {
			muts = append(muts, &statev1.Mutation{Key: []byte(k), Value: v})
		}
		if err := st.Write(ctx, session, muts); err != nil {
			b.Fatal(err)
		}
		clear(pending)
	}
	cpu := processCPU()
	b.ResetTimer()
	for i := range b.N {
		batch := batches[i%len(batches)]
		if proto == 2 {
			if _, err := e.process(ctx, batch); err != nil {
				b.Fatal(err)
			}
			continue
		}
		if _, err := e.processCached(ctx, batch, 1, uint64(i/perInterval)+1); err != nil {
			b.Fatal(err)
		}
		rd := functionv1.NewPackedStateReader(e.stateOut)
		for rd.More() {
			k, v, _, err := rd.Next()
			if err != nil {
				b.Fatal(err)
			}
			pending[string(k)] = append([]byte(nil), v...)
		}
		if (i+1)%perInterval == 0 {
			handOver()
		}
	}
	handOver()
	b.StopTimer()
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N*size), "cpu-ns/record")
}
