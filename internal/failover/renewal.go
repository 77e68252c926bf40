package failover

import "time"

// Renewal is a site's only evidence that it may count a copy of the lease: the last write of
// that copy by this manager process that succeeded. It lives in the process's memory and dies
// with it (see Arbiter.Renewal).
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
// answer is lost; the partner then times the duration w wrote, so the fence deadline must
// already respect it. The zero Renewal stays zero.
func (r Renewal) Sending(w LeaseRecord) Renewal {
	if !r.SentAt.IsZero() {
		r.Duration = min(r.Duration, w.Duration)
	}
	return r
}

// FenceDeadline is until when renewal r lets a site count its copy: r.SentAt + D − MaxClockSkew
// by its own clock, where D is the shorter of the policy's lease duration and r.Duration. A
// site serving on the copy must have stopped by then (rule 2 of the package documentation).
// Zero for the zero Renewal, which gives no right to count the copy.
func FenceDeadline(p Policy, r Renewal) time.Time {
	if r.SentAt.IsZero() {
		return time.Time{}
	}
	p = p.normalized()
	return r.SentAt.Add(min(p.LeaseDuration, r.Duration) - p.MaxClockSkew)
}

// PromoteAfter is the instant after which, by the observing site's clock, the copy in obs
// counts as expired and may be taken over: obs.ObservedAt + D + MaxClockSkew, where D is the
// longer of the policy's lease duration and the record's (rule 5 of the package
// documentation). Zero when the copy was never observed.
func PromoteAfter(p Policy, obs Observation) time.Time {
	if obs.ObservedAt.IsZero() {
		return time.Time{}
	}
	p = p.normalized()
	return obs.ObservedAt.Add(max(p.LeaseDuration, obs.Record.Duration) + p.MaxClockSkew)
}
