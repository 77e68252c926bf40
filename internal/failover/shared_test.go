package failover

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func counter() func() string {
	n := 100
	return func() string { n++; return strconv.Itoa(n) }
}

func TestApplyEntryWritesIsACompareAndSwapPerEntry(t *testing.T) {
	held := LeaseRecord{Holder: kiel, Duration: 15 * time.Second, Epoch: 2, ResourceVersion: "7", Configs: []Config{c3}}
	other := LeaseRecord{Holder: schwer, Duration: 15 * time.Second, Epoch: 1, ResourceVersion: "8"}
	entries := map[string]LeaseRecord{"a/one": held, "b/two": other}
	renewed := held
	renewed.RenewTime = t0

	tests := []struct {
		name        string
		writes      []EntryWrite
		wantOK      []bool
		wantEntries map[string]LeaseRecord
	}{
		{name: "a write on the entry's version is applied with a fresh version, the others are left alone",
			writes:      []EntryWrite{{Key: "a/one", Record: renewed}},
			wantOK:      []bool{true},
			wantEntries: map[string]LeaseRecord{"a/one": withVersion(renewed, "101"), "b/two": other}},
		{name: "a write decided on an older version fails and reports the entry as it stands",
			writes:      []EntryWrite{{Key: "a/one", Record: withVersion(renewed, "6")}},
			wantOK:      []bool{false},
			wantEntries: entries},
		{name: "a write with no version creates a missing entry",
			writes:      []EntryWrite{{Key: "c/three", Record: LeaseRecord{Holder: kiel, Epoch: 1}}},
			wantOK:      []bool{true},
			wantEntries: map[string]LeaseRecord{"a/one": held, "b/two": other, "c/three": {Holder: kiel, Epoch: 1, ResourceVersion: "101"}}},
		{name: "a write with no version fails on an entry that exists",
			writes:      []EntryWrite{{Key: "a/one", Record: LeaseRecord{Holder: schwer, Epoch: 3}}},
			wantOK:      []bool{false},
			wantEntries: entries},
		{name: "the second of two writes of one entry in a batch was decided on the same version and fails",
			writes:      []EntryWrite{{Key: "a/one", Record: renewed}, {Key: "a/one", Record: ReleasedRecord(held, t0)}},
			wantOK:      []bool{true, false},
			wantEntries: map[string]LeaseRecord{"a/one": withVersion(renewed, "101"), "b/two": other}},
		{name: "writes of different entries in a batch are independent",
			writes:      []EntryWrite{{Key: "b/two", Record: withVersion(other, "1")}, {Key: "a/one", Record: renewed}},
			wantOK:      []bool{false, true},
			wantEntries: map[string]LeaseRecord{"a/one": withVersion(renewed, "101"), "b/two": other}},
		{name: "a delete without a version removes the entry",
			writes:      []EntryWrite{{Key: "a/one", Delete: true}},
			wantOK:      []bool{true},
			wantEntries: map[string]LeaseRecord{"b/two": other}},
		{name: "a delete on an older version fails",
			writes:      []EntryWrite{{Key: "a/one", Delete: true, Record: LeaseRecord{ResourceVersion: "6"}}},
			wantOK:      []bool{false},
			wantEntries: entries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string]LeaseRecord{"a/one": held, "b/two": other}
			got, res := ApplyEntryWrites(before, tt.writes, counter())
			if diff := cmp.Diff(tt.wantEntries, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(entries, before); diff != "" {
				t.Errorf("ApplyEntryWrites modified its input (-want +got):\n%s", diff)
			}
			for i, r := range res {
				if r.OK != tt.wantOK[i] {
					t.Errorf("write %d: OK = %t, want %t", i, r.OK, tt.wantOK[i])
				}
				if k := tt.writes[i].Key; !tt.writes[i].Delete && cmp.Diff(got[k], r.Record) != "" {
					t.Errorf("write %d: reported %+v, but the entry stands at %+v", i, r.Record, got[k])
				}
			}
		})
	}
}

func withVersion(r LeaseRecord, v string) LeaseRecord {
	r.ResourceVersion = v
	return r
}

func TestEntriesRoundTripThroughALease(t *testing.T) {
	at := time.Date(2026, time.December, 6, 5, 30, 0, 123456000, time.UTC)
	entries := map[string]LeaseRecord{
		"buergerkonto/buergerkonto": {Holder: kiel, Duration: 15 * time.Second, AcquireTime: at, RenewTime: at.Add(5 * time.Second),
			Transitions: 2, ResourceVersion: "9f3a", Epoch: 4, Configs: []Config{c3, TwoSiteConfig(schwer)}, SyncedAt: at.Add(-3 * time.Second)},
		"kfz/zulassung": {Duration: 30 * time.Second, RenewTime: at, ResourceVersion: "77aa", Epoch: 1, Configs: []Config{TwoSiteConfig(kiel)}},
	}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "deich-leases", Name: "deich-3", ResourceVersion: "4711"}}
	if err := ApplyEntries(l, entries); err != nil {
		t.Fatal(err)
	}
	if l.ResourceVersion != "4711" {
		t.Errorf("ApplyEntries changed the record's resourceVersion to %q", l.ResourceVersion)
	}
	if got := l.Annotations[EntryCountAnnotation]; got != "2" {
		t.Errorf("%s = %q, want 2", EntryCountAnnotation, got)
	}
	got, err := EntriesFromLease(l)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(entries, got); diff != "" {
		t.Errorf("entries after a round trip (-want +got):\n%s", diff)
	}

	missing, err := EntriesFromLease(nil)
	if err != nil || len(missing) != 0 {
		t.Errorf("EntriesFromLease(nil) = %v, %v; want no entries", missing, err)
	}
	for _, bad := range []string{`{"a/b":`, `{"a/b":{"holderIdentity":"sh-kiel"}}`, `{"a/b":{"version":"1","renewTime":"yesterday"}}`, `{"a/b":{"version":"1","syncedAt":"now"}}`} {
		l.Annotations[EntriesAnnotation] = bad
		if _, err := EntriesFromLease(l); err == nil {
			t.Errorf("EntriesFromLease(%s) gave no error: a record Deich cannot read must never be overwritten", bad)
		}
	}
}

func TestStepRenewsEarlyToJoinAWriteOfItsSharedRecord(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, c3)
	x.s.Unclaimed = true
	x.until(a, t0, time.Millisecond, time.Second, serving)
	interval := x.p.RenewInterval()

	// A third of the way into the renewal interval nothing is due, and a write of the shared
	// record does not change that.
	early := t0.Add(interval / 3)
	x.s.Batch = map[string]bool{hamburg: true}
	if plan := x.turn(a, early); len(plan.Writes) != 0 {
		t.Fatalf("writes at a third of the interval with a batch open: %+v", plan.Writes)
	}
	// Past half the interval the renewal at the arbiter with an open batch joins it; the
	// others wait for their own time.
	x.s.Batch = map[string]bool{hamburg: true}
	plan := x.turn(a, t0.Add(interval*2/3))
	if len(plan.Writes) != 1 || plan.Writes[0].Arbiter != hamburg || plan.Writes[0].Kind != WriteRenew {
		t.Fatalf("writes past half the interval with a batch open at %s = %+v, want one renewal there", hamburg, plan.Writes)
	}
	x.s.Batch = nil
	if plan := x.turn(a, t0.Add(interval*2/3)); len(plan.Writes) != 0 {
		t.Fatalf("writes past half the interval without a batch: %+v", plan.Writes)
	}
	if plan := x.turn(a, t0.Add(interval)); len(plan.Writes) != 2 {
		t.Fatalf("writes once the interval is over = %+v, want the renewals at %s and %s", plan.Writes, kiel, schwer)
	}
}

func TestRenewalsCarryTheHoldersSyncTime(t *testing.T) {
	a := newArbiters()
	x := newSite(t, kiel, schwer, true, c3)
	x.s.Unclaimed = true
	synced := t0.Add(-4 * time.Second)
	x.s.SyncedAt = synced
	x.until(a, t0, time.Millisecond, time.Second, serving)
	for _, arb := range c3 {
		if got := a.copies[arb].SyncedAt; !got.Equal(synced) {
			t.Errorf("copy at %s after the claim: SyncedAt = %v, want %v", arb, got, synced)
		}
	}
	interval := x.p.RenewInterval()
	later := synced.Add(interval)
	x.s.SyncedAt = later
	if plan := x.turn(a, t0.Add(interval/3)); len(plan.Writes) != 0 {
		t.Fatalf("a newer sync time alone sent writes: %+v", plan.Writes)
	}
	x.turn(a, t0.Add(interval+time.Millisecond))
	for _, arb := range c3 {
		if got := a.copies[arb].SyncedAt; !got.Equal(later) {
			t.Errorf("copy at %s after a renewal: SyncedAt = %v, want %v", arb, got, later)
		}
	}

	// The partner takes the copies over once they expired; it has confirmed nothing.
	y := newSite(t, schwer, kiel, false, c3)
	y.s.PeerChecksFailing, y.s.CopyWithinRPO = 3, true
	y.turn(a, t0.Add(interval))
	y.until(a, t0.Add(interval), 100*time.Millisecond, time.Minute, serving)
	for _, arb := range []string{schwer, hamburg} {
		if rec := a.copies[arb]; !rec.HeldBy(schwer) || !rec.SyncedAt.IsZero() {
			t.Errorf("copy at %s taken over by %s = %+v, want held by %s without a sync time", arb, schwer, rec, schwer)
		}
	}
}
