package lease

import (
	"context"
	"errors"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
)

// KubeStore is a Store on a coordination.k8s.io/v1 Lease of its own in one cluster: one
// copy per Lease. The manager keeps its copies in shared records (Records) instead;
// BenchmarkLeaseTraffic compares the two.
type KubeStore struct {
	// Client reaches the arbiter's API server; it should read directly, not from a cache,
	// so that every Read is a fresh observation.
	Client client.Client
	// Key is where the Lease lives.
	Key client.ObjectKey
	// Labels are set on the Lease when Deich writes it, for `kubectl get leases -l`.
	Labels map[string]string
	// CreateNamespace lets the first write create the Lease's namespace when the cluster
	// lacks it: a partner's cluster may not have the service's namespace before its first
	// mirroring round. A witness gives its namespace; Deich never creates one there.
	CreateNamespace bool
}

// Read returns the copy; a Lease that does not exist is the zero record.
func (s KubeStore) Read(ctx context.Context) (failover.LeaseRecord, error) {
	var l coordinationv1.Lease
	switch err := s.Client.Get(ctx, s.Key, &l); {
	case apierrors.IsNotFound(err):
		return failover.LeaseRecord{}, nil
	case err != nil:
		return failover.LeaseRecord{}, fmt.Errorf("read lease %s: %w", s.Key, err)
	}
	return failover.RecordFromLease(&l), nil
}

// Write compare-and-swaps rec: it creates the Lease when rec has no ResourceVersion and
// updates it on rec's ResourceVersion otherwise. When the Lease changed in between (a
// conflict, or it exists already) it returns ErrConflict with the current copy.
func (s KubeStore) Write(ctx context.Context, rec failover.LeaseRecord) (failover.LeaseRecord, error) {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: s.Key.Namespace, Name: s.Key.Name, Labels: s.Labels}}
	failover.ApplyRecord(l, rec)
	var err error
	if rec.ResourceVersion == "" {
		err = s.Client.Create(ctx, l)
		if apierrors.IsNotFound(err) && s.CreateNamespace {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.Key.Namespace, Labels: map[string]string{render.LabelManagedBy: render.ManagedByDeich}}}
			if nsErr := s.Client.Create(ctx, ns); nsErr != nil && !apierrors.IsAlreadyExists(nsErr) {
				return failover.LeaseRecord{}, fmt.Errorf("create namespace %s for lease %s: %w", s.Key.Namespace, s.Key, nsErr)
			}
			err = s.Client.Create(ctx, l)
		}
	} else {
		err = s.Client.Update(ctx, l)
	}
	switch {
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || rec.ResourceVersion != "" && apierrors.IsNotFound(err):
		cur, rerr := s.Read(ctx)
		if rerr != nil {
			return failover.LeaseRecord{}, errors.Join(fmt.Errorf("write lease %s: %w", s.Key, err), rerr)
		}
		return cur, ErrConflict
	case err != nil:
		return failover.LeaseRecord{}, fmt.Errorf("write lease %s: %w", s.Key, err)
	}
	return failover.RecordFromLease(l), nil
}
