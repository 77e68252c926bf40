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

// peerReadiness reports whether the ReplicationPeer for site is Ready, and why not.
func peerReadiness(ctx context.Context, c client.Reader, site string) (bool, string) {
	p, err := findPeer(ctx, c, site)
	switch {
	case err != nil:
		return false, err.Error()
	case p == nil:
		return false, fmt.Sprintf("no ReplicationPeer for site %s", site)
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
