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

// batchSlabs are the record messages of a batch; kept by ReusedRequest across batches.
type batchSlabs struct {
	records []Record
	ptrs    []*Record
}

// get returns room for n records: sl's, cleared, or fresh ones when sl is nil.
func (sl *batchSlabs) get(n int) ([]Record, []*Record) {
	if sl == nil {
		return make([]Record, n), make([]*Record, 0, n)
	}
	if cap(sl.records) < n {
		sl.records, sl.ptrs = make([]Record, n), make([]*Record, 0, n)
	}
	clear(sl.records[:n])
	clear(sl.ptrs[:cap(sl.ptrs)])
	return sl.records[:n], sl.ptrs[:0]
}

// UnmarshalSlab decodes a Batch with its Records from one slab (see above).
func (m *Batch) UnmarshalSlab(data []byte) error { return m.unmarshalSlab(data, nil) }

func (m *Batch) unmarshalSlab(data []byte, sl *batchSlabs) error {
	n, err := countField(data, 6)
	if err != nil {
		return err
	}
	slab, ptrs := sl.get(n)
	m.Records = ptrs
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
			r := &slab[len(m.Records)]
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

// resultSlabs are the result and output messages of a batch result; kept by ReusedResponse
// across results.
type resultSlabs struct {
	records []RecordResult
	recPtrs []*RecordResult
	outputs []OutputRecord
	outPtrs []*OutputRecord
}

// get returns room for nRecords results and nOutputs outputs: sl's, cleared, or fresh ones
// when sl is nil.
func (sl *resultSlabs) get(nRecords, nOutputs int) ([]RecordResult, []*RecordResult, []OutputRecord, []*OutputRecord) {
	if sl == nil {
		return make([]RecordResult, nRecords), make([]*RecordResult, 0, nRecords), make([]OutputRecord, nOutputs), make([]*OutputRecord, nOutputs)
	}
	if cap(sl.records) < nRecords {
		sl.records, sl.recPtrs = make([]RecordResult, nRecords), make([]*RecordResult, 0, nRecords)
	}
	if cap(sl.outputs) < nOutputs {
		sl.outputs, sl.outPtrs = make([]OutputRecord, nOutputs), make([]*OutputRecord, nOutputs)
	}
	clear(sl.records[:nRecords])
	clear(sl.recPtrs[:cap(sl.recPtrs)])
	clear(sl.outputs[:nOutputs])
	clear(sl.outPtrs[:nOutputs])
	return sl.records[:nRecords], sl.recPtrs[:0], sl.outputs[:nOutputs], sl.outPtrs[:nOutputs]
}

// UnmarshalSlab decodes a BatchResult with its RecordResults and OutputRecords from two slabs
// (see above).
func (m *BatchResult) UnmarshalSlab(data []byte) error { return m.unmarshalSlab(data, nil) }

func (m *BatchResult) unmarshalSlab(data []byte, sl *resultSlabs) error {
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
	records, recPtrs, outputs, outPtrs := sl.get(nRecords, nOutputs)
	m.Records = recPtrs
	o := 0
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
			rr := &records[len(m.Records)]
			first := o
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
					out := &outputs[o]
					if err := out.UnmarshalVTUnsafe(fv); err != nil {
						return fmt.Errorf("record result %d: output: %w", len(m.Records), err)
					}
					outPtrs[o] = out
					o++
				case 2:
					rr.Error = string(fv)
				}
			}
			if o > first {
				rr.Outputs = outPtrs[first:o:o]
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
type ReusedRequest struct {
	ProcessRequest
	batch Batch
	wrap  ProcessRequest_Batch
	slabs batchSlabs
}

// UnmarshalSlab decodes a ProcessRequest into m, reusing m's record messages.
func (m *ReusedRequest) UnmarshalSlab(data []byte) error {
	m.Request = nil
	return eachField(data, func(num protowire.Number, typ protowire.Type, v []byte) (bool, error) {
		if num == 2 && typ == protowire.BytesType {
			m.batch = Batch{}
			if err := m.batch.unmarshalSlab(v, &m.slabs); err != nil {
				return false, err
			}
			m.wrap.Batch = &m.batch
			m.Request = &m.wrap
			return true, nil
		}
		return false, nil
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
