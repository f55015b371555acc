package sdk

import (
	"context"
	"fmt"
	"sync"
	"time"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// Local runs a Handler in process, through the same batch engine Serve uses, with state kept in
// memory. It is the base of the sdktest harness; use that in tests.
type Local struct {
	mu     sync.Mutex
	engine *engine
	state  *memoryState
	nextID uint64
}

// Result is what one input record produced.
type Result struct {
	Outputs []Output
	// Err is the handler's error: the record would go to the dead-letter topic.
	Err error
}

// NewLocal returns a Local runner for h.
func NewLocal(h Handler, opts ...Option) *Local {
	o := newOptions(opts)
	st := &memoryState{data: map[stateKey][]byte{}}
	return &Local{
		engine: newEngine(h, o.hooks, st, SessionInfo{UserConfig: o.userConfig}),
		state:  st,
	}
}

// Process runs records as one batch and returns one Result per record. Records with a zero
// Timestamp get the current time.
func (l *Local) Process(ctx context.Context, records ...Record) ([]Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The wire protocol batches one partition's records; a run of records of one stream, topic
	// and partition becomes one batch here too.
	var all []*functionv1.RecordResult
	for len(records) > 0 {
		n := 1
		for n < len(records) && records[n].Stream == records[0].Stream && records[n].Topic == records[0].Topic && records[n].Partition == records[0].Partition {
			n++
		}
		l.nextID++
		b := &functionv1.Batch{Id: l.nextID, StateSession: "local", Stream: records[0].Stream, Topic: records[0].Topic, Partition: records[0].Partition}
		for i, r := range records[:n] {
			if r.Timestamp.IsZero() {
				r.Timestamp = time.Now()
			}
			if r.Offset == 0 {
				r.Offset = int64(i)
			}
			pr := &functionv1.Record{Offset: r.Offset, Key: r.Key, Value: r.Value, TimestampMs: r.Timestamp.UnixMilli()}
			for _, h := range r.Headers {
				pr.Headers = append(pr.Headers, &functionv1.Header{Key: h.Key, Value: h.Value})
			}
			b.Records = append(b.Records, pr)
		}
		res, err := l.engine.process(withUserConfig(ctx, l.engine.session.UserConfig), b)
		if err != nil {
			return nil, err
		}
		all = append(all, res.Records...)
		records = records[n:]
	}
	res := &functionv1.BatchResult{Records: all}
	out := make([]Result, len(res.Records))
	for i, rr := range res.Records {
		if rr.GetError() != "" {
			out[i].Err = fmt.Errorf("%s", rr.GetError())
			continue
		}
		for _, o := range rr.Outputs {
			ro := Output{Stream: o.GetStream(), Key: o.GetKey(), Value: o.GetValue()}
			if o.GetTimestampMs() != 0 {
				ro.Timestamp = time.UnixMilli(o.GetTimestampMs())
			}
			for _, h := range o.Headers {
				ro.Headers = append(ro.Headers, Header{Key: h.GetKey(), Value: h.GetValue()})
			}
			out[i].Outputs = append(out[i].Outputs, ro)
		}
	}
	return out, nil
}

// State returns the committed value of key in partition.
func (l *Local) State(partition int32, key []byte) ([]byte, bool) {
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	v, ok := l.state.data[stateKey{partition, string(key)}]
	return v, ok
}

type memoryState struct {
	mu   sync.Mutex
	data map[stateKey][]byte
}

func (m *memoryState) Get(_ context.Context, _ string, partition int32, key []byte) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.data[stateKey{partition, string(key)}]
	return v, ok, nil
}

func (m *memoryState) GetMany(_ context.Context, _ string, partition int32, keys [][]byte) ([]*statev1.GetResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*statev1.GetResponse, len(keys))
	for i, k := range keys {
		v, ok := m.data[stateKey{partition, string(k)}]
		out[i] = &statev1.GetResponse{Value: v, Found: ok}
	}
	return out, nil
}

func (m *memoryState) Write(_ context.Context, _ string, muts []*statev1.Mutation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mu := range muts {
		k := stateKey{mu.GetPartition(), string(mu.GetKey())}
		if mu.GetDelete() {
			delete(m.data, k)
		} else {
			m.data[k] = mu.GetValue()
		}
	}
	return nil
}
