package lease

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
)

const (
	kiel    = "sh-kiel"
	schwer  = "mv-schwerin"
	hamburg = "hh-hamburg"
)

var (
	t0  = time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)
	key = types.NamespacedName{Namespace: "buergerkonto", Name: "buergerkonto"}
	c3  = failover.QuorumConfig(kiel, schwer, hamburg)
)

// fakeStore is one arbiter's copy, compare-and-swapped in memory. While hanging, calls block
// until their context ends, as a request to an unreachable API server does.
type fakeStore struct {
	mu      sync.Mutex
	rec     failover.LeaseRecord
	rev     int
	hanging bool
	// refusing makes every call fail at once, as an API server that is down does.
	refusing bool
	writes   int
	attempts int
	reads    int
}

func (f *fakeStore) refuse(r bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refusing = r
}

func (f *fakeStore) writeAttempts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts
}

// hang makes every later call to the store hang until its context ends.
func (f *fakeStore) hang() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hanging = true
}

func (f *fakeStore) wait(ctx context.Context) error {
	f.mu.Lock()
	h, refusing := f.hanging, f.refusing
	f.mu.Unlock()
	if refusing {
		return errors.New("connect: connection refused")
	}
	if h {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fakeStore) Read(ctx context.Context) (failover.LeaseRecord, error) {
	f.mu.Lock()
	f.reads++
	f.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return failover.LeaseRecord{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec, nil
}

func (f *fakeStore) Write(ctx context.Context, rec failover.LeaseRecord) (failover.LeaseRecord, error) {
	f.mu.Lock()
	f.attempts++
	f.mu.Unlock()
	if err := f.wait(ctx); err != nil {
		return failover.LeaseRecord{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if rec.ResourceVersion != f.rec.ResourceVersion {
		return f.rec, ErrConflict
	}
	f.rev++
	f.writes++
	rec.ResourceVersion = strconv.Itoa(f.rev)
	f.rec = rec
	return rec, nil
}

func (f *fakeStore) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

// renew renews the holder's claim in the copy at now, as the holder's keeper would.
func (f *fakeStore) renew(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	f.rec.RenewTime = now
	f.rec.ResourceVersion = strconv.Itoa(f.rev)
}

func (f *fakeStore) record() failover.LeaseRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec
}

// fakeFencer records the form the keeper switched the copy to. A promotion takes stages
// calls of Serve, each switching a stage and asking to be called again a second later.
type fakeFencer struct {
	mu      sync.Mutex
	serving bool
	fences  int
	serves  int
	epoch   int64
	stages  int
	// switched counts the stages switched since the last fence.
	switched int
}

func (f *fakeFencer) Serve(_ context.Context, epoch int64) (Progress, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving = true
	f.epoch = epoch
	f.serves++
	if f.switched < f.stages {
		f.switched++
		return Progress{RecheckIn: time.Second}, nil
	}
	return Progress{Done: true}, nil
}

func (f *fakeFencer) Fence(context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving = false
	f.fences++
	f.switched = 0
	return true, nil
}

func (f *fakeFencer) state() (serving bool, fences int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.serving, f.fences
}

type harness struct {
	g      Gomega
	clock  *clocktesting.FakeClock
	keeper *Keeper
	stores map[string]*fakeStore
	fencer *fakeFencer
	in     Inputs
}

func policy() failover.Policy {
	return failover.Policy{Mode: deichv1alpha1.FailoverAutomatic, FailureThreshold: 3, ProbeInterval: time.Second,
		LeaseDuration: 30 * time.Second, MaxClockSkew: 2 * time.Second}
}

// start runs a keeper for sh-kiel, primary of a service with witness hh-hamburg, on stores
// (fresh ones when nil); fenced says the form the service's copy has when it starts.
func start(t *testing.T, stores map[string]*fakeStore, fenced bool) *harness {
	t.Helper()
	return startWith(t, stores, fenced, Options{})
}

// startWith is start with the keeper's options (calls never time out).
func startWith(t *testing.T, stores map[string]*fakeStore, fenced bool, opts Options) *harness {
	t.Helper()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(10 * time.Second)
	g.SetDefaultEventuallyPollingInterval(time.Millisecond)
	if stores == nil {
		stores = map[string]*fakeStore{kiel: {}, schwer: {}, hamburg: {}}
	}
	h := &harness{g: g, clock: clocktesting.NewFakeClock(t0), stores: stores, fencer: &fakeFencer{serving: !fenced}}
	// Calls that hang stay in flight for the whole test: only the fake clock moves time.
	opts.CallTimeout = time.Hour
	h.keeper = New(h.clock, opts)
	all := map[string]Store{}
	for a, s := range stores {
		all[a] = s
	}
	h.in = Inputs{
		Policy: policy(),
		State: failover.ServiceState{Site: kiel, Partner: schwer, Primary: true, Target: c3,
			PartnerReady: true, CopyWithinRPO: true, Fenced: fenced},
		Stores: all,
		Fencer: h.fencer,
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() { _ = h.keeper.Start(ctx) }()
	return h
}

func (h *harness) update(f func(*failover.ServiceState)) {
	f(&h.in.State)
	h.keeper.Update(key, h.in)
}

// advance moves the fake clock in steps of at most 100ms, letting the keeper catch up with
// each (it waits on a timer again once it has decided).
func (h *harness) advance(d time.Duration) {
	for d > 0 {
		step := min(d, 100*time.Millisecond)
		h.g.Eventually(h.clock.HasWaiters).Should(BeTrue())
		h.clock.Step(step)
		d -= step
		h.g.Eventually(h.clock.HasWaiters).Should(BeTrue())
	}
}

// claimed waits until the site serves and every copy names it: the claim's writes were all
// sent before the test moves the clock, so the renewals fall due when the test expects them.
func (h *harness) claimed() {
	h.g.Eventually(h.serving).Should(BeTrue())
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(HaveField("Holder", kiel), "copy at %s", a)
	}
}

func (h *harness) serving() bool {
	s, _ := h.fencer.state()
	return s
}

func (h *harness) snapshot() Snapshot {
	s, _ := h.keeper.Snapshot(key)
	return s
}

func TestKeeperServesRenewsAndFencesAtTheMajorityDeadline(t *testing.T) {
	h := start(t, nil, true)
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue(), "a new service's primary with all arbiters reachable serves")
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(HaveField("Holder", kiel), "copy at %s", a)
	}
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	// Renewals come every leaseDuration/3.
	before := h.stores[hamburg].writes
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(func() int { return h.stores[hamburg].writes }).Should(BeNumerically(">", before), "no renewal after leaseDuration/3")

	// Both other arbiters stop answering: writes to them hang. The last renewal that
	// succeeded was at t0+10s, so the majority lasts until t0+10s+30s-2s.
	h.stores[schwer].hang()
	h.stores[hamburg].hang()
	deadline := t0.Add(38 * time.Second)
	h.advance(deadline.Sub(h.clock.Now()) - 200*time.Millisecond)
	h.g.Expect(h.serving()).To(BeTrue(), "fenced before the majority's deadline")
	h.advance(400 * time.Millisecond)
	h.g.Eventually(h.serving).Should(BeFalse(), "still serving after the majority's deadline")
	h.g.Eventually(h.snapshot).Should(HaveField("Plan.Reason", failover.PlanFenceDeadline))
}

// TestKeeperPromotesStageByStageWithoutWaitingInADecision calls Serve again, a step of the
// promotion each time, when the fencer asks to be called again, and reports the site
// Promoted, with the time the last stage completed, only once Serve says it is done. A fence
// in the middle of a promotion stops it: the next promotion starts from the beginning.
func TestKeeperPromotesStageByStageWithoutWaitingInADecision(t *testing.T) {
	h := start(t, nil, true)
	h.fencer.mu.Lock()
	h.fencer.stages = 3
	h.fencer.mu.Unlock()
	serves := func() int {
		h.fencer.mu.Lock()
		defer h.fencer.mu.Unlock()
		return h.fencer.serves
	}
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.g.Eventually(h.snapshot).Should(And(HaveField("Serving", true), HaveField("Promoted", false), HaveField("ServedAt", time.Time{})))
	h.g.Expect(serves()).To(Equal(1), "a step of the promotion waits for its recheck")
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	h.advance(time.Second)
	h.g.Eventually(serves).Should(Equal(2))
	h.advance(2 * time.Second)
	h.g.Eventually(serves).Should(Equal(4), "the fourth call finds every stage done")
	h.g.Eventually(h.snapshot).Should(And(HaveField("Promoted", true), HaveField("ServedAt", Not(BeZero()))))
	done := serves()
	h.advance(3 * time.Second)
	h.g.Consistently(serves, 100*time.Millisecond).Should(Equal(done), "a promoted service is not switched again")
}

// TestKeeperReassertsTheFormWhenTold switches a serving service's objects to their active
// form again when told that one of them is not (a late write from the other site put it into
// standby form), and a fenced one's to their standby form; untold, it trusts its last switch.
func TestKeeperReassertsTheFormWhenTold(t *testing.T) {
	h := start(t, nil, true)
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })
	serves := func() int {
		h.fencer.mu.Lock()
		defer h.fencer.mu.Unlock()
		return h.fencer.serves
	}
	before := serves()
	// Something puts the objects into standby form behind the keeper's back.
	h.fencer.mu.Lock()
	h.fencer.serving = false
	h.fencer.mu.Unlock()
	h.advance(time.Second)
	h.g.Consistently(h.serving).WithTimeout(100*time.Millisecond).Should(BeFalse(), "the keeper does not watch the objects")
	h.keeper.Reassert(key)
	h.g.Eventually(h.serving).Should(BeTrue(), "a reassertion switches the objects back to their active form")
	h.g.Expect(serves()).To(Equal(before+1), "one switch per reassertion")
	h.g.Expect(h.snapshot().Plan.Serve).To(BeTrue())

	h.update(func(s *failover.ServiceState) { s.HandOverRequested = true })
	h.g.Eventually(h.serving).Should(BeFalse())
	_, fences := h.fencer.state()
	h.fencer.mu.Lock()
	h.fencer.serving = true
	h.fencer.mu.Unlock()
	h.keeper.Reassert(key)
	h.g.Eventually(func() int { _, n := h.fencer.state(); return n }).Should(Equal(fences + 1))
	h.g.Expect(h.serving()).To(BeFalse(), "a fenced service's reassertion fences again, never serves")
}

func TestKeeperHandsOverFenceThenRelease(t *testing.T) {
	h := start(t, nil, true)
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.update(func(s *failover.ServiceState) { s.Unclaimed, s.HandOverRequested = false, true })
	h.g.Eventually(h.serving).Should(BeFalse())
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(And(HaveField("Holder", ""), HaveField("Epoch", int64(1))), "copy at %s not released", a)
	}
	h.g.Eventually(h.snapshot).Should(HaveField("Claim.Epoch", int64(0)), "the claim is over once every copy is released")
}

func TestKeeperRestartRenewsBeforeItSwitchesAnything(t *testing.T) {
	// A first keeper establishes the claim, then its process ends.
	first := start(t, nil, true)
	first.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	first.g.Eventually(first.serving).Should(BeTrue())
	first.keeper.Remove(key)

	t.Run("its renewals succeed: it serves on and never fences", func(t *testing.T) {
		h := start(t, first.stores, false)
		h.update(func(*failover.ServiceState) {})
		h.g.Eventually(h.snapshot).Should(HaveField("Plan.Serve", BeTrue()))
		_, fences := h.fencer.state()
		h.g.Expect(fences).To(BeZero(), "the restarted keeper fenced a service whose lease it still held")
	})
	t.Run("another site took its copies meanwhile: the compare-and-swap fails and it fences", func(t *testing.T) {
		stores := map[string]*fakeStore{}
		for a, st := range first.stores {
			rec := st.record()
			rec.Holder, rec.ResourceVersion = schwer, "taken-"+rec.ResourceVersion
			stores[a] = &fakeStore{rec: rec}
		}
		// The keeper reads the copies as the predecessor left them, and writes on top of
		// that; the copies changed in between.
		h := start(t, stores, false)
		h.update(func(*failover.ServiceState) {})
		h.g.Eventually(h.serving).Should(BeFalse(), "a restarted keeper whose copies name another site must fence")
		_, fences := h.fencer.state()
		h.g.Expect(fences).To(BeNumerically(">=", 1))
	})
}

func TestKeeperReportsEveryWriteItSent(t *testing.T) {
	h := start(t, nil, true)
	var mu sync.Mutex
	seen := map[string]int{}
	h.keeper.opts.ObserveWrite = func(arbiter string, took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil && took >= 0 {
			seen[arbiter]++
		}
	}
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.g.Eventually(func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}).Should(And(HaveKey(kiel), HaveKey(schwer), HaveKey(hamburg)), "the writes that created the three copies")
}

func TestKeeperCarriesTheSyncTimeOfTheClaimOnly(t *testing.T) {
	h := start(t, nil, true)
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.claimed()
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	synced := t0.Add(3 * time.Second)
	h.keeper.Synced(key, synced)
	before := h.stores[hamburg].writes
	h.advance(time.Second)
	h.g.Expect(h.stores[hamburg].writes).To(Equal(before), "a sync time alone sends no write")
	h.advance(9*time.Second + 100*time.Millisecond)
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(HaveField("SyncedAt", BeTemporally("==", synced)), "the renewal at %s carries the sync time", a)
	}
	h.keeper.Synced(key, synced.Add(-time.Second))
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(h.stores[kiel].record).Should(HaveField("RenewTime", BeTemporally(">", t0.Add(15*time.Second))))
	h.g.Expect(h.stores[kiel].record().SyncedAt).To(BeTemporally("==", synced), "an older sync time is ignored")

	// The claim ends: a later claim carries only what was confirmed on it.
	h.update(func(s *failover.ServiceState) { s.HandOverRequested = true })
	h.g.Eventually(h.snapshot).Should(HaveField("Claim.Epoch", int64(0)))
	h.update(func(s *failover.ServiceState) { s.HandOverRequested, s.TakeOverRequested = false, true })
	h.g.Eventually(h.serving).Should(BeTrue())
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(And(HaveField("Epoch", int64(2)), HaveField("SyncedAt", BeZero())), "the new claim's copy at %s", a)
	}
	taken := h.stores[kiel].record().RenewTime
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(h.stores[kiel].record).Should(HaveField("RenewTime", BeTemporally(">", taken)))
	h.g.Expect(h.stores[kiel].record().SyncedAt).To(BeZero(), "a renewal of the new claim carries no sync time of the old one")
}

func TestKeeperConfirmsTheCopyCurrentWithoutARound(t *testing.T) {
	var current atomic.Bool
	h := startWith(t, nil, true, Options{ConfirmSync: func(types.NamespacedName) bool { return current.Load() }})
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.claimed()
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(h.stores[kiel].record).Should(HaveField("RenewTime", BeTemporally(">", t0)))
	h.g.Expect(h.stores[kiel].record().SyncedAt).To(BeZero(), "nothing confirmed, nothing carried")

	current.Store(true)
	confirmedFrom := h.clock.Now()
	h.advance(10*time.Second + 100*time.Millisecond)
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(HaveField("SyncedAt", BeTemporally(">=", confirmedFrom)), "the renewal at %s carries the time of a decision that confirmed the copy", a)
	}
	h.g.Expect(h.snapshot().SyncedAt).To(BeTemporally(">=", confirmedFrom))

	// Once the copy cannot be confirmed, the records keep the last confirmation: its age
	// grows until a round confirms it again.
	current.Store(false)
	last := h.snapshot().SyncedAt
	renewed := h.stores[kiel].record().RenewTime
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(h.stores[kiel].record).Should(HaveField("RenewTime", BeTemporally(">", renewed)))
	h.g.Expect(h.stores[kiel].record().SyncedAt).To(BeTemporally("==", last))

	// A site that does not serve confirms nothing.
	current.Store(true)
	h.update(func(s *failover.ServiceState) { s.HandOverRequested = true })
	h.g.Eventually(h.snapshot).Should(HaveField("Claim.Epoch", int64(0)))
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Expect(h.snapshot().SyncedAt).To(BeZero())
}

// TestKeeperCarriesNoSyncTimeLaterThanTheData caps the sync time the lease carries to the
// partner at the time the data layer last replicated the data: a copy confirmed current is no
// newer than the data behind it.
func TestKeeperCarriesNoSyncTimeLaterThanTheData(t *testing.T) {
	h := startWith(t, nil, true, Options{ConfirmSync: func(types.NamespacedName) bool { return true }})
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.claimed()
	dataSyncedAt := h.clock.Now().Add(-time.Minute)
	h.in.DataSyncedAt = dataSyncedAt
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	h.advance(10*time.Second + 100*time.Millisecond)
	for _, a := range c3 {
		h.g.Eventually(h.stores[a].record).Should(HaveField("SyncedAt", BeTemporally("==", dataSyncedAt)), "the renewal at %s carries the data's time", a)
	}

	// Data replicated again: the copies' confirmation counts once more.
	h.in.DataSyncedAt = h.clock.Now().Add(time.Hour)
	confirmedFrom := h.clock.Now()
	h.update(func(*failover.ServiceState) {})
	h.advance(10*time.Second + 100*time.Millisecond)
	h.g.Eventually(h.stores[kiel].record).Should(HaveField("SyncedAt", BeTemporally(">=", confirmedFrom)))
}

func TestKeeperPacesWritesToAnArbiterThatRefuses(t *testing.T) {
	h := start(t, nil, true)
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	// The witness's API server is down: every write there is refused at once. The service
	// serves on the partners' copies, and the keeper tries the witness again and again,
	// but not in a loop.
	h.stores[hamburg].refuse(true)
	before := h.stores[hamburg].writeAttempts()
	h.advance(30 * time.Second)
	h.g.Expect(h.serving()).To(BeTrue(), "the majority of the partners' copies keeps the service")
	attempts := h.stores[hamburg].writeAttempts() - before
	// A renewal is due every 10s; after a failure the keeper waits 100ms, 200ms, … up to a
	// quarter of the interval: about 15 attempts in 30s.
	h.g.Expect(attempts).To(And(BeNumerically(">=", 5), BeNumerically("<=", 25)), "write attempts at the refusing witness in 30s")

	h.stores[hamburg].refuse(false)
	h.advance(3 * time.Second)
	h.g.Eventually(h.stores[hamburg].record).Should(HaveField("RenewTime", BeTemporally(">", t0.Add(30*time.Second))), "the witness is renewed again once it answers")
}

func TestKeeperPromotesOnAVerdictOfTheChecksBetweenReconciles(t *testing.T) {
	// mv-schwerin's copies, renewed last at t0: it is lost. sh-kiel, the standby, may take
	// them once they stood unchanged for leaseDuration + max clock skew: at t0+32s.
	stores := map[string]*fakeStore{}
	for _, a := range c3 {
		stores[a] = &fakeStore{rec: failover.LeaseRecord{Holder: schwer, Epoch: 1, Duration: 30 * time.Second,
			AcquireTime: t0, RenewTime: t0, ResourceVersion: "1", Configs: []failover.Config{c3}}}
	}
	h := start(t, stores, true)
	h.in.ChecksAt = t0.Add(2 * time.Second)
	h.update(func(s *failover.ServiceState) { s.Primary = false })
	h.g.Eventually(h.snapshot).Should(HaveField("Plan.Reason", failover.PlanStandby))

	h.keeper.PeerChecks(key, Checks{PeerFailing: 3, CopyWithinRPO: true, At: t0.Add(time.Second)})
	h.advance(time.Second)
	h.g.Expect(h.serving()).To(BeFalse(), "a verdict older than the reconcile's promoted the standby")
	h.g.Expect(h.snapshot().Plan.Reason).To(Equal(failover.PlanStandby))

	h.keeper.PeerChecks(key, Checks{PeerFailing: 3, CopyWithinRPO: false, CopyAge: time.Minute, At: t0.Add(3 * time.Second)})
	h.g.Eventually(h.snapshot).Should(HaveField("Plan.Reason", failover.PlanRecommend), "a copy older than the RPO is not promoted")
	h.g.Expect(h.serving()).To(BeFalse())

	h.keeper.PeerChecks(key, Checks{PeerFailing: 3, CopyWithinRPO: true, At: t0.Add(4 * time.Second)})
	h.g.Eventually(h.snapshot).Should(HaveField("Plan.Reason", failover.PlanGivingUp), "the partner's copies are live: the promotion waits")
	// The keeper reads the copies every leaseDuration/3 (t0+30s, t0+40s); it promotes when
	// they are free, not at the next read.
	h.advance(t0.Add(32500 * time.Millisecond).Sub(h.clock.Now()))
	h.g.Eventually(h.serving).Should(BeTrue(), "the standby promotes on the scheduler's verdict, without a reconcile, once the copies are free")
	h.g.Expect(h.snapshot().ServedAt).To(BeTemporally("~", t0.Add(32*time.Second), 500*time.Millisecond), "the snapshot says when the promotion completed")
}

func TestKeeperReadsACopyAtOnceWhenAWatchSawItChange(t *testing.T) {
	// mv-schwerin holds the service; sh-kiel stands by and reads the copies every 10s.
	stores := map[string]*fakeStore{}
	for _, a := range c3 {
		stores[a] = &fakeStore{rev: 1, rec: failover.LeaseRecord{Holder: schwer, Epoch: 1, Duration: 30 * time.Second,
			AcquireTime: t0, RenewTime: t0, ResourceVersion: "1", Configs: []failover.Config{c3}}}
	}
	h := start(t, stores, true)
	h.update(func(s *failover.ServiceState) { s.Primary = false })
	h.g.Eventually(h.snapshot).Should(HaveField("Plan.Reason", failover.PlanStandby))
	for _, a := range c3 {
		h.g.Eventually(stores[a].readCount).Should(Equal(1), "the first read of the copy at %s", a)
	}
	h.advance(3 * time.Second)
	h.g.Eventually(func() bool { return !h.snapshot().Observations[kiel].ObservedAt.IsZero() }).Should(BeTrue())
	observed := h.snapshot().Observations[kiel].ObservedAt

	// mv-schwerin renews the copy at sh-kiel's cluster, and the watch of its record says so:
	// sh-kiel reads it at once, without the clock moving on, and its wait for the lease counts
	// from now, not from its next read 7s later.
	renewed := h.clock.Now()
	stores[kiel].renew(renewed)
	reads, others := stores[kiel].readCount(), stores[hamburg].readCount()
	h.keeper.ReadSoon(key, kiel)
	h.g.Eventually(stores[kiel].readCount).Should(BeNumerically(">", reads), "the copy the watch saw change is read at once")
	h.g.Eventually(func() time.Time { return h.snapshot().Observations[kiel].ObservedAt }).
		Should(And(BeTemporally(">", observed), BeTemporally("==", renewed)), "the renewal counts as seen now")
	h.g.Expect(stores[hamburg].readCount()).To(Equal(others), "only the copy that changed is read")
	h.g.Expect(h.snapshot().Observations[kiel].Record.RenewTime).To(BeTemporally("==", renewed))

	// A service the keeper does not know, or an arbiter its lease does not use, changes nothing.
	h.keeper.ReadSoon(types.NamespacedName{Namespace: "other", Name: "other"}, kiel)
	h.keeper.ReadSoon(key, "by-berlin")
	h.advance(100 * time.Millisecond)
	h.g.Expect(h.serving()).To(BeFalse())
}

// TestKeeperTellsOfRoleChangesApart calls NotifyRole, not Notify, when the site starts or
// stops serving, and Notify for every other change of the snapshot.
func TestKeeperTellsOfRoleChangesApart(t *testing.T) {
	type role struct{ serving, promoted, fenced bool }
	var (
		mu     sync.Mutex
		roles  []role
		others atomic.Int32
		h      *harness
	)
	h = startWith(t, nil, true, Options{
		Notify: func(types.NamespacedName) { others.Add(1) },
		NotifyRole: func(types.NamespacedName) {
			s, _ := h.keeper.Snapshot(key)
			mu.Lock()
			roles = append(roles, role{s.Serving, s.Promoted, s.Fenced})
			mu.Unlock()
		},
	})
	told := func() []role {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(roles)
	}
	h.update(func(s *failover.ServiceState) { s.Unclaimed = true })
	h.g.Eventually(h.serving).Should(BeTrue())
	h.g.Eventually(told).Should(ContainElement(role{serving: true, promoted: true}), "the site serves")
	h.g.Expect(others.Load()).To(BeNumerically(">", 0), "the claim's other changes (its reason, the copies read) go to Notify")
	h.update(func(s *failover.ServiceState) { s.Unclaimed = false })

	h.stores[schwer].hang()
	h.stores[hamburg].hang()
	h.advance(40 * time.Second)
	h.g.Eventually(h.serving).Should(BeFalse())
	h.g.Eventually(func() role { r := told(); return r[len(r)-1] }).Should(Equal(role{fenced: true}), "the site is fenced")
	r := told()
	for i := 1; i < len(r); i++ {
		h.g.Expect(r[i]).NotTo(Equal(r[i-1]), "NotifyRole without a change of role: %v", r)
	}
}
