package failover

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// t0 is when, by the deciding site's clock, the interesting thing happened: the last
// renewal that succeeded (active) or the first sight of the lease's record (standby).
var t0 = time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)

// testPolicy is the default objective at a manager with the default --max-clock-skew: the
// active renews every 10s and fences 28s after its last renewal; the standby promotes more
// than 32s after it saw the lease renewed.
func testPolicy() Policy {
	return Policy{
		Mode:             deichv1alpha1.FailoverAutomatic,
		FailureThreshold: 3,
		ProbeInterval:    10 * time.Second,
		LeaseDuration:    30 * time.Second,
		MaxClockSkew:     2 * time.Second,
	}
}

func manual(p Policy) Policy {
	p.Mode = deichv1alpha1.FailoverManual
	return p
}

var ignoreMessage = cmpopts.IgnoreFields(ActiveDecision{}, "Message")

func TestDecideActive(t *testing.T) {
	renewed := ActiveState{Renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}}
	with := func(f func(*ActiveState)) ActiveState {
		s := renewed
		f(&s)
		return s
	}
	tests := []struct {
		name   string
		policy Policy
		state  ActiveState
		now    time.Time
		want   ActiveDecision
	}{
		{name: "serves right after a renewal until the next one is due",
			state: renewed, now: t0,
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(10 * time.Second)}},
		{name: "serves up to one nanosecond before a third of the lease duration",
			state: renewed, now: t0.Add(10*time.Second - 1),
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(10 * time.Second)}},
		{name: "renews once a third of the lease duration has passed, and comes back at the fence deadline",
			state: renewed, now: t0.Add(10 * time.Second),
			want: ActiveDecision{Action: ActionRenew, NextCheck: t0.Add(28 * time.Second)}},
		{name: "serves and renews up to one nanosecond before leaseDuration minus skew",
			state: renewed, now: t0.Add(28*time.Second - 1),
			want: ActiveDecision{Action: ActionRenew, NextCheck: t0.Add(28 * time.Second)}},
		{name: "fences exactly at leaseDuration minus skew",
			state: renewed, now: t0.Add(28 * time.Second),
			want: ActiveDecision{Action: ActionFence}},
		{name: "stays fenced one nanosecond after the deadline",
			state: renewed, now: t0.Add(28*time.Second + 1),
			want: ActiveDecision{Action: ActionFence}},
		{name: "starts fenced when this manager has not renewed since it started",
			state: ActiveState{}, now: t0,
			want: ActiveDecision{Action: ActionFence}},
		{name: "fences by the duration it wrote when the objective's lease duration grew since",
			state: with(func(s *ActiveState) { s.Renewal.Duration = 15 * time.Second }), now: t0.Add(13 * time.Second),
			want: ActiveDecision{Action: ActionFence}},
		{name: "fences by the objective's lease duration when it shrank since the renewal",
			policy: func() Policy { p := testPolicy(); p.LeaseDuration = 15 * time.Second; return p }(),
			state:  renewed, now: t0.Add(13 * time.Second),
			want: ActiveDecision{Action: ActionFence}},
		{name: "hands over when its own checks failed failureThreshold times in a row",
			state: with(func(s *ActiveState) { s.ChecksFailing, s.PartnerReady = 3, true }), now: t0,
			want: ActiveDecision{Action: ActionHandOver}},
		{name: "keeps serving with failing checks while the standby has no ready copy",
			state: with(func(s *ActiveState) { s.ChecksFailing = 3 }), now: t0,
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(10 * time.Second)}},
		{name: "keeps serving while its own checks failed fewer than failureThreshold times",
			state: with(func(s *ActiveState) { s.ChecksFailing = 2 }), now: t0,
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(10 * time.Second)}},
		{name: "keeps serving with failing checks in Manual mode, where an SRE decides",
			policy: manual(testPolicy()),
			state:  with(func(s *ActiveState) { s.ChecksFailing = 50 }), now: t0,
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(10 * time.Second)}},
		{name: "hands over when a Switchover moves the service away, in Manual mode too",
			policy: manual(testPolicy()),
			state:  with(func(s *ActiveState) { s.HandOverRequested = true }), now: t0,
			want: ActiveDecision{Action: ActionHandOver}},
		{name: "hands over, which fences, when its checks fail after a restart",
			state: ActiveState{ChecksFailing: 3, PartnerReady: true}, now: t0,
			want: ActiveDecision{Action: ActionHandOver}},
		{name: "renews twice per renewal's validity when the skew leaves less than a third of the lease",
			policy: Policy{Mode: deichv1alpha1.FailoverAutomatic, FailureThreshold: 1, LeaseDuration: 6 * time.Second, MaxClockSkew: 5 * time.Second},
			state:  with(func(s *ActiveState) { s.Renewal.Duration = 6 * time.Second }), now: t0,
			want: ActiveDecision{Action: ActionServe, NextCheck: t0.Add(500 * time.Millisecond)}},
		{name: "never serves when the skew is as long as the lease",
			policy: func() Policy { p := testPolicy(); p.MaxClockSkew = p.LeaseDuration; return p }(),
			state:  renewed, now: t0,
			want: ActiveDecision{Action: ActionFence}},
		{name: "treats a negative skew as none rather than serving past the lease",
			policy: func() Policy { p := testPolicy(); p.MaxClockSkew = -time.Hour; return p }(),
			state:  renewed, now: t0.Add(30 * time.Second),
			want: ActiveDecision{Action: ActionFence}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == (Policy{}) {
				p = testPolicy()
			}
			got := DecideActive(p, tt.state, tt.now)
			if diff := cmp.Diff(tt.want, got, ignoreMessage); diff != "" {
				t.Errorf("DecideActive() (-want +got):\n%s", diff)
			}
			if got.Message == "" {
				t.Error("DecideActive() gave no message")
			}
			if got.MayServe() != (tt.want.Action == ActionServe || tt.want.Action == ActionRenew) {
				t.Errorf("MayServe() = %t for %s", got.MayServe(), got.Action)
			}
		})
	}
}

func TestFenceDeadline(t *testing.T) {
	tests := []struct {
		name    string
		renewal Renewal
		want    time.Time
	}{
		{"is leaseDuration minus skew after the renewal was sent", Renewal{SentAt: t0, Duration: 30 * time.Second}, t0.Add(28 * time.Second)},
		{"uses the shorter of the written and the objective's duration", Renewal{SentAt: t0, Duration: 10 * time.Second}, t0.Add(8 * time.Second)},
		{"is zero without a renewal", Renewal{}, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FenceDeadline(testPolicy(), tt.renewal); !got.Equal(tt.want) {
				t.Errorf("FenceDeadline() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRenewal(t *testing.T) {
	written := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, ResourceVersion: "7"}
	r := RenewalOf(written, t0)
	if diff := cmp.Diff(Renewal{SentAt: t0, Duration: 30 * time.Second}, r); diff != "" {
		t.Errorf("RenewalOf() (-want +got):\n%s", diff)
	}
	t.Run("sending a shorter duration shortens the renewal before the answer comes", func(t *testing.T) {
		got := r.Sending(LeaseRecord{Holder: "sh-kiel", Duration: 15 * time.Second})
		if diff := cmp.Diff(Renewal{SentAt: t0, Duration: 15 * time.Second}, got); diff != "" {
			t.Errorf("Sending() (-want +got):\n%s", diff)
		}
	})
	t.Run("sending a longer duration does not lengthen it", func(t *testing.T) {
		if got := r.Sending(LeaseRecord{Duration: time.Minute}); !cmp.Equal(got, r) {
			t.Errorf("Sending() = %+v, want %+v", got, r)
		}
	})
	t.Run("sending leaves no renewal at none", func(t *testing.T) {
		if got := (Renewal{}).Sending(written); !cmp.Equal(got, Renewal{}) {
			t.Errorf("Sending() = %+v, want the zero Renewal", got)
		}
	})
}

func TestDecideStandby(t *testing.T) {
	held := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, RenewTime: t0.Add(-time.Hour), ResourceVersion: "7"}
	released := LeaseRecord{Duration: 30 * time.Second, RenewTime: t0, ResourceVersion: "8"}
	failing := StandbyState{Site: "mv-schwerin", Observation: Observation{Record: held, ObservedAt: t0}, ConsecutiveFailures: 3}
	with := func(f func(*StandbyState)) StandbyState {
		s := failing
		f(&s)
		return s
	}
	expires := t0.Add(32 * time.Second) // leaseDuration + skew after the record was first seen
	tests := []struct {
		name   string
		policy Policy
		state  StandbyState
		now    time.Time
		want   StandbyDecision
	}{
		{name: "promotes when its checks failed, the mode is Automatic and the lease expired by more than the skew",
			state: failing, now: expires.Add(1),
			want: StandbyDecision{Action: StandbyPromote}},
		{name: "waits at exactly leaseDuration plus skew after it saw the lease renewed",
			state: failing, now: expires,
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(1)}},
		{name: "waits while the lease is fresh and says when it will have expired",
			state: failing, now: t0.Add(10 * time.Second),
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(1)}},
		{name: "waits on an expired lease while its checks failed fewer than failureThreshold times",
			state: with(func(s *StandbyState) { s.ConsecutiveFailures = 2 }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
		{name: "waits on an expired lease while its checks pass",
			state: with(func(s *StandbyState) { s.ConsecutiveFailures = 0 }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
		{name: "recommends a failover in Manual mode and never promotes, even on an expired lease",
			policy: manual(testPolicy()), state: failing, now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyRecommend}},
		{name: "recommends a failover in Manual mode on a released lease too",
			policy: manual(testPolicy()),
			state:  with(func(s *StandbyState) { s.Observation.Record = released }), now: t0,
			want: StandbyDecision{Action: StandbyRecommend}},
		{name: "promotes on a released lease without waiting for it to expire",
			state: with(func(s *StandbyState) { s.Observation.Record = released }), now: t0,
			want: StandbyDecision{Action: StandbyPromote}},
		{name: "does not promote on a released lease while its checks pass",
			state: with(func(s *StandbyState) {
				s.Observation.Record = released
				s.ConsecutiveFailures = 0
			}), now: t0,
			want: StandbyDecision{Action: StandbyWait}},
		{name: "waits for the record's longer lease duration when the objectives disagree",
			state: with(func(s *StandbyState) { s.Observation.Record.Duration = time.Minute }), now: expires.Add(1),
			want: StandbyDecision{Action: StandbyWait, NextCheck: t0.Add(62*time.Second + 1)}},
		{name: "waits for its own longer lease duration when the record's is shorter",
			state: with(func(s *StandbyState) { s.Observation.Record.Duration = 10 * time.Second }), now: t0.Add(20 * time.Second),
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(1)}},
		{name: "waits the whole lease duration again after its manager restarted, however old the renewTime",
			state: with(func(s *StandbyState) { s.Observation = Observe(Observation{}, held, t0.Add(20*time.Second)) }), now: expires.Add(1),
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(20*time.Second + 1)}},
		{name: "waits until it has read the lease",
			state: with(func(s *StandbyState) { s.Observation = Observation{} }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
		{name: "takes over for a Switchover in Manual mode once the lease was released, whatever the checks say",
			policy: manual(testPolicy()),
			state: with(func(s *StandbyState) {
				s.Observation.Record = released
				s.ConsecutiveFailures = 0
				s.TakeOverRequested = true
			}), now: t0,
			want: StandbyDecision{Action: StandbyPromote}},
		{name: "waits for the lease to expire on a Switchover while the active still holds it",
			state: with(func(s *StandbyState) { s.TakeOverRequested = true }), now: t0.Add(time.Second),
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(1)}},
		{name: "creates a missing lease at the primary site once it has been missing for longer than leaseDuration plus skew",
			policy: manual(testPolicy()),
			state:  StandbyState{Site: "sh-kiel", Primary: true, Observation: Observation{ObservedAt: t0}}, now: expires.Add(1),
			want: StandbyDecision{Action: StandbyPromote}},
		{name: "waits to create a missing lease at the primary site until then",
			state: StandbyState{Site: "sh-kiel", Primary: true, Observation: Observation{ObservedAt: t0}}, now: expires,
			want: StandbyDecision{Action: StandbyWait, NextCheck: expires.Add(1)}},
		{name: "creates the lease of a newly protected service at the primary site at once",
			state: StandbyState{Site: "sh-kiel", Primary: true, Unclaimed: true, Observation: Observation{ObservedAt: t0}}, now: t0,
			want: StandbyDecision{Action: StandbyPromote}},
		{name: "never creates a missing lease at the standby site, even for a newly protected service",
			state: with(func(s *StandbyState) { s.Observation.Record = LeaseRecord{}; s.Unclaimed = true }), now: t0,
			want: StandbyDecision{Action: StandbyWait}},
		{name: "never creates a missing lease at the standby site",
			state: with(func(s *StandbyState) { s.Observation.Record = LeaseRecord{} }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
		{name: "refuses to decide as standby on a lease that names this site",
			state: with(func(s *StandbyState) { s.Observation.Record.Holder = "mv-schwerin" }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
		{name: "treats an unknown failover mode as Manual",
			policy: func() Policy { p := testPolicy(); p.Mode = "Sometimes"; return p }(), state: failing, now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyRecommend}},
		{name: "counts a failureThreshold below 1 as 1, never as no failure at all",
			policy: func() Policy { p := testPolicy(); p.FailureThreshold = 0; return p }(),
			state:  with(func(s *StandbyState) { s.ConsecutiveFailures = 0 }), now: t0.Add(time.Hour),
			want: StandbyDecision{Action: StandbyWait}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == (Policy{}) {
				p = testPolicy()
			}
			got := DecideStandby(p, tt.state, tt.now)
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(StandbyDecision{}, "Message")); diff != "" {
				t.Errorf("DecideStandby() (-want +got):\n%s\nmessage: %s", diff, got.Message)
			}
			if got.Message == "" {
				t.Error("DecideStandby() gave no message")
			}
		})
	}
}

func TestDecisionMessagesSayWhatToDo(t *testing.T) {
	held := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, ResourceVersion: "7"}
	tests := []struct {
		name string
		got  string
		want []string
	}{
		{"a fence at the deadline names the limit",
			DecideActive(testPolicy(), ActiveState{Renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}}, t0.Add(time.Minute)).Message,
			[]string{"leaseDuration 30s", "max clock skew 2s"}},
		{"a hand-over names the failed checks",
			DecideActive(testPolicy(), ActiveState{ChecksFailing: 4, PartnerReady: true}, t0).Message,
			[]string{"failed 4 times in a row", "failureThreshold 3", "releasing the lease"}},
		{"a recommendation tells the SRE to create a Switchover",
			DecideStandby(manual(testPolicy()), StandbyState{Site: "mv-schwerin", Observation: Observation{Record: held, ObservedAt: t0}, ConsecutiveFailures: 3}, t0).Message,
			[]string{"Manual", "create a Switchover"}},
		{"a wait for expiry names the holder and the wait",
			DecideStandby(testPolicy(), StandbyState{Site: "mv-schwerin", Observation: Observation{Record: held, ObservedAt: t0}, ConsecutiveFailures: 3}, t0).Message,
			[]string{"held by sh-kiel", "lease duration 30s plus max clock skew 2s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.got, w) {
					t.Errorf("message %q does not contain %q", tt.got, w)
				}
			}
		})
	}
}

func TestActionNames(t *testing.T) {
	got := []string{
		ActionServe.String(), ActionRenew.String(), ActionFence.String(), ActionHandOver.String(), ActiveAction(9).String(),
		StandbyWait.String(), StandbyPromote.String(), StandbyRecommend.String(), StandbyAction(9).String(),
	}
	want := []string{"Serve", "Renew", "Fence", "HandOver", "ActiveAction(9)", "Wait", "Promote", "Recommend", "StandbyAction(9)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("String() (-want +got):\n%s", diff)
	}
}
