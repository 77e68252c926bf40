package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/testobjects"
)

// TestRecordPromotion: the reconcile, the only writer of the service's status, records a
// promotion when the keeper starts it and completes it once this site serves on a newer claim;
// a restart of a serving manager and the first protection of a service record nothing.
func TestRecordPromotion(t *testing.T) {
	now := time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)
	detected := now.Add(-40 * time.Second)
	const site, partner = "mv-schwerin", "sh-kiel"
	leaseOf := func(holder string, epoch int64) *deichv1alpha1.LeaseStatus {
		return &deichv1alpha1.LeaseStatus{Holder: holder, Epoch: epoch}
	}
	started := &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "health checks failed", DetectedAt: &metav1.Time{Time: detected}}
	earlier := deichv1alpha1.FailoverRecord{From: site, To: partner, CompletedAt: &metav1.Time{Time: now.Add(-time.Hour)}}
	for _, tt := range []struct {
		name       string
		status     deichv1alpha1.SharedServiceStatus
		snap       leaseSnapshot
		wantEvents []string
		wantLast   *deichv1alpha1.FailoverRecord
		wantCount  int // failoverHistory entries
		wantRecord bool
		// checks replaces the health checks in the status this reconcile computes; the
		// status before it keeps status.healthChecks.
		checks []deichv1alpha1.HealthCheckStatus
		// switchover names the Switchover that moves the service.
		switchover string
		// rto is the objective's RTO; zero: no objective loaded.
		rto time.Duration
	}{
		{
			name:       "the keeper starts promoting: recorded without completedAt",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4)},
			snap:       leaseSnapshot{read: true, promoting: true, message: "health checks of sh-kiel failed 3 times in a row", record: failover.LeaseRecord{Holder: partner, Epoch: 4}},
			wantEvents: []string{deichv1alpha1.ServiceEventFailingOver},
			wantLast:   &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "health checks of sh-kiel failed 3 times in a row", DetectedAt: &metav1.Time{Time: now}},
		},
		{
			name:       "serving on a newer claim completes the recorded promotion",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4), LastFailover: started.DeepCopy(), FailoverHistory: []deichv1alpha1.FailoverRecord{earlier}},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5},
			wantEvents: []string{deichv1alpha1.ServiceEventFailedOver},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "health checks failed", DetectedAt: &metav1.Time{Time: detected},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{Duration: 40 * time.Second}},
			wantCount: 2,
		},
		{
			name:       "a promotion slower than the RTO is recorded with a Warning",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4), LastFailover: started.DeepCopy(), FailoverHistory: []deichv1alpha1.FailoverRecord{earlier}},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5},
			rto:        30 * time.Second,
			wantEvents: []string{deichv1alpha1.ServiceEventFailedOver, deichv1alpha1.ServiceEventRecoverySlowerThanRTO},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "health checks failed", DetectedAt: &metav1.Time{Time: detected},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{Duration: 40 * time.Second}},
			wantCount: 2,
		},
		{
			name:       "a promotion within the RTO raises no Warning",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4), LastFailover: started.DeepCopy(), FailoverHistory: []deichv1alpha1.FailoverRecord{earlier}},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5},
			rto:        time.Minute,
			wantEvents: []string{deichv1alpha1.ServiceEventFailedOver},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "health checks failed", DetectedAt: &metav1.Time{Time: detected},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{Duration: 40 * time.Second}},
			wantCount: 2,
		},
		{
			name:       "a promotion whose start was not recorded is recorded complete, with both events",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4)},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5, message: "serving"},
			wantEvents: []string{deichv1alpha1.ServiceEventFailingOver, deichv1alpha1.ServiceEventFailedOver},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "serving", DetectedAt: &metav1.Time{Time: now},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{}},
			wantCount: 1,
		},
		{
			name: "a promotion whose start was not recorded dates the failure from the old active's checks as they stood before",
			status: deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4), HealthChecks: []deichv1alpha1.HealthCheckStatus{
				{Name: "workload-sh-kiel", ConsecutiveFailures: 9, LastTransitionTime: &metav1.Time{Time: detected}},
			}},
			// By now this site is active: its own check has just begun failing, sh-kiel's is
			// no longer run.
			checks: []deichv1alpha1.HealthCheckStatus{
				{Name: "workload-mv-schwerin", ConsecutiveFailures: 1, LastTransitionTime: &metav1.Time{Time: now}},
			},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5, message: "serving"},
			wantEvents: []string{deichv1alpha1.ServiceEventFailingOver, deichv1alpha1.ServiceEventFailedOver},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "serving", DetectedAt: &metav1.Time{Time: detected},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{Duration: 40 * time.Second}},
			wantCount: 1,
		},
		{
			name:       "a Switchover's promotion whose start was not recorded names the Switchover",
			status:     deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 4)},
			snap:       leaseSnapshot{read: true, serving: true, epoch: 5, message: "serving"},
			switchover: "move-to-schwerin",
			wantEvents: []string{deichv1alpha1.ServiceEventFailingOver, deichv1alpha1.ServiceEventFailedOver},
			wantLast: &deichv1alpha1.FailoverRecord{From: partner, To: site, Reason: "Switchover move-to-schwerin: serving", DetectedAt: &metav1.Time{Time: now},
				CompletedAt: &metav1.Time{Time: now}, RecoveryTime: &metav1.Duration{}},
			wantCount: 1,
		},
		{
			name:   "a restarted manager serving on the claim status recorded records nothing",
			status: deichv1alpha1.SharedServiceStatus{Lease: leaseOf(site, 5)},
			snap:   leaseSnapshot{read: true, serving: true, epoch: 5},
		},
		{
			name:   "the first claim of a service newly put under protection is no failover",
			status: deichv1alpha1.SharedServiceStatus{},
			snap:   leaseSnapshot{read: true, serving: true, epoch: 1},
		},
		{
			name:     "a promotion given up before it served is dropped",
			status:   deichv1alpha1.SharedServiceStatus{Lease: leaseOf(partner, 6), LastFailover: started.DeepCopy(), FailoverHistory: []deichv1alpha1.FailoverRecord{earlier}},
			snap:     leaseSnapshot{read: true},
			wantLast: &earlier, wantCount: 1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &SharedServiceReconciler{site: site, recorder: rec, clock: clocktesting.NewFakePassiveClock(now)}
			svc := &deichv1alpha1.SharedService{
				ObjectMeta: metav1.ObjectMeta{Namespace: "buergerkonto", Name: "buergerkonto"},
				Spec: deichv1alpha1.SharedServiceSpec{PrimarySite: partner, StandbySite: site, HealthChecks: []deichv1alpha1.HealthCheck{
					{Name: "workload-sh-kiel", Site: partner}, {Name: "workload-mv-schwerin", Site: site},
				}},
				Status: tt.status,
			}
			snap := tt.snap
			s := &serviceScope{svc: svc.DeepCopy(), before: svc.DeepCopy(), lease: &snap, switchover: tt.switchover}
			if tt.rto > 0 {
				s.objective = testobjects.MakeRecoveryObjective("buergerdienste").RTO(tt.rto).Obj()
			}
			if tt.checks != nil {
				s.svc.Status.HealthChecks = tt.checks
			}
			r.recordPromotion(s)
			got := s.svc.Status
			if tt.wantLast == nil {
				tt.wantLast = tt.status.LastFailover
			}
			if !sameRecord(got.LastFailover, tt.wantLast) {
				t.Errorf("lastFailover = %+v, want %+v", got.LastFailover, tt.wantLast)
			}
			if tt.wantCount == 0 {
				tt.wantCount = len(tt.status.FailoverHistory)
			}
			if len(got.FailoverHistory) != tt.wantCount {
				t.Errorf("failoverHistory has %d entries, want %d", len(got.FailoverHistory), tt.wantCount)
			}
			var evts []string
			for len(rec.Events) > 0 {
				evts = append(evts, <-rec.Events)
			}
			if len(evts) != len(tt.wantEvents) {
				t.Fatalf("events %q, want %q", evts, tt.wantEvents)
			}
			for i, want := range tt.wantEvents {
				if !strings.Contains(evts[i], want) {
					t.Errorf("event %d is %q, want %s", i, evts[i], want)
				}
			}
		})
	}
}

// TestRecordPromotionOnceFromAStaleCache reconciles twice from the status as it was before a
// promotion was recorded, as a reconcile does whose cache lags behind the status patch: the
// promotion is recorded, and FailedOver emitted, once. Had the first patch failed, the second
// reconcile records it.
func TestRecordPromotionOnceFromAStaleCache(t *testing.T) {
	now := time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)
	const site, partner = "mv-schwerin", "sh-kiel"
	stale := &deichv1alpha1.SharedService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "buergerkonto", Name: "buergerkonto"},
		Spec:       deichv1alpha1.SharedServiceSpec{PrimarySite: partner, StandbySite: site},
		Status:     deichv1alpha1.SharedServiceStatus{Lease: &deichv1alpha1.LeaseStatus{Holder: partner, Epoch: 4}},
	}
	reconcile := func(r *SharedServiceReconciler, patched bool) (*serviceScope, int) {
		snap := leaseSnapshot{read: true, serving: true, epoch: 5, message: "serving"}
		s := &serviceScope{svc: stale.DeepCopy(), before: stale.DeepCopy(), owner: types.NamespacedName{Namespace: "buergerkonto", Name: "buergerkonto"}, lease: &snap}
		r.recordPromotion(s)
		if patched {
			r.notePromotionRecorded(s)
		}
		failedOver := 0
		for len(r.recorder.(*events.FakeRecorder).Events) > 0 {
			if strings.Contains(<-r.recorder.(*events.FakeRecorder).Events, deichv1alpha1.ServiceEventFailedOver) {
				failedOver++
			}
		}
		return s, failedOver
	}

	r := &SharedServiceReconciler{site: site, recorder: events.NewFakeRecorder(10), clock: clocktesting.NewFakePassiveClock(now)}
	if s, n := reconcile(r, true); n != 1 || len(s.svc.Status.FailoverHistory) != 1 {
		t.Fatalf("first reconcile: %d FailedOver events, history %v; want one of each", n, s.svc.Status.FailoverHistory)
	}
	if s, n := reconcile(r, true); n != 0 || len(s.svc.Status.FailoverHistory) != 0 {
		t.Errorf("second reconcile from the stale status: %d FailedOver events, history %v; want none: the patched status has the record", n, s.svc.Status.FailoverHistory)
	}

	r = &SharedServiceReconciler{site: site, recorder: events.NewFakeRecorder(10), clock: clocktesting.NewFakePassiveClock(now)}
	reconcile(r, false)
	if s, n := reconcile(r, true); n != 1 || len(s.svc.Status.FailoverHistory) != 1 {
		t.Errorf("after a failed patch: %d FailedOver events, history %v; want the promotion recorded again", n, s.svc.Status.FailoverHistory)
	}
}

// TestHandedOverOnceWhenTheReleaseIsSeen records HandedOver at the first reconcile that reads
// this site's claim released, whether or not the keeper is still releasing by then, and not
// again once status says the lease is released.
func TestHandedOverOnceWhenTheReleaseIsSeen(t *testing.T) {
	const site = "sh-kiel"
	released := failover.LeaseRecord{ResourceVersion: "7", Epoch: 1}
	for _, tt := range []struct {
		name        string
		before      *deichv1alpha1.LeaseStatus
		handingOver bool
		want        int
	}{
		{"released while the keeper still releases", &deichv1alpha1.LeaseStatus{Holder: site, Epoch: 1}, true, 1},
		{"released, the keeper done releasing", &deichv1alpha1.LeaseStatus{Holder: site, Epoch: 1}, false, 1},
		{"status already says released", &deichv1alpha1.LeaseStatus{Epoch: 1}, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &SharedServiceReconciler{site: site, recorder: rec, clock: clocktesting.NewFakePassiveClock(time.Now())}
			svc := &deichv1alpha1.SharedService{
				ObjectMeta: metav1.ObjectMeta{Namespace: "buergerkonto", Name: "buergerkonto"},
				Spec:       deichv1alpha1.SharedServiceSpec{PrimarySite: site, StandbySite: "mv-schwerin"},
				Status:     deichv1alpha1.SharedServiceStatus{ActiveSite: site, Lease: tt.before},
			}
			snap := leaseSnapshot{read: true, record: released, handingOver: tt.handingOver}
			r.applyLeaseView(&serviceScope{svc: svc.DeepCopy(), before: svc.DeepCopy(), lease: &snap})
			got := 0
			for len(rec.Events) > 0 {
				if strings.Contains(<-rec.Events, deichv1alpha1.ServiceEventHandedOver) {
					got++
				}
			}
			if got != tt.want {
				t.Errorf("%d HandedOver events, want %d", got, tt.want)
			}
		})
	}
}

func sameRecord(a, b *deichv1alpha1.FailoverRecord) bool {
	if a == nil || b == nil {
		return a == b
	}
	timeEq := func(x, y *metav1.Time) bool { return x == nil && y == nil || x != nil && y != nil && x.Equal(y) }
	durEq := func(x, y *metav1.Duration) bool {
		return x == nil && y == nil || x != nil && y != nil && x.Duration == y.Duration
	}
	return a.From == b.From && a.To == b.To && a.Reason == b.Reason && timeEq(a.DetectedAt, b.DetectedAt) &&
		timeEq(a.CompletedAt, b.CompletedAt) && durEq(a.RecoveryTime, b.RecoveryTime)
}

func TestCopyWithinRPOWhenLastHealthy(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	p := failover.Policy{ProbeInterval: time.Second, MaxClockSkew: time.Second}
	objective := &deichv1alpha1.RecoveryObjective{Spec: deichv1alpha1.RecoveryObjectiveSpec{RPO: metav1.Duration{Duration: 10 * time.Second}}}
	at := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: now.Add(d)} }
	failing := func(n int32, probed time.Duration) []deichv1alpha1.HealthCheckStatus {
		return []deichv1alpha1.HealthCheckStatus{{Name: "kiel-web", ConsecutiveFailures: n, LastProbeTime: at(probed)}}
	}
	for _, tc := range []struct {
		name      string
		lastSync  *metav1.Time
		checks    []deichv1alpha1.HealthCheckStatus
		objective *deichv1alpha1.RecoveryObjective
		want      bool
	}{
		{name: "no objective: no RPO to keep", objective: nil, want: true},
		{name: "never synced", objective: objective, want: false},
		{name: "synced 5s before the first failure", objective: objective, lastSync: at(-8 * time.Second), checks: failing(3, 0), want: true},
		{name: "synced 11s before the last success: within the skew margin", objective: objective, lastSync: at(-14 * time.Second), checks: failing(3, 0), want: true},
		{name: "synced 12s before the last success", objective: objective, lastSync: at(-15 * time.Second), checks: failing(3, 0), want: false},
		{name: "a long outage after a current copy", objective: objective, lastSync: at(-time.Hour - 2*time.Second), checks: failing(3600, 0), want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &deichv1alpha1.SharedService{Status: deichv1alpha1.SharedServiceStatus{LastSyncTime: tc.lastSync, HealthChecks: tc.checks}}
			if got, _ := copyWithinRPOWhenLastHealthy(svc.Status.LastSyncTime, statusRuns(svc.Status.HealthChecks), tc.objective, p, now); got != tc.want {
				t.Errorf("copyWithinRPOWhenLastHealthy = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestJudgedHolder: while this site promotes, the copies it has written name it before it
// holds a majority; the checks must go on judging the partner whose failures the promotion
// stands on, or the keeper would give the promotion up.
func TestJudgedHolder(t *testing.T) {
	const site, partner = "mv-schwerin", "sh-kiel"
	for _, tt := range []struct {
		name string
		snap leaseSnapshot
		want string
	}{
		{name: "the partner holds the lease", snap: leaseSnapshot{read: true, record: failover.LeaseRecord{Holder: partner, Epoch: 1}}, want: partner},
		{name: "this site promotes: its first copies name it, it holds no majority yet", snap: leaseSnapshot{read: true, promoting: true, epoch: 2, record: failover.LeaseRecord{Holder: site, Epoch: 2}}},
		{name: "this site serves", snap: leaseSnapshot{read: true, serving: true, epoch: 2, record: failover.LeaseRecord{Holder: site, Epoch: 2}}, want: site},
		{name: "every copy was released", snap: leaseSnapshot{read: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := judgedHolder(site, tt.snap); got != tt.want {
				t.Errorf("judgedHolder() = %q, want %q", got, tt.want)
			}
		})
	}
}
