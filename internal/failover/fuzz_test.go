package failover

import (
	"encoding/binary"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// FuzzStep feeds Step arbitrary states — arbitrary observations and renewals per arbiter,
// claims, checks, flags, policies and times, including states no keeper could reach — and
// checks what must hold for every input, restated here independently of the code:
//   - Step does not panic and does not modify its input;
//   - a Plan that serves leaves a state that may serve past now (ServeUntil) and holds its
//     own site's copy, and its NextCheck lies after now and no later than that;
//   - Serve and Hold are never both set;
//   - at most one write per arbiter, each compare-and-swapped on the record observed there;
//   - a renewal or release only of a copy that names the site, a release only once the
//     site's copy of the service is fenced, and a renewal or takeover only of a copy the
//     site has read;
//   - a takeover only of a free copy — released, expired by the site's own clock, or
//     missing and the site may create it — at an epoch above the copy's.
func FuzzStep(f *testing.F) {
	const s = int64(time.Second)
	held := func(holder string, epoch int8, configs uint8, observedAgo time.Duration) fuzzArbiter {
		return fuzzArbiter{observed: true, exists: true, holder: holder, epoch: epoch, configs: configs,
			duration: 30 * time.Second, observedAgo: observedAgo}
	}
	renewed := func(a fuzzArbiter, ago time.Duration) fuzzArbiter {
		a.renewed, a.renewedAgo, a.renewedFor, a.renewedEpoch, a.renewedConfigs = true, ago, a.duration, a.epoch, a.configs
		return a
	}
	seeds := []struct {
		flags           uint32
		threshold       int32
		lease, skew     int64
		checks, peer    int32
		epoch           int64
		configs         uint8
		holdFor         int64
		kiel, schwer, w fuzzArbiter
	}{
		// sh-kiel serves with a witness, its three copies renewed 5s ago: it serves, renews
		// nothing yet.
		{flags: fuzzPrimary | fuzzQuorum | fuzzOwnRead | fuzzPartnerReady | fuzzWithinRPO | fuzzEstablished,
			threshold: 3, lease: 30 * s, skew: 2 * s, epoch: 1, configs: fuzzC3,
			kiel:   renewed(held(kiel, 1, fuzzC3, 5*time.Second), 5*time.Second),
			schwer: renewed(held(kiel, 1, fuzzC3, 5*time.Second), 5*time.Second),
			w:      renewed(held(kiel, 1, fuzzC3, 5*time.Second), 5*time.Second)},
		// mv-schwerin's checks of sh-kiel failed and sh-kiel's copies stood unchanged for 40s:
		// it promotes, taking its own copy and the witness's over.
		{flags: fuzzAtStandby | fuzzQuorum | fuzzOwnRead | fuzzFenced | fuzzPartnerReady | fuzzWithinRPO,
			threshold: 3, lease: 30 * s, skew: 2 * s, peer: 3,
			kiel: held(kiel, 1, fuzzC3, 40*time.Second), schwer: held(kiel, 1, fuzzC3, 40*time.Second), w: held(kiel, 1, fuzzC3, 40*time.Second)},
		// sh-kiel, fenced, releases the two-site copies it holds after a hand-over.
		{flags: fuzzPrimary | fuzzOwnRead | fuzzFenced | fuzzReleasing | fuzzPartnerReady,
			threshold: 3, lease: 30 * s, skew: 2 * s, checks: 5, epoch: 2, configs: fuzzOnSchwerin,
			kiel: held(kiel, 2, fuzzOnSchwerin, time.Second), schwer: held(kiel, 2, fuzzOnSchwerin, time.Second)},
		// sh-kiel's manager has just started, its copy of the service still serving: it holds
		// it as it is until it has read its own cluster's copy.
		{flags: fuzzPrimary | fuzzQuorum, threshold: 3, lease: 30 * s, skew: 2 * s, holdFor: s},
		// Without a witness, mv-schwerin serves on its own cluster's copy after a failover;
		// sh-kiel's cluster is back with an expired copy: the lease moves there.
		{flags: fuzzAtStandby | fuzzOwnRead | fuzzPartnerReady | fuzzWithinRPO | fuzzEstablished,
			threshold: 3, lease: 30 * s, skew: 2 * s, epoch: 2, configs: fuzzOnSchwerin,
			kiel:   held(kiel, 1, fuzzOnSchwerin, time.Minute),
			schwer: renewed(held(schwer, 2, fuzzOnSchwerin, 9*time.Second), 9*time.Second)},
		// A new service at its primary, copies missing: it creates them at once.
		{flags: fuzzPrimary | fuzzQuorum | fuzzOwnRead | fuzzUnclaimed | fuzzFenced,
			threshold: 3, lease: 30 * s, skew: 2 * s,
			kiel: fuzzArbiter{observed: true}, schwer: fuzzArbiter{observed: true}, w: fuzzArbiter{observed: true}},
		// Nonsense: negative durations and epochs, copies seen in the future, no target.
		{flags: fuzzNoTarget | fuzzNilArbiters | fuzzModeBogus | fuzzEstablished | fuzzResuming,
			threshold: -5, lease: -s, skew: -2 * s, checks: -1, peer: 1 << 30, epoch: -7, configs: 0xff, holdFor: -s,
			kiel:   renewed(held(kiel, -3, 0xff, -time.Hour), -time.Minute),
			schwer: fuzzArbiter{observed: true, exists: true, epoch: 127, observedAgo: -time.Second}},
	}
	for _, sd := range seeds {
		var copies []byte
		for _, a := range []fuzzArbiter{sd.kiel, sd.schwer, sd.w} {
			copies = append(copies, a.encode()...)
		}
		f.Add(sd.flags, sd.threshold, sd.lease, sd.skew, sd.checks, sd.peer, sd.epoch, sd.configs, sd.holdFor, copies)
	}

	f.Fuzz(func(t *testing.T, flags uint32, threshold int32, lease, skew int64, checks, peer int32,
		epoch int64, configs uint8, holdFor int64, copies []byte) {
		p, in, now := decodeStepInput(flags, threshold, lease, skew, checks, peer, epoch, configs, holdFor, copies)
		_, untouched, _ := decodeStepInput(flags, threshold, lease, skew, checks, peer, epoch, configs, holdFor, copies)

		next, plan := Step(p, in, now)

		if diff := cmp.Diff(untouched, in); diff != "" {
			t.Errorf("Step() modified its input (-before +after):\n%s", diff)
		}
		if plan.Serve && plan.Hold {
			t.Errorf("Step() = Serve and Hold at once (%s)", plan.Reason)
		}
		if plan.Serve {
			until := next.ServeUntil(p, now)
			_, own := next.holds(p, next.Site, now)
			switch {
			case !until.After(now):
				t.Errorf("Step() = Serve (%s) on a state whose ServeUntil %s is not after now %s", plan.Reason, until, now)
			case !own:
				t.Errorf("Step() = Serve (%s) on a state that does not hold %s's own copy", plan.Reason, next.Site)
			case !plan.NextCheck.After(now) || plan.NextCheck.After(until):
				t.Errorf("Step() = Serve (%s) with NextCheck %s, not in (%s, %s]", plan.Reason, plan.NextCheck, now, until)
			}
		}
		written := map[string]bool{}
		for _, w := range plan.Writes {
			if written[w.Arbiter] {
				t.Errorf("Step() writes %s twice: %v", w.Arbiter, plan.Writes)
			}
			written[w.Arbiter] = true
			obs := in.Arbiters[w.Arbiter].Observation
			rec := obs.Record
			if obs.ObservedAt.IsZero() && w.Kind != WriteRelease {
				t.Errorf("Step() writes %s's copy (%s), which it never read", w.Arbiter, w.Kind)
			}
			if w.Record.ResourceVersion != rec.ResourceVersion {
				t.Errorf("Step() writes %s's copy (%s) on resourceVersion %q, not on the observed %q", w.Arbiter, w.Kind, w.Record.ResourceVersion, rec.ResourceVersion)
			}
			switch w.Kind {
			case WriteRelease:
				if !rec.HeldBy(in.Site) || !in.Fenced {
					t.Errorf("Step() releases %s's copy held by %q while fenced %t", w.Arbiter, rec.Holder, in.Fenced)
				}
			case WriteRenew:
				if !rec.HeldBy(in.Site) || w.Record.Holder != in.Site {
					t.Errorf("Step() renews %s's copy held by %q as %q", w.Arbiter, rec.Holder, w.Record.Holder)
				}
			case WriteAcquire:
				expired := rec.Exists() && now.After(PromoteAfter(p, obs))
				mayCreate := !rec.Exists() && (in.Primary && in.Unclaimed || plan.Serve)
				if !rec.Released() && !expired && !mayCreate || w.Record.Holder != in.Site || w.Record.Epoch <= rec.Epoch {
					t.Errorf("Step() takes %s's copy (holder %q, epoch %d, observed %s ago) over as %q at epoch %d",
						w.Arbiter, rec.Holder, rec.Epoch, now.Sub(obs.ObservedAt), w.Record.Holder, w.Record.Epoch)
				}
			default:
				t.Errorf("Step() asks for a write of kind %s", w.Kind)
			}
		}
	})
}

// The flags of FuzzStep's input, by bit.
const (
	fuzzAtStandby uint32 = 1 << iota // the deciding site is mv-schwerin, not sh-kiel
	fuzzPrimary
	fuzzQuorum // the target is QuorumConfig, not TwoSiteConfig(partner)
	fuzzOwnRead
	fuzzUnclaimed
	fuzzFenced
	fuzzHandOver
	fuzzTakeOver
	fuzzPartnerReady
	fuzzWithinRPO
	fuzzEstablished
	fuzzReleasing
	fuzzResuming
	fuzzModeManual
	fuzzModeBogus
	fuzzNoTarget    // the target is empty, as no keeper sets it
	fuzzNilArbiters // Arbiters is nil rather than empty
)

// fuzzConfigs are the configurations a fuzzed claim or copy stamp is made of, one per bit of
// its mask.
var fuzzConfigs = []Config{
	TwoSiteConfig(schwer), TwoSiteConfig(kiel), c3, NewConfig(kiel, schwer), TwoSiteConfig(hamburg),
	NewConfig(kiel, hamburg), NewConfig(schwer, "by-muenchen"), nil,
}

// Masks of fuzzConfigs.
const (
	fuzzOnSchwerin uint8 = 1 << 0
	fuzzC3         uint8 = 1 << 2
)

// fuzzArbiterSites are the sites a fuzzed state has arbiters at, in the order of FuzzStep's
// copies argument: both partners, the witness, and a site the service does not know.
var fuzzArbiterSites = []string{kiel, schwer, hamburg, "by-muenchen"}

// fuzzHolders are the holders a fuzzed copy may name.
var fuzzHolders = []string{"", kiel, schwer, hamburg}

// fuzzArbiter is one arbiter's entry in FuzzStep's copies argument, as fuzzArbiterBytes bytes.
// Times are before now; negative ones after it.
type fuzzArbiter struct {
	absent, observed, exists bool
	holder                   string
	epoch                    int8
	configs                  uint8
	duration, observedAgo    time.Duration
	renewed                  bool
	renewedAgo, renewedFor   time.Duration
	renewedEpoch             int8
	renewedConfigs           uint8
}

const fuzzArbiterBytes = 11

// fuzzTick is the unit of the encoded times: a tenth of a second.
const fuzzTick = 100 * time.Millisecond

func (a fuzzArbiter) encode() []byte {
	var b0 byte
	for i, set := range []bool{!a.absent, a.observed, a.exists, false, false, a.renewed} {
		if set {
			b0 |= 1 << i
		}
	}
	b0 |= byte(max(slices.Index(fuzzHolders, a.holder), 0)) << 3
	b := []byte{b0, byte(a.epoch), a.configs, byte(a.duration / fuzzTick / 4)}
	b = binary.BigEndian.AppendUint16(b, uint16(int16(a.observedAgo/fuzzTick)))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(a.renewedAgo/fuzzTick)))
	return append(b, byte(a.renewedFor/fuzzTick/4), byte(a.renewedEpoch), a.renewedConfigs)
}

// decodeArbiter reads one arbiter's entry; missing bytes read as zero.
func decodeArbiter(b []byte, now time.Time, rv string) (Arbiter, bool) {
	b = append(slices.Clone(b), make([]byte, fuzzArbiterBytes)...)
	if b[0]&1 == 0 {
		return Arbiter{}, false
	}
	var a Arbiter
	if b[0]&4 != 0 {
		a.Observation.Record = LeaseRecord{
			Holder:          fuzzHolders[b[0]>>3&3],
			Duration:        time.Duration(b[3]) * 4 * fuzzTick,
			ResourceVersion: rv,
			Epoch:           int64(int8(b[1])),
			Configs:         fuzzConfigMask(b[2]),
		}
	}
	if b[0]&2 != 0 {
		a.Observation.ObservedAt = now.Add(-time.Duration(int16(binary.BigEndian.Uint16(b[4:]))) * fuzzTick)
	}
	if b[0]&32 != 0 {
		a.Renewal = Renewal{
			SentAt:   now.Add(-time.Duration(int16(binary.BigEndian.Uint16(b[6:]))) * fuzzTick),
			Duration: time.Duration(b[8]) * 4 * fuzzTick,
			Epoch:    int64(int8(b[9])),
			Configs:  fuzzConfigMask(b[10]),
		}
	}
	return a, true
}

func fuzzConfigMask(m uint8) []Config {
	var cs []Config
	for i, c := range fuzzConfigs {
		if m&(1<<i) != 0 {
			cs = append(cs, c)
		}
	}
	return cs
}

// decodeStepInput builds FuzzStep's policy, state and time from its arguments.
func decodeStepInput(flags uint32, threshold int32, lease, skew int64, checks, peer int32,
	epoch int64, configs uint8, holdFor int64, copies []byte) (Policy, ServiceState, time.Time) {
	// Durations within ±2^50ns (13 days) keep every sum far from overflowing.
	d := func(n int64) time.Duration { return time.Duration(n % (1 << 50)) }
	has := func(bit uint32) bool { return flags&bit != 0 }
	now := t0
	p := Policy{Mode: deichv1alpha1.FailoverAutomatic, FailureThreshold: threshold, LeaseDuration: d(lease), MaxClockSkew: d(skew)}
	switch {
	case has(fuzzModeBogus):
		p.Mode = "Sometimes"
	case has(fuzzModeManual):
		p.Mode = deichv1alpha1.FailoverManual
	}
	site, partner := kiel, schwer
	if has(fuzzAtStandby) {
		site, partner = schwer, kiel
	}
	s := ServiceState{
		Site: site, Partner: partner, Primary: has(fuzzPrimary),
		Target:  TwoSiteConfig(partner),
		OwnRead: has(fuzzOwnRead), Unclaimed: has(fuzzUnclaimed), Fenced: has(fuzzFenced),
		ChecksFailing: checks, PeerChecksFailing: peer,
		HandOverRequested: has(fuzzHandOver), TakeOverRequested: has(fuzzTakeOver),
		PartnerReady: has(fuzzPartnerReady), CopyWithinRPO: has(fuzzWithinRPO),
		Claim: Claim{Epoch: epoch, Configs: fuzzConfigMask(configs),
			Established: has(fuzzEstablished), Releasing: has(fuzzReleasing), Resuming: has(fuzzResuming)},
	}
	switch {
	case has(fuzzNoTarget):
		s.Target = nil
	case has(fuzzQuorum):
		s.Target = c3
	}
	if holdFor != 0 {
		s.HoldUntil = now.Add(d(holdFor))
	}
	if !has(fuzzNilArbiters) {
		s.Arbiters = map[string]Arbiter{}
	}
	for i, name := range fuzzArbiterSites {
		start := i * fuzzArbiterBytes
		if start >= len(copies) {
			break
		}
		a, ok := decodeArbiter(copies[start:min(start+fuzzArbiterBytes, len(copies))], now, strconv.Itoa(i+1))
		if !ok {
			continue
		}
		if s.Arbiters == nil {
			s.Arbiters = map[string]Arbiter{}
		}
		s.Arbiters[name] = a
	}
	return p, s, now
}

// TestFuzzStepSeedsDecodeAsWritten keeps FuzzStep's seed corpus meaningful: its encoding of
// an arbiter reads back as the copy and renewal it describes.
func TestFuzzStepSeedsDecodeAsWritten(t *testing.T) {
	a := fuzzArbiter{observed: true, exists: true, holder: schwer, epoch: -3, configs: fuzzC3 | fuzzOnSchwerin,
		duration: 30 * time.Second, observedAgo: 40 * time.Second,
		renewed: true, renewedAgo: -time.Minute, renewedFor: 6 * time.Second, renewedEpoch: 2, renewedConfigs: fuzzC3}
	got, ok := decodeArbiter(a.encode(), t0, "4")
	want := Arbiter{
		Observation: Observation{
			Record:     LeaseRecord{Holder: schwer, Duration: 30 * time.Second, ResourceVersion: "4", Epoch: -3, Configs: []Config{TwoSiteConfig(schwer), c3}},
			ObservedAt: t0.Add(-40 * time.Second),
		},
		Renewal: Renewal{SentAt: t0.Add(time.Minute), Duration: 6 * time.Second, Epoch: 2, Configs: []Config{c3}},
	}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("decodeArbiter(encode()) = %t (-want +got):\n%s", ok, diff)
	}
	if _, ok := decodeArbiter(fuzzArbiter{absent: true}.encode(), t0, "1"); ok {
		t.Error("an absent arbiter decodes as present")
	}
	if got := len(a.encode()); got != fuzzArbiterBytes {
		t.Errorf("an arbiter encodes as %d bytes, want %d", got, fuzzArbiterBytes)
	}
}
