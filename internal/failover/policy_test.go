package failover

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testobjects"
)

func TestPolicyFrom(t *testing.T) {
	defaults := Policy{
		Mode:             deichv1alpha1.FailoverAutomatic,
		FailureThreshold: 3,
		ProbeInterval:    10 * time.Second,
		LeaseDuration:    30 * time.Second,
		MaxClockSkew:     2 * time.Second,
	}
	tests := []struct {
		name string
		obj  *deichv1alpha1.RecoveryObjective
		want Policy
	}{
		{name: "reads the objective's failover settings and the manager's clock skew",
			obj: testobjects.MakeRecoveryObjective("buergerdienste").Mode(deichv1alpha1.FailoverManual).
				Failover(5, 2*time.Second, 15*time.Second).Obj(),
			want: Policy{Mode: deichv1alpha1.FailoverManual, FailureThreshold: 5, ProbeInterval: 2 * time.Second,
				LeaseDuration: 15 * time.Second, MaxClockSkew: 2 * time.Second}},
		{name: "fills in the API server's defaults for an objective built in code",
			obj: &deichv1alpha1.RecoveryObjective{}, want: defaults},
		{name: "gives the defaults without an objective",
			obj: nil, want: defaults},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, PolicyFrom(tt.obj, 2*time.Second)); diff != "" {
				t.Errorf("PolicyFrom() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRenewInterval(t *testing.T) {
	if got, want := testPolicy().RenewInterval(), 10*time.Second; got != want {
		t.Errorf("RenewInterval() = %s, want a third of the lease duration, %s", got, want)
	}
}
