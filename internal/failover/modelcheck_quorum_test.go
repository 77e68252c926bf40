package failover

import (
	"testing"
	"time"
)

// The model check: two partners (and, while the service has one, a witness) run Step in the
// hostile world of sim_quorum_test.go, and at no simulated instant may both partners serve.
// Runs are seeded, so a failure names a seed that replays it exactly.

func modelCheckRuns() int {
	if testing.Short() {
		return 30
	}
	return 100
}

// standbyBudgetWorld makes the active site spend all of its skew and the standby site need
// its own: fences take effect up to 0.85s after the decision (plus up to 0.15s of manager
// restart), and the partners' clocks run up to 8% fast, gaining up to 13s × 8% / 1.08 ≈
// 0.96s over a wait.
func standbyBudgetWorld(w *qWorld) {
	w.clockRate = [2][2]float64{{1, 1.08}, {1, 1.08}}
	w.fenceLatencyMax = 850 * time.Millisecond
}

func TestModelCheckQuorumNoTwoSitesServe(t *testing.T) {
	tests := []struct {
		name  string
		world func(*qWorld)
		rules func(*qRules)
	}{
		{name: "while the witness is added and removed and every site and link fails"},
		{name: "with a witness that stays",
			world: func(w *qWorld) { w.witnessChanges = false }},
		{name: "without a witness, as two sites",
			world: func(w *qWorld) { w.witnessChanges, w.witness = false, false }},
		{name: "with clocks an hour apart",
			world: func(w *qWorld) { w.offsetMax = time.Hour }},
		{name: "when each partner learns of a witness change up to half an hour after the other",
			world: func(w *qWorld) { w.specLagMax = 30 * time.Minute }},
		{name: "when the active spends its whole skew on the fence and the standby's clock runs up to 8% fast",
			world: standbyBudgetWorld},
		{name: "without a witness, when the active spends its whole skew on the fence and the standby's clock runs up to 8% fast",
			world: func(w *qWorld) {
				standbyBudgetWorld(w)
				w.witnessChanges, w.witness = false, false
			}},
	}
	for _, tt := range tests {
		t.Run("no two sites serve "+tt.name, func(t *testing.T) {
			world, rules := defaultQWorld(), qProtocol()
			if tt.world != nil {
				tt.world(&world)
			}
			if tt.rules != nil {
				tt.rules(&rules)
			}
			var total qStats
			for seed := range uint64(modelCheckRuns()) {
				r := simulateQuorum(seed, world, rules, false)
				if r.violation != "" {
					traced := simulateQuorum(seed, world, rules, true)
					t.Fatalf("seed %d: %s\nend of the trace:\n%s", seed, r.violation, lastLines(traced.trace, 120))
				}
				total.add(r.stats)
			}
			t.Logf("%d runs of %s: %s", modelCheckRuns(), world.duration, total)
			checkQuorumExercised(t, total, world)
		})
	}
}

func checkQuorumExercised(t *testing.T, s qStats, w qWorld) {
	t.Helper()
	checks := []struct {
		what string
		n    int
	}{
		{"promotions", s.promotions},
		{"hand-overs", s.handOvers},
		{"fences at the deadline", s.deadlineFence},
		{"site losses", s.crashes},
		{"link cuts", s.cuts},
		{"deleted copies", s.deletions},
		{"claims given up", s.givenUp},
		{"resumptions after a manager restart", s.resumes},
		{"reads that failed", s.readFailures},
		{"runs with promotion stages", s.stagesRun},
		{"promotion stages switched", s.stageSwitches},
		{"waits for a promotion stage", s.stageWaits},
		{"promotion stages timed out", s.stageTimeouts},
	}
	if w.witnessChanges {
		checks = append(checks,
			struct {
				what string
				n    int
			}{"configurations joined", s.joins},
			struct {
				what string
				n    int
			}{"configurations dropped", s.drops},
			struct {
				what string
				n    int
			}{"time served without a witness", int(s.twoSiteServed / time.Second)},
		)
	}
	if w.witness || w.witnessChanges {
		checks = append(checks, struct {
			what string
			n    int
		}{"time served with a witness", int(s.quorumServed / time.Second)})
	}
	for _, c := range checks {
		if c.n == 0 {
			t.Errorf("the model check is vacuous: no %s", c.what)
		}
	}
	total := s.served[0] + s.served[1] + s.nobody
	for i, site := range qNames[:2] {
		if s.served[i] < total/20 {
			t.Errorf("the model check is vacuous: %s served only %s of %s", site, s.served[i], total)
		}
	}
}

// TestModelCheckQuorumFindsBrokenRules shows that the checker catches each rule of the quorum
// lease broken on its own.
func TestModelCheckQuorumFindsBrokenRules(t *testing.T) {
	serveWhen := func(ok func(p Policy, s ServiceState, now time.Time) bool) func(*qRules) {
		return func(r *qRules) {
			r.mutate = func(p Policy, _, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan) {
				if !plan.Serve && !after.Claim.Releasing && after.Claim.Epoch != 0 && ok(p, after, now) {
					plan.Serve = true
					after.Claim.Established = true
				}
				return after, plan
			}
		}
	}
	tests := []struct {
		name  string
		world func(*qWorld)
		rules func(*qRules)
	}{
		{name: "a site that serves on one copy of three",
			world: func(w *qWorld) { w.witnessChanges = false },
			rules: serveWhen(func(p Policy, s ServiceState, now time.Time) bool {
				for a := range s.Arbiters {
					if _, ok := s.holds(p, a, now); ok {
						return true
					}
				}
				return false
			})},
		{name: "a site that serves on a majority of its target without its own copy or its inherited configurations",
			rules: serveWhen(func(p Policy, s ServiceState, now time.Time) bool {
				return !s.majorityUntil(p, s.Target, now).IsZero()
			})},
		{name: "a site that drops the old configuration before both partners' copies carry the new one",
			rules: func(r *qRules) {
				r.mutate = func(p Policy, _, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan) {
					if plan.Serve && hasConfig(after.Claim.Configs, after.Target) {
						after.Claim.Configs = []Config{after.Target}
					}
					return after, plan
				}
			}},
		{name: "a site that takes its configuration from its own spec alone, ignoring the configurations stamped on the copies it takes over",
			rules: func(r *qRules) {
				r.forgetInherited = true
				r.mutate = func(p Policy, before, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan) {
					if before.Claim.Epoch == 0 && after.Claim.Epoch != 0 {
						after.Claim.Configs = []Config{after.Target}
						if len(after.Target) == 1 {
							after.Claim.Configs = []Config{TwoSiteConfig(after.Site)}
						}
					}
					return after, plan
				}
			}},
		{name: "a site that releases its copies before its fence took effect",
			world: func(w *qWorld) { w.fenceLatencyMax = time.Second },
			rules: func(r *qRules) { r.releaseBeforeFence = true }},
		{name: "a skew budget of zero while fences take up to a second",
			world: func(w *qWorld) {
				w.clockRate, w.offsetMax, w.fenceLatencyMax = [2][2]float64{{1, 1}, {1, 1}}, 0, time.Second
			},
			rules: func(r *qRules) { r.policy.MaxClockSkew = 0 }},
		{name: "a serving site that counts its copies for leaseDuration plus skew instead of minus",
			rules: func(r *qRules) {
				r.mutate = func(p Policy, before, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan) {
					if plan.Serve || !before.Claim.Established {
						return after, plan
					}
					return Step(p, before, now.Add(-2*p.MaxClockSkew))
				}
			}},
		{name: "two sites without a witness, one of which takes copies over once they stood unchanged for leaseDuration only, when the active spends its whole skew",
			world: func(w *qWorld) {
				standbyBudgetWorld(w)
				w.witnessChanges, w.witness = false, false
			},
			rules: func(r *qRules) {
				r.mutate = func(p Policy, before, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan) {
					if before.Claim.Established {
						return after, plan
					}
					return Step(p, before, now.Add(p.MaxClockSkew))
				}
			}},
		{name: "a site that times a copy by its holder's renewTime while clocks are 3s apart",
			world: func(w *qWorld) { w.offsetMax = 3 * time.Second },
			rules: func(r *qRules) {
				r.mutate = func(p Policy, before, _ ServiceState, _ Plan, now time.Time) (ServiceState, Plan) {
					for a, arb := range before.Arbiters {
						if t := arb.Observation.Record.RenewTime; !t.IsZero() {
							arb.Observation.ObservedAt = t
							before.Arbiters[a] = arb
						}
					}
					return Step(p, before, now)
				}
			}},
		{name: "a shared record that applies an entry's write on a fresh read without comparing the entry's version",
			rules: func(r *qRules) {
				r.applyEntries = func(entries map[string]LeaseRecord, writes []EntryWrite, version func() string) (map[string]LeaseRecord, []EntryResult) {
					for i := range writes {
						writes[i].Record.ResourceVersion = entries[writes[i].Key].ResourceVersion
					}
					return ApplyEntryWrites(entries, writes, version)
				}
			}},
		{name: "a stage runner that switches the next promotion stage when the one before becomes ready, outside the keeper's decisions",
			world: func(w *qWorld) { w.stagesMax, w.neverReady = 4, 0 },
			rules: func(r *qRules) { r.stageRunner = true }},
		{name: "a stage runner that switches the next promotion stage outside the keeper's decisions, as two sites serving",
			world: func(w *qWorld) { w.stagesMax, w.neverReady = 4, 0 },
			rules: func(r *qRules) { r.stageRunner, r.orderUnchecked = true, true }},
		{name: "a fence that stops the promotion stages in the order they were promoted",
			world: func(w *qWorld) { w.stagesMax = 4 },
			rules: func(r *qRules) { r.fenceForward = true }},
		{name: "two sites without a witness whose clocks run up to 20% fast or slow",
			world: func(w *qWorld) {
				w.clockRate = [2][2]float64{{0.8, 1.2}, {0.8, 1.2}}
				w.witnessChanges, w.witness = false, false
			}},
	}
	for _, tt := range tests {
		t.Run("the checker catches "+tt.name, func(t *testing.T) {
			world, rules := defaultQWorld(), qProtocol()
			if tt.world != nil {
				tt.world(&world)
			}
			if tt.rules != nil {
				tt.rules(&rules)
			}
			const maxRuns = 1000
			for seed := range uint64(maxRuns) {
				if r := simulateQuorum(seed, world, rules, false); r.violation != "" {
					t.Logf("seed %d: %s", seed, r.violation)
					return
				}
			}
			t.Errorf("no violation in %d runs: the model check cannot tell this mutant from the protocol", maxRuns)
		})
	}
}

// TestModelCheckIgnoresClockOffsets shows why clocks an hour apart are as safe as clocks in
// step: no decision compares one site's clock with another's, so the same seed gives the
// same run, event for event, whatever the offsets.
func TestModelCheckIgnoresClockOffsets(t *testing.T) {
	near, far := defaultQWorld(), defaultQWorld()
	far.offsetMax = 24 * time.Hour
	for seed := range uint64(10) {
		a := simulateQuorum(seed, near, qProtocol(), false)
		b := simulateQuorum(seed, far, qProtocol(), false)
		if a.stats != b.stats {
			t.Errorf("seed %d: clock offsets changed the run:\nup to 0.5s: %s\nup to 24h:  %s", seed, a.stats, b.stats)
		}
	}
}

// TestModelCheckQuorumReplays shows that a seed names a run: the same seed gives the same
// run, event for event, so a violation's seed replays it exactly.
func TestModelCheckQuorumReplays(t *testing.T) {
	for seed := range uint64(5) {
		a := simulateQuorum(seed, defaultQWorld(), qProtocol(), false)
		b := simulateQuorum(seed, defaultQWorld(), qProtocol(), false)
		if a.stats != b.stats {
			t.Errorf("seed %d gave two different runs:\n%s\n%s", seed, a.stats, b.stats)
		}
	}
}
