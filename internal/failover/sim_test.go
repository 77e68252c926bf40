package failover

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// This file holds what the simulation of sim_quorum_test.go is built from: simulated real
// time as an event queue, the seeded random source, the sites' drifting clocks and the trace.

// simEpoch is what a clock without offset shows at the start of a simulation.
var simEpoch = time.Date(2026, time.March, 1, 8, 0, 0, 0, time.UTC)

// simEvent is something that happens at real time at; seq keeps events due at the same
// instant in the order they were scheduled, so a seed replays a run exactly.
type simEvent struct {
	at  time.Duration
	seq uint64
	fn  func()
}

// simQueue is the simulation's pending events, a heap by real time.
type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simCore is the simulation's engine: real time, the event queue, the seeded random
// source and the trace.
type simCore struct {
	rng     *rand.Rand
	now     time.Duration
	queue   simQueue
	seq     uint64
	tracing bool
	trace   []string
}

func (s *simCore) at(t time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.queue, &simEvent{at: t, seq: s.seq, fn: fn})
}

func (s *simCore) uniform(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *simCore) chance(p float64) bool { return s.rng.Float64() < p }

func (s *simCore) logf(format string, args ...any) {
	if s.tracing {
		s.trace = append(s.trace, fmt.Sprintf("%12s  ", s.now.Round(time.Microsecond))+fmt.Sprintf(format, args...))
	}
}

// simClock is one site's clock: offset from real time, running at rate times real time.
type simClock struct {
	offset time.Duration
	rate   float64
}

// at is what the clock shows at real time now.
func (c simClock) at(now time.Duration) time.Time {
	return simEpoch.Add(c.offset + time.Duration(float64(now)*c.rate))
}

// realAt is the real time at which the clock shows t, never before now.
func (c simClock) realAt(now time.Duration, t time.Time) time.Duration {
	r := time.Duration(math.Ceil(float64(t.Sub(simEpoch)-c.offset) / c.rate))
	return max(r, now+time.Microsecond)
}

// failures is how many checks in a row have failed, n before, after one more check.
func failures(n int32, failed bool) int32 {
	if !failed {
		return 0
	}
	return min(n+1, 1000)
}

// lastLines returns the end of a trace, for a failure message.
func lastLines(trace []string, n int) string {
	if len(trace) > n {
		trace = trace[len(trace)-n:]
	}
	return strings.Join(trace, "\n")
}
