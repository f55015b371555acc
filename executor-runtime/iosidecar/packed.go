package iosidecar

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/millrace-dev/millrace/executor-runtime/internal/wirecodec"
	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
)

// The dense batch encoding of protocol version 2 (docs/function-protocol.md): used when the
// function's Opened announces version 2; a function that announces nothing, or only 1, gets
// Batch messages as before.

// sidecarProtocolVersions are the function protocol versions this sidecar speaks.
var sidecarProtocolVersions = []uint32{1, functionv1.ProtocolVersionPacked, functionv1.ProtocolVersionState}

// negotiateProtocol is the highest version both the sidecar and the function speak: the
// function's Opened.protocol_versions, or its protocol_version alone when it lists none (a
// function older than the list).
func negotiateProtocol(o *functionv1.Opened) uint32 {
	theirs := o.GetProtocolVersions()
	if len(theirs) == 0 {
		theirs = []uint32{o.GetProtocolVersion()}
	}
	best := uint32(1)
	for _, v := range theirs {
		if v > best && slices.Contains(sidecarProtocolVersions, v) {
			best = v
		}
	}
	return best
}

// sendPacked encodes chunk as a PackedBatch straight from the Kafka records into the buffer
// gRPC writes to the socket: no Record messages and no second copy of keys and values.
func (s *session) sendPacked(id uint64, chunk []*kgo.Record) error {
	first := chunk[0]
	hdr := functionv1.PackedBatch{
		Id: id, StateSession: s.stSess,
		Stream: s.streamOf[first.Topic], Topic: first.Topic, Partition: first.Partition,
		Count: uint32(len(chunk)), BaseOffset: first.Offset, BaseTimestampMs: first.Timestamp.UnixMilli(),
	}
	if s.stateInBatch {
		hdr.StateGeneration, hdr.StateInterval = s.gen[first.Partition], s.intervalSeq
	}
	recordsLen := 0
	offset, ts := hdr.BaseOffset, hdr.BaseTimestampMs
	for _, r := range chunk {
		rts := r.Timestamp.UnixMilli()
		recordsLen += functionv1.PackedRecordSize(r.Offset-offset, rts-ts, r.Key, r.Value, len(r.Headers))
		for _, h := range r.Headers {
			recordsLen += functionv1.PackedHeaderSize(h.Key, h.Value)
		}
		offset, ts = r.Offset+1, rts
	}
	raw, b := wirecodec.NewRaw(functionv1.PackedBatchRequestSize(&hdr, recordsLen))
	b = functionv1.AppendPackedBatchRequest(b, &hdr, recordsLen)
	offset, ts = hdr.BaseOffset, hdr.BaseTimestampMs
	for _, r := range chunk {
		rts := r.Timestamp.UnixMilli()
		b = functionv1.AppendPackedRecord(b, r.Offset-offset, rts-ts, r.Key, r.Value, len(r.Headers))
		for _, h := range r.Headers {
			b = functionv1.AppendPackedHeader(b, h.Key, h.Value)
		}
		offset, ts = r.Offset+1, rts
	}
	b = functionv1.AppendPackedBatchTrailer(b, &hdr)
	if err := raw.Set(b); err != nil {
		return err
	}
	return s.fn.SendMsg(raw)
}

// handlePacked produces the outputs and dead letters of a PackedResult, record by record, as
// handleResult does for a BatchResult, decoding the outputs straight into Kafka records.
func (s *session) handlePacked(ctx context.Context, sb *sentBatch, p *functionv1.PackedResult) error {
	if int(p.GetCount()) != len(sb.records) {
		return fmt.Errorf("function answered batch %d with %d results for %d records", p.GetId(), p.GetCount(), len(sb.records))
	}
	rd := functionv1.NewPackedResultReader(p.GetRecords())
	for _, in := range sb.records {
		errText, n, err := rd.Next()
		if err != nil {
			return fmt.Errorf("batch %d: %w", p.GetId(), err)
		}
		if errText != "" {
			s.deadLetter(ctx, in, errText)
			continue
		}
		// All outputs are decoded and checked before any is produced: a record with one bad
		// output produces none.
		outs := s.packedOuts[:0]
		bad, isBad := "", false
		for range n {
			outs = append(outs, functionv1.PackedOutput{})
			o := &outs[len(outs)-1]
			if err := rd.ReadOutput(o); err != nil {
				return fmt.Errorf("batch %d: %w", p.GetId(), err)
			}
			if !isBad && s.packedTopic(o) == "" {
				bad, isBad = o.Stream, true
				if o.Stream == "" && o.StreamIndex > 0 {
					bad = fmt.Sprintf("#%d", o.StreamIndex)
				}
			}
		}
		s.packedOuts = outs[:0]
		if isBad {
			s.deadLetter(ctx, in, fmt.Sprintf("output stream %q is not an output of entity %s", bad, s.cfg.Entity))
			continue
		}
		for i := range outs {
			o := &outs[i]
			rec := newRecord()
			rec.Topic, rec.Key, rec.Value, rec.Timestamp = s.packedTopic(o), o.Key, o.Value, in.Timestamp
			if o.KeyFromInput {
				rec.Key = in.Key
			}
			if o.ValueFromInput {
				rec.Value = in.Value
			}
			if o.TimestampMs != 0 {
				rec.Timestamp = time.UnixMilli(o.TimestampMs)
			}
			if len(o.Headers) > 0 {
				rec.Headers = make([]kgo.RecordHeader, len(o.Headers))
				for j, h := range o.Headers {
					rec.Headers[j] = kgo.RecordHeader{Key: h.GetKey(), Value: h.GetValue()}
				}
			}
			if rec.Topic == s.only {
				s.onlyCount++
			} else {
				s.outCounts[rec.Topic]++
			}
			s.produce(ctx, rec)
			*o = functionv1.PackedOutput{}
		}
	}
	if err := rd.Done(); err != nil {
		return err
	}
	if len(p.GetState()) > 0 {
		if !s.stateInBatch {
			return fmt.Errorf("function answered batch %d with state writes outside protocol version 3 with state", p.GetId())
		}
		return s.addWrites(sb, p.GetState())
	}
	return nil
}

// packedTopic is the topic of an output of a PackedResult, or "" when it names no output of
// the entity.
func (s *session) packedTopic(o *functionv1.PackedOutput) string {
	switch {
	case o.Stream != "":
		return s.topicOf[o.Stream]
	case o.StreamIndex == 0:
		return s.only
	case o.StreamIndex <= len(s.cfg.Outputs):
		return s.topicOf[s.cfg.Outputs[o.StreamIndex-1].Stream]
	}
	return ""
}
