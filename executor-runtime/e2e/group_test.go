package e2e

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/millrace-dev/millrace/executor-runtime/config"
	"github.com/millrace-dev/millrace/executor-runtime/examples/wordcount"
	"github.com/millrace-dev/millrace/executor-runtime/internal/testenv"
	"github.com/millrace-dev/millrace/executor-runtime/iosidecar"
)

// assignments records the partitions of one input topic that each in-process pod reports.
type assignments struct {
	topic   string
	mu      sync.Mutex
	current map[int][]int32
	reloads map[int]int
}

func newAssignments(topic string) *assignments {
	return &assignments{topic: topic, current: map[int][]int32{}, reloads: map[int]int{}}
}

// hooks is the I/O sidecar option of pod ord that reports to a.
func (a *assignments) hooks(ord int) iosidecar.Option {
	return iosidecar.WithHooks(iosidecar.Hooks{
		OnAssigned: func(m map[string][]int32) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.current[ord] = slices.Clone(m[a.topic])
		},
		OnSessionEnd: func(err error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			if err == nil {
				a.reloads[ord]++
			}
		},
	})
}

// wait waits until every pod in want reports exactly its partitions, and returns how long
// that took. The bound is a failure detector, not a performance target.
func (a *assignments) wait(t *testing.T, want map[int][]int32, bound time.Duration) time.Duration {
	t.Helper()
	begin := time.Now()
	for {
		a.mu.Lock()
		ok := true
		got := map[int][]int32{}
		for ord, ps := range want {
			got[ord] = a.current[ord]
			if !slices.Equal(a.current[ord], ps) {
				ok = false
			}
		}
		a.mu.Unlock()
		if ok {
			return time.Since(begin)
		}
		if time.Since(begin) > bound {
			t.Fatalf("assignment %v after %v, want %v", got, bound, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *assignments) reloaded(ord int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reloads[ord]
}

// sessionTimeout is what the scale-down tests configure: long, so that partitions that reach the
// remaining pod within handOverBound were handed over by the departing pod, not reclaimed from a
// member that expired.
const sessionTimeout, handOverBound = 90 * time.Second, 30 * time.Second

// testScaleDownHandsOver stops one of two pods, as a scale-down does, and requires the other to
// take over its partitions while the departed member's session would still be alive: the
// departing pod must leave the group, not wait for its session to expire. In Static mode the
// operator writes the one-pod map at the same time, which must reach the remaining pod.
func testScaleDownHandsOver(t *testing.T, k *testenv.Kafka, mode config.AssignmentMode) {
	_, e := sumEntity(t, k, config.ExactlyOnce, func(c *config.Executor) {
		c.Runtime.GroupProtocol = config.GroupProtocolClassic
		c.Runtime.SessionTimeout = config.Duration{Duration: sessionTimeout}
		if mode == config.StaticAssignment {
			c.Assignment = config.Assignment{Mode: config.StaticAssignment, Static: [][]int32{{0, 1}, {2, 3}}, Generation: 1}
		}
	})
	a := newAssignments(e.Config.Inputs[0].Topic)
	pod0 := testenv.StartPod(t, e, 0, wordcount.Sum(), a.hooks(0))
	defer pod0.Stop(t)
	pod1 := testenv.StartPod(t, e, 1, wordcount.Sum(), a.hooks(1))
	if mode == config.StaticAssignment {
		a.wait(t, map[int][]int32{0: {0, 1}, 1: {2, 3}}, handOverBound)
	} else {
		// The cooperative-sticky balancer splits four partitions two and two.
		begin := time.Now()
		for {
			a.mu.Lock()
			n0, n1 := len(a.current[0]), len(a.current[1])
			a.mu.Unlock()
			if n0 == 2 && n1 == 2 {
				break
			}
			if time.Since(begin) > handOverBound {
				t.Fatalf("partitions never split between the two pods: %d and %d", n0, n1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	begin := time.Now()
	pod1.Stop(t)
	if mode == config.StaticAssignment {
		e.Update(t, func(c *config.Executor) {
			c.Assignment.Static = [][]int32{{0, 1, 2, 3}}
			c.Assignment.Generation = 2
		})
	}
	a.wait(t, map[int][]int32{0: {0, 1, 2, 3}}, handOverBound)
	t.Logf("%s mode: the remaining pod had all partitions %v after the other pod was stopped (session timeout %v)", mode, time.Since(begin).Round(time.Millisecond), sessionTimeout)
}

func TestScaleDownHandsOverPartitions(t *testing.T) {
	for _, mode := range []config.AssignmentMode{config.GroupAssignment, config.StaticAssignment} {
		t.Run(string(mode), func(t *testing.T) { testScaleDownHandsOver(t, testenv.Fake(t), mode) })
	}
}

func TestRealBrokerScaleDownHandsOverPartitions(t *testing.T) {
	for _, mode := range []config.AssignmentMode{config.GroupAssignment, config.StaticAssignment} {
		t.Run(string(mode), func(t *testing.T) { testScaleDownHandsOver(t, testenv.Real(t), mode) })
	}
}
