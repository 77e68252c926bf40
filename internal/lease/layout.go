package lease

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
)

// PartnerLeaseNamespace is the namespace in which each partner's cluster keeps the shared
// records of the services it shares. It is fixed, so that both partners of a service name the
// same record at each cluster without having to agree on anything; a witness gives its own
// (ReplicationPeer spec.leaseNamespace), which both partners' peers must name alike.
const PartnerLeaseNamespace = "deich-leases"

// RecordShards is how many shared records the services of one pair of sites are spread over
// at each arbiter. Each record is written about once per renewal interval, whatever the number
// of its services, and a record of 1,000 services stays far below the API server's limit on an
// object's annotations.
const RecordShards = 16

// EntryKey is a service's key in a shared record: "<namespace>/<name>".
func EntryKey(svc types.NamespacedName) string { return svc.Namespace + "/" + svc.Name }

// RecordKey is the shared record that holds svc's copy at an arbiter: in namespace
// (PartnerLeaseNamespace at a partner's cluster, the witness's leaseNamespace at a witness),
// named deich-<site>.<site>.<shard> after the service's two partners in sorted order and the
// shard of its key. Every input is fixed for the life of the service (its sites are
// immutable), so its copy at an arbiter never moves to another record.
func RecordKey(namespace, primarySite, standbySite string, svc types.NamespacedName) client.ObjectKey {
	pair := []string{primarySite, standbySite}
	slices.Sort(pair)
	h := fnv.New32a()
	_, _ = h.Write([]byte(EntryKey(svc)))
	return client.ObjectKey{Namespace: namespace, Name: fmt.Sprintf("%s%s.%s.%d", failover.LeaseNamePrefix, pair[0], pair[1], h.Sum32()%RecordShards)}
}

// ReadEntry reads svc's copy in the record at key straight from the API server, for people
// and tests; a missing record or entry is the zero record.
func ReadEntry(ctx context.Context, c client.Reader, key client.ObjectKey, svc types.NamespacedName) (failover.LeaseRecord, error) {
	var l coordinationv1.Lease
	switch err := c.Get(ctx, key, &l); {
	case apierrors.IsNotFound(err):
		return failover.LeaseRecord{}, nil
	case err != nil:
		return failover.LeaseRecord{}, fmt.Errorf("read lease %s: %w", key, err)
	}
	entries, err := failover.EntriesFromLease(&l)
	if err != nil {
		return failover.LeaseRecord{}, err
	}
	return entries[EntryKey(svc)], nil
}
