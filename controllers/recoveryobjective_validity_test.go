package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestObjectiveInvalidity(t *testing.T) {
	spec := func(lease, rto time.Duration) deichv1alpha1.RecoveryObjectiveSpec {
		return deichv1alpha1.RecoveryObjectiveSpec{
			RTO: metav1.Duration{Duration: rto},
			Failover: deichv1alpha1.FailoverPolicy{
				FailureThreshold: 3, ProbeInterval: metav1.Duration{Duration: 5 * time.Second}, LeaseDuration: metav1.Duration{Duration: lease},
			},
		}
	}
	tests := []struct {
		name       string
		opts       []RecoveryObjectiveOption
		spec       deichv1alpha1.RecoveryObjectiveSpec
		wantReason string
	}{
		{"a single replica needs no election budget", nil, spec(6*time.Second, time.Minute), ""},
		{"an RTO without room for the skew", nil, spec(15*time.Second, 30*time.Second), deichv1alpha1.ObjectiveReasonRTOTooShort},
		{"the default election fits a 15s lease", []RecoveryObjectiveOption{WithLeaderElection(8*time.Second, time.Second)}, spec(15*time.Second, time.Minute), ""},
		{"the default election does not fit a 6s lease", []RecoveryObjectiveOption{WithLeaderElection(8*time.Second, time.Second)}, spec(6*time.Second, time.Minute),
			deichv1alpha1.ObjectiveReasonLeaderElectionTooSlow},
		{"controller-runtime's election does not fit a 15s lease", []RecoveryObjectiveOption{WithLeaderElection(15*time.Second, 2*time.Second)}, spec(15*time.Second, time.Minute),
			deichv1alpha1.ObjectiveReasonLeaderElectionTooSlow},
		{"a short election fits a 6s lease", []RecoveryObjectiveOption{WithLeaderElection(2*time.Second, 250*time.Millisecond)}, spec(6*time.Second, time.Minute), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecoveryObjectiveReconciler(nil, nil, 2*time.Second, tc.opts...)
			reason, msg := r.invalidity(tc.spec)
			if reason != tc.wantReason {
				t.Fatalf("invalidity() = %q (%s), want %q", reason, msg, tc.wantReason)
			}
			if reason != "" && msg == "" {
				t.Fatalf("invalidity() gives reason %q without a message", reason)
			}
		})
	}
}
