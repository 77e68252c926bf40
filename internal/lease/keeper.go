// Package lease runs the quorum lease of every SharedService at one site: for each service
// a loop that reads the lease's copies at their arbiters, asks failover.Step what to do,
// sends the writes, and switches the service's copy between its active and standby form.
// The Keeper is a manager.Runnable; its clock is injected, so tests drive renewals and fence
// deadlines with a fake clock.
//
// The loop owns the service's failover.ServiceState and is the only one to touch it. Reads
// and writes run in their own goroutines, each bounded by the call timeout, and report back
// to the loop; so a hanging arbiter never delays a decision, and the fence deadline is a
// timer of the loop's own. A copy is read at least every renewal interval, and at once when
// a watch of its shared record saw it change (ReadSoon, with Records.Seen).
//
// A copy is a Lease of its own (KubeStore) or an entry of a shared record (Records,
// EntryStore): one writer per record gathers the entry writes of every service that are due,
// for Linger, and stores them with one compare-and-swap of the record, so that the services
// of a record cost one write per renewal interval together. The keeper tells Step which
// records have a write gathering (ServiceState.Batch), and a record that opens one wakes the
// loops of its other services, so that their renewals join it.
package lease

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/deich-io/deich/internal/failover"
)

// Store is one arbiter's copy of one service's lease.
type Store interface {
	// Read returns the copy; a copy that does not exist is the zero LeaseRecord.
	Read(ctx context.Context) (failover.LeaseRecord, error)
	// Write compare-and-swaps rec on its ResourceVersion (creating the copy when that is
	// empty) and returns the copy as committed. ErrConflict, with the current copy, means
	// the copy changed since rec's ResourceVersion; any other error means the outcome is
	// unknown.
	Write(ctx context.Context, rec failover.LeaseRecord) (failover.LeaseRecord, error)
}

// ErrConflict is what Store.Write returns, with the current copy, when the compare-and-swap
// failed.
var ErrConflict = errors.New("the lease copy changed since it was read")

// Fencer switches one service's copy at this site between its forms.
type Fencer interface {
	// Serve takes the copy a step towards its active form, stamping epoch, the claim's
	// fencing token, on what it promotes: the next stage of the service's promotion
	// (failover.NextStage), or everything at once for a service without stages. It never
	// waits for a stage to become ready; it says when to look again instead. ctx ends no
	// later than the site may serve.
	Serve(ctx context.Context, epoch int64) (Progress, error)
	// Fence switches it to its standby form, every stage, and reports whether that has
	// taken effect.
	Fence(ctx context.Context) (bool, error)
}

// Progress is how far Fencer.Serve got.
type Progress struct {
	// Done is set once every object is in its active form and every stage ready.
	Done bool
	// RecheckIn is, until then, how soon the keeper should call Serve again.
	RecheckIn time.Duration
}

// Inputs is what the SharedService reconcile tells the keeper about one service; the keeper
// always acts on the latest.
type Inputs struct {
	Policy failover.Policy
	// State carries the service's identity and evidence (Site, Partner, Primary, Target,
	// Unclaimed, checks, Switchover requests, readiness); the keeper keeps its Arbiters,
	// Claim and Fenced.
	State failover.ServiceState
	// Stores are the copies by arbiter site; they must cover this site and every arbiter
	// of the target.
	Stores map[string]Store
	Fencer Fencer
	// ChecksAt is when the probe round that State's checks fields (PeerChecksFailing,
	// CopyWithinRPO, CopyAge) come from started. A verdict handed in by PeerChecks that is
	// newer replaces them.
	ChecksAt time.Time
	// DataSyncedAt, if set, is when the data behind the service's objects (a database, a
	// volume) was last replicated to the partner, as the data layer reports it. The time the
	// lease carries to the partner as SyncedAt is never later: the partner's RPO gate then
	// judges the older of the copies and the data.
	DataSyncedAt time.Time
}

// Checks is a verdict of the health checks that judge the partner: the fields of
// failover.ServiceState that rule Q7 reads to decide a promotion.
type Checks struct {
	PeerFailing   int32
	CopyWithinRPO bool
	CopyAge       time.Duration
	// At is when the probe round that produced the verdict started.
	At time.Time
}

// Snapshot is what the keeper last decided for a service, for the reconcile to report.
type Snapshot struct {
	Plan   failover.Plan
	Claim  failover.Claim
	Target failover.Config
	// Observations are the copies as last read, by arbiter; OwnRead is set once this
	// site's own copy was read or failed to be.
	Observations map[string]failover.Observation
	OwnRead      bool
	// ServeUntil is, while the site serves, when it must be fenced unless it renews.
	ServeUntil time.Time
	// Serving and Fenced say which form this keeper last switched the copy to, and whether
	// a fence has taken effect. Serving is set from the first stage of a promotion on;
	// Promoted once the last stage is ready.
	Serving, Fenced, Promoted bool
	// SyncedAt is, while the site holds a claim, when the partner's copy was last confirmed
	// current: by Synced, or by Options.ConfirmSync at a decision.
	SyncedAt time.Time
	// ServedAt is, once the site is Promoted, when the keeper's switch to the active form
	// completed, the last stage ready: the end of a promotion.
	ServedAt time.Time
	// Errors holds the last error per arbiter, and per "fence"/"serve".
	Errors map[string]string
}

// Options tune a Keeper.
type Options struct {
	// CallTimeout bounds every read and write of a copy; default 2s.
	CallTimeout time.Duration
	// SwitchTimeout bounds every switch of the service's form; default 10s. A switch to the
	// active form is also bounded by how long the site may serve.
	SwitchTimeout time.Duration
	// Notify is called, without blocking, when a service's Snapshot changed.
	Notify func(types.NamespacedName)
	// NotifyRole, if set, is called instead of Notify when the change is in which form the
	// keeper last switched the service's copy to (Snapshot's Serving, Promoted or Fenced): the
	// site started or stopped serving, which status should show before anything else.
	NotifyRole func(types.NamespacedName)
	// Observe, if set, is called after every decision with the service's Snapshot, for
	// gauges that count down (the lease remaining); it must not block.
	Observe func(types.NamespacedName, Snapshot)
	// ConfirmSync, if set, is asked at every decision of a service this site serves whether
	// the partner's copy of it is current at that moment without a round of mirroring (the
	// watches at both sites saw nothing left to send since the last round succeeded). When
	// it is, the decision's time becomes the service's SyncedAt, as if Synced had been
	// called: the evidence of the RPO gate then needs no reconcile. It must be cheap and not
	// block.
	ConfirmSync func(types.NamespacedName) bool
	// ObserveWrite, if set, is called with how long each write of a copy took, from the
	// decision to send until its answer, and its outcome: nil, ErrConflict, or the error that
	// left it unknown. It must not block.
	ObserveWrite func(arbiter string, took time.Duration, err error)
}

// Keeper runs one loop per service.
type Keeper struct {
	clock clock.WithTicker
	opts  Options

	mu       sync.Mutex
	ctx      context.Context
	services map[types.NamespacedName]*runner
}

// New returns a Keeper using c for every time it measures.
func New(c clock.WithTicker, opts Options) *Keeper {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 2 * time.Second
	}
	if opts.SwitchTimeout <= 0 {
		opts.SwitchTimeout = 10 * time.Second
	}
	return &Keeper{clock: c, opts: opts, services: map[types.NamespacedName]*runner{}}
}

// NeedLeaderElection reports that only the elected manager keeps leases.
func (k *Keeper) NeedLeaderElection() bool { return true }

// Start runs the loops of every service until ctx ends.
func (k *Keeper) Start(ctx context.Context) error {
	k.mu.Lock()
	k.ctx = ctx
	for _, r := range k.services {
		go r.run(ctx)
	}
	k.mu.Unlock()
	<-ctx.Done()
	return nil
}

// Update sets a service's inputs, starting its loop on the first call.
func (k *Keeper) Update(key types.NamespacedName, in Inputs) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.services[key]
	if !ok {
		r = &runner{key: key, k: k, wake: make(chan struct{}, 1), results: make(chan result, 16), done: make(chan struct{}), in: in}
		k.services[key] = r
		subscribe(in.Stores, r.poke)
		// The first decision is due at once, whichever clock the keeper runs on.
		r.poke()
		if k.ctx != nil {
			go r.run(k.ctx)
		}
		return
	}
	r.mu.Lock()
	r.in = in
	r.mu.Unlock()
	subscribe(in.Stores, r.poke)
	r.poke()
}

// Synced records when this site, serving, last confirmed the partner's copy of a service
// complete: the service's next lease writes carry it (failover.ServiceState.SyncedAt), without
// a write of their own. The keeper forgets it when the site's claim ends, so a later claim
// carries only what was confirmed on it.
func (k *Keeper) Synced(key types.NamespacedName, at time.Time) {
	r, ok := k.runnerOf(key)
	if !ok {
		return
	}
	r.mu.Lock()
	if at.After(r.syncedAt) {
		r.syncedAt = at
	}
	r.mu.Unlock()
}

// PeerChecks hands the keeper a verdict of the checks that judge the partner as soon as the
// probe scheduler has it, so that a promotion waits for no reconcile. It replaces the
// checks fields of the last Inputs while it is newer than Inputs.ChecksAt; an older verdict
// than the one the keeper holds is dropped.
func (k *Keeper) PeerChecks(key types.NamespacedName, c Checks) {
	r, ok := k.runnerOf(key)
	if !ok {
		return
	}
	r.mu.Lock()
	newer := c.At.After(r.checks.At) && c.At.After(r.in.ChecksAt)
	if newer {
		r.checks = c
	}
	r.mu.Unlock()
	if newer {
		r.poke()
	}
}

// ReadSoon tells the keeper that the service's copy at arbiter changed (a watch of its shared
// record saw a new version, which Records.Seen keeps): the next decision reads it, and finds it
// in the record's cache, instead of reading it up to a renewal interval later. A standby thereby
// sees the holder's last renewal as it is written, and its wait for the lease counts from then.
func (k *Keeper) ReadSoon(key types.NamespacedName, arbiter string) {
	r, ok := k.runnerOf(key)
	if !ok {
		return
	}
	r.mu.Lock()
	if r.readSoon == nil {
		r.readSoon = map[string]bool{}
	}
	r.readSoon[arbiter] = true
	r.mu.Unlock()
	r.poke()
}

// Reassert tells the keeper that an object of a service is not in the form the keeper last
// switched it to — something wrote it since, such as a write the other site sent before it
// was cut off and the network delivered late — so that its next decision switches the
// service's objects again (Fencer.Serve or Fencer.Fence) instead of trusting the last
// switch. The switches leave objects already in the wanted form alone, so a needless
// reassertion costs reads only.
func (k *Keeper) Reassert(key types.NamespacedName) {
	r, ok := k.runnerOf(key)
	if !ok {
		return
	}
	r.mu.Lock()
	r.reassert = true
	r.mu.Unlock()
	r.poke()
}

// runnerOf returns the loop of a service, if it runs.
func (k *Keeper) runnerOf(key types.NamespacedName) (*runner, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r, ok := k.services[key]
	return r, ok
}

// subscribe lets the shared records among stores wake a service's loop when a write opens
// that its renewals may join.
func subscribe(stores map[string]Store, wake func()) {
	for _, st := range stores {
		if b, ok := st.(Batcher); ok {
			b.Subscribe(wake)
		}
	}
}

// Remove stops a service's loop; it does not touch the copies.
func (k *Keeper) Remove(key types.NamespacedName) {
	k.mu.Lock()
	r, ok := k.services[key]
	delete(k.services, key)
	k.mu.Unlock()
	if ok {
		r.mu.Lock()
		stores := r.in.Stores
		r.mu.Unlock()
		for _, st := range stores {
			if b, ok := st.(Batcher); ok {
				b.Unsubscribe()
			}
		}
		close(r.done)
	}
}

// Snapshot returns what the keeper last decided for a service.
func (k *Keeper) Snapshot(key types.NamespacedName) (Snapshot, bool) {
	r, ok := k.runnerOf(key)
	if !ok {
		return Snapshot{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snap, r.snapSet
}

type result struct {
	arbiter string
	// A read's outcome, or a write's.
	read    bool
	w       failover.Write
	sentAt  time.Time
	rec     failover.LeaseRecord
	ok, err bool
	errText string
}

type runner struct {
	key     types.NamespacedName
	k       *Keeper
	wake    chan struct{}
	results chan result
	done    chan struct{}

	mu       sync.Mutex
	in       Inputs
	checks   Checks
	syncedAt time.Time
	snap     Snapshot
	snapSet  bool
	// reassert asks the next decision to switch the service's objects to the form it decides
	// on even when the last switch put them there (Reassert).
	reassert bool
	// readSoon are the arbiters whose copy the next decision reads (ReadSoon).
	readSoon map[string]bool

	// Owned by the loop.
	started   bool
	holdUntil time.Time
	state     failover.ServiceState
	reading   map[string]bool
	writing   map[string]bool
	readAt    map[string]time.Time
	// writeRetry and writeFailures pace the writes to an arbiter whose last write got no
	// answer (see writeBackoff).
	writeRetry    map[string]time.Time
	writeFailures map[string]int
	// due are the copies to read at the next chance, whatever their interval (ReadSoon).
	due       map[string]bool
	serving   bool
	fenced    bool
	promoted  bool
	recheckAt time.Time
	servedAt  time.Time
	errors    map[string]string
}

// retryReassert asks for the reassertion again after a switch that failed.
func (r *runner) retryReassert(requested bool) {
	if !requested {
		return
	}
	r.mu.Lock()
	r.reassert = true
	r.mu.Unlock()
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *runner) run(ctx context.Context) {
	r.state = failover.ServiceState{Arbiters: map[string]failover.Arbiter{}}
	r.reading, r.writing, r.readAt, r.errors = map[string]bool{}, map[string]bool{}, map[string]time.Time{}, map[string]string{}
	r.writeRetry, r.writeFailures, r.due = map[string]time.Time{}, map[string]int{}, map[string]bool{}
	timer := r.k.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-r.wake:
		case <-timer.C():
		case res := <-r.results:
			r.fold(res)
		}
		next := r.step(ctx)
		timer.Stop()
		timer = r.k.clock.NewTimer(max(next.Sub(r.k.clock.Now()), time.Millisecond))
	}
}

// fold applies a read's or write's outcome to the state.
func (r *runner) fold(res result) {
	now := r.k.clock.Now()
	r.state.Fenced = r.fenced
	switch {
	case res.read:
		delete(r.reading, res.arbiter)
		if res.err {
			r.errors[res.arbiter] = res.errText
			r.state = r.state.ReadFailed(res.arbiter)
			return
		}
		delete(r.errors, res.arbiter)
		r.state = r.state.Observed(res.arbiter, res.rec, now)
	default:
		delete(r.writing, res.arbiter)
		if res.err {
			r.errors[res.arbiter] = res.errText
			r.state = r.state.WriteFailed(res.w)
			r.mu.Lock()
			p := r.in.Policy
			r.mu.Unlock()
			r.writeFailures[res.arbiter]++
			r.writeRetry[res.arbiter] = now.Add(writeBackoff(r.writeFailures[res.arbiter], p))
			return
		}
		delete(r.errors, res.arbiter)
		delete(r.writeRetry, res.arbiter)
		delete(r.writeFailures, res.arbiter)
		r.state = r.state.Written(res.w, res.sentAt, res.ok, res.rec, now)
		// The answer holds the copy as stored, which Written observes as a read would: the
		// next read of this copy is due an interval after the write was sent, so an active
		// site that renews a copy every interval does not read it besides.
		if at, ok := r.readAt[res.arbiter]; !ok || res.sentAt.After(at) {
			r.readAt[res.arbiter] = res.sentAt
		}
	}
}

// step decides once and acts; it returns when to decide again at the latest.
func (r *runner) step(ctx context.Context) time.Time {
	r.mu.Lock()
	in, synced, checks := r.in, r.syncedAt, r.checks
	r.mu.Unlock()
	now := r.k.clock.Now()
	interval := max(in.Policy.RenewInterval(), 100*time.Millisecond)
	if !r.started {
		// Whether a fence has taken effect when the keeper starts is the reconcile's to tell;
		// the first decision to serve switches the copy to its active form in any case (the
		// switch is idempotent), since a predecessor may have left it in either form.
		r.started, r.fenced, r.serving = true, in.State.Fenced, false
		// Half the skew budget: the other half is the fence's own latency.
		r.holdUntil = now.Add(in.Policy.MaxClockSkew / 2)
	}

	st := in.State
	if checks.At.After(in.ChecksAt) {
		st.PeerChecksFailing, st.CopyWithinRPO, st.CopyAge = checks.PeerFailing, checks.CopyWithinRPO, checks.CopyAge
	}
	st.Arbiters, st.Claim, st.OwnRead, st.Fenced = r.state.Arbiters, r.state.Claim, r.state.OwnRead, r.fenced
	st.HoldUntil = r.holdUntil
	st.SyncedAt = time.Time{}
	if r.state.Claim.Epoch != 0 {
		if r.serving && !r.fenced && r.k.opts.ConfirmSync != nil && r.k.opts.ConfirmSync(r.key) {
			synced = now
			r.mu.Lock()
			if now.After(r.syncedAt) {
				r.syncedAt = now
			}
			r.mu.Unlock()
		}
		st.SyncedAt = synced
		if !in.DataSyncedAt.IsZero() && st.SyncedAt.After(in.DataSyncedAt) {
			st.SyncedAt = in.DataSyncedAt
		}
	}
	for a, store := range in.Stores {
		if b, ok := store.(Batcher); ok && b.Open() {
			if st.Batch == nil {
				st.Batch = map[string]bool{}
			}
			st.Batch[a] = true
		}
	}
	next, plan := failover.Step(in.Policy, st, now)
	r.state = next
	if next.Claim.Epoch == 0 {
		r.mu.Lock()
		r.syncedAt = time.Time{}
		r.mu.Unlock()
	}

	r.mu.Lock()
	reassert := r.reassert
	r.reassert = false
	r.mu.Unlock()
	switch {
	case plan.Serve:
		if !r.serving || r.fenced || reassert || !r.promoted && !now.Before(r.recheckAt) {
			// A switch that outlasts the claim's majority would serve past the fence deadline.
			timeout := min(r.k.opts.SwitchTimeout, r.state.ServeUntil(in.Policy, now).Sub(now))
			epoch := r.state.Claim.Epoch
			var progress Progress
			err := r.callFor(ctx, timeout, func(c context.Context) error {
				var err error
				progress, err = in.Fencer.Serve(c, epoch)
				return err
			})
			// A Serve that failed may have switched a stage; the copy no longer counts as
			// fenced either way.
			r.serving, r.fenced = true, false
			if err != nil {
				r.errors["serve"] = err.Error()
				r.retryReassert(reassert)
				r.promoted, r.recheckAt = false, time.Time{}
			} else {
				delete(r.errors, "serve")
				if progress.Done && !r.promoted {
					r.servedAt = r.k.clock.Now()
				}
				r.promoted = progress.Done
				r.recheckAt = r.k.clock.Now().Add(max(progress.RecheckIn, 100*time.Millisecond))
			}
		}
	case plan.Hold:
	default:
		if !r.fenced || reassert {
			var done bool
			err := r.callFor(ctx, r.k.opts.SwitchTimeout, func(c context.Context) error {
				var err error
				done, err = in.Fencer.Fence(c)
				return err
			})
			r.promoted = false
			if err != nil {
				r.errors["fence"] = err.Error()
				r.retryReassert(reassert)
			} else {
				delete(r.errors, "fence")
				r.serving, r.fenced = false, done
			}
			if r.fenced {
				r.poke() // a release may wait for the fence
			}
		}
	}

	var retryAt time.Time
	for _, w := range plan.Writes {
		store := in.Stores[w.Arbiter]
		if store == nil || r.writing[w.Arbiter] {
			continue
		}
		if at, ok := r.writeRetry[w.Arbiter]; ok && now.Before(at) {
			if retryAt.IsZero() || at.Before(retryAt) {
				retryAt = at
			}
			continue
		}
		if w.Kind == failover.WriteRelease && !r.fenced {
			continue
		}
		r.state = r.state.Sending(w)
		r.writing[w.Arbiter] = true
		go r.write(ctx, w, r.k.clock.Now(), store)
	}

	// Read every copy it may need, at least every renewal interval, and a copy a watch saw
	// change (ReadSoon) at once. A write on its way is as good as a read: its answer holds the
	// copy as stored. A copy that is being read or written is read again when that is done.
	r.mu.Lock()
	soon := r.readSoon
	r.readSoon = nil
	r.mu.Unlock()
	for a := range soon {
		if _, ok := r.state.Arbiters[a]; ok {
			r.due[a] = true
		}
	}
	nextRead := now.Add(interval)
	for _, a := range slices.Sorted(maps.Keys(r.state.Arbiters)) {
		store := in.Stores[a]
		if store == nil || r.reading[a] || r.writing[a] {
			continue
		}
		if at, ok := r.readAt[a]; ok && now.Sub(at) < interval && !r.due[a] {
			nextRead = minTime(nextRead, at.Add(interval))
			continue
		}
		delete(r.due, a)
		r.readAt[a], r.reading[a] = now, true
		go r.read(ctx, a, store)
	}

	r.publish(plan, in, now)
	wake := nextRead
	if !plan.NextCheck.IsZero() {
		wake = minTime(wake, plan.NextCheck)
	}
	if !retryAt.IsZero() {
		wake = minTime(wake, retryAt)
	}
	if !plan.Serve && !plan.Hold && !r.fenced {
		wake = minTime(wake, now.Add(250*time.Millisecond)) // the fence has not taken effect yet
	}
	if plan.Serve && r.serving && !r.promoted && !r.recheckAt.IsZero() {
		wake = minTime(wake, r.recheckAt) // a stage of the promotion is not ready yet
	}
	return wake
}

// writeBackoff is how long the keeper waits before it writes again to an arbiter whose last
// failures writes in a row got no answer (refused, timed out): from 100ms, doubling, to a quarter of the
// renewal interval. An arbiter that refuses at once (its API server is down) would otherwise
// be written to in a loop, by every service, for as long as it is down. The pause never costs
// a renewal the fence deadline: a claim renews every interval and may serve for a whole lease
// less the clock-skew margin after its last renewal, several intervals, and a write that
// succeeds ends the pause.
func writeBackoff(failures int, p failover.Policy) time.Duration {
	limit := max(p.RenewInterval()/4, 100*time.Millisecond)
	d := 100 * time.Millisecond
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

func (r *runner) call(ctx context.Context, f func(context.Context) error) error {
	return r.callFor(ctx, r.k.opts.CallTimeout, f)
}

func (r *runner) callFor(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	c, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(c)
}

func (r *runner) read(ctx context.Context, a string, store Store) {
	var rec failover.LeaseRecord
	err := r.call(ctx, func(c context.Context) error {
		var err error
		rec, err = store.Read(c)
		return err
	})
	res := result{arbiter: a, read: true, rec: rec}
	if err != nil {
		res.err, res.errText = true, err.Error()
	}
	r.report(ctx, res)
}

func (r *runner) write(ctx context.Context, w failover.Write, sentAt time.Time, store Store) {
	var got failover.LeaseRecord
	err := r.call(ctx, func(c context.Context) error {
		var err error
		got, err = store.Write(c, w.Record)
		return err
	})
	if f := r.k.opts.ObserveWrite; f != nil {
		f(w.Arbiter, r.k.clock.Since(sentAt), err)
	}
	res := result{arbiter: w.Arbiter, w: w, sentAt: sentAt, rec: got, ok: err == nil}
	if err != nil && !errors.Is(err, ErrConflict) {
		res.err, res.errText = true, err.Error()
	}
	r.report(ctx, res)
}

func (r *runner) report(ctx context.Context, res result) {
	select {
	case r.results <- res:
	case <-ctx.Done():
	case <-r.done:
	}
}

func (r *runner) publish(plan failover.Plan, in Inputs, now time.Time) {
	obs := map[string]failover.Observation{}
	for a, arb := range r.state.Arbiters {
		obs[a] = arb.Observation
	}
	snap := Snapshot{
		Plan: plan, Claim: r.state.Claim, Target: in.State.Target, Observations: obs, OwnRead: r.state.OwnRead,
		Serving: r.serving && !r.fenced && plan.Serve, Fenced: r.fenced, Errors: maps.Clone(r.errors),
	}
	if snap.Serving {
		snap.ServeUntil = r.state.ServeUntil(in.Policy, now)
		snap.Promoted = r.promoted
		if r.promoted {
			snap.ServedAt = r.servedAt
		}
	}
	r.mu.Lock()
	if r.state.Claim.Epoch != 0 {
		snap.SyncedAt = r.syncedAt
	}
	role := r.snapSet && (snap.Fenced != r.snap.Fenced || snap.Serving != r.snap.Serving || snap.Promoted != r.snap.Promoted)
	changed := !r.snapSet || role || plan.Reason != r.snap.Plan.Reason || plan.Message != r.snap.Plan.Message ||
		plan.Serve != r.snap.Plan.Serve || plan.Held != r.snap.Plan.Held ||
		snap.Claim.Epoch != r.snap.Claim.Epoch || snap.OwnRead != r.snap.OwnRead ||
		holdersChanged(snap.Observations, r.snap.Observations) || !maps.Equal(snap.Errors, r.snap.Errors)
	r.snap, r.snapSet = snap, true
	r.mu.Unlock()
	if r.k.opts.Observe != nil {
		r.k.opts.Observe(r.key, snap)
	}
	switch {
	case role && r.k.opts.NotifyRole != nil:
		r.k.opts.NotifyRole(r.key)
	case changed && r.k.opts.Notify != nil:
		r.k.opts.Notify(r.key)
	}
}

// holdersChanged reports whether a copy's holder, epoch or existence differs between a and b.
func holdersChanged(a, b map[string]failover.Observation) bool {
	if len(a) != len(b) {
		return true
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || x.Record.Holder != y.Record.Holder || x.Record.Epoch != y.Record.Epoch ||
			x.Record.Exists() != y.Record.Exists() || x.ObservedAt.IsZero() != y.ObservedAt.IsZero() {
			return true
		}
	}
	return false
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
