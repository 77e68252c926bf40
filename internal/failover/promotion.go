package failover

import "time"

// StageView is what a decision saw of one stage of a service's promotion at this site
// (SharedService.spec.promotion.stages, and last the objects in no stage).
type StageView struct {
	// Standby and Active count the stage's objects in each form.
	Standby, Active int
	// Ready is whether the stage's readiness rule holds for every object of it. A stage
	// without a rule is ready once it is in its active form.
	Ready bool
	// ActiveSince is when this manager first saw the stage wholly in its active form; zero
	// before.
	ActiveSince time.Time
	// Timeout is how long the stage may take to become ready once it is in its active form;
	// zero means no limit.
	Timeout time.Duration
}

// StageStep is what NextStage decides.
type StageStep struct {
	// Switch is the stage to switch to its active form now, or -1.
	Switch int
	// Waiting is the stage in active form the promotion waits for to become ready, or -1.
	Waiting int
	// TimedOut is set when the stage waited for has not become ready within its timeout:
	// the promotion stops there until it does.
	TimedOut bool
	// TimesOutAt is when the stage waited for times out; zero without a wait or a timeout.
	TimesOutAt time.Time
	// Done is set when every stage is in its active form and ready: the promotion is
	// complete.
	Done bool
}

// NextStage decides the next act of a promotion, for a decision that serves (rule S1 in the
// package doc): switch the first stage that has an object in standby form, once every stage
// before it is active and ready (S3); otherwise wait for the first stage that is not ready.
// It never switches anything to the standby form, and the caller switches only within a
// decision that serves.
func NextStage(stages []StageView, now time.Time) StageStep {
	for i, v := range stages {
		if v.Standby > 0 {
			return StageStep{Switch: i, Waiting: -1}
		}
		if !v.Ready {
			step := StageStep{Switch: -1, Waiting: i}
			if v.Timeout > 0 && !v.ActiveSince.IsZero() {
				step.TimesOutAt = v.ActiveSince.Add(v.Timeout)
				step.TimedOut = !now.Before(step.TimesOutAt)
			}
			return step
		}
	}
	return StageStep{Switch: -1, Waiting: -1, Done: true}
}

// NextFence returns the stage a fence switches to its standby form next: the last one with
// an object in active form, so that the stages stop in the reverse of the order they were
// promoted in (rule S2). It reads no readiness: a fence waits for none. It returns -1 once
// every stage is in its standby form.
func NextFence(stages []StageView) int {
	for i := len(stages) - 1; i >= 0; i-- {
		if stages[i].Active > 0 {
			return i
		}
	}
	return -1
}
