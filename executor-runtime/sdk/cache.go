package sdk

import (
	"context"
	"errors"
	"unsafe"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
)

// The function's copy of the state, for protocol version 3 (docs/function-protocol.md,
// "Protocol version 3"). Between two batches of a session only this function writes the state
// of a partition it is sent, so what it read and wrote is the partition's state for as long as
// the I/O sidecar sends the partition's batches with the same state generation: reads are
// answered here, without a call to the state sidecar, and a batch's writes go back in its
// PackedResult. A key not kept yet is read from the state sidecar, with the keys of the rest of
// the batch, in one GetMany. A partition's copy is dropped when its generation changes, and the
// whole copy when it holds more than its limit of keys at the first batch of a new interval
// (then every earlier write is in the state sidecar, which reads answer after).

// DefaultStateCacheKeys is how many keys a function keeps of its state by default
// (WithStateCacheKeys).
const DefaultStateCacheKeys = 1 << 18

type stateCache struct {
	parts    map[int32]*partitionCache
	keys     int
	limit    int
	interval uint64
}

type partitionCache struct {
	c    *stateCache
	gen  uint64
	vals map[string]*cachedValue
	// written are the keys the current batch wrote, in the order of their first write.
	written []*cachedValue
	batch   uint64
}

type cachedValue struct {
	key   string
	value []byte
	found bool
	// batch is the last batch (partitionCache.batch) that wrote the key.
	batch uint64
}

func newStateCache(limit int) *stateCache {
	return &stateCache{parts: map[int32]*partitionCache{}, limit: limit}
}

// partition returns the copy of partition p for a batch of generation gen in interval interval.
func (c *stateCache) partition(p int32, gen, interval uint64) *partitionCache {
	if interval != c.interval {
		c.interval = interval
		if c.keys > c.limit {
			clear(c.parts)
			c.keys = 0
		}
	}
	pc := c.parts[p]
	if pc == nil {
		pc = &partitionCache{c: c, gen: gen, vals: map[string]*cachedValue{}}
		c.parts[p] = pc
	}
	if pc.gen != gen {
		c.keys -= len(pc.vals)
		clear(pc.vals)
		pc.gen = gen
	}
	pc.batch++
	pc.written = pc.written[:0]
	return pc
}

func (pc *partitionCache) put(key string, value []byte, found bool) *cachedValue {
	v := &cachedValue{key: key, value: value, found: found}
	pc.vals[key] = v
	pc.c.keys++
	return v
}

// cached returns the value of key, the key of record index of the current batch, reading it
// and the keys of the batch's later records that are not kept yet from the state sidecar when
// it is not kept.
func (e *engine) cached(ctx context.Context, session string, index int, key []byte) (*cachedValue, error) {
	pc := e.pc
	if v := pc.vals[string(key)]; v != nil {
		return v, nil
	}
	p := e.cur.GetPartition()
	keys, missing := e.keysBuf[:0], e.missing[:0]
	for _, r := range e.cur.Records[index:] {
		k := r.GetKey()
		if pc.vals[string(k)] != nil {
			continue
		}
		// A key repeated in the batch is read once: it is kept (not found) until GetMany answers.
		missing = append(missing, pc.put(string(k), nil, false))
		keys = append(keys, k)
	}
	e.keysBuf, e.missing = keys[:0], missing[:0]
	defer clear(missing)
	vals, err := e.state.GetMany(ctx, session, p, keys)
	if errors.Is(err, errNoGetMany) {
		// A state sidecar older than GetMany: this key alone, with Get.
		for _, v := range missing[1:] {
			delete(pc.vals, v.key)
			pc.c.keys--
		}
		v := missing[0]
		if v.value, v.found, err = e.state.Get(ctx, session, p, key); err != nil {
			return nil, err
		}
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	for i, v := range missing {
		v.value, v.found = vals[i].GetValue(), vals[i].GetFound()
	}
	return missing[0], nil
}

// wrote keeps the write of a record that succeeded.
func (e *engine) wrote(st *recordState) {
	pc := e.pc
	v := st.c
	if v == nil {
		if v = pc.vals[string(st.keyBytes)]; v == nil {
			v = pc.put(string(st.keyBytes), nil, false)
		}
	}
	v.value, v.found = st.pending.value, !st.pending.deleted
	if v.batch != pc.batch {
		v.batch = pc.batch
		pc.written = append(pc.written, v)
	}
}

// appendWrites appends the batch's writes in PackedResult.state's encoding.
func (pc *partitionCache) appendWrites(b []byte) []byte {
	for i, v := range pc.written {
		b = functionv1.AppendPackedMutation(b, unsafe.Slice(unsafe.StringData(v.key), len(v.key)), v.value, !v.found)
		pc.written[i] = nil
	}
	return b
}

// processCached processes a batch of protocol version 3 with the function's copy of the state.
func (e *engine) processCached(ctx context.Context, b *functionv1.Batch, gen, interval uint64) (*functionv1.BatchResult, error) {
	if e.cache == nil || e.state == nil {
		return e.process(ctx, b)
	}
	e.pc = e.cache.partition(b.GetPartition(), gen, interval)
	defer func() { e.pc = nil }()
	return e.process(ctx, b)
}
