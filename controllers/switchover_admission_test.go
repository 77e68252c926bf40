package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestCopyWithinRPOJudgesTheCopyNotTheOtherObjectives(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	service := func(reason string, status metav1.ConditionStatus, synced time.Duration) *deichv1alpha1.SharedService {
		svc := &deichv1alpha1.SharedService{}
		svc.Status.Objective = &deichv1alpha1.ObjectiveSummary{RPO: &metav1.Duration{Duration: 30 * time.Second}}
		svc.Status.LastSyncTime = &metav1.Time{Time: now.Add(-synced)}
		svc.Status.Conditions = []metav1.Condition{{Type: deichv1alpha1.ServiceConditionObjectivesMet, Status: status, Reason: reason, Message: "objectives say " + reason}}
		return svc
	}
	for _, tc := range []struct {
		name string
		svc  *deichv1alpha1.SharedService
		// live, if set, is how long ago the copy was last confirmed current as the
		// SharedService reconciler knows it now.
		live     *time.Duration
		want     bool
		wantText string
	}{
		{name: "a copy within the RPO is", svc: service(deichv1alpha1.ServiceReasonWithinRPO, metav1.ConditionTrue, 5*time.Second), want: true, wantText: "objectives say WithinRPO"},
		{name: "a copy older than the RPO is not", svc: service(deichv1alpha1.ServiceReasonCopyTooOld, metav1.ConditionFalse, time.Minute), wantText: "objectives say CopyOlderThanRPO"},
		{name: "a recent copy is, after a promotion slower than the RTO", svc: service(deichv1alpha1.ServiceReasonRecoverySlowerThanRTO, metav1.ConditionFalse, 5*time.Second), want: true, wantText: "within the RPO of 30s"},
		// While they are not, the clocks are stored once per half RPO.
		{name: "a stored time older than the RPO and its refresh is not, after a promotion slower than the RTO", svc: service(deichv1alpha1.ServiceReasonRecoverySlowerThanRTO, metav1.ConditionFalse, time.Minute),
			wantText: "last confirmed current 1m0s ago"},
		{name: "a copy that aged since the condition was written is not", svc: service(deichv1alpha1.ServiceReasonRecoverySlowerThanRTO, metav1.ConditionFalse, time.Minute),
			live: ptr.To(time.Minute), wantText: "last confirmed current 1m0s ago, longer than the RPO of 30s"},
		{name: "a copy confirmed since the status was written is", svc: service(deichv1alpha1.ServiceReasonWithinRPO, metav1.ConditionTrue, 4*time.Minute),
			live: ptr.To(5 * time.Second), want: true, wantText: "objectives say WithinRPO"},
		// While the objectives are met, the clocks are stored once in five minutes.
		{name: "a stored time four minutes old is, while the objectives are met", svc: service(deichv1alpha1.ServiceReasonWithinRPO, metav1.ConditionTrue, 4*time.Minute),
			want: true, wantText: "objectives say WithinRPO"},
		{name: "a stored time six minutes old is not", svc: service(deichv1alpha1.ServiceReasonWithinRPO, metav1.ConditionTrue, 6*time.Minute),
			wantText: "last confirmed current 6m0s ago"},
		{name: "a copy of unknown age is not", svc: &deichv1alpha1.SharedService{}, wantText: "not known yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &SwitchoverReconciler{maxSkew: 2 * time.Second}
			if tc.live != nil {
				r.syncTimes = func(types.NamespacedName) (time.Time, bool) { return now.Add(-*tc.live), true }
			}
			got, text := r.copyWithinRPO(tc.svc, now)
			if got != tc.want || !strings.Contains(text, tc.wantText) {
				t.Errorf("copyWithinRPO = %t, %q; want %t and a text containing %q", got, text, tc.want, tc.wantText)
			}
		})
	}
}
