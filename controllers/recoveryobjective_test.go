package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestMinimumRTO(t *testing.T) {
	policy := func(threshold int32, probe, lease time.Duration) deichv1alpha1.RecoveryObjectiveSpec {
		return deichv1alpha1.RecoveryObjectiveSpec{Failover: deichv1alpha1.FailoverPolicy{
			FailureThreshold: threshold,
			ProbeInterval:    metav1.Duration{Duration: probe},
			LeaseDuration:    metav1.Duration{Duration: lease},
		}}
	}
	tests := []struct {
		name string
		spec deichv1alpha1.RecoveryObjectiveSpec
		skew time.Duration
		want time.Duration
	}{
		{"adds detection, lease and skew for the defaults", policy(3, 10*time.Second, 30*time.Second), 2 * time.Second, 62 * time.Second},
		{"counts every probe of the threshold", policy(5, 2*time.Second, 15*time.Second), 2 * time.Second, 27 * time.Second},
		{"needs no skew allowance when clocks are perfect", policy(1, time.Second, 6*time.Second), 0, 7 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := MinimumRTO(tc.spec, tc.skew); got != tc.want {
				t.Errorf("MinimumRTO() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		want     time.Duration
	}{
		{"gives short intervals at least two seconds", time.Second, 2 * time.Second},
		{"follows the interval in between", 5 * time.Second, 5 * time.Second},
		{"caps long intervals at ten seconds", 5 * time.Minute, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := heartbeatTimeout(tc.interval); got != tc.want {
				t.Errorf("heartbeatTimeout(%s) = %s, want %s", tc.interval, got, tc.want)
			}
		})
	}
}
