package controllers

import (
	"context"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// Field indexes shared by the controllers.
const (
	// peerSecretIndex indexes ReplicationPeers by the "<namespace>/<name>" of their kubeconfig
	// Secret, so a Secret change finds its peers without a scan.
	peerSecretIndex = "spec.kubeconfigSecretRef" //nolint:gosec // G101: a field index name, not a credential.
	// objectiveRefIndex indexes SharedServices by the name of their RecoveryObjective.
	objectiveRefIndex = "spec.recoveryObjectiveRef.name"
	// serviceSiteIndex indexes SharedServices by every site they name: both partners and the
	// witness.
	serviceSiteIndex = "spec.sites"
	// switchoverServiceIndex indexes Switchovers by the SharedService they move.
	switchoverServiceIndex = "spec.sharedServiceName"
)

// SetupIndexes registers the field indexes the controllers list by. Call it once per manager,
// before the controllers are set up.
func SetupIndexes(ctx context.Context, mgr ctrl.Manager) error {
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &deichv1alpha1.ReplicationPeer{}, peerSecretIndex, func(o client.Object) []string {
		ref := o.(*deichv1alpha1.ReplicationPeer).Spec.KubeconfigSecretRef
		return []string{ref.Namespace + "/" + ref.Name}
	}); err != nil {
		return fmt.Errorf("index ReplicationPeers by Secret: %w", err)
	}
	if err := idx.IndexField(ctx, &deichv1alpha1.SharedService{}, objectiveRefIndex, func(o client.Object) []string {
		return []string{o.(*deichv1alpha1.SharedService).Spec.RecoveryObjectiveRef.Name}
	}); err != nil {
		return fmt.Errorf("index SharedServices by RecoveryObjective: %w", err)
	}
	if err := idx.IndexField(ctx, &deichv1alpha1.SharedService{}, serviceSiteIndex, func(o client.Object) []string {
		s := o.(*deichv1alpha1.SharedService).Spec
		if s.WitnessSite != "" {
			return []string{s.PrimarySite, s.StandbySite, s.WitnessSite}
		}
		return []string{s.PrimarySite, s.StandbySite}
	}); err != nil {
		return fmt.Errorf("index SharedServices by site: %w", err)
	}
	if err := idx.IndexField(ctx, &deichv1alpha1.Switchover{}, switchoverServiceIndex, func(o client.Object) []string {
		return []string{o.(*deichv1alpha1.Switchover).Spec.SharedServiceName}
	}); err != nil {
		return fmt.Errorf("index Switchovers by SharedService: %w", err)
	}
	return nil
}
