package sdk

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	"github.com/millrace-dev/millrace/executor-runtime/profile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// ProtocolVersion is the function protocol version the I/O sidecar's Open carries; this SDK
// also speaks versions 2 (functionv1.ProtocolVersionPacked) and 3 (ProtocolVersionState), which
// it announces in Opened.
const ProtocolVersion = 1

// MaxMessageBytes bounds one gRPC message on the function and state sockets.
const MaxMessageBytes = 64 << 20

const sdkName = "millrace-go/1"

// Main is the whole main function of a function binary: it reads --socket (or
// MILLRACE_FUNCTION_SOCKET), serves until SIGTERM or SIGINT, and exits non-zero on failure.
func Main(h Handler, opts ...Option) {
	socket := flag.String("socket", "", "path of the Unix domain socket to serve on (default $"+EnvFunctionSocket+" or "+DefaultSocket+")")
	flag.Parse()
	if *socket != "" {
		opts = append(opts, WithSocket(*socket))
	}
	stopProfile := profile.Start(filepath.Base(os.Args[0]))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := Serve(ctx, h, opts...)
	stopProfile()
	if err != nil {
		slog.Error("function failed", "err", err)
		os.Exit(1)
	}
}

// Serve runs h as a Millrace function on a Unix domain socket until ctx ends.
func Serve(ctx context.Context, h Handler, opts ...Option) error {
	o := newOptions(opts)
	if err := os.MkdirAll(filepath.Dir(o.socket), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	// A socket file left by a killed predecessor would make Listen fail.
	if err := os.Remove(o.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", o.socket, err)
	}
	lis, err := net.Listen("unix", o.socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.socket, err)
	}
	srv := grpc.NewServer(append(wirecodec.ServerOptions(), grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))...)
	fs := &functionServer{handler: h, opts: o, stopping: make(chan struct{})}
	defer fs.close()
	functionv1.RegisterFunctionServer(srv, fs)
	o.logger.Info("function serving", "socket", o.socket)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve function: %w", err)
	case <-ctx.Done():
		// In a pod the kubelet signals the function first and the I/O sidecar only after the
		// function has exited, so the function must not wait for the sidecar to stop: it tells
		// every open session that it is stopping, keeps answering the batches already sent, and
		// the sidecar commits and closes the stream, which ends GracefulStop.
		o.logger.Info("function stopping; asking the I/O sidecar to commit and close the session")
		close(fs.stopping)
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
			o.logger.Info("function stopped")
			return nil
		case <-time.After(o.shutdownTimeout):
			srv.Stop()
			o.logger.Error("the I/O sidecar did not close its session in time; stopping hard", "timeout", o.shutdownTimeout)
			return fmt.Errorf("%w (%s)", ErrShutdownTimeout, o.shutdownTimeout)
		}
	}
}

// ErrShutdownTimeout is returned by Serve when the I/O sidecar did not close its session within
// the shutdown timeout after ctx ended: the session was cut off, and the sidecar redoes its
// uncommitted interval.
var ErrShutdownTimeout = errors.New("the I/O sidecar did not close its session within the shutdown timeout")

type functionServer struct {
	functionv1.UnimplementedFunctionServer
	handler Handler
	opts    options
	// stopping closes when Serve's context ends: every session then tells the sidecar.
	stopping chan struct{}

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (s *functionServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// stateClient returns a connection to the state sidecar, shared across sessions.
func (s *functionServer) stateClient(open *functionv1.Open) (stateBackend, error) {
	path := s.opts.stateSocket
	if path == "" {
		if open.GetStateSocket() == "" {
			return nil, nil
		}
		path = filepath.Join(filepath.Dir(s.opts.socket), open.GetStateSocket())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.conns[path]; ok {
		return &grpcState{c: statev1.NewStateClient(c)}, nil
	}
	c, err := grpc.NewClient("unix://"+path, append(wirecodec.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)))...)
	if err != nil {
		return nil, fmt.Errorf("connect to state sidecar at %s: %w", path, err)
	}
	if s.conns == nil {
		s.conns = map[string]*grpc.ClientConn{}
	}
	s.conns[path] = c
	return &grpcState{c: statev1.NewStateClient(c)}, nil
}

func (s *functionServer) Process(stream functionv1.Function_ProcessServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	open := first.GetOpen()
	if open == nil {
		return status.Error(codes.FailedPrecondition, "the first message of a session must be Open")
	}
	if open.GetProtocolVersion() != ProtocolVersion {
		return status.Errorf(codes.FailedPrecondition, "protocol version %d is not supported: this function speaks %d", open.GetProtocolVersion(), ProtocolVersion)
	}
	st, err := s.stateClient(open)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	info := SessionInfo{
		Namespace: open.GetNamespace(), Pipeline: open.GetPipeline(), Entity: open.GetEntity(),
		UserConfig: open.GetUserConfig(), OutputStreams: open.GetOutputStreams(),
	}
	if s.opts.hooks.OnSession != nil {
		s.opts.hooks.OnSession(info)
	}
	s.opts.logger.Info("session opened", "entity", info.Entity, "outputs", info.OutputStreams)
	opened := &functionv1.Opened{ProtocolVersion: ProtocolVersion, Sdk: sdkName}
	if len(s.opts.protocolVersions) > 1 || (len(s.opts.protocolVersions) == 1 && s.opts.protocolVersions[0] != ProtocolVersion) {
		opened.ProtocolVersions = s.opts.protocolVersions
	}
	if err := stream.Send(&functionv1.ProcessResponse{Response: &functionv1.ProcessResponse_Opened{Opened: opened}}); err != nil {
		return err
	}
	// Results and the stopping notice are sent from two goroutines; a gRPC stream allows one
	// sender at a time.
	var sendMu sync.Mutex
	send := func(m *functionv1.ProcessResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	go func() {
		select {
		case <-s.stopping:
			if err := send(&functionv1.ProcessResponse{Response: &functionv1.ProcessResponse_Stopping{Stopping: &functionv1.Stopping{}}}); err == nil {
				s.opts.logger.Info("told the I/O sidecar that the function is stopping")
			}
		case <-ctx.Done():
		}
	}()
	e := newEngine(s.handler, s.opts.hooks, st, info)
	version := negotiate(open.GetProtocolVersions(), s.opts.protocolVersions)
	if version >= functionv1.ProtocolVersionState && st != nil && open.GetStateSocket() != "" {
		e.cache = newStateCache(s.opts.stateCacheKeys)
	}
	// Send marshals each result before the next batch is processed.
	e.reuse = true
	ctx = withUserConfig(ctx, info.UserConfig)
	// Each batch is processed and answered before the next is received, so one message serves
	// them all.
	var req functionv1.ReusedRequest
	var p packer
	p.streams(info.OutputStreams)
	for {
		err := stream.RecvMsg(&req)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		b := req.GetBatch()
		if b == nil {
			return status.Error(codes.InvalidArgument, "expected a Batch after Open")
		}
		e.protocol = 1
		var res *functionv1.BatchResult
		if req.Packed() {
			e.protocol = min(version, functionv1.ProtocolVersionState)
			generation, interval := req.PackedState()
			res, err = e.processCached(ctx, b, generation, interval)
		} else {
			res, err = e.process(ctx, b)
		}
		if err != nil {
			return status.Error(codes.Aborted, err.Error())
		}
		msg := &functionv1.ProcessResponse{Response: &functionv1.ProcessResponse_Result{Result: res}}
		if req.Packed() {
			var state []byte
			if e.cache != nil {
				state = e.stateOut
			}
			msg = p.pack(b, res, state)
		}
		if err := send(msg); err != nil {
			return err
		}
	}
}

// negotiate is the function protocol version of a session: the highest in both the sidecar's
// Open.protocol_versions (none listed: a sidecar before version 3, which speaks 1 and 2) and
// the function's own list, as the sidecar computes it from Opened.
func negotiate(sidecar, function []uint32) uint32 {
	if len(sidecar) == 0 {
		sidecar = []uint32{1, functionv1.ProtocolVersionPacked}
	}
	best := uint32(1)
	for _, v := range function {
		if v > best && slices.Contains(sidecar, v) {
			best = v
		}
	}
	return best
}

// grpcState is the state sidecar. noMany is set once the sidecar answered GetMany with
// Unimplemented (a sidecar older than GetMany): reads then go key by key with Get.
type grpcState struct {
	c      statev1.StateClient
	noMany atomic.Bool
}

func (g *grpcState) GetMany(ctx context.Context, session string, partition int32, keys [][]byte) ([]*statev1.GetResponse, error) {
	if g.noMany.Load() {
		return nil, errNoGetMany
	}
	res, err := g.c.GetMany(ctx, &statev1.GetManyRequest{Session: session, Partition: partition, Keys: keys})
	if status.Code(err) == codes.Unimplemented {
		g.noMany.Store(true)
		return nil, errNoGetMany
	}
	if err != nil {
		return nil, fmt.Errorf("get state: %w", err)
	}
	if len(res.GetValues()) != len(keys) {
		return nil, fmt.Errorf("get state: %d values for %d keys", len(res.GetValues()), len(keys))
	}
	return res.GetValues(), nil
}

func (g *grpcState) Get(ctx context.Context, session string, partition int32, key []byte) ([]byte, bool, error) {
	res, err := g.c.Get(ctx, &statev1.GetRequest{Session: session, Partition: partition, Key: key})
	if err != nil {
		return nil, false, fmt.Errorf("get state: %w", err)
	}
	return res.GetValue(), res.GetFound(), nil
}

func (g *grpcState) Write(ctx context.Context, session string, muts []*statev1.Mutation) error {
	if _, err := g.c.Write(ctx, &statev1.WriteRequest{Session: session, Mutations: muts}); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// packer answers a PackedBatch with a PackedResult (protocol version 2), reusing its messages
// and its buffer for every batch: gRPC has marshalled a message when Send returns.
type packer struct {
	index map[string]int
	buf   []byte
	res   functionv1.PackedResult
	wrap  functionv1.ProcessResponse_PackedResult
	msg   functionv1.ProcessResponse
}

func (p *packer) streams(outputs []string) {
	p.index = make(map[string]int, len(outputs))
	for i, s := range outputs {
		p.index[s] = i + 1
	}
}

func (p *packer) streamIndex(s string) (int, bool) {
	i, ok := p.index[s]
	return i, ok
}

func (p *packer) pack(in *functionv1.Batch, res *functionv1.BatchResult, state []byte) *functionv1.ProcessResponse {
	b := p.buf[:0]
	for i, rr := range res.Records {
		b = functionv1.AppendPackedResult(b, in.Records[i], rr, p.streamIndex)
	}
	p.buf = b
	p.res = functionv1.PackedResult{Id: res.Id, Count: uint32(len(res.Records)), Records: b, State: state}
	p.wrap.PackedResult = &p.res
	p.msg.Response = &p.wrap
	return &p.msg
}
