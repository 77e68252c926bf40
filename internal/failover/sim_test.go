package failover

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// This file simulates two sites running the protocol, for the model check in
// modelcheck_test.go. The simulation is a discrete-event one in real time; each site sees
// only its own clock, which is offset and runs fast or slow. Site 0 (sh-kiel) is the
// service's primary site, site 1 (mv-schwerin) its standby site, whose cluster stores the
// lease. The world is hostile: messages are delayed, reordered and dropped, the link
// between the sites is cut, sites crash and come back, managers restart (forgetting
// everything while the site's workloads keep serving), health checks give arbitrary
// results, Switchovers come and go, and the two sites' objectives disagree about the lease
// duration — or, in runs where they agree, people delete the lease. Each site runs the
// controller's part of the protocol (see the package documentation) around DecideActive
// and DecideStandby, or around mutants of them, and the simulation stops at the first
// instant both sites serve.

// simEpoch is what a clock without offset shows at the start of a simulation.
var simEpoch = time.Date(2026, time.March, 1, 8, 0, 0, 0, time.UTC)

// simWorld is how the world behaves; the sites do not know it.
type simWorld struct {
	// duration is how much real time one run simulates.
	duration time.Duration
	// offsetMax: each site's clock is offset by up to ±offsetMax from real time.
	offsetMax time.Duration
	// clockRate: site i's clock runs at between clockRate[i][0] and clockRate[i][1] times
	// real time.
	clockRate [2][2]float64
	// fenceLatencyMax: a fence takes effect up to this long after it was decided.
	fenceLatencyMax time.Duration
	// linkDelayMax bounds a message between the sites; most take under 100ms.
	linkDelayMax time.Duration
	// localDelayMax bounds a message within the standby site (manager to API server).
	localDelayMax time.Duration
	// dropRate is the chance that a message between the sites is lost (a fifth of it within
	// a site).
	dropRate float64
	// requestTimeout is when, by its own clock, a site gives up waiting for a write's answer.
	requestTimeout time.Duration
	// restartDelayMax bounds how long a restarting manager takes to decide for the first
	// time; its site serves on meanwhile.
	restartDelayMax time.Duration
	// faults turns on partitions, crashes, manager restarts and lease deletions.
	faults bool
}

// defaultWorld keeps within the budget the package documentation states for a skew of 1s
// and lease durations up to 12s: the active's clock loses at most 11s × 3.1% ≈ 0.34s, and
// its fence takes effect at most 0.45s after it is decided, which is at most 0.15s late
// when a manager restart spans the deadline; the standby's clock gains at most
// 13s × 3% = 0.39s.
func defaultWorld() simWorld {
	return simWorld{
		duration:        20 * time.Minute,
		offsetMax:       500 * time.Millisecond,
		clockRate:       [2][2]float64{{0.97, 1.03}, {0.97, 1.03}},
		fenceLatencyMax: 450 * time.Millisecond,
		linkDelayMax:    3 * time.Second,
		localDelayMax:   30 * time.Millisecond,
		dropRate:        0.05,
		requestTimeout:  2 * time.Second,
		restartDelayMax: 150 * time.Millisecond,
		faults:          true,
	}
}

// simRules is the protocol under test: the real one, or a mutant the checker must catch.
type simRules struct {
	// policy is both sites' policy at the start; Mode is drawn per run.
	policy Policy
	// leaseDurations, if set, are what each site's objective may change its lease duration
	// to during a run, independently of the other site.
	leaseDurations []time.Duration
	decideActive   func(Policy, ActiveState, time.Time) ActiveDecision
	decideStandby  func(Policy, StandbyState, time.Time) StandbyDecision
	// releaseBeforeFence releases the lease without waiting for the fence to take effect.
	releaseBeforeFence bool
}

func protocol() simRules {
	return simRules{
		policy: Policy{
			FailureThreshold: 2,
			ProbeInterval:    time.Second,
			LeaseDuration:    9 * time.Second,
			MaxClockSkew:     time.Second,
		},
		leaseDurations: []time.Duration{6 * time.Second, 9 * time.Second, 12 * time.Second},
		decideActive:   DecideActive,
		decideStandby:  DecideStandby,
	}
}

// simStats counts what a run exercised, so a passing model check can show it was not
// vacuous.
type simStats struct {
	served        [2]time.Duration // real time each site served
	nobody        time.Duration    // real time neither served
	created       int              // leases created by the primary site
	fromReleased  int              // acquisitions of a released lease
	fromExpired   int              // acquisitions of an expired or missing lease
	handOvers     int
	deadlineFence int // fences decided at the deadline while serving
	restartFence  int // fences by a manager that found the lease naming its site after a restart
	standbyFence  int // fences of a serving site whose manager found the lease naming another site, nobody, or not yet read
	recommends    int
	crashes       int
	restarts      int
	partitions    int
	deletions     int
	events        int
}

func (s *simStats) add(o simStats) {
	for i := range s.served {
		s.served[i] += o.served[i]
	}
	s.nobody += o.nobody
	s.created += o.created
	s.fromReleased += o.fromReleased
	s.fromExpired += o.fromExpired
	s.handOvers += o.handOvers
	s.deadlineFence += o.deadlineFence
	s.restartFence += o.restartFence
	s.standbyFence += o.standbyFence
	s.recommends += o.recommends
	s.crashes += o.crashes
	s.restarts += o.restarts
	s.partitions += o.partitions
	s.deletions += o.deletions
	s.events += o.events
}

func (s simStats) String() string {
	return fmt.Sprintf("%d events; served by sh-kiel %s, by mv-schwerin %s, by nobody %s; "+
		"leases created %d, acquired released %d, acquired expired %d; hand-overs %d; fences at the deadline %d, after a manager restart %d, of a site that does not hold the lease %d; recommendations %d; "+
		"site crashes %d, manager restarts %d, partitions %d, lease deletions %d",
		s.events, s.served[0].Round(time.Second), s.served[1].Round(time.Second), s.nobody.Round(time.Second),
		s.created, s.fromReleased, s.fromExpired, s.handOvers, s.deadlineFence, s.restartFence, s.standbyFence, s.recommends,
		s.crashes, s.restarts, s.partitions, s.deletions)
}

// simResult is the outcome of one run.
type simResult struct {
	// violation describes the first instant both sites served; empty if none did.
	violation string
	stats     simStats
	// trace is the run's log, when asked for.
	trace []string
}

type simEvent struct {
	at  time.Duration
	seq uint64
	fn  func()
}

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

// simCore is what both simulations share: real time, the event queue, the seeded random
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

type simWrite struct {
	kind   string      // "renew", "acquire" or "release"
	rec    LeaseRecord // what to write; its ResourceVersion is the precondition
	sentAt time.Time   // the site's clock just before sending
}

type simSite struct {
	id      int
	name    string
	primary bool
	simClock
	policy Policy
	up     bool
	// incarnation changes when the manager restarts or the site crashes: answers addressed
	// to an earlier one are lost.
	incarnation int

	// The cluster's state: survives a manager restart, not a site crash.
	serving  bool
	fencing  bool // a fence was decided and has not taken effect yet
	fenceGen int

	// The manager's memory.
	obs               Observation
	renewal           Renewal
	ownFailures       int32 // this site's own checks, failed in a row
	peerFailures      int32 // this site's checks of the other site, failed in a row
	handingOver       bool
	inflight          *simWrite
	justStarted       bool
	lastActive        ActiveAction
	handOverRequested bool
	takeOverRequested bool

	// The world's view of the site's health.
	sick bool

	stepPending bool
	stepAt      time.Duration
	stepGen     int
}

type sim struct {
	simCore
	world  simWorld
	rules  simRules
	last   time.Duration
	store  LeaseRecord
	rev    int
	sites  [2]*simSite
	linkUp bool
	result simResult
}

// simulate runs the protocol once; the same seed gives the same run.
func simulate(seed uint64, world simWorld, rules simRules, tracing bool) simResult {
	s := &sim{world: world, rules: rules, simCore: simCore{rng: rand.New(rand.NewPCG(seed, 0x5eed)), tracing: tracing}, linkUp: true}
	policy := rules.policy
	policy.Mode = deichv1alpha1.FailoverAutomatic
	if s.rng.IntN(4) == 0 {
		policy.Mode = deichv1alpha1.FailoverManual
	}
	for i, name := range []string{"sh-kiel", "mv-schwerin"} {
		s.sites[i] = &simSite{
			id: i, name: name, primary: i == 0, up: true, justStarted: true, policy: policy,
			simClock: simClock{
				offset: s.uniform(-world.offsetMax, world.offsetMax),
				rate:   world.clockRate[i][0] + s.rng.Float64()*(world.clockRate[i][1]-world.clockRate[i][0]),
			},
		}
	}
	s.logf("start: mode %s, sh-kiel clock offset %s rate %.4f, mv-schwerin clock offset %s rate %.4f",
		policy.Mode, s.sites[0].offset, s.sites[0].rate, s.sites[1].offset, s.sites[1].rate)
	for _, x := range s.sites {
		s.wake(x, s.uniform(0, time.Second))
		s.scheduleHealth(x)
		s.scheduleSwitchover(x)
		if len(rules.leaseDurations) > 0 {
			s.scheduleLeaseChange(x)
		}
		if world.faults {
			s.scheduleCrash(x)
			s.scheduleManagerRestart(x)
		}
	}
	if world.faults {
		s.schedulePartition()
		if len(rules.leaseDurations) == 0 {
			// Deleting the lease is safe only while the objectives agree on its duration.
			s.scheduleDeletion()
		}
	}
	s.run()
	s.result.trace = s.trace
	return s.result
}

func (s *sim) run() {
	for len(s.queue) > 0 {
		e := heap.Pop(&s.queue).(*simEvent)
		if e.at > s.world.duration {
			e.at = s.world.duration
			s.account(e.at)
			return
		}
		s.account(e.at)
		s.now = e.at
		e.fn()
		s.result.stats.events++
		if a, b := s.sites[0], s.sites[1]; a.serving && b.serving {
			s.result.violation = fmt.Sprintf("at %s both sites serve (sh-kiel: lease %q, renewal sent %s; mv-schwerin: lease %q, renewal sent %s)",
				s.now, a.obs.Record.Holder, fmtTime(a.renewal.SentAt), b.obs.Record.Holder, fmtTime(b.renewal.SentAt))
			s.logf("VIOLATION: %s", s.result.violation)
			return
		}
	}
}

// account adds the real time since the last event to the serving statistics.
func (s *sim) account(until time.Duration) {
	d := until - s.last
	s.last = until
	served := false
	for i, x := range s.sites {
		if x.serving {
			s.result.stats.served[i] += d
			served = true
		}
	}
	if !served {
		s.result.stats.nobody += d
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(simEpoch).String()
}

// clock is what site x's clock shows now.
func (s *sim) clock(x *simSite) time.Time { return x.simClock.at(s.now) }

// realAt is the real time at which site x's clock shows t, never before now.
func (s *sim) realAt(x *simSite, t time.Time) time.Duration { return x.simClock.realAt(s.now, t) }

// wake makes site x's manager decide at real time t at the latest.
func (s *sim) wake(x *simSite, t time.Duration) {
	t = max(t, s.now)
	if x.stepPending && x.stepAt <= t {
		return
	}
	x.stepGen++
	gen := x.stepGen
	x.stepPending, x.stepAt = true, t
	s.at(t, func() {
		if x.stepGen != gen {
			return
		}
		x.stepPending = false
		s.step(x)
	})
}

// send delivers a message from one place to another after a delay, unless it is lost.
// Site 1's cluster holds the lease, so messages between site 0 and the lease cross the link.
func (s *sim) send(crossesLink bool, deliver func()) {
	delay := s.uniform(0, s.world.localDelayMax)
	drop := s.world.dropRate / 5
	if crossesLink {
		drop = s.world.dropRate
		delay = s.uniform(time.Millisecond, 100*time.Millisecond)
		if s.chance(0.1) {
			delay = s.uniform(100*time.Millisecond, s.world.linkDelayMax)
		}
		if !s.linkUp {
			return
		}
	}
	if s.chance(drop) {
		return
	}
	s.at(s.now+delay, func() {
		if crossesLink && !s.linkUp {
			return
		}
		deliver()
	})
}

// toStore sends a request from site x to the API server that holds the lease.
func (s *sim) toStore(x *simSite, handle func()) {
	s.send(x.id == 0, func() {
		if s.sites[1].up {
			handle()
		}
	})
}

// toSite sends an answer from the lease's API server to site x's current manager.
func (s *sim) toSite(x *simSite, deliver func()) {
	inc := x.incarnation
	s.send(x.id == 0, func() {
		if x.up && x.incarnation == inc {
			deliver()
		}
	})
}

// commit is the API server's compare-and-swap.
func (s *sim) commit(rec LeaseRecord) (LeaseRecord, bool) {
	if rec.ResourceVersion != s.store.ResourceVersion {
		return s.store, false
	}
	s.rev++
	rec.ResourceVersion = strconv.Itoa(s.rev)
	s.store = rec
	s.logf("lease is now holder %q duration %s rv %s", rec.Holder, rec.Duration, rec.ResourceVersion)
	s.notify()
	return rec, true
}

// notify sends the lease to both managers' watches.
func (s *sim) notify() {
	cur := s.store
	for _, x := range s.sites {
		s.toSite(x, func() { s.observe(x, cur) })
	}
}

func (s *sim) read(x *simSite) {
	s.toStore(x, func() {
		cur := s.store
		s.toSite(x, func() { s.observe(x, cur) })
	})
}

func (s *sim) observe(x *simSite, rec LeaseRecord) {
	x.obs = Observe(x.obs, rec, s.clock(x))
	s.wake(x, s.now+s.uniform(0, 20*time.Millisecond))
}

// write sends one lease write, if none is in flight, as the controller must.
func (s *sim) write(x *simSite, kind string, rec LeaseRecord) {
	if x.inflight != nil {
		return
	}
	w := &simWrite{kind: kind, rec: rec, sentAt: s.clock(x)}
	x.inflight = w
	x.renewal = x.renewal.Sending(rec)
	s.logf("%s sends %s on rv %q", x.name, kind, rec.ResourceVersion)
	s.toStore(x, func() {
		base := s.store
		got, ok := s.commit(w.rec)
		s.toSite(x, func() { s.written(x, w, base, got, ok) })
	})
}

// written handles the answer to a write.
func (s *sim) written(x *simSite, w *simWrite, base, got LeaseRecord, ok bool) {
	if x.inflight != w {
		s.logf("%s ignores the late answer to its %s", x.name, w.kind)
		return
	}
	x.inflight = nil
	x.obs = Observe(x.obs, got, s.clock(x))
	s.logf("%s: %s succeeded %t", x.name, w.kind, ok)
	switch {
	case w.kind == "release":
		x.handingOver = false
	case ok && got.HeldBy(x.name):
		x.renewal = RenewalOf(got, w.sentAt)
		if w.kind == "acquire" {
			switch {
			case !base.Exists() && x.primary:
				s.result.stats.created++
			case base.Released():
				s.result.stats.fromReleased++
			default:
				s.result.stats.fromExpired++
			}
		}
	}
	s.wake(x, s.now)
}

func (s *sim) serve(x *simSite) {
	if x.fencing {
		x.fencing = false
		x.fenceGen++
	}
	if !x.serving {
		s.logf("%s starts serving", x.name)
		x.serving = true
	}
}

func (s *sim) fence(x *simSite) {
	if !x.serving || x.fencing {
		return
	}
	x.fencing = true
	x.fenceGen++
	gen := x.fenceGen
	s.logf("%s fences", x.name)
	s.at(s.now+s.uniform(0, s.world.fenceLatencyMax), func() {
		if x.fenceGen == gen && x.fencing {
			x.fencing, x.serving = false, false
			s.logf("%s has stopped serving", x.name)
			s.wake(x, s.now)
		}
	})
}

// step is one reconcile of site x's manager: observe, decide, act.
func (s *sim) step(x *simSite) {
	if !x.up {
		return
	}
	now := s.clock(x)
	if x.inflight != nil && now.Sub(x.inflight.sentAt) >= s.world.requestTimeout {
		s.logf("%s gives up on its %s", x.name, x.inflight.kind)
		if x.inflight.kind == "release" {
			x.handingOver = false
		}
		x.inflight = nil
	}
	if x.justStarted || s.chance(0.1) {
		x.justStarted = false
		s.read(x)
	}
	if s.chance(0.5) {
		s.probe(x)
	}

	var next time.Time
	switch {
	case x.handingOver:
		if (!x.serving || s.rules.releaseBeforeFence) && x.inflight == nil {
			s.write(x, "release", ReleasedRecord(x.obs.Record, now))
		}
	case x.obs.Record.HeldBy(x.name):
		// Whether the partner is ready depends loosely on the world: safety must not depend
		// on it.
		other := s.sites[1-x.id]
		ready := other.up && !other.sick || s.chance(0.1)
		d := s.rules.decideActive(x.policy, ActiveState{Renewal: x.renewal, ChecksFailing: x.ownFailures, HandOverRequested: x.handOverRequested, PartnerReady: ready}, now)
		if d.Action != x.lastActive {
			s.logf("%s decides %s: %s", x.name, d.Action, d.Message)
		}
		if d.Action == ActionFence && x.serving && !x.fencing {
			if x.renewal.SentAt.IsZero() {
				s.result.stats.restartFence++
			} else {
				s.result.stats.deadlineFence++
			}
		}
		x.lastActive = d.Action
		switch d.Action {
		case ActionServe:
			s.serve(x)
		case ActionRenew:
			s.serve(x)
			s.write(x, "renew", RenewedRecord(x.obs.Record, x.name, x.policy, now))
		case ActionFence:
			s.fence(x)
			s.write(x, "renew", RenewedRecord(x.obs.Record, x.name, x.policy, now))
		case ActionHandOver:
			s.result.stats.handOvers++
			s.fence(x)
			x.renewal, x.inflight, x.handingOver = Renewal{}, nil, true
			if !x.serving || s.rules.releaseBeforeFence {
				s.write(x, "release", ReleasedRecord(x.obs.Record, now))
			}
		}
		next = d.NextCheck
	default:
		if x.serving && !x.fencing {
			s.result.stats.standbyFence++
		}
		s.fence(x)
		x.renewal, x.lastActive = Renewal{}, -1
		d := s.rules.decideStandby(x.policy, StandbyState{
			Site: x.name, Primary: x.primary, Observation: x.obs,
			ConsecutiveFailures: x.peerFailures, TakeOverRequested: x.takeOverRequested,
		}, now)
		switch d.Action {
		case StandbyPromote:
			s.logf("%s decides Promote: %s", x.name, d.Message)
			s.write(x, "acquire", AcquiredRecord(x.obs.Record, x.name, x.policy, now))
		case StandbyRecommend:
			s.result.stats.recommends++
		}
		next = d.NextCheck
	}

	s.wake(x, s.now+s.uniform(time.Millisecond, 500*time.Millisecond))
	if next.After(now) {
		s.wake(x, s.realAt(x, next))
	}
}

// probe runs site x's health checks. Their results depend loosely on the world and are
// otherwise random: safety must not depend on them.
func (s *sim) probe(x *simSite) {
	other := s.sites[1-x.id]
	own := s.chance(0.03) || x.sick && s.chance(0.9)
	peer := s.chance(0.1) || (!s.linkUp || !other.serving || other.sick) && s.chance(0.9)
	x.ownFailures = failures(x.ownFailures, own)
	x.peerFailures = failures(x.peerFailures, peer)
}

func failures(n int32, failed bool) int32 {
	if !failed {
		return 0
	}
	return min(n+1, 1000)
}

func (s *sim) scheduleHealth(x *simSite) {
	s.at(s.now+s.uniform(5*time.Second, 90*time.Second), func() {
		x.sick = !x.sick && s.chance(0.5)
		s.scheduleHealth(x)
	})
}

func (s *sim) scheduleSwitchover(x *simSite) {
	s.at(s.now+s.uniform(time.Minute, 5*time.Minute), func() {
		other := s.sites[1-x.id]
		x.takeOverRequested, other.handOverRequested = true, true
		s.logf("Switchover to %s", x.name)
		s.at(s.now+s.uniform(5*time.Second, 40*time.Second), func() {
			x.takeOverRequested, other.handOverRequested = false, false
			s.scheduleSwitchover(x)
		})
	})
}

func (s *sim) scheduleLeaseChange(x *simSite) {
	s.at(s.now+s.uniform(20*time.Second, 3*time.Minute), func() {
		x.policy.LeaseDuration = s.rules.leaseDurations[s.rng.IntN(len(s.rules.leaseDurations))]
		s.logf("%s's objective now has lease duration %s", x.name, x.policy.LeaseDuration)
		s.scheduleLeaseChange(x)
	})
}

// forget wipes the manager's memory, as a restart does.
func (s *sim) forget(x *simSite) {
	x.incarnation++
	x.obs, x.renewal, x.inflight, x.handingOver = Observation{}, Renewal{}, nil, false
	x.ownFailures, x.peerFailures = 0, 0
	x.justStarted, x.lastActive = true, -1
}

func (s *sim) scheduleCrash(x *simSite) {
	s.at(s.now+s.uniform(2*time.Minute, 10*time.Minute), func() {
		s.result.stats.crashes++
		s.logf("%s crashes", x.name)
		x.up, x.serving, x.fencing = false, false, false
		x.fenceGen++
		x.stepGen++
		x.stepPending = false
		s.forget(x)
		s.at(s.now+s.uniform(5*time.Second, 2*time.Minute), func() {
			s.logf("%s comes back", x.name)
			x.up = true
			s.wake(x, s.now)
			s.scheduleCrash(x)
		})
	})
}

func (s *sim) scheduleManagerRestart(x *simSite) {
	s.at(s.now+s.uniform(time.Minute, 6*time.Minute), func() {
		if x.up {
			s.result.stats.restarts++
			s.logf("%s's manager restarts", x.name)
			s.forget(x)
			x.stepGen++
			x.stepPending = false
			// Like a controller waiting for its caches, it reads the lease first; whether
			// the answer comes before it decides is up to the network.
			s.read(x)
			x.justStarted = false
			s.wake(x, s.now+s.uniform(0, s.world.restartDelayMax))
		}
		s.scheduleManagerRestart(x)
	})
}

func (s *sim) schedulePartition() {
	s.at(s.now+s.uniform(10*time.Second, 2*time.Minute), func() {
		s.result.stats.partitions++
		s.linkUp = false
		s.logf("the link between the sites is cut")
		s.at(s.now+s.uniform(time.Second, time.Minute), func() {
			s.linkUp = true
			s.logf("the link between the sites is back")
			s.schedulePartition()
		})
	})
}

func (s *sim) scheduleDeletion() {
	s.at(s.now+s.uniform(3*time.Minute, 15*time.Minute), func() {
		if s.sites[1].up && s.store.Exists() {
			s.result.stats.deletions++
			s.rev++
			s.store = LeaseRecord{}
			s.logf("someone deletes the lease")
			s.notify()
		}
		s.scheduleDeletion()
	})
}

// lastLines returns the end of a trace, for a failure message.
func lastLines(trace []string, n int) string {
	if len(trace) > n {
		trace = trace[len(trace)-n:]
	}
	return strings.Join(trace, "\n")
}
