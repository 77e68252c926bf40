// Package probes runs the health checks of every SharedService at one site on their own
// schedule, off the reconcile workers. A reconcile registers a service's checks with the
// Scheduler and reads back the latest observation of each; the Scheduler probes every
// service once per probe interval, however often or seldom the service is reconciled, and
// calls for a reconcile only when an observation changes what the failover decision reads:
// a check's status, or its count of consecutive failures up to the failure threshold. A site that holds a thousand
// healthy services therefore probes a thousand times per interval but reconciles none of
// them for it, and a site that has just been lost is detected by every service's probes at
// once instead of one reconcile worker at a time.
//
// Each service has a loop of its own that waits for its next round on the injected clock,
// runs the round's checks concurrently and folds the results into the running tally
// (health.Tally). A round starts only when the previous one has ended, so a check that is
// slower than its interval is cut off at the interval and counts as a failure; it delays its
// own service only. How many probes run at once across
// all services is bounded by Options.Workers.
//
// Services often share a check — the front door of a state's portal, say, which a thousand
// services behind it name alike. A check with a Share key is probed once for all services
// whose checks have the same key and interval: a round takes the result of the probe of its
// key that started less than half an interval before it (waiting for it when it still runs),
// or starts one. The observation then carries the time that probe started, so that services
// sharing a check fall into step and one probe per interval answers them all, and no round
// ever takes a result an earlier round of the same service already took.
//
// The Scheduler is a manager.Runnable that runs only in the elected manager, like the lease
// keeper that decides from its observations. Tests drive it with a fake clock.
package probes

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/deich-io/deich/internal/health"
)

// DefaultWorkers is how many probes run at once when Options.Workers is not set.
const DefaultWorkers = 64

// Check is one health check of a service.
type Check struct {
	// Name identifies the check within its service; its tally is kept under this name.
	Name string
	// Run probes once. It must return when ctx ends; the health.Prober bounds each probe by
	// the check's timeout.
	Run func(ctx context.Context) health.Result
	// Share, when set, says that any check with the same Share probes the same thing in the
	// same way, whichever service it belongs to: their probes are shared (see the package
	// documentation).
	Share string
}

// Observation is the latest that is known of one check.
type Observation struct {
	health.Tally
	// LastProbe is when the round that produced the latest result started.
	LastProbe time.Time
	// Latency and Message are the latest result's.
	Latency time.Duration
	Message string
}

// probed reports whether the observation holds a result.
func (o Observation) probed() bool { return !o.LastProbe.IsZero() }

// Options configure a Scheduler.
type Options struct {
	// Workers bounds how many probes run at once, over all services. DefaultWorkers when
	// zero or negative.
	Workers int
	// Notify is called with a service's key when a round changed the status or the count of
	// consecutive failures of one of its checks, or produced a check's first result. It must
	// not block.
	Notify func(key types.NamespacedName)
	// Observe, when set, is called after every probe with its check's new observation (for
	// metrics). It must not block.
	Observe func(key types.NamespacedName, check string, o Observation)
	// Probed, when set, is called once for every probe run, shared or not: a shared probe
	// counts once, however many services take its result. It must not block.
	Probed func(shared bool)
}

// Scheduler probes the checks of every registered service.
type Scheduler struct {
	clock   clock.WithTicker
	opts    Options
	workers chan struct{}

	mu       sync.Mutex
	ctx      context.Context
	services map[types.NamespacedName]*service

	sharedMu  sync.Mutex
	shared    map[shareKey]*sharedProbe
	lastSweep time.Time
}

// shareKey identifies the checks that share probes: the same Share and interval.
type shareKey struct {
	share    string
	interval time.Duration
}

// sharedProbe is one probe of a shared check; result is set when done is closed.
type sharedProbe struct {
	started time.Time
	done    chan struct{}
	result  health.Result
}

// sharedKept is how long a shared check's last probe is remembered after no round took it.
const sharedKept = 10 * time.Minute

// New returns a Scheduler measuring time with c.
func New(c clock.WithTicker, opts Options) *Scheduler {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	return &Scheduler{clock: c, opts: opts, workers: make(chan struct{}, opts.Workers), services: map[types.NamespacedName]*service{}, shared: map[shareKey]*sharedProbe{}}
}

// NeedLeaderElection reports that only the elected manager probes.
func (s *Scheduler) NeedLeaderElection() bool { return true }

// Start runs the loops of every service until ctx ends.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	for _, svc := range s.services {
		go svc.run(ctx)
	}
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Schedule is how a service's checks run.
type Schedule struct {
	// Interval is the time from the start of one round to the start of the next.
	Interval time.Duration
	// FailureThreshold, when positive, is the count of consecutive failures beyond which a
	// further failure no longer calls for a reconcile: the failover decision only asks
	// whether the threshold is reached. A change of status always does.
	FailureThreshold int32
}

// Set registers a service's checks, or replaces them, and their schedule. A check
// whose name the service already had keeps its tally and its place in the schedule; a new
// one starts from seed[name] when seed holds a result for it (so a restarted manager resumes
// the count of failures, and the pace, from status), else from nothing, and is due at once
// unless the seed says it ran less than an interval ago. Checks no longer named are dropped.
func (s *Scheduler) Set(key types.NamespacedName, sched Schedule, checks []Check, seed map[string]Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc, ok := s.services[key]
	if !ok {
		svc = &service{key: key, s: s, wake: make(chan struct{}, 1), done: make(chan struct{}), obs: map[string]Observation{}}
		s.services[key] = svc
		if s.ctx != nil {
			go svc.run(s.ctx)
		}
	}
	svc.mu.Lock()
	changed := svc.sched.Interval != sched.Interval || !sameNames(svc.checks, checks)
	svc.sched = sched
	svc.checks = slices.Clone(checks)
	obs := make(map[string]Observation, len(checks))
	for _, c := range checks {
		if o, ok := svc.obs[c.Name]; ok {
			obs[c.Name] = o
		} else if o, ok := seed[c.Name]; ok && o.probed() {
			obs[c.Name] = o
		}
	}
	svc.obs = obs
	svc.mu.Unlock()
	if changed {
		svc.poke()
	}
}

// Remove stops probing a service and forgets its observations.
func (s *Scheduler) Remove(key types.NamespacedName) {
	s.mu.Lock()
	svc, ok := s.services[key]
	delete(s.services, key)
	s.mu.Unlock()
	if ok {
		close(svc.done)
	}
}

// Observations returns the latest observation of each of a service's checks that has a
// result; checks not yet probed are missing.
func (s *Scheduler) Observations(key types.NamespacedName) map[string]Observation {
	s.mu.Lock()
	svc, ok := s.services[key]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return maps.Clone(svc.obs)
}

// service is one registered service and its loop.
type service struct {
	key  types.NamespacedName
	s    *Scheduler
	wake chan struct{}
	done chan struct{}

	mu     sync.Mutex
	sched  Schedule
	checks []Check
	obs    map[string]Observation
}

func (svc *service) poke() {
	select {
	case svc.wake <- struct{}{}:
	default:
	}
}

// run waits for each round and runs it, until ctx ends or the service is removed.
func (svc *service) run(ctx context.Context) {
	for {
		select {
		case <-svc.done:
			return
		default:
		}
		wait := svc.untilDue()
		if wait == 0 {
			// Due now: a timer of a fake clock would wait for the clock to move.
			svc.round(ctx)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		timer := svc.s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-svc.done:
			timer.Stop()
			return
		case <-svc.wake:
			timer.Stop()
			continue
		case <-timer.C():
		}
		if svc.untilDue() > 0 {
			continue
		}
		svc.round(ctx)
	}
}

// untilDue is how long until the service's next round: an interval after the earliest
// check's last probe, at once for a check never probed, and an hour while the service has
// no checks (a Set wakes the loop).
func (svc *service) untilDue() time.Duration {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	interval := svc.sched.Interval
	if len(svc.checks) == 0 || interval <= 0 {
		return time.Hour
	}
	now := svc.s.clock.Now()
	wait := interval
	for _, c := range svc.checks {
		o, ok := svc.obs[c.Name]
		if !ok {
			return 0
		}
		wait = min(wait, o.LastProbe.Add(interval).Sub(now))
	}
	return max(wait, 0)
}

// round runs every check of the service once, each on a worker, and folds the results.
func (svc *service) round(ctx context.Context) {
	svc.mu.Lock()
	checks := slices.Clone(svc.checks)
	interval := svc.sched.Interval
	svc.mu.Unlock()
	started := svc.s.clock.Now()
	// A probe that has not answered by the next round has failed: no site is judged on an
	// answer older than its interval, and a lost site is detected within the threshold's
	// rounds, however long a read of its API server would wait.
	probeCtx, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	results := make([]health.Result, len(checks))
	probedAt := make([]time.Time, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		if c.Share != "" {
			// The probe's runner takes a worker; a round that waits for it takes none.
			wg.Go(func() { results[i], probedAt[i] = svc.s.probeShared(ctx, probeCtx, c, interval, started) })
			continue
		}
		select {
		case svc.s.workers <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-svc.s.workers }()
			results[i], probedAt[i] = c.Run(probeCtx), started
			svc.s.probed(false)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		// The manager is stopping: a probe cut short says nothing about the site.
		return
	}

	notify := false
	svc.mu.Lock()
	observed := make(map[string]Observation, len(checks))
	for i, c := range checks {
		if !slices.ContainsFunc(svc.checks, func(cur Check) bool { return cur.Name == c.Name }) {
			continue // removed by a Set while the round ran
		}
		prev, had := svc.obs[c.Name]
		next := Observation{
			Tally:     prev.Tally.Add(results[i], probedAt[i]),
			LastProbe: probedAt[i],
			Latency:   results[i].Latency,
			Message:   results[i].Message,
		}
		if !had || next.LastStatus != prev.LastStatus || svc.countMatters(prev, next) {
			notify = true
		}
		svc.obs[c.Name] = next
		observed[c.Name] = next
	}
	svc.mu.Unlock()
	select {
	case <-svc.done:
		return // removed while the round ran: nothing of it is reported
	default:
	}
	if svc.s.opts.Observe != nil {
		for name, o := range observed {
			svc.s.opts.Observe(svc.key, name, o)
		}
	}
	if notify && svc.s.opts.Notify != nil {
		svc.s.opts.Notify(svc.key)
	}
}

// probeShared returns the result of a probe of c's shared check, and when that probe started:
// the probe that started less than half an interval before now (waiting until it is done or
// waitCtx ends), or else a new one it runs itself, bounded by the interval. ctx is the
// scheduler's.
func (s *Scheduler) probeShared(ctx, waitCtx context.Context, c Check, interval time.Duration, now time.Time) (health.Result, time.Time) {
	key := shareKey{share: c.Share, interval: interval}
	s.sharedMu.Lock()
	p, ok := s.shared[key]
	if ok && p.started.After(now.Add(-interval/2)) {
		s.sharedMu.Unlock()
		select {
		case <-p.done:
			return p.result, p.started
		case <-waitCtx.Done():
			return health.Result{Status: health.StatusUnknown, Message: "the shared probe of this check did not answer within the interval"}, now
		}
	}
	p = &sharedProbe{started: now, done: make(chan struct{})}
	s.shared[key] = p
	s.sweepShared(now)
	s.sharedMu.Unlock()

	defer close(p.done)
	// As in a round, the interval counts from the start, the wait for a worker included: the
	// rounds that take this probe wait no longer than their own interval.
	probeCtx, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	select {
	case s.workers <- struct{}{}:
	case <-ctx.Done():
		p.result = health.Result{Status: health.StatusUnknown, Message: "the scheduler stopped"}
		return p.result, now
	}
	defer func() { <-s.workers }()
	p.result = c.Run(probeCtx)
	s.probed(true)
	return p.result, now
}

// probed tells Options.Probed of a probe that ran.
func (s *Scheduler) probed(shared bool) {
	if s.opts.Probed != nil {
		s.opts.Probed(shared)
	}
}

// sweepShared forgets, at most once a minute, the shared checks no round has probed for
// sharedKept. Call it with sharedMu held.
func (s *Scheduler) sweepShared(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for k, p := range s.shared {
		if now.Sub(p.started) > sharedKept {
			delete(s.shared, k)
		}
	}
}

// countMatters reports whether the failover decision can tell next's count of consecutive
// failures from prev's.
func (svc *service) countMatters(prev, next Observation) bool {
	if next.ConsecutiveFailures == prev.ConsecutiveFailures {
		return false
	}
	t := svc.sched.FailureThreshold
	return t <= 0 || min(prev.ConsecutiveFailures, next.ConsecutiveFailures) < t
}

// sameNames reports whether a and b name the same checks in the same order.
func sameNames(a, b []Check) bool {
	return slices.EqualFunc(a, b, func(x, y Check) bool { return x.Name == y.Name })
}
