package failover

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The model check: two sites run the protocol in the hostile world of sim_test.go, and at no
// simulated instant may both serve. Runs are seeded, so a failure names a seed that replays
// it exactly.

func modelCheckRuns() int {
	if testing.Short() {
		return 30
	}
	return 100
}

// standbyBudgetWorld makes the active site spend all of its skew and the standby site
// need its own: sh-kiel's clock is exact and its fence takes effect up to 0.85s after the
// decision (plus up to 0.15s of manager restart), while mv-schwerin's clock runs up to 8%
// fast, gaining up to 13s × 8% / 1.08 ≈ 0.96s over a wait.
func standbyBudgetWorld(w *simWorld) {
	w.clockRate = [2][2]float64{{1, 1}, {1, 1.08}}
	w.fenceLatencyMax = 850 * time.Millisecond
}

func TestModelCheckNoTwoSitesServe(t *testing.T) {
	tests := []struct {
		name  string
		world func(*simWorld)
		rules func(*simRules)
	}{
		{name: "with clocks up to half the skew apart and running up to 3% fast or slow"},
		{name: "with clocks an hour apart, because no site reads another's clock",
			world: func(w *simWorld) { w.offsetMax = time.Hour }},
		{name: "with every lease write's answer slower than the request timeout at times",
			world: func(w *simWorld) { w.linkDelayMax, w.requestTimeout = 10*time.Second, time.Second }},
		{name: "with both objectives keeping the same lease duration",
			rules: func(r *simRules) { r.leaseDurations = nil }},
		{name: "when the active site spends its whole skew on the fence and the standby's clock runs up to 8% fast",
			world: standbyBudgetWorld},
	}
	for _, tt := range tests {
		t.Run("no two sites serve "+tt.name, func(t *testing.T) {
			world, rules := defaultWorld(), protocol()
			if tt.world != nil {
				tt.world(&world)
			}
			if tt.rules != nil {
				tt.rules(&rules)
			}
			var total simStats
			for seed := range uint64(modelCheckRuns()) {
				r := simulate(seed, world, rules, false)
				if r.violation != "" {
					traced := simulate(seed, world, rules, true)
					t.Fatalf("seed %d: %s\nend of the trace:\n%s", seed, r.violation, lastLines(traced.trace, 80))
				}
				total.add(r.stats)
			}
			t.Logf("%d runs of %s: %s", modelCheckRuns(), world.duration, total)
			checkExercised(t, total, rules)
		})
	}
}

// TestModelCheckIgnoresClockOffsets shows why clocks an hour apart are as safe as clocks in
// step: no decision compares one site's clock with another's, so the same seed gives the
// same run, event for event, whatever the offsets.
func TestModelCheckIgnoresClockOffsets(t *testing.T) {
	near, far := defaultWorld(), defaultWorld()
	far.offsetMax = 24 * time.Hour
	for seed := range uint64(10) {
		a := simulate(seed, near, protocol(), false)
		b := simulate(seed, far, protocol(), false)
		if diff := cmp.Diff(a.stats, b.stats, cmp.AllowUnexported(simStats{})); diff != "" {
			t.Errorf("seed %d: clock offsets changed the run (-up to 0.5s +up to 24h):\n%s", seed, diff)
		}
	}
}

// checkExercised fails when the runs did not exercise what makes the check meaningful:
// both sites serving in turn, every way of taking the lease, and every reason to fence.
func checkExercised(t *testing.T, s simStats, rules simRules) {
	t.Helper()
	deletions := s.deletions
	if len(rules.leaseDurations) > 0 {
		deletions = -1 // no deletions while the objectives may disagree
	}
	for _, c := range []struct {
		what string
		n    int
	}{
		{"leases created", s.created},
		{"released leases acquired", s.fromReleased},
		{"expired or missing leases acquired", s.fromExpired},
		{"hand-overs", s.handOvers},
		{"fences at the deadline", s.deadlineFence},
		{"fences after a manager restart", s.restartFence},
		{"fences of a site that lost the lease", s.standbyFence},
		{"site crashes", s.crashes},
		{"partitions", s.partitions},
		{"lease deletions", deletions},
	} {
		if c.n == 0 {
			t.Errorf("the model check is vacuous: no %s", c.what)
		}
	}
	total := s.served[0] + s.served[1] + s.nobody
	for i, site := range []string{"sh-kiel", "mv-schwerin"} {
		if s.served[i] < total/20 {
			t.Errorf("the model check is vacuous: %s served only %s of %s", site, s.served[i], total)
		}
	}
}

// TestModelCheckFindsBrokenRules shows that the checker is not vacuous: each mutant breaks
// one rule of the package documentation, or runs in a world outside its assumptions, and the
// checker finds an instant at which both sites serve.
func TestModelCheckFindsBrokenRules(t *testing.T) {
	tests := []struct {
		name  string
		world func(*simWorld)
		rules func(*simRules)
	}{
		{name: "an active site that fences at leaseDuration plus skew instead of minus",
			rules: func(r *simRules) {
				r.decideActive = func(p Policy, s ActiveState, now time.Time) ActiveDecision {
					d := DecideActive(p, s, now.Add(-2*p.MaxClockSkew))
					if !d.NextCheck.IsZero() {
						d.NextCheck = d.NextCheck.Add(2 * p.MaxClockSkew)
					}
					return d
				}
			}},
		{name: "a skew budget of zero while fences take up to a second",
			world: func(w *simWorld) {
				w.clockRate, w.offsetMax, w.fenceLatencyMax = [2][2]float64{{1, 1}, {1, 1}}, 0, time.Second
			},
			rules: func(r *simRules) { r.policy.MaxClockSkew = 0 }},
		{name: "a standby that times the lease by the holder's renewTime while clocks are 3s apart",
			world: func(w *simWorld) { w.offsetMax = 3 * time.Second },
			rules: func(r *simRules) {
				r.decideStandby = func(p Policy, s StandbyState, now time.Time) StandbyDecision {
					if !s.Observation.Record.RenewTime.IsZero() {
						s.Observation.ObservedAt = s.Observation.Record.RenewTime
					}
					return DecideStandby(p, s, now)
				}
			}},
		{name: "a standby that promotes on a lease that stood unchanged for leaseDuration only, when the active spends its whole skew",
			world: standbyBudgetWorld,
			rules: func(r *simRules) {
				r.decideStandby = func(p Policy, s StandbyState, now time.Time) StandbyDecision {
					d := DecideStandby(p, s, now.Add(p.MaxClockSkew))
					if !d.NextCheck.IsZero() {
						d.NextCheck = d.NextCheck.Add(-p.MaxClockSkew)
					}
					return d
				}
			}},
		{name: "an active site that releases the lease before its fence took effect",
			world: func(w *simWorld) { w.fenceLatencyMax = time.Second },
			rules: func(r *simRules) { r.releaseBeforeFence = true }},
		{name: "an active site that serves on after a manager restart until its deadline",
			rules: func(r *simRules) {
				r.decideActive = func(p Policy, s ActiveState, now time.Time) ActiveDecision {
					if s.Renewal.SentAt.IsZero() {
						return ActiveDecision{Action: ActionRenew}
					}
					return DecideActive(p, s, now)
				}
			}},
		{name: "clocks that run up to 20% fast or slow",
			world: func(w *simWorld) { w.clockRate = [2][2]float64{{0.8, 1.2}, {0.8, 1.2}} }},
	}
	for _, tt := range tests {
		t.Run("the checker catches "+tt.name, func(t *testing.T) {
			world, rules := defaultWorld(), protocol()
			if tt.world != nil {
				tt.world(&world)
			}
			if tt.rules != nil {
				tt.rules(&rules)
			}
			const maxRuns = 200
			for seed := range uint64(maxRuns) {
				if r := simulate(seed, world, rules, false); r.violation != "" {
					t.Logf("seed %d: %s", seed, r.violation)
					return
				}
			}
			t.Errorf("no violation in %d runs: the model check cannot tell this mutant from the protocol", maxRuns)
		})
	}
}
