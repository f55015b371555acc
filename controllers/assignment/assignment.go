// Package assignment computes Static partition maps: which partitions of an entity's
// (co-partitioned) input topics each pod ordinal consumes.
//
// The map is sticky. When the replica count or the partition count changes, a partition stays on
// the pod that already consumes it whenever that pod survives and stays within its quota, so a
// rescale moves as few partitions as possible: every moved partition costs its new owner a state
// restore from the changelog and a pause in processing. The package is pure and has no
// dependencies on the operator, so it is easy to test exhaustively.
package assignment

import (
	"cmp"
	"slices"
)

// Compute returns a balanced map of partitions 0..partitions-1 over replicas pods, reusing
// previous as far as it can.
//
// The result has exactly replicas lists (nil when replicas <= 0); every partition appears in
// exactly one list; each list holds floor(partitions/replicas) or ceil(partitions/replicas)
// partitions, in ascending order. previous may be nil, may have any length, and may hold stale
// entries (partitions out of range or listed twice): they are ignored.
//
// Moves are minimal: a pod keeps min(held, quota) of the partitions it held, and the
// ceil-quotas go to the pods that hold the most, which maximises the partitions kept.
func Compute(partitions, replicas int, previous [][]int32) [][]int32 {
	if replicas <= 0 {
		return nil
	}
	if partitions < 0 {
		partitions = 0
	}

	held := Held(partitions, replicas, previous)

	base, extra := partitions/replicas, partitions%replicas
	quota := make([]int, replicas)
	for i := range quota {
		quota[i] = base
	}
	// The extra (ceil) slots go to the pods holding the most partitions; ties go to the lower
	// ordinal so the result is deterministic.
	byHeld := make([]int, replicas)
	for i := range byHeld {
		byHeld[i] = i
	}
	slices.SortStableFunc(byHeld, func(a, b int) int { return cmp.Compare(len(held[b]), len(held[a])) })
	for _, ordinal := range byHeld[:extra] {
		quota[ordinal]++
	}

	result := make([][]int32, replicas)
	owned := make([]bool, partitions)
	for i := range result {
		keep := held[i][:min(len(held[i]), quota[i])]
		result[i] = make([]int32, 0, quota[i])
		result[i] = append(result[i], keep...)
		for _, p := range keep {
			owned[p] = true
		}
	}

	// Hand the remaining partitions, lowest first, to the pods below quota, lowest ordinal first.
	ordinal := 0
	for p := range partitions {
		if owned[p] {
			continue
		}
		for len(result[ordinal]) >= quota[ordinal] {
			ordinal++
		}
		result[ordinal] = append(result[ordinal], int32(p))
	}
	for i := range result {
		slices.Sort(result[i])
	}
	return result
}

// Held returns, for each of the replicas surviving ordinals, the partitions of previous that it
// may keep: in range, not claimed by a lower ordinal, sorted and deduplicated.
func Held(partitions, replicas int, previous [][]int32) [][]int32 {
	held := make([][]int32, max(replicas, 0))
	seen := make([]bool, max(partitions, 0))
	for i := range held {
		if i >= len(previous) {
			continue
		}
		list := slices.Clone(previous[i])
		slices.Sort(list)
		for _, p := range list {
			if p < 0 || int(p) >= partitions || seen[p] {
				continue
			}
			seen[p] = true
			held[i] = append(held[i], p)
		}
	}
	return held
}

// Moves counts the partitions whose owner differs between previous and next: partitions that
// were not assigned before count as moves too, since a pod has to start consuming them.
func Moves(partitions int, previous, next [][]int32) int {
	owner := func(m [][]int32) []int {
		o := make([]int, partitions)
		for i := range o {
			o[i] = -1
		}
		for ordinal, list := range m {
			for _, p := range list {
				if p >= 0 && int(p) < partitions && o[p] == -1 {
					o[p] = ordinal
				}
			}
		}
		return o
	}
	before, after := owner(previous), owner(next)
	moves := 0
	for p := range partitions {
		if before[p] == -1 || before[p] != after[p] {
			moves++
		}
	}
	return moves
}

// Normalize returns a copy of explicit lists with each list sorted, so that a user-written map
// renders the same whatever order the user wrote it in.
func Normalize(explicit [][]int32) [][]int32 {
	out := make([][]int32, len(explicit))
	for i, list := range explicit {
		out[i] = slices.Clone(list)
		if out[i] == nil {
			out[i] = []int32{}
		}
		slices.Sort(out[i])
	}
	return out
}

// Equal reports whether two maps assign the same partitions to the same ordinals.
func Equal(a, b [][]int32) bool {
	return slices.EqualFunc(a, b, func(x, y []int32) bool { return slices.Equal(x, y) })
}
