package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
)

// TestLeaseViewIgnoresASnapshotOlderThanThePromotion: the keeper records a completed
// promotion in status before it publishes the snapshot that shows its new lease; a reconcile
// in between must neither report the lease as lost nor set the active site back.
func TestLeaseViewIgnoresASnapshotOlderThanThePromotion(t *testing.T) {
	completed := time.Date(2026, time.March, 1, 3, 0, 0, 0, time.UTC)
	promoted := &deichv1alpha1.SharedService{Status: deichv1alpha1.SharedServiceStatus{
		ActiveSite: "mv-schwerin",
		LastFailover: &deichv1alpha1.FailoverRecord{From: "sh-kiel", To: "mv-schwerin",
			CompletedAt: &metav1.Time{Time: completed}},
	}}
	for _, tt := range []struct {
		name       string
		observedAt time.Time
		wantActive string
		wantEvent  bool
	}{
		{name: "a record read before the promotion completed", observedAt: completed.Add(-time.Second), wantActive: "mv-schwerin"},
		{name: "a record read after it: another site really took the lease", observedAt: completed.Add(time.Second), wantActive: "sh-kiel", wantEvent: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := events.NewFakeRecorder(10)
			r := &SharedServiceReconciler{site: "mv-schwerin", recorder: rec}
			s := &serviceScope{svc: promoted.DeepCopy(), before: promoted.DeepCopy(), lease: &leaseSnapshot{
				read:       true,
				record:     failover.LeaseRecord{Holder: "sh-kiel", Duration: 30 * time.Second, ResourceVersion: "7"},
				observedAt: tt.observedAt,
			}}
			r.applyLeaseView(s)
			if got := s.svc.Status.ActiveSite; got != tt.wantActive {
				t.Errorf("status.activeSite = %q, want %q", got, tt.wantActive)
			}
			var got []string
			for len(rec.Events) > 0 {
				got = append(got, <-rec.Events)
			}
			if lost := len(got) > 0; lost != tt.wantEvent {
				t.Errorf("events %q, want a LeaseLost event: %t", got, tt.wantEvent)
			}
		})
	}
}
