package assignment

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCompute(t *testing.T) {
	cases := map[string]struct {
		reason     string
		partitions int
		replicas   int
		previous   [][]int32
		want       [][]int32
	}{
		"Fresh": {
			reason:     "Without a previous map, partitions are dealt in contiguous ranges, lower ordinals first.",
			partitions: 6, replicas: 4,
			want: [][]int32{{0, 1}, {2, 3}, {4}, {5}},
		},
		"NoReplicas": {
			reason:     "Zero replicas have no map.",
			partitions: 6, replicas: 0,
			want: nil,
		},
		"MorePodsThanPartitions": {
			reason:     "Pods beyond the partition count get empty lists, not missing ones.",
			partitions: 2, replicas: 3,
			want: [][]int32{{0}, {1}, {}},
		},
		"Unchanged": {
			reason:     "A balanced previous map for the same shape is returned as is, whatever its layout.",
			partitions: 6, replicas: 3,
			previous: [][]int32{{5, 0}, {1, 4}, {2, 3}},
			want:     [][]int32{{0, 5}, {1, 4}, {2, 3}},
		},
		"ScaleUp": {
			reason:     "A new pod takes one partition from each pod above its new quota; the rest stay.",
			partitions: 6, replicas: 3,
			previous: [][]int32{{0, 1, 2}, {3, 4, 5}},
			want:     [][]int32{{0, 1}, {3, 4}, {2, 5}},
		},
		"ScaleDown": {
			reason:     "Partitions of a removed pod go to the survivors; theirs stay where they are.",
			partitions: 6, replicas: 2,
			previous: [][]int32{{0, 1}, {2, 3}, {4, 5}},
			want:     [][]int32{{0, 1, 4}, {2, 3, 5}},
		},
		"CeilQuotaToBiggestHolder": {
			reason:     "The one ceil quota goes to the pod holding most, so only one partition moves.",
			partitions: 5, replicas: 2,
			previous: [][]int32{{0}, {1, 2, 3, 4}},
			want:     [][]int32{{0, 4}, {1, 2, 3}},
		},
		"PartitionsAdded": {
			reason:     "New partitions fill the pods below quota without moving old ones.",
			partitions: 8, replicas: 2,
			previous: [][]int32{{0, 1, 2}, {3, 4, 5}},
			want:     [][]int32{{0, 1, 2, 6}, {3, 4, 5, 7}},
		},
		"StaleEntries": {
			reason:     "Out-of-range and duplicate partitions in the previous map are ignored.",
			partitions: 4, replicas: 2,
			previous: [][]int32{{0, 1, 9, -1}, {1, 2}},
			want:     [][]int32{{0, 1}, {2, 3}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Compute(tc.partitions, tc.replicas, tc.previous)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s\nCompute(%d, %d, %v): -want, +got:\n%s", tc.reason, tc.partitions, tc.replicas, tc.previous, diff)
			}
		})
	}
}

// TestComputeProperties checks, over random shapes and previous maps, that every partition is
// assigned exactly once, the map is balanced, and no assignment keeps more partitions in place.
func TestComputeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		n := rng.IntN(40)
		r := 1 + rng.IntN(12)
		prev := randomMap(rng, rng.IntN(45), rng.IntN(14))
		got := Compute(n, r, prev)
		checkProperties(t, i, n, r, prev, got)
		// Stability: a map computed for a shape is a fixed point for that shape.
		if again := Compute(n, r, got); !Equal(again, got) {
			t.Fatalf("case %d: Compute is not idempotent: %v then %v", i, got, again)
		}
	}
}

func checkProperties(t *testing.T, i, n, r int, prev, got [][]int32) {
	t.Helper()
	if len(got) != r {
		t.Fatalf("case %d: %d lists for %d replicas", i, len(got), r)
	}
	seen := make([]int, n)
	for _, list := range got {
		if !slices.IsSorted(list) {
			t.Fatalf("case %d: list %v not sorted", i, list)
		}
		if len(list) < n/r || len(list) > (n+r-1)/r {
			t.Fatalf("case %d: unbalanced: %v for %d partitions over %d pods", i, got, n, r)
		}
		for _, p := range list {
			if p < 0 || int(p) >= n {
				t.Fatalf("case %d: partition %d out of range %d", i, p, n)
			}
			seen[p]++
		}
	}
	for p, c := range seen {
		if c != 1 {
			t.Fatalf("case %d: partition %d assigned %d times in %v", i, p, c, got)
		}
	}
	if moves, least := Moves(n, prev, got), leastMoves(n, r, prev); moves != least {
		t.Fatalf("case %d: %d moves from %v to %v; %d is possible", i, moves, prev, got, least)
	}
}

// leastMoves is the fewest moves any balanced map needs from prev, found by trying every choice
// of which pods get the ceil quota (feasible for the small shapes tested).
func leastMoves(n, r int, prev [][]int32) int {
	held := Held(n, r, prev)
	base, extra := n/r, n%r
	best := -1
	var try func(pod, ceilLeft, kept int)
	try = func(pod, ceilLeft, kept int) {
		if pod == r {
			if ceilLeft == 0 && kept > best {
				best = kept
			}
			return
		}
		if r-pod > ceilLeft {
			try(pod+1, ceilLeft, kept+min(len(held[pod]), base))
		}
		if ceilLeft > 0 {
			try(pod+1, ceilLeft-1, kept+min(len(held[pod]), base+1))
		}
	}
	try(0, extra, 0)
	return n - best
}

func randomMap(rng *rand.Rand, n, pods int) [][]int32 {
	if pods == 0 {
		return nil
	}
	m := make([][]int32, pods)
	for p := range n {
		if rng.IntN(10) == 0 {
			continue // unassigned before
		}
		o := rng.IntN(pods)
		m[o] = append(m[o], int32(p))
	}
	return m
}

func FuzzCompute(f *testing.F) {
	f.Add(6, 3, []byte{0, 1, 2, 0, 1, 2})
	f.Add(0, 1, []byte{})
	f.Add(7, 5, []byte{4, 4, 4, 4, 4, 4, 4})
	f.Fuzz(func(t *testing.T, n, r int, owners []byte) {
		n, r = n%64, r%16
		if n < 0 || r <= 0 {
			return
		}
		var prev [][]int32
		for p, o := range owners {
			if p >= n {
				break
			}
			for int(o%16) >= len(prev) {
				prev = append(prev, nil)
			}
			prev[o%16] = append(prev[o%16], int32(p))
		}
		checkProperties(t, 0, n, r, prev, Compute(n, r, prev))
	})
}
