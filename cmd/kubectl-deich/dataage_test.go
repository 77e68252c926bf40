package main

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestDataAge(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	service := func(met metav1.ConditionStatus, synced, lag time.Duration) *deichv1alpha1.SharedService {
		svc := &deichv1alpha1.SharedService{}
		if synced > 0 {
			svc.Status.LastSyncTime = &metav1.Time{Time: now.Add(-synced)}
		}
		if lag > 0 {
			svc.Status.ReplicationLag = &metav1.Duration{Duration: lag}
		}
		if met != "" {
			svc.Status.Conditions = []metav1.Condition{{Type: deichv1alpha1.ServiceConditionObjectivesMet, Status: met}}
		}
		return svc
	}
	for _, tc := range []struct {
		name string
		svc  *deichv1alpha1.SharedService
		want time.Duration // 0: unknown
	}{
		// The clocks of a status within the RPO are written once in five minutes: the lag
		// when it was written says more than the time since lastSyncTime.
		{name: "within the RPO: the lag as written", svc: service(metav1.ConditionTrue, 4*time.Minute, 1200*time.Millisecond), want: 1200 * time.Millisecond},
		{name: "missed: the time since the last sync", svc: service(metav1.ConditionFalse, 4*time.Minute, 45*time.Second), want: 4 * time.Minute},
		{name: "missed: the data's lag where larger", svc: service(metav1.ConditionFalse, 10*time.Second, 2*time.Minute), want: 2 * time.Minute},
		{name: "no condition yet: the time since the last sync", svc: service("", 20*time.Second, time.Second), want: 20 * time.Second},
		{name: "within the RPO without a lag: the time since the last sync", svc: service(metav1.ConditionTrue, 20*time.Second, 0), want: 20 * time.Second},
		{name: "nothing known", svc: service(metav1.ConditionUnknown, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := dataAge(tc.svc, now)
			switch {
			case tc.want == 0 && got != nil:
				t.Errorf("dataAge = %s, want unknown", got.Duration)
			case tc.want != 0 && (got == nil || got.Duration != tc.want):
				t.Errorf("dataAge = %v, want %s", got, tc.want)
			}
		})
	}
}
