package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/render"
)

// The running move: the Switchover copied to the service's other site, and the wait until
// the target serves.

// reconcileRunning keeps the other site informed of a running move and finishes it once the
// target serves.
func (r *SwitchoverReconciler) reconcileRunning(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	svc, err := r.service(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if svc == nil {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonServiceDeleted,
			fmt.Sprintf("SharedService %s was deleted at %s while the Switchover ran", sw.Spec.SharedServiceName, r.site),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventFailed, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}
	other, err := r.runningEarlier(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if other != nil {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonSuperseded,
			fmt.Sprintf("Switchover %s of SharedService %s started earlier and runs at the same time; this one gave way to it", other.Name, svc.Name),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventFailed, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}

	// The finalizer goes on before the copy, so the copy never outlives the Switchover.
	if err := r.patchMeta(ctx, s, func(o *deichv1alpha1.Switchover) bool {
		return controllerutil.AddFinalizer(o, deichv1alpha1.SwitchoverFinalizer)
	}); err != nil {
		return ctrl.Result{}, err
	}
	r.informPeer(ctx, s, svc.Name, peerSite(svc, r.site))

	target := sw.Spec.TargetSite
	done, waiting := r.moveDone(ctx, svc, target)
	if done {
		// The copy at the other site goes first, so that a Switchover created there right
		// after this one succeeded is not refused because of it. When the other site cannot
		// be reached, the cleanup of the finished Switchover retries.
		if _, err := r.removeCopy(ctx, sw, r.copySite(sw)); err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("The copy of the Switchover is left for later", "error", err.Error())
		}
		took := "an unknown time"
		if sw.Status.StartedAt != nil {
			took = s.now.Sub(sw.Status.StartedAt.Time).Round(100 * time.Millisecond).String()
		}
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonMoved,
			fmt.Sprintf("%s serves SharedService %s: moved from %s in %s", target, svc.Name, sw.Status.FromSite, took),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventSucceeded, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}

	msg := fmt.Sprintf("moving SharedService %s from %s to %s: %s", svc.Name, sw.Status.FromSite, target, waiting)
	if c := meta.FindStatusCondition(sw.Status.Conditions, deichv1alpha1.SwitchoverConditionPeerInformed); c != nil && c.Status != metav1.ConditionTrue {
		msg += "; " + c.Message
	}
	reason := deichv1alpha1.SwitchoverReasonInProgress
	if obj := svc.Status.Objective; obj != nil && obj.RTO != nil && sw.Status.StartedAt != nil && s.now.Sub(sw.Status.StartedAt.Time) > obj.RTO.Duration {
		reason = deichv1alpha1.SwitchoverReasonSlowerThanRTO
		msg = fmt.Sprintf("running for longer than the RTO of %s; %s", obj.RTO.Duration, msg)
	}
	s.setPhase(deichv1alpha1.SwitchoverRunning, metav1.ConditionFalse, reason, msg, nil)
	return ctrl.Result{RequeueAfter: switchoverPoll}, nil
}

// moveDone reports whether target holds the lease and serves, and if not, what the move
// waits for. This site's status must name target as holder and active site; when target is
// the other site, that site's own status must say so too, and that it serves.
func (r *SwitchoverReconciler) moveDone(ctx context.Context, svc *deichv1alpha1.SharedService, target string) (bool, string) {
	if svc.Status.Lease == nil || svc.Status.Lease.Holder != target || svc.Status.ActiveSite != target {
		return false, fmt.Sprintf("waiting for %s to take the lease (%s, as %s last read it)", target, describeHolder(svc), r.site)
	}
	theirs := svc
	if target != r.site {
		conn, why := r.connection(ctx, target)
		if conn == nil {
			return false, fmt.Sprintf("%s holds the lease; cannot reach it to confirm it serves (%s)", target, why)
		}
		var err error
		if theirs, err = peerService(ctx, conn, svc); err != nil {
			return false, fmt.Sprintf("%s holds the lease; cannot read SharedService %s there to confirm it serves: %v", target, svc.Name, err)
		}
		if theirs.Status.Lease == nil || theirs.Status.Lease.Holder != target || theirs.Status.ActiveSite != target {
			return false, fmt.Sprintf("%s holds the lease; waiting for %s to report it", target, target)
		}
	}
	if !serves(theirs) {
		phase := string(theirs.Status.Phase)
		if phase == "" {
			phase = "not reported"
		}
		return false, fmt.Sprintf("%s holds the lease; waiting for it to serve (role %s, phase %s)", target, theirs.Status.Role, phase)
	}
	return true, ""
}

// peerService reads the SharedService like svc at the peer.
func peerService(ctx context.Context, conn *peer.Connection, svc *deichv1alpha1.SharedService) (*deichv1alpha1.SharedService, error) {
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	u, err := conn.Dynamic.Resource(sharedServiceResource).Namespace(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	theirs := &deichv1alpha1.SharedService{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, theirs); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return theirs, nil
}

func describeHolder(svc *deichv1alpha1.SharedService) string {
	switch {
	case svc.Status.Lease == nil:
		return "lease not read yet"
	case svc.Status.Lease.Holder == "":
		return "lease released"
	}
	return "held by " + svc.Status.Lease.Holder
}

// informPeer writes the copy of a running move to the other site, so its SharedService
// controller takes part. An unreachable peer is reported and retried: this site's own
// SharedService controller acts on the Switchover meanwhile.
func (r *SwitchoverReconciler) informPeer(ctx context.Context, s *switchoverScope, service, peerSite string) {
	conn, why := r.connection(ctx, peerSite)
	if conn == nil {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonPeerUnreachable,
			fmt.Sprintf("cannot reach %s (%s): Deich there does not know of this move yet; retrying", peerSite, why))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	reason, msg, err := r.writeCopy(ctx, s.sw, service, conn)
	if err != nil {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, reason,
			fmt.Sprintf("cannot write the copy of this Switchover at %s: %v; Deich there does not know of this move yet; retrying", peerSite, err))
		return
	}
	s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionTrue, reason, msg)
}

// writeCopy makes the other site hold a Running copy of sw, and no other copy of this site's
// Switchovers of the service: a copy left from an earlier Switchover, whose removal could not
// finish yet, would ask that site to act against this move. It returns the PeerInformed
// reason and message.
func (r *SwitchoverReconciler) writeCopy(ctx context.Context, sw *deichv1alpha1.Switchover, service string, conn *peer.Connection) (string, string, error) {
	ri := conn.Dynamic.Resource(switchoverResource).Namespace(sw.Namespace)
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: mirror.Selector(service, r.site)})
	if err != nil {
		return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("list copies: %w", err)
	}
	var current *unstructured.Unstructured
	for i := range list.Items {
		it := &list.Items[i]
		if it.GetName() == sw.Name && it.GetAnnotations()[deichv1alpha1.AnnotationOriginUID] == string(sw.UID) {
			current = it
			continue
		}
		if err := conn.Writer().Delete(ctx, switchoverResource, it); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("remove the copy of an earlier Switchover %s: %w", it.GetName(), err)
		}
	}

	if current == nil {
		existing, err := ri.Get(ctx, sw.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("get Switchover %s: %w", sw.Name, err)
		case existing.GetLabels()[render.LabelSourceSite] == r.site:
			// A copy of an earlier Switchover of this name (for another service): replace it.
			if err := conn.Writer().Delete(ctx, switchoverResource, existing); err != nil {
				return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("remove the copy of an earlier Switchover %s: %w", sw.Name, err)
			}
		default:
			return sameRequest(sw, existing, conn.Site)
		}
	}

	if current == nil {
		// A reconcile of an outdated Switchover (the cache has not seen it finish) must not
		// bring back a copy its finished move has just removed: the other site would refuse
		// its next Switchover because of it. Creating a copy is rare; confirm it first.
		if err := r.confirmCurrent(ctx, sw); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", err
		}
	}
	if current == nil || !equality.Semantic.DeepEqual(current.GetLabels(), mirror.Labels(service, r.site)) {
		if err := r.applyCopy(ctx, conn.Writer(), sw, service); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", err
		}
	}
	if phase, _, _ := unstructured.NestedString(objOrEmpty(current), "status", "phase"); phase != string(deichv1alpha1.SwitchoverRunning) {
		if err := r.applyCopyStatus(ctx, conn.Writer(), sw); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", err
		}
	}
	return deichv1alpha1.SwitchoverReasonCopyApplied,
		fmt.Sprintf("a copy of this Switchover at %s lets Deich there take part in the move", conn.Site), nil
}

// confirmCurrent returns an error unless the API server holds sw as this reconcile read it.
func (r *SwitchoverReconciler) confirmCurrent(ctx context.Context, sw *deichv1alpha1.Switchover) error {
	live := &deichv1alpha1.Switchover{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(sw), live); err != nil {
		return fmt.Errorf("confirm Switchover %s before copying it: %w", sw.Name, err)
	}
	if live.ResourceVersion != sw.ResourceVersion {
		return fmt.Errorf("the Switchover %s changed while it was reconciled; deciding again", sw.Name)
	}
	return nil
}

// sameRequest judges a Switchover of sw's name at the other site that is not sw's copy. A
// GitOps tool may have applied the same manifest at both sites; then each site runs its own
// and both take part in the move. Anything else keeps the other site from learning of sw.
func sameRequest(sw *deichv1alpha1.Switchover, existing *unstructured.Unstructured, site string) (string, string, error) {
	theirs := &deichv1alpha1.Switchover{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(existing.Object, theirs); err != nil {
		return deichv1alpha1.SwitchoverReasonNameTaken, "", fmt.Errorf("read Switchover %s: %w", sw.Name, err)
	}
	if equality.Semantic.DeepEqual(theirs.Spec, sw.Spec) && unfinished(theirs) {
		return deichv1alpha1.SwitchoverReasonCopyApplied,
			fmt.Sprintf("the same Switchover was created at %s too; Deich there runs it and takes part in the move", site), nil
	}
	phase := string(theirs.Status.Phase)
	if phase == "" {
		phase = "new"
	}
	return deichv1alpha1.SwitchoverReasonNameTaken, "", fmt.Errorf("another Switchover named %s exists there (phase %s, targetSite %s); delete it there, or delete this one and create the move under another name",
		sw.Name, phase, theirs.Spec.TargetSite)
}

func objOrEmpty(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return nil
	}
	return u.Object
}

// applyCopy applies sw's metadata and spec to the other site, unless the egress policy of its
// ReplicationPeer keeps sw here.
func (r *SwitchoverReconciler) applyCopy(ctx context.Context, at mirror.Site, sw *deichv1alpha1.Switchover, service string) error {
	p, err := findPeer(ctx, r.client, at.Name)
	if err != nil {
		return err
	}
	if p != nil {
		if err := render.EgressOf(p.Name, p.Spec.Egress).Check(egressSubject("Switchover", sw)); err != nil {
			return err
		}
	}
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&sw.Spec)
	if err != nil {
		return fmt.Errorf("convert spec: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind("Switchover")
	u.SetNamespace(sw.Namespace)
	u.SetName(sw.Name)
	u.SetLabels(mirror.Labels(service, r.site))
	annotations := map[string]string{deichv1alpha1.AnnotationOriginUID: string(sw.UID)}
	if by := requesterOf(sw); by != "" {
		annotations[deichv1alpha1.AnnotationRequestedBy] = by
	}
	u.SetAnnotations(annotations)
	if _, err := at.Apply(ctx, switchoverResource, u); err != nil {
		return fmt.Errorf("apply Switchover %s: %w", sw.Name, err)
	}
	return nil
}

// applyCopyStatus marks the copy Running, which is what the other site's SharedService
// controller acts on.
func (r *SwitchoverReconciler) applyCopyStatus(ctx context.Context, at mirror.Site, sw *deichv1alpha1.Switchover) error {
	st := map[string]any{
		"phase":    string(deichv1alpha1.SwitchoverRunning),
		"fromSite": sw.Status.FromSite,
		"message": truncate(fmt.Sprintf("copy of Switchover %s at %s, which drives the move and removes this copy when it has finished",
			sw.Name, r.site), maxSwitchoverMessage),
	}
	if sw.Status.StartedAt != nil {
		st["startedAt"] = sw.Status.StartedAt.UTC().Format(time.RFC3339)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind("Switchover")
	u.SetNamespace(sw.Namespace)
	u.SetName(sw.Name)
	if _, err := at.ApplyStatus(ctx, switchoverResource, u); err != nil {
		return fmt.Errorf("mark the copy of Switchover %s Running: %w", sw.Name, err)
	}
	return nil
}

// copySite is the site that may hold sw's copy: the one of fromSite and targetSite that is
// not this site; "" when sw never ran.
func (r *SwitchoverReconciler) copySite(sw *deichv1alpha1.Switchover) string {
	for _, site := range []string{sw.Spec.TargetSite, sw.Status.FromSite} {
		if site != "" && site != r.site {
			return site
		}
	}
	return ""
}

// removeCopy deletes sw's copy at site. done is false while the copy may still be there.
func (r *SwitchoverReconciler) removeCopy(ctx context.Context, sw *deichv1alpha1.Switchover, site string) (bool, error) {
	if site == "" {
		return true, nil
	}
	p, err := findPeer(ctx, r.client, site)
	if err != nil {
		return false, err
	}
	if p == nil {
		// Without a ReplicationPeer the site cannot be reached from here at all.
		r.recorder.Eventf(sw, nil, corev1.EventTypeWarning, deichv1alpha1.SwitchoverEventPeerNotInformed, "Cleanup",
			"There is no ReplicationPeer for %s any more: delete the copy of this Switchover there by hand, if it is left", site)
		return true, nil
	}
	conn, why := r.connection(ctx, site)
	if conn == nil {
		return false, errors.New(why)
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	ri := conn.Dynamic.Resource(switchoverResource).Namespace(sw.Namespace)
	cp, err := ri.Get(ctx, sw.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("get the copy at %s: %w", site, err)
	case cp.GetLabels()[render.LabelSourceSite] != r.site || cp.GetAnnotations()[deichv1alpha1.AnnotationOriginUID] != string(sw.UID):
		return true, nil // not this Switchover's copy
	}
	if err := conn.Writer().Delete(ctx, switchoverResource, cp); err != nil {
		return false, fmt.Errorf("delete the copy at %s: %w", site, err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Removed the copy of the Switchover", "peer", site)
	return true, nil
}
