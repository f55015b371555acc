package functionv1

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is written by hand, next to the generated code: decoders for the two messages that
// carry records, which allocate a batch's record messages from slabs (one allocation per kind
// of message per batch, sized by a first pass over the bytes) instead of one allocation per
// record as the generated UnmarshalVTUnsafe does. On the function socket's hot path that halves
// the allocations per record and the garbage collection that follows them. Like
// UnmarshalVTUnsafe, the decoded bytes alias data; unlike it, unknown fields of a batch or a
// result (from a newer peer) are skipped rather than kept. The generated decoders remain the
// reference: TestSlabDecodersMatchGenerated checks both agree.

// UnmarshalSlab decodes a ProcessRequest (see above).
func (m *ProcessRequest) UnmarshalSlab(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) (bool, error) {
		switch {
		case num == 2 && typ == protowire.BytesType:
			b := &Batch{}
			if err := b.UnmarshalSlab(v); err != nil {
				return false, err
			}
			m.Request = &ProcessRequest_Batch{Batch: b}
			return true, nil
		}
		return false, nil
	}, func() error { m.Reset(); return m.UnmarshalVTUnsafe(data) })
}

// UnmarshalSlab decodes a ProcessResponse (see above).
func (m *ProcessResponse) UnmarshalSlab(data []byte) error {
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) (bool, error) {
		switch {
		case num == 2 && typ == protowire.BytesType:
			r := &BatchResult{}
			if err := r.UnmarshalSlab(v); err != nil {
				return false, err
			}
			m.Response = &ProcessResponse_Result{Result: r}
			return true, nil
		}
		return false, nil
	}, func() error { m.Reset(); return m.UnmarshalVTUnsafe(data) })
}

// eachField calls handle for every field of data. If handle declines a field (false), the whole
// message is decoded by fallback instead, which keeps every other message and every unusual
// encoding on the generated path.
func eachField(data []byte, handle func(protowire.Number, protowire.Type, []byte) (bool, error), fallback func() error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		if typ != protowire.BytesType {
			return fallback()
		}
		v, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		ok, err := handle(num, typ, v)
		if err != nil {
			return err
		}
		if !ok {
			return fallback()
		}
	}
	return nil
}

// countField counts the occurrences of length-delimited field num in data.
func countField(data []byte, num protowire.Number) (int, error) {
	count := 0
	for len(data) > 0 {
		fn, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		data = data[n:]
		n = protowire.ConsumeFieldValue(fn, typ, data)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		if fn == num && typ == protowire.BytesType {
			count++
		}
		data = data[n:]
	}
	return count, nil
}

// batchSlabs hold the record messages of a batch. ReusedRequest keeps them across batches:
// they grow by whole chunks (a record already handed out never moves) and, once large enough,
// a batch needs neither an allocation nor the counting pass over its bytes.
type batchSlabs struct {
	records []Record // records[:used] were handed out since the last reset
	used    int
	ptrs    []*Record
}

// reset makes the records handed out before available again, cleared.
func (sl *batchSlabs) reset() {
	clear(sl.records[:sl.used])
	sl.used = 0
	clear(sl.ptrs[:cap(sl.ptrs)])
	sl.ptrs = sl.ptrs[:0]
}

func (sl *batchSlabs) next() *Record {
	if sl.used == len(sl.records) {
		sl.records, sl.used = make([]Record, max(64, 2*len(sl.records))), 0
	}
	sl.used++
	return &sl.records[sl.used-1]
}

// UnmarshalSlab decodes a Batch with its Records from one slab (see above).
func (m *Batch) UnmarshalSlab(data []byte) error { return m.unmarshalSlab(data, nil) }

func (m *Batch) unmarshalSlab(data []byte, sl *batchSlabs) error {
	if sl == nil {
		n, err := countField(data, 6)
		if err != nil {
			return err
		}
		sl = &batchSlabs{records: make([]Record, n), ptrs: make([]*Record, 0, n)}
	} else {
		sl.reset()
	}
	m.Records = sl.ptrs
	defer func() { sl.ptrs = m.Records[:0] }()
	for len(data) > 0 {
		num, typ, l := protowire.ConsumeTag(data)
		if l < 0 {
			return protowire.ParseError(l)
		}
		data = data[l:]
		if num == 6 && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(data)
			if l < 0 {
				return protowire.ParseError(l)
			}
			data = data[l:]
			r := sl.next()
			if err := r.UnmarshalVTUnsafe(v); err != nil {
				return fmt.Errorf("record %d: %w", len(m.Records), err)
			}
			m.Records = append(m.Records, r)
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, data)
		if l < 0 {
			return protowire.ParseError(l)
		}
		v := data[:l]
		data = data[l:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.Id, _ = protowire.ConsumeVarint(v)
		case num == 5 && typ == protowire.VarintType:
			p, _ := protowire.ConsumeVarint(v)
			m.Partition = int32(p)
		case num >= 2 && num <= 4 && typ == protowire.BytesType:
			b, _ := protowire.ConsumeBytes(v)
			switch num {
			case 2:
				m.StateSession = string(b)
			case 3:
				m.Stream = string(b)
			case 4:
				m.Topic = string(b)
			}
		}
	}
	return nil
}

// resultSlabs hold the result and output messages of a batch result, as batchSlabs do for a
// batch; ReusedResponse keeps them across results.
type resultSlabs struct {
	records                  []RecordResult // records[:usedRecords] were handed out since the last reset
	outputs                  []OutputRecord // outputs[:usedOutputs] likewise
	usedRecords, usedOutputs int
	recPtrs                  []*RecordResult
	outPtrs                  []*OutputRecord
}

// reset makes the messages handed out before available again, cleared.
func (sl *resultSlabs) reset() {
	clear(sl.records[:sl.usedRecords])
	clear(sl.outputs[:sl.usedOutputs])
	sl.usedRecords, sl.usedOutputs = 0, 0
	clear(sl.recPtrs[:cap(sl.recPtrs)])
	clear(sl.outPtrs[:cap(sl.outPtrs)])
	sl.recPtrs, sl.outPtrs = sl.recPtrs[:0], sl.outPtrs[:0]
}

func (sl *resultSlabs) record() *RecordResult {
	if sl.usedRecords == len(sl.records) {
		sl.records, sl.usedRecords = make([]RecordResult, max(64, 2*len(sl.records))), 0
	}
	sl.usedRecords++
	return &sl.records[sl.usedRecords-1]
}

func (sl *resultSlabs) output() *OutputRecord {
	if sl.usedOutputs == len(sl.outputs) {
		sl.outputs, sl.usedOutputs = make([]OutputRecord, max(64, 2*len(sl.outputs))), 0
	}
	sl.usedOutputs++
	return &sl.outputs[sl.usedOutputs-1]
}

// UnmarshalSlab decodes a BatchResult with its RecordResults and OutputRecords from two slabs
// (see above).
func (m *BatchResult) UnmarshalSlab(data []byte) error { return m.unmarshalSlab(data, nil) }

func (m *BatchResult) unmarshalSlab(data []byte, sl *resultSlabs) error {
	if sl == nil {
		nRecords, nOutputs := 0, 0
		for rest := data; len(rest) > 0; {
			num, typ, l := protowire.ConsumeTag(rest)
			if l < 0 {
				return protowire.ParseError(l)
			}
			rest = rest[l:]
			l = protowire.ConsumeFieldValue(num, typ, rest)
			if l < 0 {
				return protowire.ParseError(l)
			}
			if num == 2 && typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(rest)
				k, err := countField(v, 1)
				if err != nil {
					return err
				}
				nRecords++
				nOutputs += k
			}
			rest = rest[l:]
		}
		sl = &resultSlabs{
			records: make([]RecordResult, nRecords), recPtrs: make([]*RecordResult, 0, nRecords),
			outputs: make([]OutputRecord, nOutputs), outPtrs: make([]*OutputRecord, 0, nOutputs),
		}
	} else {
		sl.reset()
	}
	m.Records = sl.recPtrs
	defer func() { sl.recPtrs = m.Records[:0] }()
	for len(data) > 0 {
		num, typ, l := protowire.ConsumeTag(data)
		if l < 0 {
			return protowire.ParseError(l)
		}
		data = data[l:]
		switch {
		case num == 1 && typ == protowire.VarintType:
			v, l := protowire.ConsumeVarint(data)
			if l < 0 {
				return protowire.ParseError(l)
			}
			m.Id = v
			data = data[l:]
		case num == 2 && typ == protowire.BytesType:
			v, l := protowire.ConsumeBytes(data)
			if l < 0 {
				return protowire.ParseError(l)
			}
			data = data[l:]
			rr := sl.record()
			first := len(sl.outPtrs)
			for len(v) > 0 {
				fn, ft, fl := protowire.ConsumeTag(v)
				if fl < 0 {
					return protowire.ParseError(fl)
				}
				v = v[fl:]
				fl = protowire.ConsumeFieldValue(fn, ft, v)
				if fl < 0 {
					return protowire.ParseError(fl)
				}
				field := v[:fl]
				v = v[fl:]
				if ft != protowire.BytesType {
					continue // unknown field
				}
				fv, _ := protowire.ConsumeBytes(field)
				switch fn {
				case 1:
					out := sl.output()
					if err := out.UnmarshalVTUnsafe(fv); err != nil {
						return fmt.Errorf("record result %d: output: %w", len(m.Records), err)
					}
					sl.outPtrs = append(sl.outPtrs, out)
				case 2:
					rr.Error = string(fv)
				}
			}
			if o := len(sl.outPtrs); o > first {
				rr.Outputs = sl.outPtrs[first:o:o]
			}
			m.Records = append(m.Records, rr)
		default:
			l = protowire.ConsumeFieldValue(num, typ, data)
			if l < 0 {
				return protowire.ParseError(l)
			}
			data = data[l:]
		}
	}
	return nil
}

// ReusedRequest is a ProcessRequest for a receiver that is done with each batch before it
// receives the next (gRPC's RecvMsg): every batch decoded into it reuses the record messages of
// the one before, so that a steady stream of batches allocates no record messages at all. A
// batch it holds is valid until the next decode; the keys and values alias the decoded bytes as
// with UnmarshalSlab, and stay valid.
//
// A PackedBatch (protocol version 2) is decoded into the same Batch of Records, so a receiver
// handles both encodings alike; Packed says which one the batch came in, for the answer.
type ReusedRequest struct {
	ProcessRequest
	batch  Batch
	wrap   ProcessRequest_Batch
	slabs  batchSlabs
	packed PackedBatch
	isPack bool
}

// Packed reports whether the batch m holds came as a PackedBatch, to be answered with a
// PackedResult.
func (m *ReusedRequest) Packed() bool { return m.isPack }

// PackedState returns the state fields of the PackedBatch m holds (protocol version 3); zero
// for a Batch.
func (m *ReusedRequest) PackedState() (generation, interval uint64) {
	if !m.isPack {
		return 0, 0
	}
	return m.packed.StateGeneration, m.packed.StateInterval
}

// UnmarshalSlab decodes a ProcessRequest into m, reusing m's record messages.
func (m *ReusedRequest) UnmarshalSlab(data []byte) error {
	m.Request, m.isPack = nil, false
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) (bool, error) {
		switch {
		case num == 2 && typ == protowire.BytesType:
			m.batch = Batch{}
			if err := m.batch.unmarshalSlab(v, &m.slabs); err != nil {
				return false, err
			}
		case num == 3 && typ == protowire.BytesType:
			m.packed.Reset()
			if err := m.packed.UnmarshalVTUnsafe(v); err != nil {
				return false, err
			}
			if err := m.batch.unpack(&m.packed, &m.slabs); err != nil {
				return false, err
			}
			m.isPack = true
		default:
			return false, nil
		}
		m.wrap.Batch = &m.batch
		m.Request = &m.wrap
		return true, nil
	}, func() error { m.ProcessRequest.Reset(); return m.ProcessRequest.UnmarshalVTUnsafe(data) })
}

// ReusedResponse is to ProcessResponse what ReusedRequest is to ProcessRequest: a result
// decoded into it, with its results and outputs, is valid until the next decode.
type ReusedResponse struct {
	ProcessResponse
	result BatchResult
	wrap   ProcessResponse_Result
	slabs  resultSlabs
}

// UnmarshalSlab decodes a ProcessResponse into m, reusing m's result and output messages.
func (m *ReusedResponse) UnmarshalSlab(data []byte) error {
	m.Response = nil
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) (bool, error) {
		if num == 2 && typ == protowire.BytesType {
			m.result = BatchResult{}
			if err := m.result.unmarshalSlab(v, &m.slabs); err != nil {
				return false, err
			}
			m.wrap.Result = &m.result
			m.Response = &m.wrap
			return true, nil
		}
		return false, nil
	}, func() error { m.ProcessResponse.Reset(); return m.ProcessResponse.UnmarshalVTUnsafe(data) })
}
