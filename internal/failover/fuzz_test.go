package failover

import (
	"testing"
	"time"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// FuzzDecisions feeds both decisions arbitrary policies, states and times and checks them
// against the rules of the package documentation, restated here independently of the code:
// no panic; a site may serve only on a renewal younger than its lease duration minus the
// skew, and never while handing over; a standby promotes only on a free lease and only when
// it wants the service; Manual mode never promotes on failed checks; and NextCheck, when
// set, lies in the future and never after the fence deadline.
func FuzzDecisions(f *testing.F) {
	const s = int64(time.Second)
	f.Add(uint8(0), int32(3), 30*s, 2*s, int32(0), 29*s, 30*s, 10*s, uint8(1), 0*s, 40*s)
	f.Add(uint8(1), int32(3), 30*s, 2*s, int32(3), 0*s, 0*s, 28*s, uint8(2), 60*s, 33*s)
	f.Add(uint8(4), int32(0), 6*s, 5*s, int32(7), -s, 6*s, 0*s, uint8(0), 0*s, 8*s)
	f.Add(uint8(8), int32(-5), -s, -2*s, int32(-1), int64(1), int64(1), int64(1), uint8(3), -s, int64(1))

	f.Fuzz(func(t *testing.T, flags uint8, threshold int32, lease, skew int64, failures int32,
		sentAgo, written, sinceSent int64, holder uint8, recDuration, sinceObserved int64) {
		// Durations within ±2^50ns (13 days) keep every sum far from overflowing.
		d := func(n int64) time.Duration { return time.Duration(n % (1 << 50)) }
		p := Policy{
			Mode:             []deichv1alpha1.FailoverMode{deichv1alpha1.FailoverAutomatic, deichv1alpha1.FailoverManual, "", "Bogus"}[flags&3],
			FailureThreshold: threshold,
			LeaseDuration:    d(lease),
			MaxClockSkew:     d(skew),
		}
		lease, skew = max(int64(p.LeaseDuration), 0), max(int64(p.MaxClockSkew), 0)
		threshold = max(threshold, 1)
		automatic := p.Mode == deichv1alpha1.FailoverAutomatic

		// The active side.
		var renewal Renewal
		if sentAgo != 0 {
			renewal = Renewal{SentAt: t0.Add(-d(sentAgo)), Duration: d(written)}
		}
		as := ActiveState{Renewal: renewal, ChecksFailing: failures, HandOverRequested: flags&4 != 0, PartnerReady: flags&64 != 0}
		now := t0.Add(d(sinceSent))
		ad := DecideActive(p, as, now)
		if ad.Message == "" {
			t.Errorf("DecideActive() gave no message")
		}
		if ad.MayServe() {
			deadline := renewal.SentAt.Add(time.Duration(min(lease, int64(renewal.Duration)) - skew))
			switch {
			case renewal.SentAt.IsZero():
				t.Errorf("DecideActive() = %s without a renewal", ad.Action)
			case as.HandOverRequested || automatic && failures >= threshold && as.PartnerReady:
				t.Errorf("DecideActive() = %s while it must hand over", ad.Action)
			case !now.Before(deadline):
				t.Errorf("DecideActive() = %s at %s, at or after the deadline %s", ad.Action, now, deadline)
			case !ad.NextCheck.After(now) || ad.NextCheck.After(deadline):
				t.Errorf("DecideActive() = %s with NextCheck %s, not in (%s, %s]", ad.Action, ad.NextCheck, now, deadline)
			}
		} else if !ad.NextCheck.IsZero() {
			t.Errorf("DecideActive() = %s with NextCheck %s", ad.Action, ad.NextCheck)
		}

		// The standby side.
		rec := []LeaseRecord{
			{},
			{ResourceVersion: "8", Duration: d(recDuration)},
			{Holder: "sh-kiel", ResourceVersion: "7", Duration: d(recDuration)},
			{Holder: "mv-schwerin", ResourceVersion: "9", Duration: d(recDuration)},
		}[holder&3]
		obs := Observation{Record: rec}
		if flags&8 == 0 {
			obs.ObservedAt = t0
		}
		ss := StandbyState{Site: "mv-schwerin", Primary: flags&16 != 0, Observation: obs, ConsecutiveFailures: failures, TakeOverRequested: flags&32 != 0}
		now = t0.Add(d(sinceObserved))
		sd := DecideStandby(p, ss, now)
		if sd.Message == "" {
			t.Errorf("DecideStandby() gave no message")
		}
		failed := failures >= threshold
		switch sd.Action {
		case StandbyPromote:
			expired := now.Sub(obs.ObservedAt) > time.Duration(max(lease, int64(rec.Duration))+skew)
			free := rec.Released() || expired && (rec.Exists() || ss.Primary)
			wants := ss.TakeOverRequested || automatic && failed || !rec.Exists() && ss.Primary
			if obs.ObservedAt.IsZero() || rec.HeldBy(ss.Site) || !free || !wants {
				t.Errorf("DecideStandby() = Promote; observed %t, held by this site %t, lease free %t, wants the service %t",
					!obs.ObservedAt.IsZero(), rec.HeldBy(ss.Site), free, wants)
			}
		case StandbyRecommend:
			if automatic || !failed {
				t.Errorf("DecideStandby() = Recommend in mode %q after %d failures (threshold %d)", p.Mode, failures, threshold)
			}
		}
		if !sd.NextCheck.IsZero() && (sd.Action != StandbyWait || !sd.NextCheck.After(now)) {
			t.Errorf("DecideStandby() = %s with NextCheck %s at %s", sd.Action, sd.NextCheck, now)
		}
	})
}
