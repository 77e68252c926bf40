package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/peer"
)

// The standby decides what it accepts: its administrators may grant this site's identity
// there write access in named namespaces only (config/peer/namespaced, or the chart's
// peerAccess values), or not for every kind. Before a round of mirroring makes its first
// request into the service's namespace at the standby, it checks with the connection's Access
// that the standby lets it do everything a round may need there; when something is refused,
// the round writes nothing, so no service is left half-applied because of a missing grant, and
// the Synced condition names the namespace, the peer and what is refused. A request the standby
// answers 403 all the same (a grant revoked since the last review, or an authorizer whose rules
// cannot be reviewed) is reported the same way, and drops the review of the namespace.

// copyVerbs are what mirroring does with the copies of a service's kinds at the standby:
// watch and read them (drift, and whether a copy is current), server-side apply (create and
// patch) and prune (delete).
var copyVerbs = []string{"get", "list", "watch", "create", "patch", "delete"}

// sharedServiceVerbs are what mirroring does with the copy of the SharedService at the
// standby: read it, apply it, and delete it with the service.
var sharedServiceVerbs = []string{"get", "create", "patch", "delete"}

// peerPermissions are the permissions a round of mirroring s may use in its namespace at the
// standby.
func peerPermissions(s *serviceScope) []peer.Permission {
	var needs []peer.Permission
	for _, k := range s.kinds {
		needs = append(needs, peer.Permissions(k.resource.Group, k.resource.Resource, copyVerbs...)...)
	}
	return append(needs, peer.Permissions(sharedServiceResource.Group, sharedServiceResource.Resource, sharedServiceVerbs...)...)
}

// peerAccepts reports whether the standby lets this site do everything a round of mirroring
// s needs in the service's namespace there. When it does not, the round must not start: the
// Synced condition then says what is refused. When the standby's rules cannot be reviewed,
// the round goes ahead, and the standby's answers to its requests tell.
func (r *SharedServiceReconciler) peerAccepts(ctx context.Context, s *serviceScope) bool {
	ns := s.svc.Namespace
	verdict, err := s.conn.Access.Check(ctx, ns, peerPermissions(s))
	if err != nil {
		// Not reported: the round's own requests reach the same API server and say why
		// they fail, if they do.
		ctrl.LoggerFrom(ctx).V(1).Info("Cannot review what the peer allows; mirroring all the same", "peer", s.conn.Site, "namespace", ns, "error", err.Error())
		return true
	}
	if verdict.Allowed() {
		return true
	}
	s.fail(deichv1alpha1.ServiceReasonPeerForbidden, peerForbiddenMessage(s.conn.Site, ns,
		fmt.Sprintf("this site may not %s there", peer.DescribePermissions(verdict.Refused)),
		"so nothing of the service was written there"), false)
	return false
}

// peerRefused reports, when one of errs is the standby's 403 answer, that the standby refused
// a request into the service's namespace, and forgets the namespace's review there: its grant
// changed since. It returns false, and reports nothing, for any other errors, which the caller
// reports.
func (r *SharedServiceReconciler) peerRefused(s *serviceScope, errs ...error) bool {
	var refused error
	count := 0
	for _, err := range errs {
		if apierrors.IsForbidden(err) {
			if refused == nil {
				refused = err
			}
			count++
		}
	}
	if refused == nil {
		return false
	}
	s.conn.Access.Forget(s.svc.Namespace)
	detail := refused.Error()
	if count > 1 {
		detail += fmt.Sprintf("; and %d more", count-1)
	}
	s.fail(deichv1alpha1.ServiceReasonPeerForbidden, peerForbiddenMessage(s.conn.Site, s.svc.Namespace, detail,
		"and what it refused stays there as it was"), false)
	return true
}

// failureErrors are the errors of the copies a peer did not apply.
func failureErrors(failures []mirror.Failure) []error {
	errs := make([]error, 0, len(failures))
	for _, f := range failures {
		errs = append(errs, f.Err)
	}
	return errs
}

// peerForbiddenMessage is the Synced condition's message for a standby that refuses this
// site's writes in namespace: what it refuses, what that meant for the round, and who can
// change it.
func peerForbiddenMessage(site, namespace, refused, outcome string) string {
	return fmt.Sprintf("peer %s forbids writes to namespace %s (%s), %s; its administrators grant them with config/peer/namespaced or the Helm chart's peerAccess values (docs/sovereignty.md)",
		site, namespace, refused, outcome)
}
