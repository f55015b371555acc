package sdk_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/millrace-dev/millrace/executor-runtime/examples/identity"
	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	"github.com/millrace-dev/millrace/executor-runtime/sdk"
)

// TestServeAnswersEachBatchInItsEncoding: the SDK announces versions 1, 2 and 3 (or 1 only with
// WithProtocolVersions(1)), answers a Batch with a BatchResult whatever it announced (a sidecar
// older than version 2 ignores the list), and a PackedBatch with a PackedResult that means the same.
func TestServeAnswersEachBatchInItsEncoding(t *testing.T) {
	for _, tc := range []struct {
		reason string
		opts   []sdk.Option
		want   []uint32
	}{
		{"by default", nil, []uint32{1, 2, 3}},
		{"pinned to version 1", []sdk.Option{sdk.WithProtocolVersions(1)}, nil},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "proto-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			sock := filepath.Join(dir, "f.sock")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			served := make(chan error, 1)
			go func() {
				served <- sdk.Serve(ctx, identity.Handler(), append(tc.opts, sdk.WithSocket(sock), sdk.WithLogger(slog.New(slog.DiscardHandler)))...)
			}()
			defer func() { cancel(); <-served }()
			conn, err := grpc.NewClient("unix://"+sock, append(wirecodec.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stream, err := functionv1.NewFunctionClient(conn).Process(ctx, grpc.WaitForReady(true))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_Open{Open: &functionv1.Open{ProtocolVersion: 1, OutputStreams: []string{"out"}}}}); err != nil {
				t.Fatal(err)
			}
			opened, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, opened.GetOpened().GetProtocolVersions()); diff != "" {
				t.Errorf("Opened.protocol_versions (-want +got):\n%s", diff)
			}
			batch := &functionv1.Batch{Id: 3, Stream: "in", Topic: "in", Records: []*functionv1.Record{
				{Offset: 10, Key: []byte("k"), Value: []byte("v"), TimestampMs: 5, Headers: []*functionv1.Header{{Key: "h", Value: []byte("x")}}},
				{Offset: 11, Value: []byte("w"), TimestampMs: 6},
			}}
			want := &functionv1.BatchResult{Id: 3, Records: []*functionv1.RecordResult{
				{Outputs: []*functionv1.OutputRecord{{Key: []byte("k"), Value: []byte("v"), TimestampMs: 5, Headers: []*functionv1.Header{{Key: "h", Value: []byte("x")}}}}},
				{Outputs: []*functionv1.OutputRecord{{Value: []byte("w"), TimestampMs: 6}}},
			}}
			if err := stream.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_Batch{Batch: batch}}); err != nil {
				t.Fatal(err)
			}
			res, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, res.GetResult(), protocmp.Transform()); diff != "" {
				t.Errorf("answer to a Batch (-want +got):\n%s", diff)
			}
			if tc.want == nil {
				return
			}
			if err := stream.Send(&functionv1.ProcessRequest{Request: &functionv1.ProcessRequest_PackedBatch{PackedBatch: batch.Pack()}}); err != nil {
				t.Fatal(err)
			}
			res, err = stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if res.GetPackedResult() == nil {
				t.Fatalf("answer to a PackedBatch: %v, want a PackedResult", res)
			}
			got, err := res.GetPackedResult().Unpack(batch, []string{"out"})
			if err != nil {
				t.Fatal(err)
			}
			// A packed output with the input's timestamp carries none (0: the input's).
			for _, rr := range want.Records {
				for _, o := range rr.Outputs {
					o.TimestampMs = 0
				}
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("answer to a PackedBatch, unpacked (-want +got):\n%s", diff)
			}
		})
	}
}
