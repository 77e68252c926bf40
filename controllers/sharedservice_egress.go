package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/render"
)

// maxListedDenials is how many denied objects a message names; the rest are counted.
const maxListedDenials = 5

// deny notes that the egress policy keeps the object whose copy would be ref at this site.
func (s *serviceScope) deny(ref copyRef, d *render.EgressDeniedError) {
	if s.denied == nil {
		s.denied = map[copyRef]*render.EgressDeniedError{}
	}
	s.denied[ref] = d
}

// egressSubject is obj, an object of Deich's kind, as an egress policy judges it: its kind,
// namespace, name and labels.
func egressSubject(kind string, obj metav1.Object) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind(kind)
	u.SetNamespace(obj.GetNamespace())
	u.SetName(obj.GetName())
	u.SetLabels(obj.GetLabels())
	return u
}

// describeDenials names up to maxListedDenials of denied, sorted, each with the rule that
// keeps it, and counts the rest.
func describeDenials(denied []*render.EgressDeniedError) string {
	lines := make([]string, len(denied))
	for i, d := range denied {
		lines[i] = d.Error()
	}
	sort.Strings(lines)
	if len(lines) > maxListedDenials {
		lines = append(lines[:maxListedDenials], fmt.Sprintf("and %d more", len(lines)-maxListedDenials))
	}
	return strings.Join(lines, "; ")
}

func deniedList(denied map[copyRef]*render.EgressDeniedError) []*render.EgressDeniedError {
	out := make([]*render.EgressDeniedError, 0, len(denied))
	for _, d := range denied {
		out = append(out, d)
	}
	return out
}

// egressDeniedMessage is the Synced condition's message for a round that sent what the policy
// allows and kept the rest.
func egressDeniedMessage(denied map[copyRef]*render.EgressDeniedError, sent int, standby string) string {
	return fmt.Sprintf("%d selected object(s) may not leave for %s and are not mirrored: %s. The other %d object(s) are mirrored, but a standby that lacks part of the service is not a standby: the service is not Protected, and the copy's age is not renewed. Take the denied objects out of the service's selection, or change the ReplicationPeer's egress policy",
		len(denied), standby, describeDenials(deniedList(denied)), sent)
}

// recordWithdrawal records, in an event and a metric, the copies a round deleted at the peer
// because the egress policy no longer lets their objects leave.
func (r *SharedServiceReconciler) recordWithdrawal(s *serviceScope, withdrawn []*render.EgressDeniedError) {
	if len(withdrawn) == 0 {
		return
	}
	for _, d := range withdrawn {
		metrics.EgressWithdrawals.WithLabelValues(d.Peer, d.Rule).Inc()
	}
	r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventEgressWithdrawn, "Withdraw",
		"Deleted the copies of %d object(s) at %s, which the egress policy no longer lets leave: %s",
		len(withdrawn), s.conn.Site, describeDenials(withdrawn))
}

// withdrawService handles a service the egress policy does not let leave at all (its
// namespace is not allowed, or its classification is denied): nothing of it is sent, and
// whatever of it the peer holds — the copies and the SharedService — is deleted.
func (r *SharedServiceReconciler) withdrawService(ctx context.Context, s *serviceScope, denial *render.EgressDeniedError) (ctrl.Result, error) {
	resync := resyncPeriod(s.objective)
	deleted, err := r.deleteCopies(ctx, s, s.conn)
	if err != nil {
		s.fail(deichv1alpha1.ServiceReasonApplyFailed, fmt.Sprintf("%v; deleting what %s holds of the service failed: %v", denial, s.conn.Site, err), false)
		return ctrl.Result{RequeueAfter: min(resync, 5*time.Second)}, nil
	}
	if deleted > 0 {
		metrics.EgressWithdrawals.WithLabelValues(denial.Peer, denial.Rule).Add(float64(deleted))
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventEgressWithdrawn, "Withdraw",
			"Deleted %d object(s) of the service at %s (its copies and the SharedService): %v", deleted, s.conn.Site, denial)
	}
	metrics.EgressDenials.WithLabelValues(denial.Peer, denial.Rule).Inc()
	r.stamps.forget(s.owner)
	s.setSynced(metav1.ConditionFalse, deichv1alpha1.ServiceReasonEgressDenied,
		fmt.Sprintf("%v: nothing of the service is mirrored, and the standby holds nothing of it. Change the ReplicationPeer's egress policy to protect it", denial))
	return periodic(jitter(resync)), nil
}
