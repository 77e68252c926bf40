package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// findPeer returns the ReplicationPeer for site; nil when there is none.
func findPeer(ctx context.Context, c client.Reader, site string) (*deichv1alpha1.ReplicationPeer, error) {
	var peers deichv1alpha1.ReplicationPeerList
	if err := c.List(ctx, &peers); err != nil {
		return nil, fmt.Errorf("list ReplicationPeers: %w", err)
	}
	for i := range peers.Items {
		if peers.Items[i].Spec.Site == site {
			return &peers.Items[i], nil
		}
	}
	return nil, nil
}

// peerReadiness reports whether the ReplicationPeer for site is a Ready partner, one that
// services can be mirrored to and moved to, and why not.
func peerReadiness(ctx context.Context, c client.Reader, site string) (bool, string) {
	p, err := findPeer(ctx, c, site)
	switch {
	case err != nil:
		return false, err.Error()
	case p == nil:
		return false, fmt.Sprintf("no ReplicationPeer for site %s", site)
	case p.Spec.IsWitness():
		return false, fmt.Sprintf("ReplicationPeer %s for site %s has role Witness: a witness only stores Leases, nothing is mirrored to it and it never serves", p.Name, site)
	}
	cond := meta.FindStatusCondition(p.Status.Conditions, deichv1alpha1.ConditionReady)
	switch {
	case cond == nil:
		return false, fmt.Sprintf("ReplicationPeer %s has no Ready condition yet", p.Name)
	case cond.Status != metav1.ConditionTrue:
		return false, fmt.Sprintf("ReplicationPeer %s is not Ready: %s", p.Name, cond.Message)
	}
	return true, fmt.Sprintf("ReplicationPeer %s is Ready", p.Name)
}

// witnessQuorum is the Quorum condition of svc at this site: whether the service has a
// witness, and whether the ReplicationPeer for it is a Ready witness; and that peer, when it
// has role Witness, for the lease keeper to keep a copy there. It reads the peers from c; an
// error reading them yields an Unknown condition that says so.
func witnessQuorum(ctx context.Context, c client.Reader, svc *deichv1alpha1.SharedService) (metav1.Condition, *deichv1alpha1.ReplicationPeer) {
	cond := metav1.Condition{Type: deichv1alpha1.ServiceConditionQuorum, ObservedGeneration: svc.Generation, Status: metav1.ConditionFalse}
	witness := svc.Spec.WitnessSite
	if witness == "" {
		cond.Reason = deichv1alpha1.ServiceReasonTwoSiteMode
		cond.Message = twoSiteModeMessage(svc)
		return cond, nil
	}
	p, err := findPeer(ctx, c, witness)
	switch {
	case err != nil:
		cond.Status, cond.Reason = metav1.ConditionUnknown, deichv1alpha1.ReasonReconciling
		cond.Message = fmt.Sprintf("cannot tell whether witness %s is usable: %v", witness, err)
		return cond, nil
	case p == nil:
		cond.Reason = deichv1alpha1.ServiceReasonWitnessNotFound
		cond.Message = fmt.Sprintf("no ReplicationPeer at this site has spec.site %s; create one with role Witness for the witness", witness)
		return cond, nil
	case !p.Spec.IsWitness():
		cond.Reason = deichv1alpha1.ServiceReasonNotAWitness
		cond.Message = fmt.Sprintf("ReplicationPeer %s for site %s has role Partner; spec.witnessSite must name a site whose ReplicationPeer has role Witness", p.Name, witness)
		return cond, nil
	}
	ready := meta.FindStatusCondition(p.Status.Conditions, deichv1alpha1.ConditionReady)
	switch {
	case ready == nil:
		cond.Status, cond.Reason = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonWitnessNotReady
		cond.Message = fmt.Sprintf("witness %s (ReplicationPeer %s) has not answered a heartbeat yet; the service's lease has a copy there, and until it answers losing another site or link stops the service", witness, p.Name)
	case ready.Status != metav1.ConditionTrue:
		cond.Reason = deichv1alpha1.ServiceReasonWitnessNotReady
		cond.Message = fmt.Sprintf("witness %s (ReplicationPeer %s) is not Ready (%s): %s. The service decides on its quorum lease, and while the witness is unusable losing another site or link stops the service", witness, p.Name, ready.Reason, ready.Message)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, deichv1alpha1.ServiceReasonWitnessReady
		cond.Message = fmt.Sprintf("witness %s (ReplicationPeer %s) is Ready: the service's lease has a copy at %s, at %s and in the witness's namespace %s, and a site serves only while it holds a majority of them, so losing any one site or link does not stop a healthy active site",
			witness, p.Name, svc.Spec.PrimarySite, svc.Spec.StandbySite, p.Spec.WitnessLeaseNamespace())
	}
	return cond, p
}

// twoSiteModeMessage is the Quorum condition's message of a service without a witness. It
// names the standby by svc's status.activeSite, which a promotion changes later in the same
// reconcile: report writes it again from the final status, so that the promotion's status write
// carries it and no second write follows.
func twoSiteModeMessage(svc *deichv1alpha1.SharedService) string {
	return fmt.Sprintf("two-site mode: this service has no witness. Its lease lives at the standby's cluster (%s), so losing that site, or the link to it, stops the service at the active site. Set spec.witnessSite to a third site, with a ReplicationPeer of role Witness for it at both sites, so that no single lost site or link stops a healthy active site",
		peerSite(svc, activeSite(svc)))
}

// caBundle reads the CA certificates an http check trusts besides the system roots. A missing
// Secret yields an empty bundle, which the probe reports as Unknown rather than silently
// trusting the system roots alone.
func caBundle(ctx context.Context, c client.Reader, namespace string, hc deichv1alpha1.HealthCheck) []byte {
	if hc.HTTP == nil || hc.HTTP.CASecretRef == nil {
		return nil
	}
	var secret corev1.Secret
	ref := hc.HTTP.CASecretRef
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &secret); err != nil {
		return []byte{}
	}
	return secret.Data[ref.Key]
}
