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

// UnmarshalSlab decodes a Batch with its Records from one slab (see above).
func (m *Batch) UnmarshalSlab(data []byte) error {
	n, err := countField(data, 6)
	if err != nil {
		return err
	}
	slab := make([]Record, n)
	m.Records = make([]*Record, 0, n)
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

// UnmarshalSlab decodes a BatchResult with its RecordResults and OutputRecords from two slabs
// (see above).
func (m *BatchResult) UnmarshalSlab(data []byte) error {
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
	records := make([]RecordResult, nRecords)
	outputs := make([]OutputRecord, nOutputs)
	outPtrs := make([]*OutputRecord, nOutputs)
	m.Records = make([]*RecordResult, 0, nRecords)
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
