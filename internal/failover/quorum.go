package failover

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Config is one configuration of arbiters: the sites whose clusters each store a copy of a
// service's lease. A site serving under a configuration holds a majority of it. Configs are
// sorted and free of duplicates (NewConfig), so that equal sets compare equal.
type Config []string

// NewConfig returns the configuration of the given sites, sorted, without duplicates,
// surrounding spaces and empty names.
func NewConfig(sites ...string) Config {
	c := make(Config, 0, len(sites))
	for _, s := range sites {
		if s = strings.TrimSpace(s); s != "" {
			c = append(c, s)
		}
	}
	slices.Sort(c)
	return slices.Compact(c)
}

// TwoSiteConfig is the configuration of a service without a witness, as a site's target: the
// single copy at its partner's cluster, the standby's while this site serves.
func TwoSiteConfig(standby string) Config { return NewConfig(standby) }

// QuorumConfig is the configuration of a service with a witness: a lease on each partner's
// cluster and on the witness's.
func QuorumConfig(primary, standby, witness string) Config {
	return NewConfig(primary, standby, witness)
}

// Majority is how many of the configuration's arbiters make a majority.
func (c Config) Majority() int { return len(c)/2 + 1 }

// Has reports whether site is one of the configuration's arbiters.
func (c Config) Has(site string) bool { return slices.Contains(c, site) }

// Equal reports whether c and o are the same set of arbiters.
func (c Config) Equal(o Config) bool { return slices.Equal(c, o) }

// String lists the arbiters, comma-separated, as the lease's annotation stores them.
func (c Config) String() string { return strings.Join(c, ",") }

// ParseConfigs reads a list of configurations as FormatConfigs writes it:
// configurations separated by ";", their sites by ",". Empty parts are skipped.
func ParseConfigs(s string) []Config {
	var out []Config
	for part := range strings.SplitSeq(s, ";") {
		if c := NewConfig(strings.Split(part, ",")...); len(c) > 0 {
			out = addConfigs(out, c)
		}
	}
	return out
}

// FormatConfigs writes a list of configurations for the lease's annotation.
func FormatConfigs(cs []Config) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ";")
}

func hasConfig(cs []Config, c Config) bool {
	return slices.ContainsFunc(cs, c.Equal)
}

// addConfigs returns cs followed by those of add it lacks, in order; cs is not modified.
func addConfigs(cs []Config, add ...Config) []Config {
	out := slices.Clone(cs)
	for _, c := range add {
		if len(c) > 0 && !hasConfig(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// Arbiter is what this manager process knows of one arbiter's copy of the lease.
type Arbiter struct {
	// Observation is the copy as last read (Observe).
	Observation Observation
	// Renewal is this process's last write of this copy that succeeded, lowered by every
	// write sent since (Renewal.Sending); zero when there is none, or the copy names another
	// site or nobody.
	Renewal Renewal
	// Unreachable is set while the last read of this copy failed (ReadFailed) and no read
	// or write of it has answered since.
	Unreachable bool
}

// Claim is a site's attempt to serve: from the decision to promote (or from finding, after a
// restart, copies that name this site) until it has handed over or given up.
type Claim struct {
	// Epoch is the claim's fencing token: every write of the claim carries it, and only
	// copies written with it count towards a majority. A later claim that could serve has a
	// higher epoch than every earlier one that did.
	Epoch int64
	// Configs are the configurations this site must hold a majority of, each, to serve:
	// those it inherited from the copies it took over, and its own target while it moves to
	// it. Every write of the claim stamps them on the copy.
	Configs []Config
	// Established is set once the site served on this claim.
	Established bool
	// Releasing is set while the site gives the claim up: once its fence has taken effect it
	// releases every copy that names it.
	Releasing bool
	// Resuming is set while a manager that has just started, and found copies naming this
	// site while the service's copy still serves, tries its first renewals: until the claim
	// can serve or one of those writes failed, the site neither serves nor fences
	// (Plan.Hold). A compare-and-swap that succeeds on the record the predecessor wrote
	// proves no other site took that copy since, so its workloads may go on serving.
	Resuming bool
}

// ServiceState is everything one site's manager knows about one service's lease: the input
// of Step, and, updated, its output. It holds times of this process's clock only (see the
// package documentation) and dies with the process.
type ServiceState struct {
	// Site is this site's name; Partner the other partner's; Primary is set at the
	// service's primary site.
	Site, Partner string
	Primary       bool
	// Target is the configuration this site's spec asks for: QuorumConfig with a witness,
	// TwoSiteConfig(Partner) otherwise.
	Target Config
	// Arbiters holds what this process knows of each arbiter's copy, by site name. Step adds
	// the arbiters it needs.
	Arbiters map[string]Arbiter
	// Claim is this site's current claim; the zero Claim when it has none.
	Claim Claim
	// OwnRead is set once this process read its own cluster's copy, or failed to
	// (ReadFailed). Until then a manager that has just started leaves a serving copy of the
	// service as it is (Plan.Hold): it cannot know yet whether the copies name its site.
	OwnRead bool
	// HoldUntil bounds, by this site's clock, how long a manager that has just started may
	// leave a serving copy as it is (while OwnRead is unset, or Claim.Resuming): the keeper
	// sets it to its start plus its share of the fence latency in the timing budget, since
	// the predecessor's fence deadline is unknown to it.
	HoldUntil time.Time

	// Unclaimed is set at the primary when no lease was ever recorded for the service: the
	// service has just been put under protection, so the primary creates missing copies at
	// once.
	Unclaimed bool
	// Fenced reports that this site's copy of the service is in standby form: a fence has
	// taken effect. The keeper keeps it current before every Observed, Written and Step.
	Fenced bool
	// ChecksFailing is how many of this site's own health checks failed in a row, and
	// PeerChecksFailing how many of its checks of the partner did (a probe that could not
	// run counts as failed).
	ChecksFailing, PeerChecksFailing int32
	// HandOverRequested is set while a Switchover moves the service away from this site,
	// TakeOverRequested while one moves it here.
	HandOverRequested, TakeOverRequested bool
	// PartnerReady is set while the partner can serve: it is reachable, Ready, and holds a
	// copy of the service within the RPO. Without it this site never hands over on its own
	// failing checks.
	PartnerReady bool
	// CopyWithinRPO is set while this site's copy of the service was within the RPO when the
	// partner was last seen healthy. Without it the site does not promote on failing checks
	// of the partner; it recommends a failover instead.
	CopyWithinRPO bool
	// CopyAge is how old this site's copy was when the partner was last seen healthy, zero
	// when unknown. Only messages read it; CopyWithinRPO decides.
	CopyAge time.Duration
	// SyncedAt is when this site last confirmed its partner's copy of the service complete,
	// while it serves; zero otherwise. Every renewal and acquisition carries it
	// (LeaseRecord.SyncedAt). Like the health inputs, no decision reads it.
	SyncedAt time.Time
	// Batch names the arbiters where this site's copy is an entry of a shared record to which
	// a write for another service is about to be sent: a renewal there that would fall due
	// within half a renewal interval joins that write, so that the services of one record
	// renew together. Like the health inputs, it only chooses when writes are sent.
	Batch map[string]bool
}

// WriteKind says what a lease write does.
type WriteKind int

const (
	// WriteRenew renews a copy that names this site.
	WriteRenew WriteKind = iota
	// WriteAcquire takes a free copy (released or expired) or creates a missing one.
	WriteAcquire
	// WriteRelease gives up a copy that names this site.
	WriteRelease
)

// String returns the kind's name, for logs.
func (k WriteKind) String() string {
	switch k {
	case WriteRenew:
		return "renew"
	case WriteAcquire:
		return "acquire"
	case WriteRelease:
		return "release"
	}
	return fmt.Sprintf("WriteKind(%d)", int(k))
}

// Write is one lease write a Plan asks for: Record, compare-and-swapped on its
// ResourceVersion (created when it is empty) at the cluster of Arbiter.
type Write struct {
	Arbiter string
	Kind    WriteKind
	Record  LeaseRecord
	// inherits is set on a write of this site's own cluster's copy decided while the claim
	// could not serve: it stamps the configurations of the copy it overwrites as well, and
	// once it succeeded the claim must hold a majority of them too.
	inherits bool
}

// Plan is what Step asks the keeper to do.
type Plan struct {
	// Serve reports that the site may serve until NextCheck; otherwise it must fence at
	// once, unless Hold is set.
	Serve bool
	// Hold asks the keeper to leave the service's copy in the form it has, neither serving
	// nor fencing anew: a manager that has just started waits for its first renewals
	// (Claim.Resuming).
	Hold bool
	// Writes are the lease writes to send now, at most one per arbiter. The keeper drops
	// those for arbiters that have a write in flight, and calls Sending before it sends.
	Writes []Write
	// NextCheck is the latest time to step again if nothing else happens: the next renewal
	// or the fence deadline while serving, the expiry of a copy this site waits for
	// otherwise. Zero when only a new observation or a write's outcome can change the plan.
	NextCheck time.Time
	// Held is how many arbiters of the target configuration this site holds a valid copy of
	// (for status, e.g. "2/3").
	Held int
	// Recommend is set when failover mode Manual, or a copy older than the RPO, keeps this
	// site from promoting although its checks of the partner failed.
	Recommend bool
	// Reason is a CamelCase word for the situation and Message a sentence for an SRE; both
	// change only when the situation does.
	Reason, Message string
}

// Reasons a Plan gives.
const (
	PlanServing         = "Serving"
	PlanFenceDeadline   = "NoMajority"
	PlanHandingOver     = "HandingOver"
	PlanPromoting       = "Promoting"
	PlanStandby         = "Standby"
	PlanRecommend       = "FailoverRecommended"
	PlanGivingUp        = "ClaimSuperseded"
	PlanHandOverRefused = "HandOverRefused"
	PlanResuming        = "Resuming"
	PlanProtecting      = "Protecting"
)

// Observed folds a fresh read of the copy at arbiter (rec, read at now) into s. A copy that
// no longer names this site loses its Renewal; a copy that names this site while it has no
// claim (the manager has just started) starts an established claim at the copy's epoch,
// which the site serves on only once it renewed a majority.
func (s ServiceState) Observed(arbiter string, rec LeaseRecord, now time.Time) ServiceState {
	s.Arbiters = cloneArbiters(s.Arbiters)
	if arbiter == s.Site {
		s.OwnRead = true
	}
	a := s.Arbiters[arbiter]
	a.Observation = Observe(a.Observation, rec, now)
	a.Unreachable = false
	if !rec.HeldBy(s.Site) {
		a.Renewal = Renewal{}
	} else if !s.Claim.Releasing && (s.Claim.Epoch == 0 || rec.Epoch > s.Claim.Epoch) {
		// A copy of this site's own, from an earlier process or an earlier attempt: the
		// claim goes on at the copy's epoch, and is established if the copy of the service
		// still serves.
		if s.Claim.Epoch == 0 {
			s.Claim.Established = !s.Fenced
			s.Claim.Resuming = !s.Fenced
		}
		s.Claim.Epoch = max(s.Claim.Epoch, rec.Epoch)
		s.Claim.Configs = addConfigs(s.Claim.Configs, rec.Configs...)
	}
	s.Arbiters[arbiter] = a
	return s
}

// Sending returns s as it must stand while w is on its way (Renewal.Sending).
func (s ServiceState) Sending(w Write) ServiceState {
	s.Arbiters = cloneArbiters(s.Arbiters)
	a := s.Arbiters[w.Arbiter]
	a.Renewal = a.Renewal.Sending(w.Record)
	s.Arbiters[w.Arbiter] = a
	return s
}

// Written folds the outcome of write w, sent at sentAt by this site's clock, into s. ok
// reports that the API server committed it; got is the copy as the API server returned it
// (the committed record, or the current one when the compare-and-swap failed). A write that
// failed otherwise (timed out, could not be sent) is not reported; its Renewal was lowered
// by Sending and stays so.
func (s ServiceState) Written(w Write, sentAt time.Time, ok bool, got LeaseRecord, now time.Time) ServiceState {
	s = s.Observed(w.Arbiter, got, now)
	if !ok || w.Kind == WriteRelease || !got.HeldBy(s.Site) || s.Claim.Releasing {
		if !ok {
			s.Claim.Resuming = false
		}
		return s
	}
	a := s.Arbiters[w.Arbiter]
	a.Renewal = RenewalOf(got, sentAt)
	s.Arbiters[w.Arbiter] = a
	s.Claim.Epoch = max(s.Claim.Epoch, got.Epoch)
	if w.inherits {
		s.Claim.Configs = addConfigs(s.Claim.Configs, got.Configs...)
	}
	return s
}

// ReadFailed folds into s that a read of the copy at arbiter failed; the copy's
// Observation stays as it was, and the copy is Unreachable until a read or write answers.
func (s ServiceState) ReadFailed(arbiter string) ServiceState {
	if arbiter == s.Site {
		s.OwnRead = true
	}
	if a, ok := s.Arbiters[arbiter]; ok {
		s.Arbiters = cloneArbiters(s.Arbiters)
		a.Unreachable = true
		s.Arbiters[arbiter] = a
	}
	return s
}

// WriteFailed folds into s that write w got no answer (it failed, timed out, or could not be
// sent). Its Renewal stays as Sending lowered it; a manager resuming after a restart stops
// holding the service's copy as it is.
func (s ServiceState) WriteFailed(w Write) ServiceState {
	if w.Kind != WriteRelease {
		s.Claim.Resuming = false
	}
	return s
}

func cloneArbiters(m map[string]Arbiter) map[string]Arbiter {
	out := make(map[string]Arbiter, len(m)+3)
	maps.Copy(out, m)
	return out
}

// holds reports whether this site's Renewal at arbiter a is of its claim and lets it serve at
// now, and until when.
func (s ServiceState) holds(p Policy, a string, now time.Time) (time.Time, bool) {
	arb := s.Arbiters[a]
	if s.Claim.Epoch == 0 || arb.Renewal.SentAt.IsZero() || arb.Renewal.Epoch != s.Claim.Epoch ||
		!arb.Observation.Record.HeldBy(s.Site) {
		return time.Time{}, false
	}
	d := FenceDeadline(p, arb.Renewal)
	return d, now.Before(d)
}

// majorityUntil is until when this site holds a majority of c: the Majority()-th latest
// fence deadline among its valid copies in c. Zero when it holds no majority.
func (s ServiceState) majorityUntil(p Policy, c Config, now time.Time) time.Time {
	var ds []time.Time
	for _, a := range c {
		if d, ok := s.holds(p, a, now); ok {
			ds = append(ds, d)
		}
	}
	if len(c) == 0 || len(ds) < c.Majority() {
		return time.Time{}
	}
	slices.SortFunc(ds, func(x, y time.Time) int { return y.Compare(x) })
	return ds[c.Majority()-1]
}

// ServeUntil is until when, by this site's clock, it may serve on what it holds: it holds its
// own cluster's copy and a majority of each of its claim's configurations. Zero when it may
// not serve now.
func (s ServiceState) ServeUntil(p Policy, now time.Time) time.Time {
	if s.Claim.Releasing || len(s.Claim.Configs) == 0 {
		return time.Time{}
	}
	until, ok := s.holds(p, s.Site, now)
	if !ok {
		return time.Time{}
	}
	for _, c := range s.Claim.Configs {
		m := s.majorityUntil(p, c, now)
		if m.IsZero() {
			return time.Time{}
		}
		until = minTime(until, m)
	}
	return until
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// needed are the arbiters this site keeps copies at while it claims: its own cluster, every
// arbiter of its claim's configurations and of its target, in a stable order.
func (s ServiceState) needed() []string {
	set := []string{s.Site}
	for _, c := range append(slices.Clone(s.Claim.Configs), s.Target) {
		set = append(set, c...)
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// maxEpoch is the highest epoch of every copy this site has seen.
func (s ServiceState) maxEpoch() int64 {
	var e int64
	for _, a := range s.Arbiters {
		e = max(e, a.Observation.Record.Epoch)
	}
	return e
}

// Step decides, for one service at one site, whether the site may serve and which lease
// writes to send, and returns the state updated by that decision. It is the rule set of the
// package documentation ("The rules") and owns every one of its rules; the keeper
// only observes, sends, reports outcomes and switches the copy's form.
func Step(p Policy, s ServiceState, now time.Time) (ServiceState, Plan) {
	p = p.normalized()
	s.Arbiters = cloneArbiters(s.Arbiters)
	s.Claim.Configs = slices.Clone(s.Claim.Configs)
	for _, a := range s.needed() {
		if _, ok := s.Arbiters[a]; !ok {
			s.Arbiters[a] = Arbiter{}
		}
	}
	plan := Plan{Held: s.heldOf(p, s.Target, now)}

	if s.Claim.Releasing {
		return s.release(plan, now)
	}
	holding := !s.Fenced && now.Before(s.HoldUntil)
	if !holding {
		s.Claim.Resuming = false
	}
	if holding && !s.OwnRead && s.Claim.Epoch == 0 {
		plan.Hold, plan.Reason = true, PlanResuming
		plan.Message = "this manager has just started: reading the lease before it switches anything"
		return s, plan
	}
	wants, why, recommend := s.wantsToPromote(p)
	if s.Claim.Epoch == 0 {
		if !wants {
			plan.Reason, plan.Message, plan.Recommend = PlanStandby, why, recommend
			if recommend {
				plan.Reason = PlanRecommend
			}
			return s, plan
		}
		s.Claim = Claim{Epoch: s.maxEpoch() + 1, Configs: addConfigs(nil, s.Arbiters[s.Site].Observation.Record.Configs...)}
		if len(s.Target) > 1 || len(s.Claim.Configs) == 0 {
			s.Claim.Configs = addConfigs(s.Claim.Configs, s.Target)
		}
	}

	until := s.ServeUntil(p, now)
	valid := !until.IsZero()
	if valid {
		s.Claim.Established = true
		s.Claim.Resuming = false
	}

	// Giving the claim up: a hand-over, or a claim that cannot serve and is no longer wanted
	// or has been overtaken by the partner's.
	switch {
	case s.Claim.Established && s.HandOverRequested:
		return s.giveUp(plan, now, PlanHandingOver, "a Switchover moves the service away from this site: fencing, then releasing the lease")
	case s.Claim.Established && p.automatic() && s.ChecksFailing >= p.FailureThreshold && !s.PartnerReady:
		plan.Reason = PlanHandOverRefused
		plan.Message = fmt.Sprintf("this site's health checks failed %d times in a row (failureThreshold %d), but the partner %s has no ready copy within the RPO: this site keeps serving",
			s.ChecksFailing, p.FailureThreshold, s.Partner)
	case s.Claim.Established && p.automatic() && s.ChecksFailing >= p.FailureThreshold:
		return s.giveUp(plan, now, PlanHandingOver, fmt.Sprintf("this site's health checks failed %d times in a row (failureThreshold %d): fencing, then releasing the lease so %s can promote without waiting for it to expire",
			s.ChecksFailing, p.FailureThreshold, s.Partner))
	case !valid && s.superseded(p, now):
		s, plan = s.giveUp(plan, now, PlanGivingUp, fmt.Sprintf("%s holds more copies of the lease than this site: fencing and releasing this site's copies", s.Partner))
		// A promotion that still wants the service tries again once the partner's copies
		// may be taken, whether or not a read happens to fall due then.
		plan.NextCheck = s.partnerFreeAt(p, now)
		return s, plan
	case !valid && !s.Claim.Established && !wants:
		return s.giveUp(plan, now, PlanStandby, why+": giving up the promotion")
	}

	if valid {
		s.moveConfig(p, now)
		until = s.ServeUntil(p, now)
		valid = !until.IsZero()
	}
	var next time.Time
	for _, a := range s.needed() {
		w, at, ok := s.writeFor(p, a, valid, now)
		if ok {
			plan.Writes = append(plan.Writes, w)
		} else if !at.IsZero() && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	plan.Held = s.heldOf(p, s.Target, now)
	if valid {
		plan.Serve = true
		plan.NextCheck = minTime(until, orTime(next, until))
		if plan.Reason == "" {
			plan.Reason = PlanServing
			plan.Message = fmt.Sprintf("this site holds a majority of the lease's copies (%d of %d at the target arbiters %s), epoch %d",
				plan.Held, len(s.Target), s.Target, s.Claim.Epoch)
		}
		return s, plan
	}
	plan.NextCheck = next
	switch {
	case s.Claim.Resuming:
		plan.Hold = true
		plan.Reason = PlanResuming
		plan.Message = "this manager has just started and found the lease's copies naming this site: renewing them before it switches anything"
	case s.Primary && s.Unclaimed && !s.Claim.Established && !s.Fenced && s.onlyOwnCopies(p, now):
		// Q8: the workloads of a service that Deich has never protected ran before it; they
		// keep running while the first copies are created.
		plan.Hold = true
		plan.Reason = PlanProtecting
		plan.Message = "the service has just been put under protection: its workloads keep running while this site creates the lease's copies"
	case s.Claim.Established:
		plan.Reason = PlanFenceDeadline
		plan.Message = fmt.Sprintf("this site cannot show its own copy of the lease and a majority of %s renewed within leaseDuration %s minus max clock skew %s: fenced; serving again once it does",
			formatConfigList(s.Claim.Configs), p.LeaseDuration, p.MaxClockSkew)
	default:
		plan.Reason = PlanPromoting
		plan.Message = why + fmt.Sprintf("; promoting with epoch %d once this site holds its own copy and a majority of %s", s.Claim.Epoch, formatConfigList(s.Claim.Configs))
	}
	return s, plan
}

func orTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

func formatConfigList(cs []Config) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = "{" + c.String() + "}"
	}
	if len(parts) == 0 {
		return "{}"
	}
	return strings.Join(parts, " and ")
}

func (s ServiceState) heldOf(p Policy, c Config, now time.Time) int {
	n := 0
	for _, a := range c {
		if _, ok := s.holds(p, a, now); ok {
			n++
		}
	}
	return n
}

// wantsToPromote is rule Q7: whether this site wants the service, and why (or why not).
func (s ServiceState) wantsToPromote(p Policy) (wants bool, why string, recommend bool) {
	failed := s.PeerChecksFailing >= p.FailureThreshold
	switch {
	case s.TakeOverRequested:
		return true, "a Switchover moves the service to this site", false
	case s.Primary && s.Unclaimed:
		return true, "the service has just been put under protection and this is its primary site", false
	case failed && p.automatic() && s.CopyWithinRPO:
		return true, fmt.Sprintf("health checks of %s failed %d times in a row, the failureThreshold", s.Partner, p.FailureThreshold), false
	case failed && p.automatic():
		age := "no copy had been synced"
		if s.CopyAge > 0 {
			age = "it was " + s.CopyAge.Round(time.Second).String() + " old"
		}
		return false, fmt.Sprintf("health checks of %s failed %d times in a row, the failureThreshold, but this site's copy was older than the RPO when %s was last seen healthy (%s): a Switchover with force promotes it anyway",
			s.Partner, p.FailureThreshold, s.Partner, age), true
	case failed:
		return false, fmt.Sprintf("health checks of %s failed %d times in a row, the failureThreshold, and failover mode is %s: create a Switchover to move the service to this site",
			s.Partner, p.FailureThreshold, p.Mode), true
	case s.PeerChecksFailing > 0:
		return false, fmt.Sprintf("health checks of %s are failing, not yet failureThreshold (%d) times in a row", s.Partner, p.FailureThreshold), false
	}
	return false, fmt.Sprintf("health checks of %s pass", s.Partner), false
}

// superseded reports whether the partner's claim is ahead of this site's, which cannot
// serve: the partner holds more live copies than this site holds valid ones (a copy naming
// it that has not expired by this site's clock), or as many, and the partner is the
// primary. A copy this site cannot read counts for neither (see partnerLive). It only
// decides which of two sites that both cannot serve gives up, so that two promotions do
// not take each other's copies forever; safety does not depend on it.
func (s ServiceState) superseded(p Policy, now time.Time) bool {
	partner, mine := 0, 0
	for a, arb := range s.Arbiters {
		if s.partnerLive(p, arb, now) {
			partner++
		}
		if _, ok := s.holds(p, a, now); ok {
			mine++
		}
	}
	return partner > mine || partner > 0 && partner == mine && !s.Primary
}

// partnerLive reports whether superseded counts arb's copy as the partner's: it names the
// partner, has not expired by this site's clock, and its arbiter answered this site's last
// read (rule Q7 says why).
func (s ServiceState) partnerLive(p Policy, arb Arbiter, now time.Time) bool {
	return arb.Observation.Record.HeldBy(s.Partner) && !arb.Unreachable && !now.After(PromoteAfter(p, arb.Observation))
}

// partnerFreeAt is the earliest time after now at which a copy superseded counts as the
// partner's may be taken by this site's clock; zero when none waits to be.
func (s ServiceState) partnerFreeAt(p Policy, now time.Time) time.Time {
	var at time.Time
	for _, arb := range s.Arbiters {
		if !s.partnerLive(p, arb, now) {
			continue
		}
		// superseded counts a copy as live through PromoteAfter itself.
		if t := PromoteAfter(p, arb.Observation).Add(time.Nanosecond); t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	return at
}

// giveUp forgets every Renewal and starts releasing the claim.
func (s ServiceState) giveUp(plan Plan, now time.Time, reason, msg string) (ServiceState, Plan) {
	for k, a := range s.Arbiters {
		a.Renewal = Renewal{}
		s.Arbiters[k] = a
	}
	s.Claim.Releasing = true
	s.Claim.Established, s.Claim.Resuming = false, false
	s, plan = s.release(plan, now)
	plan.Reason, plan.Message = reason, msg
	return s, plan
}

// release is rule Q3's second half: once the fence took effect, release every copy that
// names this site; the claim ends when none does.
func (s ServiceState) release(plan Plan, now time.Time) (ServiceState, Plan) {
	plan.Reason, plan.Message = PlanHandingOver, "fencing, then releasing this site's copies of the lease"
	names := false
	for _, a := range slices.Sorted(maps.Keys(s.Arbiters)) {
		rec := s.Arbiters[a].Observation.Record
		if !rec.HeldBy(s.Site) {
			continue
		}
		names = true
		if s.Fenced {
			plan.Writes = append(plan.Writes, Write{Arbiter: a, Kind: WriteRelease, Record: ReleasedRecord(rec, now)})
		}
	}
	if !names {
		s.Claim = Claim{}
	}
	return s, plan
}

// moveConfig is rule Q5: while serving, the claim moves towards the target configuration —
// it adds the target once it holds a majority of it, and drops every other configuration
// once both partners' copies carry a stamp with the target written by this claim.
func (s *ServiceState) moveConfig(p Policy, now time.Time) {
	t := s.Target
	if len(t) == 0 {
		return
	}
	if !hasConfig(s.Claim.Configs, t) {
		if !s.majorityUntil(p, t, now).IsZero() {
			s.Claim.Configs = addConfigs(s.Claim.Configs, t)
		}
		return
	}
	if len(s.Claim.Configs) == 1 {
		return
	}
	for _, site := range []string{s.Site, s.Partner} {
		if _, ok := s.holds(p, site, now); !ok || !hasConfig(s.Arbiters[site].Renewal.Configs, t) {
			return
		}
	}
	s.Claim.Configs = []Config{t}
}

// writeFor is the write this site sends to arbiter a now, if any, or when it will want to.
func (s ServiceState) writeFor(p Policy, a string, valid bool, now time.Time) (Write, time.Time, bool) {
	arb := s.Arbiters[a]
	obs := arb.Observation
	rec := obs.Record
	if obs.ObservedAt.IsZero() {
		return Write{}, time.Time{}, false // read it first
	}
	if rec.HeldBy(s.Site) {
		// Renew: at once when the copy is of an older epoch, carries other stamps, or this
		// process has no renewal of it; otherwise every leaseDuration/3, or half that to join
		// a write of the copy's shared record (Batch).
		r := arb.Renewal
		if !r.SentAt.IsZero() && r.Epoch == s.Claim.Epoch && stampsEqual(r.Configs, s.Claim.Configs) {
			deadline := FenceDeadline(p, r)
			every := min(p.RenewInterval(), max(deadline.Sub(r.SentAt), 0)/2)
			if s.Batch[a] {
				every /= 2
			}
			at := r.SentAt.Add(every)
			if now.Before(at) {
				return Write{}, at, false
			}
		}
		w := Write{Arbiter: a, Kind: WriteRenew, Record: RenewedRecord(rec, s.Site, p, now), inherits: !valid && a == s.Site}
		w.Record.Epoch, w.Record.Configs, w.Record.SyncedAt = s.Claim.Epoch, s.Claim.Configs, s.SyncedAt
		if w.inherits {
			w.Record.Configs = addConfigs(s.Claim.Configs, rec.Configs...)
		}
		return w, time.Time{}, true
	}
	// Acquire a copy that is free: released, expired by this site's clock, or missing and
	// this site may create it.
	var wait time.Time
	switch {
	case rec.Released():
	case !rec.Exists():
		mayCreate := s.Primary && s.Unclaimed || valid && s.holdsBothPartners(p, now)
		if !mayCreate {
			return Write{}, time.Time{}, false
		}
	default:
		after := PromoteAfter(p, obs)
		if !now.After(after) {
			wait = after.Add(time.Nanosecond)
		}
	}
	if !wait.IsZero() {
		return Write{}, wait, false
	}
	w := Write{Arbiter: a, Kind: WriteAcquire, Record: AcquiredRecord(rec, s.Site, p, now), inherits: !valid && a == s.Site}
	w.Record.Epoch = max(s.Claim.Epoch, rec.Epoch+1)
	w.Record.Configs, w.Record.SyncedAt = s.Claim.Configs, s.SyncedAt
	if w.inherits {
		w.Record.Configs = addConfigs(s.Claim.Configs, rec.Configs...)
	}
	return w, time.Time{}, true
}

// onlyOwnCopies is Q8's condition: this site's own copy was read and is missing or validly
// this claim's, and every other copy it needs is missing or validly this claim's — or, until
// HoldUntil, not read yet.
func (s ServiceState) onlyOwnCopies(p Policy, now time.Time) bool {
	for _, a := range s.needed() {
		obs := s.Arbiters[a].Observation
		if obs.ObservedAt.IsZero() {
			if a == s.Site || !now.Before(s.HoldUntil) {
				return false
			}
			continue
		}
		if !obs.Record.Exists() {
			continue
		}
		if _, ok := s.holds(p, a, now); !ok {
			return false
		}
	}
	return true
}

func (s ServiceState) holdsBothPartners(p Policy, now time.Time) bool {
	_, own := s.holds(p, s.Site, now)
	_, partner := s.holds(p, s.Partner, now)
	return own && partner
}

func stampsEqual(a, b []Config) bool {
	return slices.EqualFunc(a, b, func(x, y Config) bool { return x.Equal(y) })
}
