package failover

import (
	"fmt"
	"time"
)

// Renewal is a site's only evidence that it may serve: the last write of the lease by this
// manager process that succeeded. It lives in the process's memory and dies with it.
type Renewal struct {
	// SentAt is this site's clock just before that write was sent.
	SentAt time.Time
	// Duration is the shortest lease duration this process has written since, that write
	// included (see Sending).
	Duration time.Duration
	// Epoch and Configs are what that write stamped on the copy (LeaseRecord.Epoch,
	// LeaseRecord.Configs).
	Epoch   int64
	Configs []Config
}

// RenewalOf is the Renewal a write of written, sent at sentAt, gives once it succeeded.
func RenewalOf(written LeaseRecord, sentAt time.Time) Renewal {
	return Renewal{SentAt: sentAt, Duration: written.Duration, Epoch: written.Epoch, Configs: written.Configs}
}

// Sending returns r as it must stand while w is on its way. A write can commit although its
// answer is lost; the standby then times the duration w wrote, so the fence deadline must
// already respect it. The zero Renewal stays zero.
func (r Renewal) Sending(w LeaseRecord) Renewal {
	if !r.SentAt.IsZero() {
		r.Duration = min(r.Duration, w.Duration)
	}
	return r
}

// FenceDeadline is when a site serving on renewal r must stop: r.SentAt + D − MaxClockSkew by
// its own clock, where D is the shorter of the policy's lease duration and r.Duration. Zero
// for the zero Renewal, which gives no right to serve.
func FenceDeadline(p Policy, r Renewal) time.Time {
	if r.SentAt.IsZero() {
		return time.Time{}
	}
	p = p.normalized()
	return r.SentAt.Add(min(p.LeaseDuration, r.Duration) - p.MaxClockSkew)
}

// ActiveState is what a site whose lease record names it knows.
type ActiveState struct {
	// Renewal is this process's last lease write that succeeded (RenewalOf), lowered by
	// every write sent since (Renewal.Sending). Zero when this process has none: it started
	// after the write, or it is handing over.
	Renewal Renewal
	// ChecksFailing is how many of this site's own health checks failed in a row.
	ChecksFailing int32
	// HandOverRequested is set while a Switchover moves the service away from this site.
	HandOverRequested bool
	// PartnerReady is set while the other site can serve: it is Ready and its copy of the
	// service was complete within the RPO. Without it, failing checks of this site never
	// make it hand over, since nobody would serve after it.
	PartnerReady bool
}

// ActiveAction is what a site that holds the lease must do now.
type ActiveAction int

const (
	// ActionServe means serve, with nothing to write until NextCheck.
	ActionServe ActiveAction = iota
	// ActionRenew means serve and renew the lease now (RenewedRecord).
	ActionRenew
	// ActionFence means stop serving at once (switch to standby form), then keep trying to
	// renew; once a renewal succeeded, the next decision serves again.
	ActionFence
	// ActionHandOver means stop serving, forget the Renewal and abandon any write in flight,
	// and once the fence has taken effect release the lease (ReleasedRecord), so that the
	// other site need not wait for it to expire.
	ActionHandOver
)

// String returns the action's name, for logs and events.
func (a ActiveAction) String() string {
	switch a {
	case ActionServe:
		return "Serve"
	case ActionRenew:
		return "Renew"
	case ActionFence:
		return "Fence"
	case ActionHandOver:
		return "HandOver"
	}
	return fmt.Sprintf("ActiveAction(%d)", int(a))
}

// ActiveDecision is DecideActive's answer.
type ActiveDecision struct {
	// Action is what to do now.
	Action ActiveAction
	// NextCheck is the latest time to decide again if nothing else happens: the next
	// renewal for Serve, the fence deadline for Renew. Zero for Fence and HandOver, which
	// wait for the outcome of a write instead. A lease write's outcome, a change of the lease
	// and a health-check result call for a new decision earlier.
	NextCheck time.Time
	// Message says why, as a sentence for an SRE; it changes only when the situation does.
	Message string
}

// MayServe reports whether the site may serve until NextCheck.
func (d ActiveDecision) MayServe() bool {
	return d.Action == ActionServe || d.Action == ActionRenew
}

// DecideActive decides for a site whose lease record names it (rules 1–3 of the package
// documentation): serve, renew, fence when no renewal succeeded for the lease duration minus
// the clock skew, or hand over — on its own failing checks only to a ready partner.
func DecideActive(p Policy, s ActiveState, now time.Time) ActiveDecision {
	p = p.normalized()
	switch {
	case s.HandOverRequested:
		return ActiveDecision{Action: ActionHandOver,
			Message: "a Switchover moves the service away from this site: fencing, then releasing the lease"}
	case p.automatic() && s.ChecksFailing >= p.FailureThreshold && s.PartnerReady:
		return ActiveDecision{Action: ActionHandOver,
			Message: fmt.Sprintf("this site's health checks failed %d times in a row (failureThreshold %d): fencing, then releasing the lease so the standby site can promote without waiting for it to expire",
				s.ChecksFailing, p.FailureThreshold)}
	case s.Renewal.SentAt.IsZero():
		return ActiveDecision{Action: ActionFence,
			Message: "the lease names this site, but this manager has no renewal of its own (it has just started, or is handing over): fenced until a renewal succeeds"}
	}

	why := "this site holds the lease"
	if p.automatic() && s.ChecksFailing >= p.FailureThreshold {
		why = fmt.Sprintf("this site's health checks failed %d times in a row (failureThreshold %d), but the standby site has no ready copy within the RPO, so this site keeps serving rather than leave nobody serving; this site holds the lease",
			s.ChecksFailing, p.FailureThreshold)
	}
	deadline := FenceDeadline(p, s.Renewal)
	validity := deadline.Sub(s.Renewal.SentAt)
	if validity <= 0 || !now.Before(deadline) {
		return ActiveDecision{Action: ActionFence,
			Message: fmt.Sprintf("no renewal of the lease succeeded within leaseDuration %s minus max clock skew %s: fenced so the standby site may take over; serving again once a renewal succeeds",
				min(p.LeaseDuration, s.Renewal.Duration), p.MaxClockSkew)}
	}
	// Renew every leaseDuration/3, or twice per renewal's validity if the skew leaves less.
	renewAt := s.Renewal.SentAt.Add(min(p.RenewInterval(), validity/2))
	if !now.Before(renewAt) {
		return ActiveDecision{Action: ActionRenew, NextCheck: deadline,
			Message: why + " and renews it"}
	}
	return ActiveDecision{Action: ActionServe, NextCheck: renewAt, Message: why}
}

// PromoteAfter is the instant after which, by the observing site's clock, the lease in obs
// counts as expired: obs.ObservedAt + D + MaxClockSkew, where D is the longer of the policy's
// lease duration and the record's. Zero when the lease was never observed.
func PromoteAfter(p Policy, obs Observation) time.Time {
	if obs.ObservedAt.IsZero() {
		return time.Time{}
	}
	p = p.normalized()
	return obs.ObservedAt.Add(max(p.LeaseDuration, obs.Record.Duration) + p.MaxClockSkew)
}

// StandbyState is what a site whose lease record does not name it knows.
type StandbyState struct {
	// Site is this site's name.
	Site string
	// Primary is set at the service's primary site, the only one that creates a missing
	// lease.
	Primary bool
	// Unclaimed is set at the primary site when no lease was ever recorded for the service
	// there (status.lease is unset): the service has just been put under Deich's protection.
	// No site can serve on a lease that never existed, so the primary creates a missing one
	// at once instead of waiting for it to count as expired, and its running workloads are
	// not fenced in the meantime.
	Unclaimed bool
	// Observation is this site's view of the lease (Observe).
	Observation Observation
	// ConsecutiveFailures is how many of this site's health checks of the active site failed
	// in a row; a probe that could not run (the peer is unreachable) counts as failed.
	ConsecutiveFailures int32
	// TakeOverRequested is set while a Switchover (or automatic failback) moves the service
	// to this site: it then promotes as soon as the lease is free, in either failover mode
	// and whatever the health checks say.
	TakeOverRequested bool
}

// StandbyAction is what a site that does not hold the lease must do now. In every case it
// does not serve.
type StandbyAction int

const (
	// StandbyWait means stay standby.
	StandbyWait StandbyAction = iota
	// StandbyPromote means write AcquiredRecord on top of the observed record, and serve once
	// that write succeeded and DecideActive says so.
	StandbyPromote
	// StandbyRecommend means stay standby and tell people a failover is due: Manual mode
	// leaves it to an SRE's Switchover.
	StandbyRecommend
)

// String returns the action's name, for logs and events.
func (a StandbyAction) String() string {
	switch a {
	case StandbyWait:
		return "Wait"
	case StandbyPromote:
		return "Promote"
	case StandbyRecommend:
		return "Recommend"
	}
	return fmt.Sprintf("StandbyAction(%d)", int(a))
}

// StandbyDecision is DecideStandby's answer.
type StandbyDecision struct {
	// Action is what to do now.
	Action StandbyAction
	// NextCheck is when the lease will count as expired, if this site is waiting for that;
	// zero when only a new observation or health-check result can change the decision.
	NextCheck time.Time
	// Message says why, as a sentence for an SRE; it changes only when the situation does.
	Message string
}

// DecideStandby decides for a site whose lease record does not name it (rules 4–6 of the
// package documentation). It promotes only on a free lease — released, or unchanged for
// longer than the lease duration plus the clock skew by this site's clock — and only when
// the site wants the service: failover mode Automatic and failureThreshold failed checks of
// the active site, a Switchover, or a missing lease at the primary site.
func DecideStandby(p Policy, s StandbyState, now time.Time) StandbyDecision {
	p = p.normalized()
	obs := s.Observation
	rec := obs.Record
	switch {
	case obs.ObservedAt.IsZero():
		return StandbyDecision{Action: StandbyWait, Message: "this manager has not read the lease yet"}
	case rec.HeldBy(s.Site):
		return StandbyDecision{Action: StandbyWait, Message: "the lease names this site: decide as the active site"}
	}

	var why string
	failed := s.ConsecutiveFailures >= p.FailureThreshold
	switch {
	case s.TakeOverRequested:
		why = "a Switchover moves the service to this site"
	case !rec.Exists() && s.Primary:
		why = "the lease does not exist and this is the service's primary site"
	case failed && p.automatic():
		why = fmt.Sprintf("health checks of the active site failed %d times in a row (failureThreshold %d)", s.ConsecutiveFailures, p.FailureThreshold)
	case failed:
		return StandbyDecision{Action: StandbyRecommend,
			Message: fmt.Sprintf("health checks of the active site failed %d times in a row (failureThreshold %d) and failover mode is %s: create a Switchover to move the service to this site",
				s.ConsecutiveFailures, p.FailureThreshold, p.Mode)}
	case s.ConsecutiveFailures > 0:
		return StandbyDecision{Action: StandbyWait,
			Message: fmt.Sprintf("health checks of the active site failed %d times in a row, fewer than failureThreshold %d", s.ConsecutiveFailures, p.FailureThreshold)}
	default:
		return StandbyDecision{Action: StandbyWait, Message: "health checks of the active site pass"}
	}

	switch {
	case rec.Released():
		return StandbyDecision{Action: StandbyPromote, Message: why + "; the lease was released"}
	case !rec.Exists() && s.Primary && s.Unclaimed:
		return StandbyDecision{Action: StandbyPromote, Message: why + "; no lease was ever recorded for this service, so none can be held"}
	case !rec.Exists() && !s.Primary:
		return StandbyDecision{Action: StandbyWait, Message: why + "; the lease does not exist, and only the primary site creates it"}
	}
	holder := "the lease, held by " + rec.Holder + ","
	if !rec.Exists() {
		holder = "the lease, missing,"
	}
	wait := max(p.LeaseDuration, rec.Duration)
	after := PromoteAfter(p, obs)
	if !now.After(after) {
		return StandbyDecision{Action: StandbyWait, NextCheck: after.Add(time.Nanosecond),
			Message: fmt.Sprintf("%s; waiting until %s has stood unchanged for longer than lease duration %s plus max clock skew %s by this site's clock", why, holder, wait, p.MaxClockSkew)}
	}
	return StandbyDecision{Action: StandbyPromote,
		Message: fmt.Sprintf("%s; %s has stood unchanged for longer than lease duration %s plus max clock skew %s by this site's clock", why, holder, wait, p.MaxClockSkew)}
}
