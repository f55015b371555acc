package sdk

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
	"unsafe"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// stateBackend is where state lives: the state sidecar behind gRPC, or memory for Local.
type stateBackend interface {
	Get(ctx context.Context, session string, partition int32, key []byte) ([]byte, bool, error)
	// GetMany reads keys of one partition in one call; errNoGetMany says the backend cannot,
	// and Get is to be used instead.
	GetMany(ctx context.Context, session string, partition int32, keys [][]byte) ([]*statev1.GetResponse, error)
	Write(ctx context.Context, session string, muts []*statev1.Mutation) error
}

// errNoGetMany is GetMany's answer when the state sidecar predates it.
var errNoGetMany = errors.New("the state sidecar has no GetMany")

// errNoState is returned by State calls when the entity has no state configured.
var errNoState = errors.New("state is not configured for this entity")

type stateKey struct {
	partition int32
	key       string
}

type stateRead struct {
	value []byte
	found bool
}

type pendingWrite struct {
	value   []byte
	deleted bool
}

// engine turns batches into results. It is not safe for concurrent use: a session processes its
// batches one after another, which is what makes a batch see the state writes of the one before.
type engine struct {
	handler Handler
	hooks   Hooks
	state   stateBackend
	session SessionInfo

	// batchWrites are the writes of the records of the current batch that succeeded; order keeps
	// the changelog deterministic.
	batchWrites map[stateKey]pendingWrite
	order       []stateKey

	// batchReads are the values of the batch's keys, read in one GetMany at the batch's first
	// read that its own writes do not answer: one call to the state sidecar per batch instead of
	// one per record. A batch is of one partition, and between the batches of a session only this
	// function writes its state, so the values read then are those Get would read record by
	// record (writes of the batch itself come first, from batchWrites).
	batchReads map[stateKey]stateRead
	prefetched bool
	cur        *functionv1.Batch
	curIndex   int
	keysBuf    [][]byte
	// readKeys are the map keys of the keys in keysBuf; recKeys[i] is the map key of record i of
	// the batch once the prefetch built it (zero before), so that a record's key is converted
	// to a string once per batch, not once per use.
	readKeys []stateKey
	recKeys  []stateKey
	// muts and mutSlab hold a batch's state writes: Write marshals them before it returns.
	muts    []*statev1.Mutation
	mutSlab []statev1.Mutation

	// reuse is set when the caller is done with a result before it asks for the next one (Serve
	// marshals it in Send): the result messages are then kept and reused for every batch, which
	// spares the garbage collector a batch-sized allocation of each kind per batch.
	reuse   bool
	results []functionv1.RecordResult
	resPtrs []*functionv1.RecordResult
	res     functionv1.BatchResult
	run     batchRun
	// protocol is the encoding of the batch being processed, for BatchInfo.
	protocol uint32

	// cache is the function's own copy of the state (protocol version 3, see cache.go): set
	// when the session speaks it, and then pc is the current batch's partition and stateOut the
	// batch's state writes, returned in its PackedResult instead of a Write call.
	cache    *stateCache
	pc       *partitionCache
	stateOut []byte
	missing  []*cachedValue
}

func newEngine(h Handler, hooks Hooks, st stateBackend, session SessionInfo) *engine {
	return &engine{handler: h, hooks: hooks, state: st, session: session, batchWrites: map[stateKey]pendingWrite{}, batchReads: map[stateKey]stateRead{}}
}

// recordState is the State of one record: its writes stay local until the record succeeds.
type recordState struct {
	ctx       context.Context
	e         *engine
	session   string
	partition int32
	k         stateKey
	kset      bool
	written   bool
	pending   pendingWrite
	// c is the record's key in the cache (protocol version 3), once read or written.
	c        *cachedValue
	keyBytes []byte
	index    int // of the record in the batch
	// backendErr is a failure of the state store itself, which fails the batch rather than
	// dead-lettering the record: the record is not at fault.
	backendErr error
}

// key builds the map key only for functions that use state.
func (s *recordState) key() stateKey {
	if !s.kset {
		if rk := s.e.recKeys; s.index < len(rk) && rk[s.index].key != "" {
			s.k = rk[s.index]
		} else {
			s.k = stateKey{s.partition, string(s.keyBytes)}
		}
		s.kset = true
	}
	return s.k
}

// noState fails the batch, not the record: a stateful function deployed without a state
// sidecar is a configuration error, and dead-lettering every record would hide it.
func (s *recordState) noState() error {
	s.backendErr = errNoState
	return errNoState
}

func (s *recordState) Get() ([]byte, bool, error) {
	if s.e.state == nil {
		return nil, false, s.noState()
	}
	if s.written {
		return s.pending.value, !s.pending.deleted, nil
	}
	if s.e.pc != nil {
		c, err := s.e.cached(s.ctx, s.session, s.index, s.keyBytes)
		if err != nil {
			s.backendErr = err
			return nil, false, err
		}
		s.c = c
		return c.value, c.found, nil
	}
	if w, ok := s.e.batchWrites[s.key()]; ok {
		return w.value, !w.deleted, nil
	}
	if r, ok, err := s.e.prefetch(s.ctx, s.session, s.k); err != nil {
		s.backendErr = err
		return nil, false, err
	} else if ok {
		return r.value, r.found, nil
	}
	v, ok, err := s.e.state.Get(s.ctx, s.session, s.partition, s.keyBytes)
	if err != nil {
		s.backendErr = err
	}
	return v, ok, err
}

func (s *recordState) Put(value []byte) error {
	if s.e.state == nil {
		return s.noState()
	}
	if s.e.pc == nil {
		s.key()
	}
	s.written, s.pending = true, pendingWrite{value: append([]byte(nil), value...)}
	return nil
}

func (s *recordState) Delete() error {
	if s.e.state == nil {
		return s.noState()
	}
	if s.e.pc == nil {
		s.key()
	}
	s.written, s.pending = true, pendingWrite{deleted: true}
	return nil
}

// prefetch answers a read from batchReads, filling it with one GetMany of the keys of the batch's
// records from the current one on when it has not been filled yet. ok is false when the
// backend has no GetMany or the key is not among those read (a record of another partition).
func (e *engine) prefetch(ctx context.Context, session string, k stateKey) (stateRead, bool, error) {
	if !e.prefetched && e.cur != nil {
		e.prefetched = true
		p := e.cur.GetPartition()
		keys, readKeys := e.keysBuf[:0], e.readKeys[:0]
		if cap(e.recKeys) < len(e.cur.Records) {
			e.recKeys = make([]stateKey, len(e.cur.Records))
		}
		e.recKeys = e.recKeys[:len(e.cur.Records)]
		clear(e.recKeys)
		// A key repeated in the batch is read once: batchReads holds a placeholder from its
		// first record on, filled once GetMany answered.
		for i, r := range e.cur.Records[e.curIndex:] {
			key := r.GetKey()
			sk := stateKey{p, string(key)}
			e.recKeys[e.curIndex+i] = sk
			if _, dup := e.batchReads[sk]; dup {
				continue
			}
			if _, w := e.batchWrites[sk]; w {
				continue
			}
			e.batchReads[sk] = stateRead{}
			keys, readKeys = append(keys, key), append(readKeys, sk)
		}
		e.keysBuf, e.readKeys = keys[:0], readKeys[:0]
		vals, err := e.state.GetMany(ctx, session, p, keys)
		switch {
		case errors.Is(err, errNoGetMany):
			clear(e.batchReads)
		case err != nil:
			clear(e.batchReads)
			return stateRead{}, false, err
		default:
			for i, sk := range readKeys {
				e.batchReads[sk] = stateRead{value: vals[i].GetValue(), found: vals[i].GetFound()}
			}
		}
		clear(readKeys)
	}
	r, ok := e.batchReads[k]
	return r, ok, nil
}

// batchRun holds the per-batch buffers that make processing allocate little per record.
type batchRun struct {
	outs  []*functionv1.OutputRecord // outputs of the batch; a record's are a sub-slice
	slab  []functionv1.OutputRecord  // preallocated output messages
	slabN int
}

func (b *batchRun) emit(o Output) {
	if b.slabN == len(b.slab) {
		b.slab = make([]functionv1.OutputRecord, max(16, len(b.slab)))
		b.slabN = 0
	}
	out := &b.slab[b.slabN]
	b.slabN++
	// Every field is set: the slab may hold the outputs of an earlier batch.
	*out = functionv1.OutputRecord{Stream: o.Stream, Key: o.Key, Value: o.Value}
	if !o.Timestamp.IsZero() {
		out.TimestampMs = o.Timestamp.UnixMilli()
	}
	if len(o.Headers) > 0 {
		out.Headers = make([]*functionv1.Header, len(o.Headers))
		for i, h := range o.Headers {
			out.Headers[i] = &functionv1.Header{Key: h.Key, Value: h.Value}
		}
	}
	b.outs = append(b.outs, out)
}

// processOne runs the handler on one record, turning a panic into an error so that one poison
// record does not crash the function (and, restarted, crash it again on the same record).
func (e *engine) processOne(ctx context.Context, r Record, st *recordState, emit func(Output)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("function panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return e.handler.Process(ctx, r, st, emit)
}

// buffers returns the result messages of a batch of n records: fresh ones, or, with reuse,
// those of the previous batch, cleared.
func (e *engine) buffers(n int) ([]functionv1.RecordResult, *functionv1.BatchResult, *batchRun) {
	if !e.reuse {
		return make([]functionv1.RecordResult, n),
			&functionv1.BatchResult{Records: make([]*functionv1.RecordResult, n)},
			&batchRun{slab: make([]functionv1.OutputRecord, n), outs: make([]*functionv1.OutputRecord, 0, n)}
	}
	if cap(e.results) < n {
		e.results = make([]functionv1.RecordResult, n)
		e.resPtrs = make([]*functionv1.RecordResult, n)
	}
	results := e.results[:n]
	clear(results)
	e.res = functionv1.BatchResult{Records: e.resPtrs[:n]}
	run := &e.run
	if len(run.slab) < n {
		run.slab = make([]functionv1.OutputRecord, n)
	}
	clear(run.outs[:cap(run.outs)])
	run.outs, run.slabN = run.outs[:0], 0
	return results, &e.res, run
}

// process handles one batch and writes its state changes before returning, so that the next
// batch reads them. The State handed to the handler is reused across records: a handler must not
// keep it after it returns.
func (e *engine) process(ctx context.Context, b *functionv1.Batch) (*functionv1.BatchResult, error) {
	start := time.Now()
	clear(e.batchWrites)
	e.order = e.order[:0]
	clear(e.batchReads)
	e.prefetched, e.cur = false, b
	e.recKeys = e.recKeys[:0]
	defer func() { e.cur = nil }()
	n := len(b.Records)
	results, res, run := e.buffers(n)
	res.Id = b.GetId()
	info := BatchInfo{Records: n, ProtocolVersion: max(1, e.protocol)}
	emit := run.emit
	st := &recordState{ctx: ctx, e: e, session: b.GetStateSession()}
	r := Record{Stream: b.GetStream(), Topic: b.GetTopic(), Partition: b.GetPartition()}
	for i, pr := range b.Records {
		e.curIndex = i
		r.Offset, r.Key, r.Value = pr.GetOffset(), pr.GetKey(), pr.GetValue()
		r.Timestamp = time.UnixMilli(pr.GetTimestampMs())
		r.Headers = nil
		if len(pr.Headers) > 0 {
			r.Headers = make([]Header, len(pr.Headers))
			for j, h := range pr.Headers {
				r.Headers[j] = Header{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
		rr := &results[i]
		*st = recordState{ctx: ctx, e: e, session: st.session, partition: r.Partition, keyBytes: r.Key, index: i}
		first := len(run.outs)
		err := e.processOne(ctx, r, st, emit)
		if st.backendErr != nil {
			return nil, fmt.Errorf("record %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, st.backendErr)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			run.outs = run.outs[:first]
			rr.Error = err.Error()
			info.Errors++
			if e.hooks.OnRecordError != nil {
				e.hooks.OnRecordError(r, err)
			}
		} else {
			if last := len(run.outs); last > first {
				rr.Outputs = run.outs[first:last:last]
			}
			info.Outputs += len(rr.Outputs)
			if st.written && e.pc != nil {
				e.wrote(st)
			} else if st.written {
				if _, seen := e.batchWrites[st.k]; !seen {
					e.order = append(e.order, st.k)
				}
				e.batchWrites[st.k] = st.pending
			}
		}
		res.Records[i] = rr
	}
	if e.pc != nil {
		e.stateOut = e.pc.appendWrites(e.stateOut[:0])
	}
	if len(e.order) > 0 {
		// The mutations are reused batch after batch: Write has marshalled them (or, in Local,
		// copied what it keeps) when it returns.
		if cap(e.mutSlab) < len(e.order) {
			e.mutSlab = make([]statev1.Mutation, len(e.order))
			e.muts = make([]*statev1.Mutation, len(e.order))
		}
		muts := e.muts[:len(e.order)]
		for i, k := range e.order {
			w := e.batchWrites[k]
			m := &e.mutSlab[i]
			// Key aliases the map key's string (read only: it is marshalled, never written).
			*m = statev1.Mutation{Partition: k.partition, Key: unsafe.Slice(unsafe.StringData(k.key), len(k.key)), Value: w.value, Delete: w.deleted}
			muts[i] = m
		}
		err := e.state.Write(ctx, b.GetStateSession(), muts)
		clear(e.mutSlab[:len(e.order)])
		if err != nil {
			return nil, fmt.Errorf("write state of batch %d: %w", b.GetId(), err)
		}
	}
	info.Duration = time.Since(start)
	if e.hooks.OnBatch != nil {
		e.hooks.OnBatch(info)
	}
	return res, nil
}
