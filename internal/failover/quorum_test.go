package failover

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

const (
	kiel    = "sh-kiel"
	schwer  = "mv-schwerin"
	hamburg = "hh-hamburg"
)

var c3 = QuorumConfig(kiel, schwer, hamburg)

// arbiters plays the three clusters' API servers for the unit tests: each write is a
// compare-and-swap on the copy's resourceVersion.
type arbiters struct {
	copies map[string]LeaseRecord
	rev    int
}

func newArbiters() *arbiters { return &arbiters{copies: map[string]LeaseRecord{}} }

func (a *arbiters) commit(w Write) (LeaseRecord, bool) {
	cur := a.copies[w.Arbiter]
	if w.Record.ResourceVersion != cur.ResourceVersion {
		return cur, false
	}
	a.rev++
	w.Record.ResourceVersion = strconv.Itoa(a.rev)
	a.copies[w.Arbiter] = w.Record
	return w.Record, true
}

// site is one partner's keeper, reduced to what the unit tests need: it observes the
// reachable copies (a read of another fails), steps, and sends the plan's writes to the
// reachable arbiters.
type site struct {
	t         *testing.T
	p         Policy
	s         ServiceState
	reachable map[string]bool
	serving   bool
}

func newSite(t *testing.T, name, partner string, primary bool, target Config) *site {
	return &site{t: t, p: testPolicy(), reachable: map[string]bool{kiel: true, schwer: true, hamburg: true},
		s: ServiceState{Site: name, Partner: partner, Primary: primary, Target: target, Arbiters: map[string]Arbiter{},
			PartnerReady: true, CopyWithinRPO: true}}
}

// turn observes, steps and writes once at now, and returns the plan.
func (x *site) turn(a *arbiters, now time.Time) Plan {
	x.t.Helper()
	x.s.Fenced = !x.serving
	for _, arb := range append(x.s.needed(), kiel, schwer, hamburg) {
		if x.reachable[arb] {
			x.s = x.s.Observed(arb, a.copies[arb], now)
		} else {
			x.s = x.s.ReadFailed(arb)
		}
	}
	x.s.Fenced = !x.serving
	next, plan := Step(x.p, x.s, now)
	x.s = next
	x.serving = plan.Serve
	x.s.Fenced = !x.serving
	for _, w := range plan.Writes {
		if !x.reachable[w.Arbiter] {
			continue
		}
		x.s = x.s.Sending(w)
		got, ok := a.commit(w)
		x.s = x.s.Written(w, now, ok, got, now)
	}
	return plan
}

// until turns every interval from start until cond holds, and returns when by the site's
// clock; it fails the test after limit.
func (x *site) until(a *arbiters, start time.Time, interval, limit time.Duration, cond func(Plan) bool) (time.Time, Plan) {
	x.t.Helper()
	for now := start; now.Before(start.Add(limit)); now = now.Add(interval) {
		if plan := x.turn(a, now); cond(plan) {
			return now, plan
		}
	}
	x.t.Fatalf("%s: condition not reached within %s", x.s.Site, limit)
	return time.Time{}, Plan{}
}

func serving(p Plan) bool { return p.Serve }

func TestStepPrimaryCreatesTheCopiesAndServesOnAMajority(t *testing.T) {
	a := newArbiters()
	kielSite := newSite(t, kiel, schwer, true, c3)
	kielSite.s.Unclaimed = true
	if plan := kielSite.turn(a, t0); plan.Serve {
		t.Fatal("served before any copy was written")
	}
	plan := kielSite.turn(a, t0)
	if !plan.Serve {
		t.Fatalf("a new service's primary with all arbiters reachable does not serve: %s", plan.Message)
	}
	for _, arb := range c3 {
		rec := a.copies[arb]
		if !rec.HeldBy(kiel) || rec.Epoch != 1 || !stampsEqual(rec.Configs, []Config{c3}) {
			t.Errorf("copy at %s = %+v, want held by %s at epoch 1 stamped {%s}", arb, rec, kiel, c3)
		}
	}
	if plan.Held != 3 {
		t.Errorf("Held = %d, want 3", plan.Held)
	}
}

func TestStepActiveSurvivesTheLossOfAnyOneOtherArbiter(t *testing.T) {
	for _, lost := range []string{schwer, hamburg} {
		t.Run("losing "+lost, func(t *testing.T) {
			a := newArbiters()
			x := newSite(t, kiel, schwer, true, c3)
			x.s.Unclaimed = true
			x.turn(a, t0)
			x.turn(a, t0)
			x.s.Unclaimed = false
			x.reachable[lost] = false
			// Far beyond every fence deadline of the lost copy.
			for now := t0; now.Before(t0.Add(5 * time.Minute)); now = now.Add(time.Second) {
				if plan := x.turn(a, now); !plan.Serve {
					t.Fatalf("at %s the active fenced although it holds its own copy and one other: %s", now.Sub(t0), plan.Message)
				}
			}
		})
	}
	t.Run("losing both others fences at the majority's deadline", func(t *testing.T) {
		a := newArbiters()
		x := newSite(t, kiel, schwer, true, c3)
		x.s.Unclaimed = true
		x.turn(a, t0)
		x.turn(a, t0)
		x.s.Unclaimed = false
		x.reachable[schwer], x.reachable[hamburg] = false, false
		at, plan := x.until(a, t0, 100*time.Millisecond, time.Minute, func(p Plan) bool { return !p.Serve })
		// Both other copies were last renewed at t0: D − skew = 28s later.
		if want := t0.Add(28 * time.Second); !at.Equal(want) {
			t.Errorf("fenced at %s, want at %s (leaseDuration minus max clock skew after the last majority)", at.Sub(t0), want.Sub(t0))
		}
		if plan.Reason != PlanFenceDeadline {
			t.Errorf("Reason = %q, want %q", plan.Reason, PlanFenceDeadline)
		}
	})
}

func TestStepStandbyPromotesOnlyOnExpiredCopiesAndWithAHigherEpoch(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, c3)
	x.s.Unclaimed = true
	x.turn(a, t0)

	// sh-kiel is lost. mv-schwerin's checks of it fail from now on.
	y := newSite(t, schwer, kiel, false, c3)
	y.reachable[kiel] = false
	y.s.PeerChecksFailing = 3
	at, plan := y.until(a, t0, 100*time.Millisecond, 2*time.Minute, serving)
	// The copies it needs were renewed just before it first saw them: D + skew = 32s.
	if at.Sub(t0) <= 32*time.Second || at.Sub(t0) > 33*time.Second {
		t.Errorf("promoted %s after first seeing the copies, want just after leaseDuration plus max clock skew (32s)", at.Sub(t0))
	}
	for _, arb := range []string{schwer, hamburg} {
		if rec := a.copies[arb]; !rec.HeldBy(schwer) || rec.Epoch != 2 {
			t.Errorf("copy at %s = holder %q epoch %d, want %s at epoch 2", arb, rec.Holder, rec.Epoch, schwer)
		}
	}
	if plan.Held != 2 {
		t.Errorf("Held = %d, want 2", plan.Held)
	}
}

// A standby reads the partner's own cluster's copy once every renewal interval, so its last
// read may come up to an interval after the partner's last renewal. Once that cluster is lost,
// the standby promotes as soon as the copy it takes — its own cluster's — has expired.
func TestStepTwoSiteStandbyPromotesWhenTheCopyItTakesHasExpired(t *testing.T) {
	tests := []struct {
		name            string
		partnerReadable bool
		want            time.Duration
	}{
		{"the partner's cluster is lost: when its own cluster's copy has expired (D + skew = 32s)", false, 32 * time.Second},
		{"the partner's cluster answers and its copy there is live: when that copy, read 10s late, has expired too", true, 42 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newArbiters()
			x := newSite(t, kiel, schwer, true, TwoSiteConfig(schwer))
			x.s.Unclaimed = true
			x.turn(a, t0) // sh-kiel writes both copies and serves; its manager is lost right after

			y := newSite(t, schwer, kiel, false, TwoSiteConfig(kiel))
			y.reachable[kiel] = false
			y.turn(a, t0) // its own cluster's copy, as its watch shows it at once
			y.reachable[kiel] = true
			y.turn(a, t0.Add(10*time.Second)) // sh-kiel's copy, at the next read
			y.reachable[kiel] = tt.partnerReadable
			y.s.PeerChecksFailing = 3
			at, _ := y.until(a, t0.Add(10*time.Second), 100*time.Millisecond, time.Minute, serving)
			// Two turns after the expiry: one writes the claim, the next serves on it.
			if got := at.Sub(t0); got <= tt.want || got > tt.want+200*time.Millisecond {
				t.Errorf("served %s after sh-kiel's last renewal, want two turns after %s", got, tt.want)
			}
			if rec := a.copies[schwer]; !rec.HeldBy(schwer) || rec.Epoch != 2 {
				t.Errorf("copy at %s = holder %q epoch %d, want %s at epoch 2", schwer, rec.Holder, rec.Epoch, schwer)
			}
		})
	}
}

func TestStepRPOGateRecommendsInsteadOfPromoting(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, c3)
	x.s.Unclaimed = true
	x.turn(a, t0)
	y := newSite(t, schwer, kiel, false, c3)
	y.reachable[kiel] = false
	y.s.PeerChecksFailing = 3
	y.s.CopyWithinRPO = false
	for now := t0; now.Before(t0.Add(2 * time.Minute)); now = now.Add(time.Second) {
		plan := y.turn(a, now)
		if plan.Serve || len(plan.Writes) > 0 {
			t.Fatalf("a standby whose copy was older than the RPO promoted at %s", now.Sub(t0))
		}
		if plan.Reason != PlanRecommend || !plan.Recommend {
			t.Fatalf("Reason = %q, Recommend = %t, want %q", plan.Reason, plan.Recommend, PlanRecommend)
		}
	}
	// A forced Switchover takes over all the same.
	y.s.TakeOverRequested = true
	if _, plan := y.until(a, t0.Add(2*time.Minute), 100*time.Millisecond, time.Minute, serving); plan.Held != 2 {
		t.Errorf("after a forced Switchover Held = %d, want 2", plan.Held)
	}
}

func TestStepHandOver(t *testing.T) {
	setup := func(t *testing.T) (*arbiters, *site) {
		a := newArbiters()
		x := newSite(t, kiel, schwer, true, c3)
		x.s.Unclaimed = true
		x.turn(a, t0)
		x.turn(a, t0)
		x.s.Unclaimed = false
		return a, x
	}
	t.Run("refused while the partner has no ready copy", func(t *testing.T) {
		a, x := setup(t)
		x.s.ChecksFailing, x.s.PartnerReady = 5, false
		plan := x.turn(a, t0.Add(time.Second))
		if !plan.Serve || plan.Reason != PlanHandOverRefused {
			t.Fatalf("Serve = %t, Reason = %q, want serving with %q", plan.Serve, plan.Reason, PlanHandOverRefused)
		}
	})
	t.Run("fences first, then releases every copy it can reach", func(t *testing.T) {
		a, x := setup(t)
		x.s.ChecksFailing = 5
		x.s.Fenced = false
		next, plan := Step(x.p, x.s, t0.Add(time.Second))
		if plan.Serve || len(plan.Writes) != 0 {
			t.Fatalf("a hand-over decided while still serving: Serve = %t, writes %v; want a fence and no release yet", plan.Serve, plan.Writes)
		}
		x.s = next
		x.serving = false
		x.turn(a, t0.Add(2*time.Second))
		for _, arb := range c3 {
			if rec := a.copies[arb]; !rec.Released() || rec.Epoch != 1 || !stampsEqual(rec.Configs, []Config{c3}) {
				t.Errorf("copy at %s = %+v, want released, keeping epoch 1 and its configurations", arb, rec)
			}
		}
		x.turn(a, t0.Add(3*time.Second))
		if x.s.Claim.Epoch != 0 {
			t.Errorf("the claim is still %+v after every copy was released", x.s.Claim)
		}
	})
}

func TestStepAddingAndRemovingTheWitness(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, TwoSiteConfig(schwer))
	x.s.Unclaimed = true
	x.turn(a, t0)
	if plan := x.turn(a, t0); !plan.Serve {
		t.Fatalf("two-site primary does not serve: %s", plan.Message)
	}
	if !stampsEqual(x.s.Claim.Configs, []Config{TwoSiteConfig(schwer)}) {
		t.Fatalf("configs = %s, want {%s}", formatConfigList(x.s.Claim.Configs), schwer)
	}
	if _, ok := a.copies[hamburg]; ok {
		t.Fatal("a two-site service wrote a copy at the witness")
	}
	x.s.Unclaimed = false

	// The witness is added: the claim joins C3 at once (it holds its own copy and
	// mv-schwerin's, a majority of it), stamps both partners, and then drops {mv-schwerin}.
	x.s.Target = c3
	now := t0.Add(time.Second)
	x.turn(a, now)
	if !stampsEqual(x.s.Claim.Configs, []Config{TwoSiteConfig(schwer), c3}) && !stampsEqual(x.s.Claim.Configs, []Config{c3}) {
		t.Fatalf("after adding the witness configs = %s, want the joint configuration", formatConfigList(x.s.Claim.Configs))
	}
	dropped, _ := x.until(a, now, time.Second, time.Minute, func(Plan) bool { return stampsEqual(x.s.Claim.Configs, []Config{c3}) })
	for _, arb := range []string{kiel, schwer} {
		if rec := a.copies[arb]; !hasConfig(rec.Configs, c3) {
			t.Errorf("dropped the old configuration while %s's copy is stamped %s", arb, FormatConfigs(rec.Configs))
		}
	}

	// Now mv-schwerin is cut off: the quorum keeps sh-kiel serving.
	x.reachable[schwer] = false
	if _, ok := a.copies[hamburg]; !ok {
		t.Fatal("joined the quorum configuration without creating the witness's copy")
	}
	for now := dropped.Add(time.Second); now.Before(t0.Add(3 * time.Minute)); now = now.Add(time.Second) {
		if plan := x.turn(a, now); !plan.Serve {
			t.Fatalf("with a witness, losing mv-schwerin fenced the active at %s: %s", now.Sub(t0), plan.Message)
		}
	}

	// Removing the witness while mv-schwerin is unreachable keeps the quorum: the claim
	// cannot hold a majority of {mv-schwerin} yet, so it does not join it.
	x.s.Target = TwoSiteConfig(schwer)
	plan := x.turn(a, t0.Add(3*time.Minute))
	if !plan.Serve || !stampsEqual(x.s.Claim.Configs, []Config{c3}) {
		t.Fatalf("removing the witness with the standby unreachable: Serve = %t, configs %s; want serving on {%s}", plan.Serve, formatConfigList(x.s.Claim.Configs), c3)
	}
	// Once mv-schwerin is back, the claim moves to two-site mode.
	x.reachable[schwer] = true
	_, _ = x.until(a, t0.Add(3*time.Minute), time.Second, 2*time.Minute, func(p Plan) bool {
		return p.Serve && stampsEqual(x.s.Claim.Configs, []Config{TwoSiteConfig(schwer)})
	})
}

func TestStepTwoSiteLeaseMovesToTheOldPrimaryAfterAFailover(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, TwoSiteConfig(schwer))
	x.s.Unclaimed = true
	x.turn(a, t0)

	// sh-kiel is lost; mv-schwerin promotes on its own cluster's copy.
	y := newSite(t, schwer, kiel, false, TwoSiteConfig(kiel))
	y.reachable[kiel] = false
	y.s.PeerChecksFailing = 3
	at, _ := y.until(a, t0, time.Second, 2*time.Minute, serving)
	if !stampsEqual(y.s.Claim.Configs, []Config{TwoSiteConfig(schwer)}) {
		t.Fatalf("after the failover configs = %s, want {%s}", formatConfigList(y.s.Claim.Configs), schwer)
	}
	// sh-kiel's cluster is back (its old copy still names it): once that copy expires,
	// mv-schwerin takes it and moves the lease there.
	y.reachable[kiel] = true
	y.s.PeerChecksFailing = 0
	_, _ = y.until(a, at, time.Second, 2*time.Minute, func(p Plan) bool {
		return p.Serve && stampsEqual(y.s.Claim.Configs, []Config{TwoSiteConfig(kiel)})
	})
	for _, arb := range []string{kiel, schwer} {
		if rec := a.copies[arb]; !rec.HeldBy(schwer) || !stampsEqual(rec.Configs, []Config{TwoSiteConfig(kiel)}) {
			t.Errorf("copy at %s = holder %q stamped %s, want %s stamped {%s}", arb, rec.Holder, FormatConfigs(rec.Configs), schwer, kiel)
		}
	}
}

func TestLeaseRecordCarriesEpochAndConfigs(t *testing.T) {
	rec := LeaseRecord{Holder: kiel, Duration: 30 * time.Second, ResourceVersion: "4", Epoch: 7,
		Configs: []Config{TwoSiteConfig(schwer), c3}}
	var l coordinationv1.Lease
	ApplyRecord(&l, rec)
	if got := l.Annotations[ConfigsAnnotation]; got != "mv-schwerin;hh-hamburg,mv-schwerin,sh-kiel" {
		t.Errorf("%s = %q", ConfigsAnnotation, got)
	}
	got := RecordFromLease(&l)
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	l.Annotations[EpochAnnotation] = "not a number"
	if got := RecordFromLease(&l); got.Epoch != 0 {
		t.Errorf("a garbled epoch reads as %d, want 0", got.Epoch)
	}
}

func TestParseConfigs(t *testing.T) {
	for in, want := range map[string]string{
		"":                            "",
		"b,a":                         "a,b",
		"a;;a,b, ;a":                  "a;a,b",
		"sh-kiel,sh-kiel;mv-schwerin": "sh-kiel;mv-schwerin",
	} {
		if got := FormatConfigs(ParseConfigs(in)); got != want {
			t.Errorf("ParseConfigs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStepRestartedManagerRenewsBeforeItSwitchesAnything(t *testing.T) {
	setup := func(t *testing.T) (*arbiters, *site) {
		a := newArbiters()
		x := newSite(t, kiel, schwer, true, c3)
		x.s.Unclaimed = true
		x.turn(a, t0)
		x.turn(a, t0)
		// The manager restarts: a new process with no memory, the workloads still serving.
		fresh := newSite(t, kiel, schwer, true, c3)
		fresh.serving = true
		fresh.s.HoldUntil = t0.Add(6 * time.Second)
		return a, fresh
	}
	t.Run("serves on once its renewals succeed", func(t *testing.T) {
		a, x := setup(t)
		now := t0.Add(5 * time.Second)
		for _, arb := range c3 {
			x.s.Fenced = false
			x.s = x.s.Observed(arb, a.copies[arb], now)
		}
		next, plan := Step(x.p, x.s, now)
		if plan.Serve || !plan.Hold || len(plan.Writes) != 3 {
			t.Fatalf("Serve = %t, Hold = %t, %d writes; want holding the copy as it is while renewing all three", plan.Serve, plan.Hold, len(plan.Writes))
		}
		x.s = next
		for _, w := range plan.Writes {
			got, ok := a.commit(w)
			x.s = x.s.Written(w, now, ok, got, now)
		}
		if _, plan = Step(x.p, x.s, now); !plan.Serve {
			t.Errorf("after its renewals succeeded the restarted manager does not serve: %s", plan.Message)
		}
	})
	t.Run("fences once a renewal fails", func(t *testing.T) {
		a, x := setup(t)
		now := t0.Add(5 * time.Second)
		for _, arb := range c3 {
			x.s.Fenced = false
			x.s = x.s.Observed(arb, a.copies[arb], now)
		}
		next, plan := Step(x.p, x.s, now)
		x.s = next
		for _, w := range plan.Writes {
			x.s = x.s.WriteFailed(w)
		}
		if _, plan = Step(x.p, x.s, now); plan.Serve || plan.Hold {
			t.Errorf("after its renewals failed: Serve = %t, Hold = %t; want a fence", plan.Serve, plan.Hold)
		}
	})
	t.Run("stops holding at HoldUntil although no write got an answer", func(t *testing.T) {
		a, x := setup(t)
		now := t0.Add(5 * time.Second)
		for _, arb := range c3 {
			x.s.Fenced = false
			x.s = x.s.Observed(arb, a.copies[arb], now)
		}
		next, plan := Step(x.p, x.s, now)
		if !plan.Hold {
			t.Fatalf("Hold = false before HoldUntil")
		}
		if _, plan = Step(x.p, next, t0.Add(6*time.Second)); plan.Serve || plan.Hold {
			t.Errorf("at HoldUntil: Serve = %t, Hold = %t; want a fence", plan.Serve, plan.Hold)
		}
	})
	t.Run("does not hold a copy that was already fenced", func(t *testing.T) {
		a, x := setup(t)
		x.serving = false
		if plan := x.turn(a, t0.Add(5*time.Second)); plan.Hold {
			t.Error("a restarted manager whose copy was fenced holds it instead of deciding")
		}
	})
}

func TestStepTwoSiteStandbyPromotesOnlyWhenItWantsTheService(t *testing.T) {
	setup := func(t *testing.T, p Policy) (*arbiters, *site) {
		a := newArbiters()
		x := newSite(t, kiel, schwer, true, TwoSiteConfig(schwer))
		x.s.Unclaimed = true
		x.turn(a, t0)
		y := newSite(t, schwer, kiel, false, TwoSiteConfig(kiel))
		y.p = p
		y.reachable[kiel] = false
		return a, y
	}
	policy := func(f func(*Policy)) Policy {
		p := testPolicy()
		f(&p)
		return p
	}
	never := []struct {
		name   string
		policy Policy
		peer   int32
		reason string
	}{
		{"recommends a failover in Manual mode and never promotes, even on an expired copy",
			policy(func(p *Policy) { p.Mode = deichv1alpha1.FailoverManual }), 3, PlanRecommend},
		{"treats an unknown failover mode as Manual",
			policy(func(p *Policy) { p.Mode = "Sometimes" }), 3, PlanRecommend},
		{"waits while its checks of the partner failed fewer than failureThreshold times",
			testPolicy(), 2, PlanStandby},
		{"counts a failureThreshold below 1 as 1, never as no failure at all",
			policy(func(p *Policy) { p.FailureThreshold = 0 }), 0, PlanStandby},
	}
	for _, tt := range never {
		t.Run(tt.name, func(t *testing.T) {
			a, y := setup(t, tt.policy)
			y.s.PeerChecksFailing = tt.peer
			for now := t0; now.Before(t0.Add(2 * time.Minute)); now = now.Add(time.Second) {
				if plan := y.turn(a, now); plan.Serve || len(plan.Writes) > 0 || plan.Reason != tt.reason {
					t.Fatalf("at %s: Serve = %t, %d writes, Reason = %q; want %q and no writes", now.Sub(t0), plan.Serve, len(plan.Writes), plan.Reason, tt.reason)
				}
			}
		})
	}
	t.Run("takes a released copy over at once for a Switchover in Manual mode, whatever the checks say", func(t *testing.T) {
		a, y := setup(t, policy(func(p *Policy) { p.Mode = deichv1alpha1.FailoverManual }))
		a.copies[schwer] = ReleasedRecord(a.copies[schwer], t0)
		y.s.TakeOverRequested = true
		if at, _ := y.until(a, t0, time.Second, time.Minute, serving); !at.Equal(t0.Add(time.Second)) {
			t.Errorf("served %s after the copy was released, want on its second turn, without waiting for expiry", at.Sub(t0))
		}
	})
}
