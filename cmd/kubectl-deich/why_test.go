package main

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// withReady is a service at one site with the given phase and Ready condition.
func withReady(phase deichv1alpha1.Phase, status metav1.ConditionStatus, reason, message string) *deichv1alpha1.SharedService {
	svc := &deichv1alpha1.SharedService{}
	svc.Generation = 1
	svc.Status.Phase = phase
	svc.Status.Conditions = []metav1.Condition{{Type: deichv1alpha1.ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: 1}}
	return svc
}

func TestWhyLine(t *testing.T) {
	stale := withReady(deichv1alpha1.PhaseDegraded, metav1.ConditionFalse, "Degraded", "the standby's copy is older than the RPO of 30s")
	stale.Generation = 3

	for _, c := range []struct {
		name string
		svc  *deichv1alpha1.SharedService
		want string
	}{
		{"a Protected service needs no reason",
			withReady(deichv1alpha1.PhaseProtected, metav1.ConditionTrue, "Protected", "sh-kiel serves; mv-schwerin holds a copy within the RPO"), ""},
		{"a reason that repeats the phase is left out",
			withReady(deichv1alpha1.PhaseFenced, metav1.ConditionFalse, "Fenced", "this site cannot show its own copy of the lease and a majority of {mv-schwerin,sh-kiel} renewed within leaseDuration 30s minus max clock skew 2s"),
			"this site cannot show its own copy of the lease and a majority of..."},
		{"a reason other than the phase leads the line",
			withReady(deichv1alpha1.PhaseDegraded, metav1.ConditionFalse, "FailoverRecommended", "the health checks of sh-kiel failed 3 times in a row and failover mode is Manual; create a Switchover"),
			"FailoverRecommended: the health checks of sh-kiel failed 3 times in a row and failover..."},
		{"only the first clause of the message is kept",
			withReady(deichv1alpha1.PhaseDegraded, metav1.ConditionFalse, "Degraded", "apply Deployment/web to peer mv-schwerin: connection refused; the last good copies stay in place"),
			"apply Deployment/web to peer mv-schwerin: connection refused"},
		{"a sentence ends the clause",
			withReady(deichv1alpha1.PhaseError, metav1.ConditionFalse, "ObjectiveNotFound", "RecoveryObjective gold does not exist. Create it at this site."),
			"ObjectiveNotFound: RecoveryObjective gold does not exist"},
		{"a condition without a message shows its reason",
			withReady(deichv1alpha1.PhasePending, metav1.ConditionFalse, "LeaseUnknown", ""), "LeaseUnknown"},
		{"a service no manager reconciled says so", &deichv1alpha1.SharedService{},
			"not reconciled at this site yet: is Deich's manager running here?"},
		{"a status of an older generation is marked", stale,
			"(status of generation 1, spec is at 3) the standby's copy is older than the RPO of 30s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := whyLine(c.svc); got != c.want {
				t.Errorf("whyLine() = %q, want %q", got, c.want)
			}
		})
	}
}
