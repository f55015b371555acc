package iosidecar

import (
	"context"
	"fmt"
	"unsafe"

	functionv1 "github.com/millrace-dev/millrace/executor-runtime/proto/function/v1"
	statev1 "github.com/millrace-dev/millrace/executor-runtime/proto/state/v1"
)

// State in the batch (function protocol version 3, stateful entities). A version 2 function
// reads the state sidecar once per batch (GetMany) and writes to it once per batch (Write): two
// unary calls per batch on both ends, which were most of the state sidecar's work and a large
// part of the function's. With version 3:
//
//   - the function returns a batch's state writes in its PackedResult; the sidecar gathers the
//     interval's writes here (the last one per key) and hands them to the state sidecar in one
//     Write when the interval ends, after every batch is answered and before Flush, so that the
//     changelog, the commit and the state sidecar's store see exactly what they saw before;
//   - the function keeps the state it read and wrote, partition by partition, from batch to
//     batch: between two batches of a session only the function itself changes the state it
//     reads. The sidecar tells it when its copy of a partition stops being the partition's
//     state with the partition's generation (PackedBatch.state_generation), which changes when
//     the partition is gained, or regained after it may have been owned by another pod, and when
//     an interval is aborted (the function's copy then holds writes the state sidecar
//     discarded). A function that finds a key missing from its copy reads it from the state
//     sidecar with GetMany, which is correct only if the state sidecar holds every write the
//     function made and forgot: so the function forgets a partition only when its generation
//     changes (the partition's writes of the interval are then dropped here too, see
//     newGenerations) or at the first batch of a new interval (PackedBatch.state_interval),
//     when the writes of the earlier intervals are in the state sidecar.

// stateWrites are the writes of an interval, the last one per key, in the order of their keys'
// first writes (as the state sidecar keeps them).
type stateWrites struct {
	index map[int32]map[string]int
	muts  []stateWrite
	// arena holds copies of the values: a result's bytes are not kept past its handling.
	arena []byte
}

type stateWrite struct {
	partition int32
	key       string
	value     []byte
	del       bool
}

func (w *stateWrites) add(partition int32, key, value []byte, del bool) {
	keys := w.index[partition]
	if keys == nil {
		if w.index == nil {
			w.index = map[int32]map[string]int{}
		}
		keys = map[string]int{}
		w.index[partition] = keys
	}
	var v []byte
	if !del {
		start := len(w.arena)
		w.arena = append(w.arena, value...)
		v = w.arena[start:len(w.arena):len(w.arena)]
	}
	if i, ok := keys[string(key)]; ok {
		w.muts[i].value, w.muts[i].del = v, del
		return
	}
	k := string(key)
	keys[k] = len(w.muts)
	w.muts = append(w.muts, stateWrite{partition: partition, key: k, value: v, del: del})
}

// drop forgets the writes of the partitions drop returns true for.
func (w *stateWrites) drop(drop func(int32) bool) {
	kept := w.muts[:0]
	for _, m := range w.muts {
		if drop(m.partition) {
			continue
		}
		w.index[m.partition][m.key] = len(kept)
		kept = append(kept, m)
	}
	clear(w.muts[len(kept):])
	w.muts = kept
	for p := range w.index {
		if drop(p) {
			delete(w.index, p)
		}
	}
}

func (w *stateWrites) reset() {
	clear(w.index)
	clear(w.muts)
	w.muts = w.muts[:0]
	// A large interval's arena is not kept for every later one.
	if cap(w.arena) > 4<<20 {
		w.arena = nil
	}
	w.arena = w.arena[:0]
}

// addWrites takes the state writes of a PackedResult. The writes of a batch sent before its
// partition's generation changed are dropped: the partition's state was restored from the
// changelog since, and the function drops its copy too.
func (s *session) addWrites(sb *sentBatch, state []byte) error {
	p := sb.records[0].Partition
	rd := functionv1.NewPackedStateReader(state)
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.gen[p] != sb.gen {
		return nil
	}
	for rd.More() {
		key, value, del, err := rd.Next()
		if err != nil {
			return fmt.Errorf("state writes of a batch of partition %d: %w", p, err)
		}
		s.writes.add(p, key, value, del)
	}
	return nil
}

// newGenerations gives a new state generation to the partitions of assigned that the last
// assignment did not have and to those in renew, and drops the interval's writes of every
// partition that is not assigned or is renewed (the state sidecar drops them too).
func (s *session) newGenerations(assigned map[int32]bool, renew []int32) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if s.gen == nil {
		s.gen = map[int32]uint64{}
	}
	renewed := map[int32]bool{}
	for _, p := range renew {
		renewed[p] = true
	}
	for p := range assigned {
		if _, ok := s.gen[p]; !ok || !s.synced[p] || renewed[p] {
			s.genSeq++
			s.gen[p] = s.genSeq
		}
	}
	for p := range s.gen {
		if !assigned[p] {
			delete(s.gen, p)
		}
	}
	s.writes.drop(func(p int32) bool { return !assigned[p] || renewed[p] })
}

// maxWriteMutations bounds one Write of the interval's state writes: an interval of many keys
// is sent in several, each well under the socket's message limit for small values.
const maxWriteMutations = 4096

// writeState hands the interval's state writes to the state sidecar, which keeps them pending
// for Flush. Called once every batch of the interval is answered.
func (s *session) writeState(ctx context.Context) error {
	if !s.stateInBatch {
		return nil
	}
	s.bmu.Lock()
	defer s.bmu.Unlock()
	defer s.writes.reset()
	muts := s.writes.muts
	slab := make([]statev1.Mutation, min(len(muts), maxWriteMutations))
	ptrs := make([]*statev1.Mutation, 0, len(slab))
	for next := 0; next < len(muts); {
		ptrs = ptrs[:0]
		size := 0
		for ; next < len(muts) && len(ptrs) < maxWriteMutations; next++ {
			w := &muts[next]
			// A call also stays well under the message limit for large values.
			if size += len(w.key) + len(w.value); size > maxMessageBytes/2 && len(ptrs) > 0 {
				break
			}
			m := &slab[len(ptrs)]
			// The key aliases the map key's string: it is marshalled, never written.
			m.Partition, m.Key, m.Value, m.Delete = w.partition, unsafe.Slice(unsafe.StringData(w.key), len(w.key)), w.value, w.del
			ptrs = append(ptrs, m)
		}
		if _, err := s.st.Write(ctx, &statev1.WriteRequest{Session: s.stSess, Mutations: ptrs}); err != nil {
			return fmt.Errorf("write the interval's state to the state sidecar: %w", err)
		}
	}
	return nil
}
