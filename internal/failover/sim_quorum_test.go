package failover

import (
	"container/heap"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// This file simulates Step, with a witness and without, for the model check in
// modelcheck_quorum_test.go: two partner sites, each running the keeper's part of the
// protocol around Step, and a witness whose cluster only stores copies of the lease (while
// the service has no witness, nobody writes there). Site 0 (sh-kiel) is the primary,
// site 1 (mv-schwerin) the standby, site 2 (hh-hamburg) the witness; each site's cluster
// stores one copy. The simulation is a discrete-event one in real time (sim_test.go); each
// site sees only its own clock, which is offset and runs fast or slow. The world is hostile
// — delayed, reordered and lost messages, each of the three links cut on its own, whole
// sites lost and back, managers restarting (forgetting everything while the site's
// workloads keep serving), arbitrary health checks, Switchovers — and on top of it
// the witness is added to and removed from the service, each partner learning of the
// change on its own time (as when a GitOps tool syncs one state's cluster later than the
// other's), copies are deleted by hand, and lease durations disagree. The simulation stops
// at the first instant both partners serve.

const qSites = 3

var qNames = [qSites]string{"sh-kiel", "mv-schwerin", "hh-hamburg"}

// qWorld is how the world behaves.
type qWorld struct {
	duration        time.Duration
	offsetMax       time.Duration
	clockRate       [2][2]float64
	fenceLatencyMax time.Duration
	linkDelayMax    time.Duration
	localDelayMax   time.Duration
	dropRate        float64
	requestTimeout  time.Duration
	restartDelayMax time.Duration
	// faults turns on link cuts, site losses and manager restarts, deletions on copies
	// deleted by hand.
	faults, deletions bool
	// witnessChanges turns on adding and removing the witness during a run; witness says
	// whether the service starts with one.
	witnessChanges, witness bool
	// specLagMax bounds how long after the other partner a partner learns of a change of
	// the witness.
	specLagMax time.Duration
	// stagesMax bounds the promotion stages a run's service declares (each run draws from 0
	// to stagesMax); readyDelayMax bounds how long a stage takes to become ready once
	// switched, and neverReady is the chance that it never does.
	stagesMax     int
	readyDelayMax time.Duration
	neverReady    float64
}

func defaultQWorld() qWorld {
	return qWorld{
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
		deletions:       true,
		witnessChanges:  true,
		witness:         true,
		specLagMax:      2 * time.Minute,
		stagesMax:       3,
		readyDelayMax:   20 * time.Second,
		neverReady:      0.1,
	}
}

// qRules is the protocol under test: Step as it ships, or weakened by a mutant.
type qRules struct {
	policy         Policy
	leaseDurations []time.Duration
	// mutate, if set, changes Step's answer: a mutant of the rules.
	mutate func(p Policy, before, after ServiceState, plan Plan, now time.Time) (ServiceState, Plan)
	// forgetInherited drops the configurations a write inherits once it succeeded.
	forgetInherited bool
	// releaseBeforeFence releases copies before the fence took effect.
	releaseBeforeFence bool
	// stageRunner switches the next promotion stage when the one before becomes ready, with
	// a write that arrives up to a second later, instead of leaving it to the keeper's next
	// decision (breaks S1).
	stageRunner bool
	// fenceForward fences the stages in the order they were promoted in (breaks S2).
	fenceForward bool
	// orderUnchecked leaves out the check of the stages' order, so that a mutant must be
	// caught by the invariant itself.
	orderUnchecked bool
	// applyEntries stores a batch of entry writes in a shared record; ApplyEntryWrites
	// unless a mutant replaces it.
	applyEntries func(entries map[string]LeaseRecord, writes []EntryWrite, version func() string) (map[string]LeaseRecord, []EntryResult)
}

func qProtocol() qRules {
	return qRules{
		policy: Policy{
			FailureThreshold: 2,
			ProbeInterval:    time.Second,
			LeaseDuration:    9 * time.Second,
			MaxClockSkew:     time.Second,
		},
		leaseDurations: []time.Duration{6 * time.Second, 9 * time.Second, 12 * time.Second},
		applyEntries:   ApplyEntryWrites,
	}
}

// qStats counts what a run exercised.
type qStats struct {
	served        [2]time.Duration
	nobody        time.Duration
	nobodyHealthy time.Duration // nobody served while a majority of sites was up and connected and a partner healthy
	longestGap    time.Duration // the longest such stretch
	promotions    int           // claims that served for the first time
	handOvers     int
	refused       int // hand-overs refused because the partner was not ready
	givenUp       int // claims given up because the partner's was later
	joins         int // claims that added their target configuration
	drops         int // claims that dropped every configuration but the target
	quorumServed  time.Duration
	twoSiteServed time.Duration
	deadlineFence int
	recommends    int
	crashes       int
	restarts      int
	cuts          int
	deletions     int
	witnessFlips  int
	resumes       int // restarted managers that held their copy while renewing
	readFailures  int // reads that got no answer within the request timeout
	maxEpoch      int64
	events        int
	stagesRun     int // runs whose service declared promotion stages
	stageSwitches int // stages switched to their active form
	stageWaits    int // decisions that served and waited for a stage to become ready
	stageTimeouts int // promotions stopped at a stage that did not become ready in time
}

func (s *qStats) add(o qStats) {
	for i := range s.served {
		s.served[i] += o.served[i]
	}
	s.nobody += o.nobody
	s.nobodyHealthy += o.nobodyHealthy
	s.longestGap = max(s.longestGap, o.longestGap)
	s.promotions += o.promotions
	s.handOvers += o.handOvers
	s.refused += o.refused
	s.givenUp += o.givenUp
	s.joins += o.joins
	s.drops += o.drops
	s.quorumServed += o.quorumServed
	s.twoSiteServed += o.twoSiteServed
	s.deadlineFence += o.deadlineFence
	s.recommends += o.recommends
	s.crashes += o.crashes
	s.restarts += o.restarts
	s.cuts += o.cuts
	s.deletions += o.deletions
	s.witnessFlips += o.witnessFlips
	s.resumes += o.resumes
	s.readFailures += o.readFailures
	s.maxEpoch = max(s.maxEpoch, o.maxEpoch)
	s.events += o.events
	s.stagesRun += o.stagesRun
	s.stageSwitches += o.stageSwitches
	s.stageWaits += o.stageWaits
	s.stageTimeouts += o.stageTimeouts
}

func (s qStats) String() string {
	return fmt.Sprintf("%d events; served by sh-kiel %s, by mv-schwerin %s, by nobody %s (%s of it while a majority of sites was connected, at most %s at a stretch); "+
		"served with a witness %s, without %s; promotions %d, hand-overs %d, hand-overs refused %d, claims given up %d, configurations joined %d and dropped %d; "+
		"fences at the deadline %d; resumptions after a restart %d; recommendations %d; reads failed %d; site losses %d, manager restarts %d, link cuts %d, copies deleted %d, witness changes %d; highest epoch %d; "+
		"runs with promotion stages %d, stages switched %d, waits for a stage %d, stages timed out %d",
		s.events, s.served[0].Round(time.Second), s.served[1].Round(time.Second), s.nobody.Round(time.Second), s.nobodyHealthy.Round(time.Second), s.longestGap.Round(time.Second),
		s.quorumServed.Round(time.Second), s.twoSiteServed.Round(time.Second),
		s.promotions, s.handOvers, s.refused, s.givenUp, s.joins, s.drops, s.deadlineFence, s.resumes, s.recommends, s.readFailures,
		s.crashes, s.restarts, s.cuts, s.deletions, s.witnessFlips, s.maxEpoch,
		s.stagesRun, s.stageSwitches, s.stageWaits, s.stageTimeouts)
}

type qResult struct {
	violation string
	stats     qStats
	trace     []string
}

type qWrite struct {
	w      Write
	sentAt time.Time
}

// qStore is one arbiter's shared record: the service's entry (qEntry) beside another
// service's, which other writers change now and then. Every write goes through
// ApplyEntryWrites, as the keeper's shared records do.
type qStore struct {
	entries map[string]LeaseRecord
	rev     int
}

const (
	qEntry      = "buergerkonto/buergerkonto"
	qNeighbour  = "kfz/zulassung"
	noiseWriter = "another service"
)

func (st *qStore) rec() LeaseRecord { return st.entries[qEntry] }

type qSite struct {
	id   int
	name string
	simClock
	policy      Policy
	up          bool
	incarnation int

	// The cluster's state: survives a manager restart, not a site loss. stages are the
	// service's promotion stages, last the objects in no stage; serving is set while any of
	// them is in its active form.
	stages   []qStage
	serving  bool
	fencing  bool
	fenceGen int
	// recorded is the SharedService's status.lease: set once this site wrote a copy.
	recorded bool
	// witness is whether this site's copy of the SharedService names the witness.
	witness bool

	// The manager's memory. activeSince is when it first saw each stage active.
	activeSince       []time.Time
	state             ServiceState
	inflight          map[string]*qWrite
	reads             map[string]*qRead
	peerFailures      int32
	ownFailures       int32
	stalled           bool
	justStarted       bool
	handOverRequested bool
	takeOverRequested bool
	lastReason        string

	sick bool
	// staleCopy and partnerLagging are what the controller would learn from the copies'
	// ages: this site's copy was older than the RPO, the partner's copy is.
	staleCopy, partnerLagging bool

	stepPending bool
	stepAt      time.Duration
	stepGen     int
}

// qStage is one promotion stage at one site: whether its objects are in active form, and
// whether its data layer reports it ready.
type qStage struct {
	active, ready bool
	gen           int
}

// qStageSpec is one stage as the service declares it: whether it has a readiness rule, and
// its timeout.
type qStageSpec struct {
	rule    bool
	timeout time.Duration
}

type qSim struct {
	simCore
	world  qWorld
	rules  qRules
	stages []qStageSpec
	last   time.Duration
	gap    time.Duration
	stores [qSites]qStore
	sites  [2]*qSite
	siteUp [qSites]bool
	linkUp [qSites][qSites]bool
	result qResult
}

func simulateQuorum(seed uint64, world qWorld, rules qRules, tracing bool) qResult {
	s := &qSim{world: world, rules: rules, simCore: simCore{rng: rand.New(rand.NewPCG(seed, 0x9a0)), tracing: tracing}}
	for i := range qSites {
		s.siteUp[i] = true
		for j := range qSites {
			s.linkUp[i][j] = true
		}
	}
	policy := rules.policy
	policy.Mode = deichv1alpha1.FailoverAutomatic
	if s.rng.IntN(4) == 0 {
		policy.Mode = deichv1alpha1.FailoverManual
	}
	for range s.rng.IntN(world.stagesMax + 1) {
		spec := qStageSpec{rule: s.chance(0.8)}
		if s.chance(0.7) {
			spec.timeout = s.uniform(time.Second, 30*time.Second)
		}
		s.stages = append(s.stages, spec)
	}
	if len(s.stages) > 0 {
		s.result.stats.stagesRun++
	}
	s.stages = append(s.stages, qStageSpec{}) // the objects in no stage
	for i := range 2 {
		s.sites[i] = &qSite{
			id: i, name: qNames[i], up: true, justStarted: true, policy: policy, witness: world.witness,
			simClock: simClock{
				offset: s.uniform(-world.offsetMax, world.offsetMax),
				rate:   world.clockRate[i][0] + s.rng.Float64()*(world.clockRate[i][1]-world.clockRate[i][0]),
			},
			inflight: map[string]*qWrite{}, reads: map[string]*qRead{},
			stages: make([]qStage, len(s.stages)), activeSince: make([]time.Time, len(s.stages)),
		}
		s.sites[i].state = s.freshState(s.sites[i])
	}
	// In half the runs the primary's workloads ran before the service was put under
	// protection, so they serve from the start.
	if s.rng.IntN(2) == 0 {
		for i := range s.sites[0].stages {
			s.sites[0].stages[i] = qStage{active: true, ready: true}
		}
		s.sites[0].serving = true
		s.logf("start: the primary's workloads already serve")
	}
	s.logf("start: mode %s, witness %t", policy.Mode, world.witness)
	for _, x := range s.sites {
		s.wake(x, s.uniform(0, time.Second))
		s.scheduleHealth(x)
		s.scheduleSwitchover(x)
		if len(rules.leaseDurations) > 0 {
			s.scheduleLeaseChange(x)
		}
		if world.faults {
			s.scheduleManagerRestart(x)
		}
	}
	for a := range qSites {
		s.scheduleNoise(a)
	}
	if world.faults {
		for i := range qSites {
			s.scheduleCrash(i)
			if world.deletions {
				s.scheduleDeletion(i)
			}
		}
		s.scheduleCut()
	}
	if world.witnessChanges {
		s.scheduleWitnessChange()
	}
	s.run()
	s.result.trace = s.trace
	return s.result
}

func (s *qSim) freshState(x *qSite) ServiceState {
	return ServiceState{Site: x.name, Partner: qNames[1-x.id], Primary: x.id == 0, Arbiters: map[string]Arbiter{}}
}

func (s *qSim) run() {
	for len(s.queue) > 0 {
		e := heap.Pop(&s.queue).(*simEvent)
		if e.at > s.world.duration {
			s.account(s.world.duration)
			return
		}
		s.account(e.at)
		s.now = e.at
		e.fn()
		s.result.stats.events++
		if a, b := s.sites[0], s.sites[1]; a.serving && b.serving {
			s.result.violation = fmt.Sprintf("at %s both sites serve (sh-kiel: epoch %d configs %s; mv-schwerin: epoch %d configs %s)",
				s.now, a.state.Claim.Epoch, formatConfigList(a.state.Claim.Configs), b.state.Claim.Epoch, formatConfigList(b.state.Claim.Configs))
			s.logf("VIOLATION: %s", s.result.violation)
			return
		}
		for _, x := range s.sites {
			for i := 1; i < len(x.stages) && !s.rules.orderUnchecked; i++ {
				if x.stages[i].active && !x.stages[i-1].active {
					s.result.violation = fmt.Sprintf("at %s %s's stage %d is active while stage %d is not", s.now, x.name, i, i-1)
					s.logf("VIOLATION: %s", s.result.violation)
					return
				}
			}
		}
	}
}

func (s *qSim) account(until time.Duration) {
	d := until - s.last
	s.last = until
	served := false
	for i, x := range s.sites {
		if x.serving {
			s.result.stats.served[i] += d
			served = true
			if len(x.state.Claim.Configs) > 0 && len(x.state.Claim.Configs[len(x.state.Claim.Configs)-1]) > 1 {
				s.result.stats.quorumServed += d
			} else {
				s.result.stats.twoSiteServed += d
			}
		}
	}
	if !served {
		s.result.stats.nobody += d
		if s.majorityConnected() {
			s.result.stats.nobodyHealthy += d
			if s.gap < time.Minute && s.gap+d >= time.Minute {
				s.logf("nobody has served for a minute while a majority of sites is connected")
			}
			s.gap += d
			s.result.stats.longestGap = max(s.result.stats.longestGap, s.gap)
			return
		}
	}
	s.gap = 0
}

// majorityConnected reports whether a healthy partner is up with a majority of the three
// clusters up and reachable from it.
func (s *qSim) majorityConnected() bool {
	for i, x := range s.sites {
		if !x.up || x.sick {
			continue
		}
		n := 0
		for j := range qSites {
			if s.siteUp[j] && (i == j || s.linkUp[i][j]) {
				n++
			}
		}
		if n >= 2 {
			return true
		}
	}
	return false
}

func (s *qSim) clock(x *qSite) time.Time { return x.simClock.at(s.now) }

func (s *qSim) realAt(x *qSite, t time.Time) time.Duration { return x.simClock.realAt(s.now, t) }

func (s *qSim) wake(x *qSite, t time.Duration) {
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

func siteIndex(name string) int {
	return slices.Index(qNames[:], name)
}

// send delivers a message between site from and site to after a delay, unless it is lost
// or the link between them is cut (at sending or at delivery).
func (s *qSim) send(from, to int, deliver func()) {
	delay := s.uniform(0, s.world.localDelayMax)
	drop := s.world.dropRate / 5
	if from != to {
		drop = s.world.dropRate
		delay = s.uniform(time.Millisecond, 100*time.Millisecond)
		if s.chance(0.1) {
			delay = s.uniform(100*time.Millisecond, s.world.linkDelayMax)
		}
		if !s.linkUp[from][to] {
			return
		}
	}
	if s.chance(drop) {
		return
	}
	s.at(s.now+delay, func() {
		if from != to && !s.linkUp[from][to] {
			return
		}
		deliver()
	})
}

// request sends a request from site x's manager to arbiter a's API server and its answer
// back to the same manager process.
func (s *qSim) request(x *qSite, a int, handle func() func()) {
	inc := x.incarnation
	s.send(x.id, a, func() {
		if !s.siteUp[a] {
			return
		}
		answer := handle()
		s.send(a, x.id, func() {
			if x.up && x.incarnation == inc {
				answer()
			}
		})
	})
}

func (s *qSim) commit(a int, rec LeaseRecord) (LeaseRecord, bool) {
	st := &s.stores[a]
	batch := []EntryWrite{{Key: qEntry, Record: rec}}
	if s.chance(0.2) {
		// Another service's write of the same record goes in the same batch.
		noise := EntryWrite{Key: qNeighbour, Record: RenewedRecord(st.entries[qNeighbour], noiseWriter, s.rules.policy, time.Time{})}
		batch = append(batch, noise)
		if s.chance(0.5) {
			batch[0], batch[1] = batch[1], batch[0]
		}
	}
	res := s.applyBatch(a, batch)
	got := res[slices.IndexFunc(batch, func(w EntryWrite) bool { return w.Key == qEntry })]
	if !got.OK {
		return got.Record, false
	}
	rec = got.Record
	s.result.stats.maxEpoch = max(s.result.stats.maxEpoch, rec.Epoch)
	s.logf("%s's copy is now holder %q epoch %d configs %s rv %s", qNames[a], rec.Holder, rec.Epoch, FormatConfigs(rec.Configs), rec.ResourceVersion)
	s.notify(a)
	return rec, true
}

// applyBatch stores a batch of entry writes in arbiter a's shared record.
func (s *qSim) applyBatch(a int, batch []EntryWrite) []EntryResult {
	st := &s.stores[a]
	next, res := s.rules.applyEntries(st.entries, batch, func() string {
		st.rev++
		return strconv.Itoa(st.rev)
	})
	st.entries = next
	return res
}

// scheduleNoise has another service write its entry in arbiter a's record now and then.
func (s *qSim) scheduleNoise(a int) {
	s.at(s.now+s.uniform(time.Second, 20*time.Second), func() {
		if s.siteUp[a] {
			st := &s.stores[a]
			s.applyBatch(a, []EntryWrite{{Key: qNeighbour, Record: RenewedRecord(st.entries[qNeighbour], noiseWriter, s.rules.policy, time.Time{})}})
		}
		s.scheduleNoise(a)
	})
}

// notify sends arbiter a's copy to both managers' watches.
func (s *qSim) notify(a int) {
	cur := s.stores[a].rec()
	for _, x := range s.sites {
		inc := x.incarnation
		s.send(a, x.id, func() {
			if x.up && x.incarnation == inc {
				s.observe(x, a, cur)
			}
		})
	}
}

// qRead is a read on its way, as the manager remembers it.
type qRead struct{ sentAt time.Time }

// read asks arbiter a for its copy. A read that gets no answer within the request timeout
// fails (ReadFailed, at the manager's next step), and an answer that comes later is dropped,
// as the keeper's call timeout does.
func (s *qSim) read(x *qSite, a int) {
	name := qNames[a]
	if x.reads[name] != nil {
		return
	}
	qr := &qRead{sentAt: s.clock(x)}
	x.reads[name] = qr
	s.request(x, a, func() func() {
		cur := s.stores[a].rec()
		return func() {
			if x.reads[name] != qr {
				return
			}
			delete(x.reads, name)
			s.observe(x, a, cur)
		}
	})
}

func (s *qSim) observe(x *qSite, a int, rec LeaseRecord) {
	x.state.Fenced = !x.serving
	x.state = x.state.Observed(qNames[a], rec, s.clock(x))
	s.wake(x, s.now+s.uniform(0, 20*time.Millisecond))
}

func (s *qSim) write(x *qSite, w Write) {
	if x.inflight[w.Arbiter] != nil {
		return
	}
	a := siteIndex(w.Arbiter)
	qw := &qWrite{w: w, sentAt: s.clock(x)}
	x.inflight[w.Arbiter] = qw
	x.state = x.state.Sending(w)
	s.logf("%s sends %s to %s on rv %q (epoch %d, configs %s)", x.name, w.Kind, w.Arbiter, w.Record.ResourceVersion, w.Record.Epoch, FormatConfigs(w.Record.Configs))
	s.request(x, a, func() func() {
		got, ok := s.commit(a, qw.w.Record)
		return func() { s.written(x, qw, got, ok) }
	})
}

func (s *qSim) written(x *qSite, qw *qWrite, got LeaseRecord, ok bool) {
	if x.inflight[qw.w.Arbiter] != qw {
		return
	}
	delete(x.inflight, qw.w.Arbiter)
	before := x.state.Claim.Configs
	x.state.Fenced = !x.serving
	x.state = x.state.Written(qw.w, qw.sentAt, ok, got, s.clock(x))
	if s.rules.forgetInherited && qw.w.inherits && len(before) > 0 {
		x.state.Claim.Configs = before
	}
	s.logf("%s: %s at %s succeeded %t", x.name, qw.w.Kind, qw.w.Arbiter, ok)
	s.wake(x, s.now)
}

// serve acts on a decision that serves: it switches the promotion's stages with NextStage,
// within the decision, as the keeper does (S1, S3).
func (s *qSim) serve(x *qSite) {
	if x.fencing {
		x.fencing = false
		x.fenceGen++
	}
	x.recorded = true
	now := s.clock(x)
	for {
		step := NextStage(s.stageViews(x, now), now)
		if step.Switch < 0 {
			if step.Waiting >= 0 {
				s.result.stats.stageWaits++
				if step.TimedOut && !x.stalled {
					x.stalled = true
					s.result.stats.stageTimeouts++
					s.logf("%s's promotion stops at stage %d, not ready in time", x.name, step.Waiting)
				}
			}
			return
		}
		s.switchStage(x, step.Switch)
	}
}

// stageViews is what site x's manager sees of its stages at its clock's now.
func (s *qSim) stageViews(x *qSite, now time.Time) []StageView {
	views := make([]StageView, len(x.stages))
	for i, st := range x.stages {
		switch {
		case !st.active:
			x.activeSince[i] = time.Time{}
			views[i].Standby = 1
		case x.activeSince[i].IsZero():
			x.activeSince[i] = now
			fallthrough
		default:
			views[i].Active = 1
		}
		views[i].Ready, views[i].ActiveSince, views[i].Timeout = st.ready, x.activeSince[i], s.stages[i].timeout
	}
	return views
}

// switchStage puts stage i of site x into its active form. A stage without a readiness
// rule is ready at once; one with a rule becomes ready after a while, or never, and wakes
// the keeper when it does.
func (s *qSim) switchStage(x *qSite, i int) {
	st := &x.stages[i]
	st.active, st.gen = true, st.gen+1
	s.result.stats.stageSwitches++
	s.logf("%s switches stage %d to its active form (epoch %d)", x.name, i, x.state.Claim.Epoch)
	s.setServing(x)
	if !s.stages[i].rule {
		st.ready = true
		return
	}
	if s.chance(s.world.neverReady) {
		return
	}
	gen := st.gen
	s.at(s.now+s.uniform(0, s.world.readyDelayMax), func() {
		if st.gen != gen || !st.active {
			return
		}
		st.ready = true
		s.logf("%s's stage %d is ready", x.name, i)
		if s.rules.stageRunner && i+1 < len(x.stages) {
			s.at(s.now+s.uniform(0, time.Second), func() {
				if !x.stages[i+1].active {
					s.switchStage(x, i+1)
				}
			})
		}
		if x.up {
			s.wake(x, s.now)
		}
	})
}

// setServing keeps x.serving true to its stages: set while any is in its active form.
func (s *qSim) setServing(x *qSite) {
	serving := slices.ContainsFunc(x.stages, func(st qStage) bool { return st.active })
	switch {
	case serving && !x.serving:
		s.logf("%s starts serving (epoch %d, configs %s)", x.name, x.state.Claim.Epoch, formatConfigList(x.state.Claim.Configs))
	case !serving && x.serving:
		s.logf("%s has stopped serving", x.name)
		x.stalled = false
	}
	x.serving = serving
}

// fence switches site x's stages to their standby form, one after the other with
// NextFence, without waiting for any readiness (S2); the whole fence takes up to
// fenceLatencyMax.
func (s *qSim) fence(x *qSite) {
	if !x.serving || x.fencing {
		return
	}
	x.fencing = true
	x.fenceGen++
	gen := x.fenceGen
	s.logf("%s fences", x.name)
	per := s.world.fenceLatencyMax / time.Duration(len(x.stages))
	var next func()
	next = func() {
		i := NextFence(s.stageViews(x, s.clock(x)))
		if s.rules.fenceForward {
			i = slices.IndexFunc(x.stages, func(st qStage) bool { return st.active })
		}
		if i < 0 {
			x.fencing = false
			s.wake(x, s.now)
			return
		}
		s.at(s.now+s.uniform(0, per), func() {
			if x.fenceGen != gen || !x.fencing {
				return
			}
			x.stages[i] = qStage{gen: x.stages[i].gen + 1}
			s.setServing(x)
			next()
		})
	}
	next()
}

// target is the configuration site x's spec asks for, as the keeper computes it.
func (s *qSim) target(x *qSite) Config {
	if x.witness {
		return QuorumConfig(qNames[0], qNames[1], qNames[2])
	}
	return TwoSiteConfig(qNames[1-x.id])
}

// step is one turn of site x's keeper: observe, step, act.
func (s *qSim) step(x *qSite) {
	if !x.up {
		return
	}
	now := s.clock(x)
	for _, a := range slices.Sorted(maps.Keys(x.inflight)) {
		if qw := x.inflight[a]; now.Sub(qw.sentAt) >= s.world.requestTimeout {
			s.logf("%s gives up on its %s at %s", x.name, qw.w.Kind, a)
			delete(x.inflight, a)
			x.state = x.state.WriteFailed(qw.w)
		}
	}
	for _, a := range slices.Sorted(maps.Keys(x.reads)) {
		if now.Sub(x.reads[a].sentAt) >= s.world.requestTimeout {
			s.logf("%s gives up on its read of %s", x.name, a)
			delete(x.reads, a)
			x.state = x.state.ReadFailed(a)
			s.result.stats.readFailures++
		}
	}
	st := x.state
	st.Target = s.target(x)
	for _, a := range st.needed() {
		if _, ok := st.Arbiters[a]; !ok {
			st.Arbiters = cloneArbiters(st.Arbiters)
			st.Arbiters[a] = Arbiter{}
		}
	}
	if x.justStarted || s.chance(0.1) {
		x.justStarted = false
		for _, a := range slices.Sorted(maps.Keys(st.Arbiters)) {
			s.read(x, siteIndex(a))
		}
	}
	if s.chance(0.5) {
		s.probe(x)
	}
	other := s.sites[1-x.id]
	st.Primary = x.id == 0
	st.Unclaimed = x.id == 0 && !x.recorded
	st.Fenced = !x.serving
	st.ChecksFailing, st.PeerChecksFailing = x.ownFailures, x.peerFailures
	st.HandOverRequested, st.TakeOverRequested = x.handOverRequested, x.takeOverRequested
	// What the controller knows of the partner's readiness and of its own copy's age
	// depends loosely on the world, and is otherwise random: safety must not depend on it.
	st.PartnerReady = other.up && !other.sick && !x.partnerLagging || x.partnerLagging && x.staleCopy
	st.CopyWithinRPO = !x.staleCopy
	// Writes of the arbiters' shared records for other services come and go.
	st.Batch = nil
	for _, a := range qNames {
		if s.chance(0.2) {
			if st.Batch == nil {
				st.Batch = map[string]bool{}
			}
			st.Batch[a] = true
		}
	}

	before := st
	next, plan := Step(x.policy, st, now)
	if s.rules.mutate != nil {
		next, plan = s.rules.mutate(x.policy, before, next, plan, now)
	}
	x.state = next
	s.count(x, before, next, plan)
	if s.world.faults && plan.Serve && !stampsEqual(before.Claim.Configs, next.Claim.Configs) && s.chance(0.5) {
		// The worst moment for a cut: a serving claim has just changed its configurations.
		// Most often the partners' link: the one a claim that has just changed its
		// configurations needs its stamps to cross.
		link := 0
		if s.chance(0.5) {
			link = s.rng.IntN(qSites)
		}
		s.at(s.now+s.uniform(0, time.Second), func() { s.cut(link) })
	}
	switch {
	case plan.Serve:
		s.serve(x)
	case plan.Hold:
		// A restarted manager leaves the copy as its predecessor left it.
	default:
		s.fence(x)
	}
	for _, w := range plan.Writes {
		if w.Kind == WriteRelease && x.serving && !s.rules.releaseBeforeFence {
			continue
		}
		s.write(x, w)
	}
	if s.rules.releaseBeforeFence && next.Claim.Releasing {
		for _, a := range slices.Sorted(maps.Keys(next.Arbiters)) {
			if rec := next.Arbiters[a].Observation.Record; rec.HeldBy(x.name) {
				s.write(x, Write{Arbiter: a, Kind: WriteRelease, Record: ReleasedRecord(rec, now)})
			}
		}
	}
	s.wake(x, s.now+s.uniform(time.Millisecond, 500*time.Millisecond))
	if plan.NextCheck.After(now) {
		s.wake(x, s.realAt(x, plan.NextCheck))
	}
}

func (s *qSim) count(x *qSite, before, after ServiceState, plan Plan) {
	st := &s.result.stats
	if plan.Reason != x.lastReason {
		s.logf("%s: %s: %s", x.name, plan.Reason, plan.Message)
		switch plan.Reason {
		case PlanHandingOver:
			st.handOvers++
		case PlanHandOverRefused:
			st.refused++
		case PlanGivingUp:
			st.givenUp++
		case PlanResuming:
			st.resumes++
		case PlanRecommend:
			st.recommends++
		case PlanFenceDeadline:
			if x.serving {
				st.deadlineFence++
			}
		}
		x.lastReason = plan.Reason
	}
	if plan.Serve && !before.Claim.Established {
		st.promotions++
	}
	if before.Claim.Epoch == after.Claim.Epoch && before.Claim.Established {
		if len(after.Claim.Configs) > len(before.Claim.Configs) {
			st.joins++
		}
		if len(before.Claim.Configs) > 1 && len(after.Claim.Configs) == 1 {
			st.drops++
		}
	}
}

func (s *qSim) probe(x *qSite) {
	other := s.sites[1-x.id]
	own := s.chance(0.03) || x.sick && s.chance(0.9)
	peer := s.chance(0.1) || (!s.linkUp[0][1] || !other.serving || other.sick) && s.chance(0.9)
	x.ownFailures = failures(x.ownFailures, own)
	x.peerFailures = failures(x.peerFailures, peer)
}

func (s *qSim) scheduleHealth(x *qSite) {
	s.at(s.now+s.uniform(5*time.Second, 90*time.Second), func() {
		x.sick = !x.sick && s.chance(0.5)
		x.staleCopy, x.partnerLagging = s.chance(0.1), s.chance(0.1)
		s.scheduleHealth(x)
	})
}

func (s *qSim) scheduleSwitchover(x *qSite) {
	s.at(s.now+s.uniform(time.Minute, 5*time.Minute), func() {
		other := s.sites[1-x.id]
		if x.handOverRequested || other.takeOverRequested {
			// One Switchover at a time, as the Switchover controller allows.
			s.scheduleSwitchover(x)
			return
		}
		x.takeOverRequested, other.handOverRequested = true, true
		s.logf("Switchover to %s", x.name)
		s.at(s.now+s.uniform(5*time.Second, 40*time.Second), func() {
			x.takeOverRequested, other.handOverRequested = false, false
			s.scheduleSwitchover(x)
		})
	})
}

func (s *qSim) scheduleLeaseChange(x *qSite) {
	s.at(s.now+s.uniform(20*time.Second, 3*time.Minute), func() {
		x.policy.LeaseDuration = s.rules.leaseDurations[s.rng.IntN(len(s.rules.leaseDurations))]
		s.scheduleLeaseChange(x)
	})
}

// scheduleWitnessChange adds or removes the witness: one partner's copy of the
// SharedService learns it first, the other up to specLagMax later.
func (s *qSim) scheduleWitnessChange() {
	s.at(s.now+s.uniform(30*time.Second, 4*time.Minute), func() {
		first := s.sites[s.rng.IntN(2)]
		want := !first.witness
		s.result.stats.witnessFlips++
		s.logf("%s's spec: witness %t", first.name, want)
		first.witness = want

		second := s.sites[1-first.id]
		s.at(s.now+s.uniform(0, s.world.specLagMax), func() {
			if first.witness == want {
				second.witness = want
				s.logf("%s's spec: witness %t", second.name, want)
			}
			s.scheduleWitnessChange()
		})
	})
}

func (s *qSim) forget(x *qSite) {
	x.incarnation++
	x.activeSince = make([]time.Time, len(x.stages))
	x.stalled = false
	x.state = s.freshState(x)
	x.inflight, x.reads = map[string]*qWrite{}, map[string]*qRead{}
	x.ownFailures, x.peerFailures = 0, 0
	x.justStarted, x.lastReason = true, ""
	// A manager that has just started may hold its copy as it is for the restart's share
	// of the fence latency.
	x.state.HoldUntil = s.clock(x).Add(s.world.restartDelayMax)
}

// scheduleCrash loses site i for a while: its cluster's API server, and for a partner its
// workloads and manager.
func (s *qSim) scheduleCrash(i int) {
	s.at(s.now+s.uniform(2*time.Minute, 10*time.Minute), func() {
		s.result.stats.crashes++
		s.logf("%s is lost", qNames[i])
		s.siteUp[i] = false
		if i < 2 {
			x := s.sites[i]
			x.up, x.serving, x.fencing = false, false, false
			for j := range x.stages {
				x.stages[j] = qStage{gen: x.stages[j].gen + 1}
			}
			x.fenceGen++
			x.stepGen++
			x.stepPending = false
			s.forget(x)
		}
		s.at(s.now+s.uniform(5*time.Second, 2*time.Minute), func() {
			s.logf("%s is back", qNames[i])
			s.siteUp[i] = true
			if i < 2 {
				s.sites[i].up = true
				s.wake(s.sites[i], s.now)
			}
			s.scheduleCrash(i)
		})
	})
}

func (s *qSim) scheduleManagerRestart(x *qSite) {
	s.at(s.now+s.uniform(time.Minute, 6*time.Minute), func() {
		if x.up {
			s.result.stats.restarts++
			s.logf("%s's manager restarts", x.name)
			s.forget(x)
			x.stepGen++
			x.stepPending = false
			s.wake(x, s.now+s.uniform(0, s.world.restartDelayMax))
		}
		s.scheduleManagerRestart(x)
	})
}

// scheduleCut cuts one of the three links for a while.
func (s *qSim) scheduleCut() {
	s.at(s.now+s.uniform(10*time.Second, 2*time.Minute), func() {
		s.cut(s.rng.IntN(qSites))
		s.scheduleCut()
	})
}

// cut cuts the link between site i and the next for up to a minute.
func (s *qSim) cut(i int) {
	j := (i + 1) % qSites
	if !s.linkUp[i][j] {
		return
	}
	s.result.stats.cuts++
	s.linkUp[i][j], s.linkUp[j][i] = false, false
	s.logf("the link between %s and %s is cut", qNames[i], qNames[j])
	s.at(s.now+s.uniform(time.Second, time.Minute), func() {
		s.linkUp[i][j], s.linkUp[j][i] = true, true
		s.logf("the link between %s and %s is back", qNames[i], qNames[j])
	})
}

// scheduleDeletion deletes arbiter i's copy by hand now and then.
func (s *qSim) scheduleDeletion(i int) {
	s.at(s.now+s.uniform(5*time.Minute, 30*time.Minute), func() {
		if s.siteUp[i] && s.stores[i].rec().Exists() {
			s.result.stats.deletions++
			s.applyBatch(i, []EntryWrite{{Key: qEntry, Delete: true}})
			s.logf("someone deletes %s's copy", qNames[i])
			s.notify(i)
		}
		s.scheduleDeletion(i)
	})
}
