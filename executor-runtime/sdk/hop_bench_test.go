package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSocketHop measures the function protocol's hop: batches of 100-byte records sent
// by a client (the I/O sidecar's side) over a Unix socket to the identity function served by the
// SDK, and the results back, as fast as gRPC flow control lets the client send. Both ends run in this process, so
// cpu-ns/record is the CPU of both sides of the hop per record.
//
// proto=1 sends Batch messages and reads BatchResults, as the sidecar does with a function that
// speaks version 1 only; proto=2 the dense PackedBatch and PackedResult of version 2, encoded
// and decoded as the sidecar does (sendPacked, handlePacked).
func BenchmarkSocketHop(b *testing.B) {
	for _, size := range []int{100, 500} {
		for _, proto := range []uint32{1, 2} {
			b.Run(fmt.Sprintf("batch=%d/proto=%d", size, proto), func(b *testing.B) { benchHop(b, size, proto) })
		}
	}
}

// BenchmarkSocketHopSDKs is BenchmarkSocketHop for the Go SDK and, in the same run, for the
// function process that MILLRACE_HOP_FUNCTION names (a command line serving on
// $MILLRACE_FUNCTION_SOCKET, such as the Python SDK's identity function:
// "python -m millrace.examples.identity"). cpu-ns/record counts this process and the function
// process.
func BenchmarkSocketHopSDKs(b *testing.B) {
	for _, size := range []int{100, 500} {
		b.Run(fmt.Sprintf("sdk=go/batch=%d", size), func(b *testing.B) { benchHop(b, size, 1) })
		b.Run(fmt.Sprintf("sdk=external/batch=%d", size), func(b *testing.B) {
			command := os.Getenv("MILLRACE_HOP_FUNCTION")
			if command == "" {
				b.Skip("MILLRACE_HOP_FUNCTION is not set")
			}
			benchHopWith(b, size, 1, externalFunction(b, strings.Fields(command)))
		})
	}
}

// externalFunction serves with a child process and returns its CPU time so far.
func externalFunction(b *testing.B, argv []string) func(ctx context.Context, sock string) (func() time.Duration, chan error) {
	return func(ctx context.Context, sock string) (func() time.Duration, chan error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), sdk.EnvFunctionSocket+"="+sock)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		go func() { <-ctx.Done(); _ = cmd.Process.Signal(syscall.SIGTERM) }()
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("%v did not listen on %s", argv, sock)
			}
		}
		return func() time.Duration {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
			if err != nil {
				return 0
			}
			f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
			utime, _ := strconv.ParseInt(f[11], 10, 64)
			stime, _ := strconv.ParseInt(f[12], 10, 64)
			return time.Duration(utime+stime) * 10 * time.Millisecond
		}, done
	}
}

func benchHop(b *testing.B, batchSize int, proto uint32) {
	benchHopWith(b, batchSize, proto, func(ctx context.Context, sock string) (func() time.Duration, chan error) {
		served := make(chan error, 1)
		go func() {
			served <- sdk.Serve(ctx, identity.Handler(), sdk.WithSocket(sock), sdk.WithLogger(slog.New(slog.DiscardHandler)))
		}()
		return func() time.Duration { return 0 }, served
	})
}

func benchHopWith(b *testing.B, batchSize int, proto uint32, serve func(ctx context.Context, sock string) (func() time.Duration, chan error)) {
	dir, err := os.MkdirTemp("", "hop-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "f.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	functionCPU, served := serve(ctx, sock)
	conn, err := grpc.NewClient("unix://"+sock, append(wirecodec.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	stream, err := functionv1.NewFunctionClient(conn).Process(ctx, grpc.WaitForReady(true))
	if err != nil {
		b.Fatal(err)
	}
	if err := stream.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_Open{Open: &functionv1.Open{ProtocolVersion: 1, OutputStreams: []string{"out"}}}}); err != nil {
		b.Fatal(err)
	}
	opened, err := stream.Recv()
	if err != nil {
		b.Fatal(err)
	}
	if proto > 1 && !slices.Contains(opened.GetOpened().GetProtocolVersions(), proto) {
		b.Fatalf("the function does not speak protocol version %d: %v", proto, opened.GetOpened())
	}
	value := make([]byte, 100)
	batch := &functionv1.Batch{Stream: "in", Topic: "in", Records: make([]*functionv1.Record, batchSize)}
	for i := range batch.Records {
		batch.Records[i] = &functionv1.Record{Offset: int64(i), Key: []byte(fmt.Sprintf("key-%06d", i)), Value: value, TimestampMs: 1}
	}
	batches := max(1, b.N/batchSize)
	errc := make(chan error, 1)
	b.ResetTimer()
	startCPU := cpuTime() + functionCPU()
	go func() {
		var res functionv1.ReusedResponse
		var out functionv1.PackedOutput
		for i := 0; i < batches; i++ {
			if err := stream.RecvMsg(&res); err != nil {
				errc <- err
				return
			}
			n := len(res.GetResult().GetRecords())
			if p := res.GetPackedResult(); p != nil {
				// Decode every output, as the sidecar does.
				rd := functionv1.NewPackedResultReader(p.GetRecords())
				for range p.GetCount() {
					_, outs, err := rd.Next()
					for range outs {
						err = errors.Join(err, rd.ReadOutput(&out))
					}
					if err != nil {
						errc <- err
						return
					}
					n++
				}
			}
			if n != batchSize {
				errc <- fmt.Errorf("result has %d records, want %d", n, batchSize)
				return
			}
		}
		errc <- nil
	}()
	for i := 0; i < batches; i++ {
		batch.Id = uint64(i)
		var err error
		if proto > 1 {
			err = stream.SendMsg(packedRequest(batch))
		} else {
			err = stream.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_Batch{Batch: batch}})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	cpu := cpuTime() + functionCPU() - startCPU
	b.StopTimer()
	records := float64(batches * batchSize)
	b.ReportMetric(float64(cpu.Nanoseconds())/records, "cpu-ns/record")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/records, "wall-ns/record")
	_ = stream.CloseSend()
	cancel()
	<-served
}

// packedRequest encodes b as the sidecar's sendPacked does: sized first, then written straight
// into the buffer gRPC sends.
func packedRequest(b *functionv1.Batch) *wirecodec.Raw {
	first := b.Records[0]
	hdr := functionv1.PackedBatch{Id: b.Id, Stream: b.Stream, Topic: b.Topic, Partition: b.Partition,
		Count: uint32(len(b.Records)), BaseOffset: first.Offset, BaseTimestampMs: first.TimestampMs}
	n := 0
	offset, ts := hdr.BaseOffset, hdr.BaseTimestampMs
	for _, r := range b.Records {
		n += functionv1.PackedRecordSize(r.Offset-offset, r.TimestampMs-ts, r.Key, r.Value, 0)
		offset, ts = r.Offset+1, r.TimestampMs
	}
	raw, buf := wirecodec.NewRaw(functionv1.PackedBatchRequestSize(&hdr, n))
	buf = functionv1.AppendPackedBatchRequest(buf, &hdr, n)
	offset, ts = hdr.BaseOffset, hdr.BaseTimestampMs
	for _, r := range b.Records {
		buf = functionv1.AppendPackedRecord(buf, r.Offset-offset, r.TimestampMs-ts, r.Key, r.Value, 0)
		offset, ts = r.Offset+1, r.TimestampMs
	}
	if err := raw.Set(buf); err != nil {
		panic(err)
	}
	return raw
}
