package probes

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/deich-io/deich/internal/health"
)

var epoch = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// script is a check whose results are given in advance; the last repeats.
type script struct {
	mu      sync.Mutex
	results []health.Status
	runs    int
}

func (s *script) check(name string) Check {
	return Check{Name: name, Run: func(context.Context) health.Result {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.results[min(s.runs, len(s.results)-1)]
		s.runs++
		return health.Result{Status: st, Message: string(st)}
	}}
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs
}

// notifications counts the calls of Notify per service.
type notifications struct {
	mu sync.Mutex
	n  map[types.NamespacedName]int
}

func (n *notifications) notify(key types.NamespacedName) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.n == nil {
		n.n = map[types.NamespacedName]int{}
	}
	n.n[key]++
}

func (n *notifications) of(key types.NamespacedName) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.n[key]
}

// start runs s until the test ends.
func start(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Start(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// settle waits until n loops wait on the clock, so that a Step reaches them all.
func settle(g Gomega, c *clocktesting.FakeClock, n int) {
	g.Eventually(c.Waiters).WithTimeout(5 * time.Second).WithPolling(time.Millisecond).Should(Equal(n))
}

var kiel = types.NamespacedName{Namespace: "procedure-001", Name: "web"}

func TestProbesOncePerInterval(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	sc := &script{results: []health.Status{health.StatusHealthy}}
	s.Set(kiel, Schedule{Interval: 2 * time.Second}, []Check{sc.check("front-door")}, nil)
	start(t, s)

	g.Eventually(sc.count).Should(Equal(1), "a new check is probed at once")
	settle(g, c, 1)
	c.Step(1999 * time.Millisecond)
	settle(g, c, 1)
	g.Expect(sc.count()).To(Equal(1), "not probed again before its interval")
	c.Step(time.Millisecond)
	g.Eventually(sc.count).Should(Equal(2), "probed again after its interval")
	settle(g, c, 1)

	obs := s.Observations(kiel)
	g.Expect(obs).To(HaveKey("front-door"))
	g.Expect(obs["front-door"].LastProbe).To(Equal(epoch.Add(2 * time.Second)))
	g.Expect(obs["front-door"].LastStatus).To(Equal(health.StatusHealthy))
}

func TestNotifiesOnlyWhenTheDecisionInputsChange(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	var n notifications
	s := New(c, Options{Notify: n.notify})
	sc := &script{results: []health.Status{
		health.StatusHealthy, health.StatusHealthy, // first result: notify; unchanged: none
		health.StatusUnhealthy, health.StatusUnhealthy, // status changed; failures 1 → 2
		health.StatusUnknown,                       // status changed, failures 3
		health.StatusHealthy, health.StatusHealthy, // status changed; unchanged
	}}
	s.Set(kiel, Schedule{Interval: time.Second}, []Check{sc.check("front-door")}, nil)
	start(t, s)

	want := []int{1, 1, 2, 3, 4, 5, 5}
	wantFailures := []int32{0, 0, 1, 2, 3, 0, 0}
	eachRound(g, c, sc, len(want), func(round int) {
		g.Expect(n.of(kiel)).To(Equal(want[round]), "notifications after round %d", round+1)
		g.Expect(s.Observations(kiel)["front-door"].ConsecutiveFailures).To(Equal(wantFailures[round]), "failures after round %d", round+1)
	})
}

// eachRound steps the clock by a second rounds-1 times and calls after with each round's
// index once its result is folded in.
func eachRound(g Gomega, c *clocktesting.FakeClock, sc *script, rounds int, after func(round int)) {
	for round := range rounds {
		if round > 0 {
			settle(g, c, 1)
			c.Step(time.Second)
		}
		g.Eventually(sc.count).Should(Equal(round + 1))
		settle(g, c, 1)
		after(round)
	}
}

func TestSeedResumesCountAndPace(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	sc := &script{results: []health.Status{health.StatusUnhealthy}}
	seed := map[string]Observation{
		"front-door": {Tally: health.Tally{ConsecutiveFailures: 2, LastStatus: health.StatusUnhealthy, LastTransition: epoch.Add(-3 * time.Second)}, LastProbe: epoch.Add(-500 * time.Millisecond)},
		"gone":       {Tally: health.Tally{ConsecutiveFailures: 7}, LastProbe: epoch.Add(-time.Second)},
	}
	s.Set(kiel, Schedule{Interval: 2 * time.Second}, []Check{sc.check("front-door")}, seed)
	g.Expect(s.Observations(kiel)).To(HaveLen(1), "a seed of a check the service no longer has is dropped")
	start(t, s)

	settle(g, c, 1)
	g.Expect(sc.count()).To(BeZero(), "a check seeded as probed 500ms ago waits for the rest of its interval")
	c.Step(1500 * time.Millisecond)
	g.Eventually(sc.count).Should(Equal(1))
	settle(g, c, 1)
	o := s.Observations(kiel)["front-door"]
	g.Expect(o.ConsecutiveFailures).To(Equal(int32(3)), "the count of failures goes on from the seed")
	g.Expect(o.LastTransition).To(Equal(epoch.Add(-3*time.Second)), "no transition while the status stays")
}

func TestSlowCheckHoldsUpOnlyItsService(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	release := make(chan struct{})
	var slowRuns atomic.Int32
	slow := Check{Name: "slow", Run: func(ctx context.Context) health.Result {
		slowRuns.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return health.Result{Status: health.StatusHealthy}
	}}
	fast := &script{results: []health.Status{health.StatusHealthy}}
	other := types.NamespacedName{Namespace: "procedure-002", Name: "web"}
	s.Set(kiel, Schedule{Interval: time.Minute}, []Check{slow}, nil)
	s.Set(other, Schedule{Interval: time.Second}, []Check{fast.check("front-door")}, nil)
	start(t, s)

	g.Eventually(slowRuns.Load).Should(Equal(int32(1)))
	for round := 1; round <= 5; round++ {
		g.Eventually(fast.count).Should(Equal(round))
		settle(g, c, 1) // only the fast service's loop waits on the clock
		c.Step(time.Second)
	}
	g.Expect(slowRuns.Load()).To(Equal(int32(1)), "a round starts only when the previous one ended")
	close(release)
	settle(g, c, 2)
	c.Step(time.Minute)
	g.Eventually(slowRuns.Load).Should(Equal(int32(2)), "the slow service's next round a minute after its first")
}

func TestWorkersBoundConcurrentProbes(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{Workers: 2})
	var running, most, total atomic.Int32
	release := make(chan struct{})
	check := Check{Name: "blocking", Run: func(ctx context.Context) health.Result {
		total.Add(1)
		now := running.Add(1)
		for {
			m := most.Load()
			if now <= m || most.CompareAndSwap(m, now) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		return health.Result{Status: health.StatusHealthy}
	}}
	for i := range 5 {
		s.Set(types.NamespacedName{Namespace: "ns", Name: string(rune('a' + i))}, Schedule{Interval: time.Second}, []Check{check, {Name: "second", Run: check.Run}}, nil)
	}
	start(t, s)

	g.Eventually(running.Load).Should(Equal(int32(2)))
	g.Consistently(running.Load).WithTimeout(100 * time.Millisecond).Should(Equal(int32(2)))
	close(release)
	g.Eventually(total.Load).Should(Equal(int32(10)), "every check of every service ran")
	g.Expect(most.Load()).To(Equal(int32(2)), "never more probes at once than workers")
}

func TestSetAndRemove(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	a := &script{results: []health.Status{health.StatusUnhealthy}}
	b := &script{results: []health.Status{health.StatusHealthy}}
	s.Set(kiel, Schedule{Interval: time.Second}, []Check{a.check("a")}, nil)
	start(t, s)
	g.Eventually(a.count).Should(Equal(1))
	settle(g, c, 1)

	// A new check is due at once; the one that stays keeps its tally and its pace.
	s.Set(kiel, Schedule{Interval: time.Second}, []Check{a.check("a"), b.check("b")}, nil)
	g.Eventually(b.count).Should(Equal(1))
	g.Expect(a.count()).To(Equal(2), "the round of the new check probes the service's other checks too")
	settle(g, c, 1)
	g.Expect(s.Observations(kiel)["a"].ConsecutiveFailures).To(Equal(int32(2)))

	// A check no longer named loses its observation.
	s.Set(kiel, Schedule{Interval: time.Second}, []Check{b.check("b")}, nil)
	g.Expect(s.Observations(kiel)).To(HaveKey("b"))
	g.Expect(s.Observations(kiel)).NotTo(HaveKey("a"))

	// A longer interval applies to the waiting round.
	settle(g, c, 1)
	s.Set(kiel, Schedule{Interval: 5 * time.Second}, []Check{b.check("b")}, nil)
	settle(g, c, 1)
	c.Step(2 * time.Second)
	settle(g, c, 1)
	g.Expect(b.count()).To(Equal(1), "not due before the new interval")
	c.Step(3 * time.Second)
	g.Eventually(b.count).Should(Equal(2))

	settle(g, c, 1)
	s.Remove(kiel)
	g.Eventually(c.Waiters).Should(BeZero(), "a removed service's loop ends")
	c.Step(time.Minute)
	g.Consistently(b.count).WithTimeout(50 * time.Millisecond).Should(Equal(2))
	g.Expect(s.Observations(kiel)).To(BeNil())
}

func TestObserveSeesEveryProbe(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	var mu sync.Mutex
	var seen []health.Status
	s := New(c, Options{Observe: func(key types.NamespacedName, check string, o Observation) {
		mu.Lock()
		defer mu.Unlock()
		if key == kiel && check == "front-door" {
			seen = append(seen, o.LastStatus)
		}
	}})
	sc := &script{results: []health.Status{health.StatusHealthy, health.StatusHealthy, health.StatusUnhealthy}}
	s.Set(kiel, Schedule{Interval: time.Second}, []Check{sc.check("front-door")}, nil)
	start(t, s)
	for range 2 {
		g.Eventually(c.Waiters).Should(Equal(1))
		c.Step(time.Second)
	}
	g.Eventually(func() []health.Status {
		mu.Lock()
		defer mu.Unlock()
		return append([]health.Status(nil), seen...)
	}).Should(Equal([]health.Status{health.StatusHealthy, health.StatusHealthy, health.StatusUnhealthy}))
}

func TestFailuresBeyondTheThresholdDoNotNotify(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	var n notifications
	s := New(c, Options{Notify: n.notify})
	sc := &script{results: []health.Status{health.StatusUnhealthy, health.StatusUnhealthy, health.StatusUnhealthy, health.StatusUnhealthy, health.StatusHealthy}}
	s.Set(kiel, Schedule{Interval: time.Second, FailureThreshold: 2}, []Check{sc.check("front-door")}, nil)
	start(t, s)

	// Failures 1 and 2 reach the threshold; 3 and 4 change nothing the decision reads; the
	// Healthy result is a change of status.
	want := []int{1, 2, 2, 2, 3}
	eachRound(g, c, sc, len(want), func(round int) {
		g.Expect(n.of(kiel)).To(Equal(want[round]), "notifications after round %d", round+1)
	})
	g.Expect(s.Observations(kiel)["front-door"].ConsecutiveFailures).To(BeZero())
}

func TestAProbeIsCutOffAtItsInterval(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	hanging := Check{Name: "lost-site", Run: func(ctx context.Context) health.Result {
		<-ctx.Done() // a read of an API server that no longer answers
		return health.Result{Status: health.StatusUnknown, Message: ctx.Err().Error()}
	}}
	s.Set(kiel, Schedule{Interval: 200 * time.Millisecond}, []Check{hanging}, nil)
	start(t, s)
	g.Eventually(func() int32 { return s.Observations(kiel)["lost-site"].ConsecutiveFailures }).
		WithTimeout(5*time.Second).Should(Equal(int32(1)), "a probe that never answers ends at its interval and counts as a failure")
	g.Expect(s.Observations(kiel)["lost-site"].Message).To(ContainSubstring("deadline exceeded"))
}

func TestServicesThatShareACheckShareItsProbes(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	var n notifications
	var sharedProbes, ownProbes atomic.Int32
	s := New(c, Options{Notify: n.notify, Probed: func(shared bool) {
		if shared {
			sharedProbes.Add(1)
		} else {
			ownProbes.Add(1)
		}
	}})
	front := &script{results: []health.Status{health.StatusHealthy, health.StatusUnhealthy, health.StatusUnhealthy}}
	shared := front.check("front-door")
	shared.Share = "tcp portal.example.de:443"
	const services = 100
	keys := make([]types.NamespacedName, services)
	for i := range keys {
		keys[i] = types.NamespacedName{Namespace: fmt.Sprintf("procedure-%03d", i), Name: "web"}
		s.Set(keys[i], Schedule{Interval: 2 * time.Second}, []Check{shared}, nil)
	}
	start(t, s)

	for round, want := range []struct {
		status   health.Status
		failures int32
	}{{health.StatusHealthy, 0}, {health.StatusUnhealthy, 1}, {health.StatusUnhealthy, 2}} {
		if round > 0 {
			c.Step(2 * time.Second)
		}
		g.Eventually(func() int {
			done := 0
			for _, k := range keys {
				if o, ok := s.Observations(k)["front-door"]; ok && o.LastProbe.Equal(epoch.Add(time.Duration(round)*2*time.Second)) {
					done++
				}
			}
			return done
		}).Should(Equal(services), "every service has round %d's result", round+1)
		settle(g, c, services)
		g.Expect(front.count()).To(Equal(round+1), "one probe per interval answers all %d services", services)
		for _, k := range keys {
			o := s.Observations(k)["front-door"]
			g.Expect(o.LastStatus).To(Equal(want.status))
			g.Expect(o.ConsecutiveFailures).To(Equal(want.failures), "each round counts its own result once")
		}
	}
	g.Expect(n.of(keys[0])).To(Equal(3), "notified of the first result, the change to Unhealthy and the second failure, as without sharing")
	g.Expect(sharedProbes.Load()).To(Equal(int32(3)), "Probed counts each shared probe once")
	g.Expect(ownProbes.Load()).To(BeZero())
}

func TestASharedProbeIsTakenOnlyWithinHalfAnInterval(t *testing.T) {
	g := NewWithT(t)
	c := clocktesting.NewFakeClock(epoch)
	s := New(c, Options{})
	front := &script{results: []health.Status{health.StatusHealthy}}
	shared := front.check("front-door")
	shared.Share = "http https://portal.example.de/healthz 200"
	first := types.NamespacedName{Namespace: "procedure-001", Name: "web"}
	s.Set(first, Schedule{Interval: 2 * time.Second}, []Check{shared}, nil)
	start(t, s)
	g.Eventually(front.count).Should(Equal(1))
	settle(g, c, 1)

	c.Step(999 * time.Millisecond)
	early := types.NamespacedName{Namespace: "procedure-002", Name: "web"}
	s.Set(early, Schedule{Interval: 2 * time.Second}, []Check{shared}, nil)
	g.Eventually(func() bool { _, ok := s.Observations(early)["front-door"]; return ok }).Should(BeTrue())
	g.Expect(front.count()).To(Equal(1), "a round 999ms after the shared probe takes its result")
	g.Expect(s.Observations(early)["front-door"].LastProbe).To(Equal(epoch), "and the time that probe started, so that the two fall into step")
	settle(g, c, 2)

	c.Step(time.Millisecond)
	late := types.NamespacedName{Namespace: "procedure-003", Name: "web"}
	s.Set(late, Schedule{Interval: 2 * time.Second}, []Check{shared}, nil)
	g.Eventually(front.count).Should(Equal(2), "a round a whole half interval after the shared probe probes anew")
	g.Eventually(func() time.Time { return s.Observations(late)["front-door"].LastProbe }).Should(Equal(epoch.Add(time.Second)))
	settle(g, c, 3)

	other := types.NamespacedName{Namespace: "procedure-004", Name: "web"}
	s.Set(other, Schedule{Interval: 5 * time.Second}, []Check{shared}, nil)
	g.Eventually(front.count).Should(Equal(3), "a service with another interval does not share the probes")
}
