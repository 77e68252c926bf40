package failover

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestRecordFromLease(t *testing.T) {
	acquired := time.Date(2026, time.March, 1, 2, 0, 0, 123456000, time.UTC)
	renewed := acquired.Add(90 * time.Second)
	tests := []struct {
		name  string
		lease *coordinationv1.Lease
		want  LeaseRecord
	}{
		{name: "reads a held lease",
			lease: &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: "deich-buergerkonto", ResourceVersion: "4711"},
				Spec: coordinationv1.LeaseSpec{
					HolderIdentity:       ptr.To("sh-kiel"),
					LeaseDurationSeconds: ptr.To[int32](30),
					AcquireTime:          &metav1.MicroTime{Time: acquired},
					RenewTime:            &metav1.MicroTime{Time: renewed},
					LeaseTransitions:     ptr.To[int32](2),
				},
			},
			want: LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, AcquireTime: acquired, RenewTime: renewed, Transitions: 2, ResourceVersion: "4711"}},
		{name: "reads a lease with an empty spec as released",
			lease: &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "1"}},
			want:  LeaseRecord{ResourceVersion: "1"}},
		{name: "reads a missing lease as the zero record",
			lease: nil, want: LeaseRecord{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, RecordFromLease(tt.lease)); diff != "" {
				t.Errorf("RecordFromLease() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApplyRecord(t *testing.T) {
	renewed := time.Date(2026, time.March, 1, 2, 0, 0, 0, time.UTC)
	t.Run("writes the record and its resourceVersion as the update's precondition", func(t *testing.T) {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "deich-buergerkonto", Namespace: "buergerdienste", ResourceVersion: "99"}}
		rec := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, AcquireTime: renewed, RenewTime: renewed, Transitions: 3, ResourceVersion: "42", SyncedAt: renewed.Add(-time.Second)}
		ApplyRecord(l, rec)
		want := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "deich-buergerkonto", Namespace: "buergerdienste", ResourceVersion: "42",
				Annotations: map[string]string{SyncedAtAnnotation: "2026-03-01T01:59:59.000000Z"}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To("sh-kiel"),
				LeaseDurationSeconds: ptr.To[int32](30),
				AcquireTime:          &metav1.MicroTime{Time: renewed},
				RenewTime:            &metav1.MicroTime{Time: renewed},
				LeaseTransitions:     ptr.To[int32](3),
			},
		}
		if diff := cmp.Diff(want, l); diff != "" {
			t.Errorf("ApplyRecord() (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(rec, RecordFromLease(l)); diff != "" {
			t.Errorf("RecordFromLease(ApplyRecord()) does not give the record back (-want +got):\n%s", diff)
		}
	})
	t.Run("clears the holder of a released lease", func(t *testing.T) {
		l := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("sh-kiel")}}
		ApplyRecord(l, LeaseRecord{Duration: 30 * time.Second, RenewTime: renewed, ResourceVersion: "43"})
		if l.Spec.HolderIdentity != nil {
			t.Errorf("holderIdentity = %q, want none", *l.Spec.HolderIdentity)
		}
	})
	t.Run("leaves the resourceVersion empty for a lease to create", func(t *testing.T) {
		l := &coordinationv1.Lease{}
		ApplyRecord(l, AcquiredRecord(LeaseRecord{}, "sh-kiel", testPolicy(), renewed))
		if l.ResourceVersion != "" {
			t.Errorf("resourceVersion = %q, want empty", l.ResourceVersion)
		}
	})
}

func TestRecordsWritten(t *testing.T) {
	p := testPolicy()
	now := time.Date(2026, time.March, 1, 4, 0, 0, 0, time.UTC)
	earlier := now.Add(-time.Hour)
	held := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, AcquireTime: earlier, RenewTime: earlier, Transitions: 2, ResourceVersion: "7"}
	released := LeaseRecord{Duration: 30 * time.Second, AcquireTime: earlier, RenewTime: earlier, Transitions: 2, ResourceVersion: "8"}
	tests := []struct {
		name string
		got  LeaseRecord
		want LeaseRecord
	}{
		{name: "a renewal moves renewTime and keeps the acquisition, the count and the precondition",
			got:  RenewedRecord(held, "sh-kiel", p, now),
			want: LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, AcquireTime: earlier, RenewTime: now, Transitions: 2, ResourceVersion: "7"}},
		{name: "a renewal rounds the lease duration up to whole seconds",
			got:  RenewedRecord(held, "sh-kiel", Policy{LeaseDuration: 6500 * time.Millisecond}, now),
			want: LeaseRecord{Holder: "sh-kiel", Duration: 7 * time.Second, AcquireTime: earlier, RenewTime: now, Transitions: 2, ResourceVersion: "7"}},
		{name: "a release clears the holder and keeps the precondition",
			got:  ReleasedRecord(held, now),
			want: LeaseRecord{Duration: 30 * time.Second, AcquireTime: earlier, RenewTime: now, Transitions: 2, ResourceVersion: "7"}},
		{name: "an acquisition of an expired lease counts a transition on top of the observed record",
			got:  AcquiredRecord(held, "mv-schwerin", p, now),
			want: LeaseRecord{Holder: "mv-schwerin", Duration: 30 * time.Second, AcquireTime: now, RenewTime: now, Transitions: 3, ResourceVersion: "7"}},
		{name: "an acquisition of a released lease counts a transition",
			got:  AcquiredRecord(released, "mv-schwerin", p, now),
			want: LeaseRecord{Holder: "mv-schwerin", Duration: 30 * time.Second, AcquireTime: now, RenewTime: now, Transitions: 3, ResourceVersion: "8"}},
		{name: "creating a missing lease starts the count at zero",
			got:  AcquiredRecord(LeaseRecord{}, "sh-kiel", p, now),
			want: LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, AcquireTime: now, RenewTime: now}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecordStates(t *testing.T) {
	tests := []struct {
		name                     string
		rec                      LeaseRecord
		exists, released, ofKiel bool
	}{
		{"a missing lease neither exists nor is released", LeaseRecord{}, false, false, false},
		{"a released lease exists and is held by nobody", LeaseRecord{ResourceVersion: "1"}, true, true, false},
		{"a held lease names its holder", LeaseRecord{Holder: "sh-kiel", ResourceVersion: "1"}, true, false, true},
		{"a record without resourceVersion is not held even if it names a holder", LeaseRecord{Holder: "sh-kiel"}, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []bool{tt.rec.Exists(), tt.rec.Released(), tt.rec.HeldBy("sh-kiel"), tt.rec.HeldBy("")}
			if diff := cmp.Diff([]bool{tt.exists, tt.released, tt.ofKiel, false}, got); diff != "" {
				t.Errorf("Exists, Released, HeldBy(sh-kiel), HeldBy(\"\") (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDurationSeconds(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int32
	}{
		{"keeps whole seconds", 30 * time.Second, 30},
		{"rounds a nanosecond up to a second", time.Nanosecond, 1},
		{"rounds a fraction up", 6500 * time.Millisecond, 7},
		{"gives zero for zero", 0, 0},
		{"gives zero for a negative duration", -time.Second, 0},
		{"clamps what leaseDurationSeconds cannot hold", time.Duration(1<<62 + 1), 1<<31 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := durationSeconds(tt.d); got != tt.want {
				t.Errorf("durationSeconds(%s) = %d, want %d", tt.d, got, tt.want)
			}
		})
	}
}

func TestObserve(t *testing.T) {
	held := LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, RenewTime: t0.Add(-time.Hour), ResourceVersion: "7"}
	seen := Observation{Record: held, ObservedAt: t0}
	later := t0.Add(5 * time.Second)
	change := func(f func(*LeaseRecord)) LeaseRecord {
		r := held
		f(&r)
		return r
	}
	tests := []struct {
		name string
		prev Observation
		cur  LeaseRecord
		want Observation
	}{
		{name: "a manager that starts observes the current record now, however old its renewTime",
			prev: Observation{}, cur: held,
			want: Observation{Record: held, ObservedAt: later}},
		{name: "keeps ObservedAt while the record is unchanged",
			prev: seen, cur: held,
			want: seen},
		{name: "moves ObservedAt when the holder changes",
			prev: seen, cur: change(func(r *LeaseRecord) { r.Holder = "mv-schwerin" }),
			want: Observation{Record: change(func(r *LeaseRecord) { r.Holder = "mv-schwerin" }), ObservedAt: later}},
		{name: "moves ObservedAt when renewTime changes",
			prev: seen, cur: change(func(r *LeaseRecord) { r.RenewTime = t0 }),
			want: Observation{Record: change(func(r *LeaseRecord) { r.RenewTime = t0 }), ObservedAt: later}},
		{name: "moves ObservedAt when only the resourceVersion changes",
			prev: seen, cur: change(func(r *LeaseRecord) { r.ResourceVersion = "8" }),
			want: Observation{Record: change(func(r *LeaseRecord) { r.ResourceVersion = "8" }), ObservedAt: later}},
		{name: "moves ObservedAt when the lease goes missing",
			prev: seen, cur: LeaseRecord{},
			want: Observation{ObservedAt: later}},
		{name: "keeps ObservedAt while the lease stays missing",
			prev: Observation{ObservedAt: t0}, cur: LeaseRecord{},
			want: Observation{ObservedAt: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Observe(tt.prev, tt.cur, later)); diff != "" {
				t.Errorf("Observe() (-want +got):\n%s", diff)
			}
		})
	}
}
