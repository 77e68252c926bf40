package health

import (
	"math"
	"time"
)

// Tally is the running record of one check, kept in status so a restarted manager resumes it
// instead of starting the count of consecutive failures over.
type Tally struct {
	// ConsecutiveFailures counts the Unhealthy and Unknown results since the last Healthy one.
	ConsecutiveFailures int32
	// LastStatus is the status of the most recent result; empty before the first.
	LastStatus Status
	// LastTransition is when LastStatus last changed.
	LastTransition time.Time
}

// Add returns the tally after result r, observed at now. A Healthy result resets the count of
// failures; any other result (Unhealthy, Unknown, or a status this package does not know)
// increments it, because a probe that cannot tell the site serves must not keep a failover
// from happening. LastTransition moves to now only when the status changes. t is not modified.
func (t Tally) Add(r Result, now time.Time) Tally {
	next := t
	if r.Status == StatusHealthy {
		next.ConsecutiveFailures = 0
	} else if next.ConsecutiveFailures < math.MaxInt32 {
		next.ConsecutiveFailures++
	}
	if r.Status != t.LastStatus {
		next.LastStatus = r.Status
		next.LastTransition = now
	}
	return next
}
