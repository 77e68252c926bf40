// Package testobjects builds Deich API objects for tests with a fluent API, starting from a
// valid object and changing only what a test cares about:
//
//	svc := testobjects.MakeSharedService("buergerkonto", "buergerkonto").
//		Primary("sh-kiel").Standby("mv-schwerin").Objective("buergerdienste").Obj()
package testobjects

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// ReplicationPeerWrapper builds a ReplicationPeer.
type ReplicationPeerWrapper struct{ deichv1alpha1.ReplicationPeer }

// MakeReplicationPeer returns a peer for site name whose kubeconfig is in Secret
// deich-system/peer-<name>, with a 1s heartbeat.
func MakeReplicationPeer(name string) *ReplicationPeerWrapper {
	return &ReplicationPeerWrapper{deichv1alpha1.ReplicationPeer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: deichv1alpha1.ReplicationPeerSpec{
			Site: name,
			KubeconfigSecretRef: deichv1alpha1.SecretKeyReference{
				Namespace: "deich-system",
				Name:      "peer-" + name,
				Key:       deichv1alpha1.DefaultKubeconfigKey,
			},
			HeartbeatInterval: metav1.Duration{Duration: time.Second},
		},
	}}
}

// Site sets spec.site.
func (w *ReplicationPeerWrapper) Site(site string) *ReplicationPeerWrapper {
	w.Spec.Site = site
	return w
}

// Secret sets the kubeconfig Secret's namespace and name.
func (w *ReplicationPeerWrapper) Secret(namespace, name string) *ReplicationPeerWrapper {
	w.Spec.KubeconfigSecretRef.Namespace = namespace
	w.Spec.KubeconfigSecretRef.Name = name
	return w
}

// Key sets the kubeconfig Secret's key.
func (w *ReplicationPeerWrapper) Key(key string) *ReplicationPeerWrapper {
	w.Spec.KubeconfigSecretRef.Key = key
	return w
}

// Heartbeat sets spec.heartbeatInterval.
func (w *ReplicationPeerWrapper) Heartbeat(d time.Duration) *ReplicationPeerWrapper {
	w.Spec.HeartbeatInterval = metav1.Duration{Duration: d}
	return w
}

// Witness makes the peer a witness whose Leases live in namespace; an empty namespace leaves
// spec.leaseNamespace unset (the manager then uses deich-witness).
func (w *ReplicationPeerWrapper) Witness(namespace string) *ReplicationPeerWrapper {
	w.Spec.Role = deichv1alpha1.PeerRoleWitness
	w.Spec.LeaseNamespace = namespace
	return w
}

// Obj returns the built object.
func (w *ReplicationPeerWrapper) Obj() *deichv1alpha1.ReplicationPeer {
	return w.ReplicationPeer.DeepCopy()
}

// RecoveryObjectiveWrapper builds a RecoveryObjective.
type RecoveryObjectiveWrapper struct {
	deichv1alpha1.RecoveryObjective
}

// MakeRecoveryObjective returns an objective with RPO 30s and RTO 2m, automatic failover
// after 3 failed probes 5s apart, a 15s lease and a cold standby.
func MakeRecoveryObjective(name string) *RecoveryObjectiveWrapper {
	return &RecoveryObjectiveWrapper{deichv1alpha1.RecoveryObjective{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: deichv1alpha1.RecoveryObjectiveSpec{
			RPO: metav1.Duration{Duration: 30 * time.Second},
			RTO: metav1.Duration{Duration: 2 * time.Minute},
			Failover: deichv1alpha1.FailoverPolicy{
				Mode:             deichv1alpha1.FailoverAutomatic,
				FailureThreshold: 3,
				ProbeInterval:    metav1.Duration{Duration: 5 * time.Second},
				LeaseDuration:    metav1.Duration{Duration: 15 * time.Second},
			},
			Standby:                     deichv1alpha1.StandbyCold,
			Failback:                    deichv1alpha1.FailbackManual,
			FailbackStabilizationWindow: metav1.Duration{Duration: 5 * time.Minute},
		},
	}}
}

// RPO sets spec.rpo.
func (w *RecoveryObjectiveWrapper) RPO(d time.Duration) *RecoveryObjectiveWrapper {
	w.Spec.RPO = metav1.Duration{Duration: d}
	return w
}

// RTO sets spec.rto.
func (w *RecoveryObjectiveWrapper) RTO(d time.Duration) *RecoveryObjectiveWrapper {
	w.Spec.RTO = metav1.Duration{Duration: d}
	return w
}

// Failover sets the failover policy's threshold, probe interval and lease duration.
func (w *RecoveryObjectiveWrapper) Failover(threshold int32, probe, lease time.Duration) *RecoveryObjectiveWrapper {
	w.Spec.Failover.FailureThreshold = threshold
	w.Spec.Failover.ProbeInterval = metav1.Duration{Duration: probe}
	w.Spec.Failover.LeaseDuration = metav1.Duration{Duration: lease}
	return w
}

// Mode sets spec.failover.mode.
func (w *RecoveryObjectiveWrapper) Mode(m deichv1alpha1.FailoverMode) *RecoveryObjectiveWrapper {
	w.Spec.Failover.Mode = m
	return w
}

// Standby sets spec.standby.
func (w *RecoveryObjectiveWrapper) Standby(m deichv1alpha1.StandbyMode) *RecoveryObjectiveWrapper {
	w.Spec.Standby = m
	return w
}

// Obj returns the built object.
func (w *RecoveryObjectiveWrapper) Obj() *deichv1alpha1.RecoveryObjective {
	return w.RecoveryObjective.DeepCopy()
}

// SharedServiceWrapper builds a SharedService.
type SharedServiceWrapper struct{ deichv1alpha1.SharedService }

// MakeSharedService returns a service in namespace, primary at sh-kiel and standby at
// mv-schwerin, selecting Deployments and ConfigMaps labelled app.kubernetes.io/part-of=<name>
// and referring to the objective "buergerdienste".
func MakeSharedService(name, namespace string) *SharedServiceWrapper {
	return &SharedServiceWrapper{deichv1alpha1.SharedService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: deichv1alpha1.SharedServiceSpec{
			PrimarySite:          "sh-kiel",
			StandbySite:          "mv-schwerin",
			RecoveryObjectiveRef: deichv1alpha1.ObjectiveReference{Name: "buergerdienste"},
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{
				"app.kubernetes.io/part-of": name,
			}},
			Resources: []deichv1alpha1.ResourceKind{
				{Group: "apps", Kind: "Deployment"},
				{Kind: "ConfigMap"},
			},
			DeletionPolicy: deichv1alpha1.DeletionPolicyDelete,
		},
	}}
}

// Primary sets spec.primarySite.
func (w *SharedServiceWrapper) Primary(site string) *SharedServiceWrapper {
	w.Spec.PrimarySite = site
	return w
}

// Standby sets spec.standbySite.
func (w *SharedServiceWrapper) Standby(site string) *SharedServiceWrapper {
	w.Spec.StandbySite = site
	return w
}

// Witness sets spec.witnessSite.
func (w *SharedServiceWrapper) Witness(site string) *SharedServiceWrapper {
	w.Spec.WitnessSite = site
	return w
}

// Objective sets spec.recoveryObjectiveRef.
func (w *SharedServiceWrapper) Objective(name string) *SharedServiceWrapper {
	w.Spec.RecoveryObjectiveRef.Name = name
	return w
}

// Resources replaces spec.resources.
func (w *SharedServiceWrapper) Resources(kinds ...deichv1alpha1.ResourceKind) *SharedServiceWrapper {
	w.Spec.Resources = kinds
	return w
}

// DeletionPolicy sets spec.deletionPolicy.
func (w *SharedServiceWrapper) DeletionPolicy(p deichv1alpha1.DeletionPolicy) *SharedServiceWrapper {
	w.Spec.DeletionPolicy = p
	return w
}

// HealthCheck appends a health check.
func (w *SharedServiceWrapper) HealthCheck(hc deichv1alpha1.HealthCheck) *SharedServiceWrapper {
	w.Spec.HealthChecks = append(w.Spec.HealthChecks, hc)
	return w
}

// Obj returns the built object.
func (w *SharedServiceWrapper) Obj() *deichv1alpha1.SharedService {
	return w.SharedService.DeepCopy()
}
