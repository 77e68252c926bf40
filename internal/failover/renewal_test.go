package failover

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// t0 is when, by the deciding site's clock, the interesting thing happened: the last
// renewal that succeeded, or the first sight of a copy's record.
var t0 = time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)

// testPolicy is the default objective at a manager with the default --max-clock-skew: a site
// renews every 10s and counts a copy for 28s after its last renewal; it takes a copy over
// more than 32s after it saw the copy change.
func testPolicy() Policy {
	return Policy{
		Mode:             deichv1alpha1.FailoverAutomatic,
		FailureThreshold: 3,
		ProbeInterval:    10 * time.Second,
		LeaseDuration:    30 * time.Second,
		MaxClockSkew:     2 * time.Second,
	}
}

func TestFenceDeadline(t *testing.T) {
	with := func(f func(*Policy)) Policy {
		p := testPolicy()
		f(&p)
		return p
	}
	tests := []struct {
		name    string
		policy  Policy
		renewal Renewal
		want    time.Time
	}{
		{name: "is leaseDuration minus skew after the renewal was sent",
			renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}, want: t0.Add(28 * time.Second)},
		{name: "uses the duration it wrote when the objective's lease duration grew since",
			renewal: Renewal{SentAt: t0, Duration: 10 * time.Second}, want: t0.Add(8 * time.Second)},
		{name: "uses the objective's lease duration when it shrank since the renewal",
			policy:  with(func(p *Policy) { p.LeaseDuration = 15 * time.Second }),
			renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}, want: t0.Add(13 * time.Second)},
		{name: "leaves no time to serve when the skew is as long as the lease",
			policy:  with(func(p *Policy) { p.MaxClockSkew = p.LeaseDuration }),
			renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}, want: t0},
		{name: "treats a negative skew as none rather than counting a copy past the lease",
			policy:  with(func(p *Policy) { p.MaxClockSkew = -time.Hour }),
			renewal: Renewal{SentAt: t0, Duration: 30 * time.Second}, want: t0.Add(30 * time.Second)},
		{name: "is zero without a renewal",
			renewal: Renewal{}, want: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == (Policy{}) {
				p = testPolicy()
			}
			if got := FenceDeadline(p, tt.renewal); !got.Equal(tt.want) {
				t.Errorf("FenceDeadline() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPromoteAfter(t *testing.T) {
	held := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, RenewTime: t0.Add(-time.Hour), ResourceVersion: "7"}
	withDuration := func(d time.Duration) LeaseRecord {
		r := held
		r.Duration = d
		return r
	}
	tests := []struct {
		name   string
		policy Policy
		obs    Observation
		want   time.Time
	}{
		{name: "is leaseDuration plus skew after the copy was first seen, however old its renewTime",
			obs: Observation{Record: held, ObservedAt: t0}, want: t0.Add(32 * time.Second)},
		{name: "waits for the record's longer lease duration when the objectives disagree",
			obs: Observation{Record: withDuration(time.Minute), ObservedAt: t0}, want: t0.Add(62 * time.Second)},
		{name: "waits for its own longer lease duration when the record's is shorter",
			obs: Observation{Record: withDuration(10 * time.Second), ObservedAt: t0}, want: t0.Add(32 * time.Second)},
		{name: "times a missing copy by the objective's lease duration",
			obs: Observation{ObservedAt: t0}, want: t0.Add(32 * time.Second)},
		{name: "treats a negative skew as none rather than taking a copy over early",
			policy: func() Policy { p := testPolicy(); p.MaxClockSkew = -time.Hour; return p }(),
			obs:    Observation{Record: held, ObservedAt: t0}, want: t0.Add(30 * time.Second)},
		{name: "is zero for a copy never observed",
			obs: Observation{Record: held}, want: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == (Policy{}) {
				p = testPolicy()
			}
			if got := PromoteAfter(p, tt.obs); !got.Equal(tt.want) {
				t.Errorf("PromoteAfter() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRenewal(t *testing.T) {
	written := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, ResourceVersion: "7", Epoch: 4, Configs: []Config{TwoSiteConfig("mv-schwerin")}}
	r := RenewalOf(written, t0)
	if diff := cmp.Diff(Renewal{SentAt: t0, Duration: 30 * time.Second, Epoch: 4, Configs: []Config{TwoSiteConfig("mv-schwerin")}}, r); diff != "" {
		t.Errorf("RenewalOf() (-want +got):\n%s", diff)
	}
	t.Run("sending a shorter duration shortens the renewal before the answer comes", func(t *testing.T) {
		got := r.Sending(LeaseRecord{Holder: "sh-kiel", Duration: 15 * time.Second})
		want := r
		want.Duration = 15 * time.Second
		if diff := cmp.Diff(want, got); diff != "" {
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
