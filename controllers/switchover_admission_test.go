package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestCopyWithinRPOJudgesTheCopyNotTheOtherObjectives(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	r := &SwitchoverReconciler{maxSkew: 2 * time.Second}
	service := func(reason string, status metav1.ConditionStatus, synced time.Duration) *deichv1alpha1.SharedService {
		svc := &deichv1alpha1.SharedService{}
		svc.Status.Objective = &deichv1alpha1.ObjectiveSummary{RPO: &metav1.Duration{Duration: 30 * time.Second}}
		svc.Status.LastSyncTime = &metav1.Time{Time: now.Add(-synced)}
		svc.Status.Conditions = []metav1.Condition{{Type: deichv1alpha1.ServiceConditionObjectivesMet, Status: status, Reason: reason, Message: "objectives say " + reason}}
		return svc
	}
	for _, tc := range []struct {
		name     string
		svc      *deichv1alpha1.SharedService
		want     bool
		wantText string
	}{
		{name: "a copy within the RPO is", svc: service(deichv1alpha1.ServiceReasonWithinRPO, metav1.ConditionTrue, 5*time.Second), want: true, wantText: "objectives say WithinRPO"},
		{name: "a copy older than the RPO is not", svc: service(deichv1alpha1.ServiceReasonCopyTooOld, metav1.ConditionFalse, time.Minute), wantText: "objectives say CopyOlderThanRPO"},
		{name: "a recent copy is, after a promotion slower than the RTO", svc: service(deichv1alpha1.ServiceReasonRecoverySlowerThanRTO, metav1.ConditionFalse, 5*time.Second), want: true, wantText: "within the RPO of 30s"},
		{name: "a copy that aged since the condition was written is not", svc: service(deichv1alpha1.ServiceReasonRecoverySlowerThanRTO, metav1.ConditionFalse, time.Minute), wantText: "longer than the RPO of 30s"},
		{name: "a copy of unknown age is not", svc: &deichv1alpha1.SharedService{}, wantText: "not known yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, text := r.copyWithinRPO(tc.svc, now)
			if got != tc.want || !strings.Contains(text, tc.wantText) {
				t.Errorf("copyWithinRPO = %t, %q; want %t and a text containing %q", got, text, tc.want, tc.wantText)
			}
		})
	}
}
