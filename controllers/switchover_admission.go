package controllers

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/render"
)

// Admission of a new Switchover: the checks that refuse a move that cannot be done, and the
// arbitration between Switchovers of one service (the earliest goes first).

// requesterOf returns who requested sw, as admission stamped it; "" when nothing did.
func requesterOf(sw *deichv1alpha1.Switchover) string {
	return truncate(sw.Annotations[deichv1alpha1.AnnotationRequestedBy], 253)
}

// reconcileNew validates a new Switchover and then rehearses it (drill) or starts the move.
func (r *SwitchoverReconciler) reconcileNew(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	svc, err := r.service(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	target := sw.Spec.TargetSite
	switch {
	case svc == nil:
		s.refuse(deichv1alpha1.SwitchoverReasonServiceNotFound,
			fmt.Sprintf("SharedService %s does not exist in namespace %s at site %s", sw.Spec.SharedServiceName, sw.Namespace, r.site))
		return ctrl.Result{}, nil
	case target != svc.Spec.PrimarySite && target != svc.Spec.StandbySite:
		s.refuse(deichv1alpha1.SwitchoverReasonInvalidTarget,
			fmt.Sprintf("targetSite %s is neither primarySite %s nor standbySite %s of SharedService %s", target, svc.Spec.PrimarySite, svc.Spec.StandbySite, svc.Name))
		return ctrl.Result{}, nil
	case r.site != svc.Spec.PrimarySite && r.site != svc.Spec.StandbySite:
		s.refuse(deichv1alpha1.SwitchoverReasonNotParticipating,
			fmt.Sprintf("site %s takes no part in SharedService %s; create the Switchover at %s or %s", r.site, svc.Name, svc.Spec.PrimarySite, svc.Spec.StandbySite))
		return ctrl.Result{}, nil
	}

	other, err := r.earlierUnfinished(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if other != nil {
		// A refusal is final, and the cache may not have seen the blocker finish or its copy
		// go: confirm it at the API server, and look again later if it is gone or finished.
		live := &deichv1alpha1.Switchover{}
		switch err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(other), live); {
		case apierrors.IsNotFound(err) || err == nil && !unfinished(live):
			return ctrl.Result{RequeueAfter: switchoverPoll}, nil
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("get Switchover %s: %w", client.ObjectKeyFromObject(other), err)
		}
		other = live
		phase := other.Status.Phase
		if phase == "" {
			phase = "new"
		}
		where := ""
		if src := other.Labels[render.LabelSourceSite]; src != "" && src != r.site {
			where = fmt.Sprintf(" (created at %s)", src)
		}
		s.refuse(deichv1alpha1.SwitchoverReasonAnotherSwitchover,
			fmt.Sprintf("Switchover %s%s for SharedService %s is %s; one Switchover at a time per service: create this one again once %s has finished",
				other.Name, where, svc.Name, strings.ToLower(string(phase)), other.Name))
		return ctrl.Result{}, nil
	}

	if !serviceReported(svc) {
		s.setPhase(deichv1alpha1.SwitchoverPending, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonWaitingForService,
			fmt.Sprintf("waiting for SharedService %s to be reconciled at %s", svc.Name, r.site), nil)
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}
	if sw.Spec.Drill {
		return r.drill(ctx, s, svc)
	}
	return r.begin(ctx, s, svc)
}

// service returns the SharedService the Switchover moves; nil when it does not exist here or
// is being deleted. A service missing from the cache is looked up at the API server too: one
// applied together with the Switchover may not have reached the cache yet.
func (r *SwitchoverReconciler) service(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.SharedService, error) {
	key := types.NamespacedName{Namespace: sw.Namespace, Name: sw.Spec.SharedServiceName}
	svc := &deichv1alpha1.SharedService{}
	err := r.client.Get(ctx, key, svc)
	if apierrors.IsNotFound(err) {
		err = r.apiReader.Get(ctx, key, svc)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get SharedService %s: %w", key, err)
	}
	if !svc.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return svc, nil
}

// serviceReported reports whether the SharedService controller at this site has written the
// service's status, which the checks below read.
func serviceReported(svc *deichv1alpha1.SharedService) bool {
	return svc.Status.ObservedGeneration > 0 &&
		meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet) != nil
}

// earlierUnfinished returns another Switchover of the same service at this site (created
// here or copied from the other site) that blocks sw: one that runs, or one that is not
// finished and was created earlier (on a tie, the lower name goes first).
func (r *SwitchoverReconciler) earlierUnfinished(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.Switchover, error) {
	list, err := r.switchoversOf(ctx, sw)
	if err != nil {
		return nil, err
	}
	for i := range list {
		o := &list[i]
		if o.Name == sw.Name || !unfinished(o) {
			continue
		}
		if o.Status.Phase != deichv1alpha1.SwitchoverRunning && !createdBefore(o, sw) {
			continue
		}
		// The cache may still hold a Switchover that has just finished or was removed (the
		// copy of one created at the other site): refuse only on what the API server says.
		cur := &deichv1alpha1.Switchover{}
		switch err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(o), cur); {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("read Switchover %s/%s: %w", o.Namespace, o.Name, err)
		case !unfinished(cur) || cur.Status.Phase != deichv1alpha1.SwitchoverRunning && !createdBefore(cur, sw):
			continue
		}
		return cur, nil
	}
	return nil, nil
}

// runningEarlier returns another running move of the same service that started before sw.
// Two moves run at once only when they were created at both sites at nearly the same time;
// both sites then hold both and agree, by start time and then name, which one goes on.
func (r *SwitchoverReconciler) runningEarlier(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.Switchover, error) {
	list, err := r.switchoversOf(ctx, sw)
	if err != nil {
		return nil, err
	}
	for i := range list {
		o := &list[i]
		if o.Name != sw.Name && o.Status.Phase == deichv1alpha1.SwitchoverRunning && !o.Spec.Drill && startedBefore(o, sw) {
			return o, nil
		}
	}
	return nil, nil
}

// switchoversOf lists the Switchovers at this site that move sw's service, sorted by name.
func (r *SwitchoverReconciler) switchoversOf(ctx context.Context, sw *deichv1alpha1.Switchover) ([]deichv1alpha1.Switchover, error) {
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list, client.InNamespace(sw.Namespace), client.MatchingFields{switchoverServiceIndex: sw.Spec.SharedServiceName}); err != nil {
		return nil, fmt.Errorf("list Switchovers of SharedService %s/%s: %w", sw.Namespace, sw.Spec.SharedServiceName, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

func createdBefore(a, b *deichv1alpha1.Switchover) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func startedBefore(a, b *deichv1alpha1.Switchover) bool {
	switch {
	case a.Status.StartedAt == nil:
		return false
	case b.Status.StartedAt == nil:
		return true
	case !a.Status.StartedAt.Equal(b.Status.StartedAt):
		return a.Status.StartedAt.Before(b.Status.StartedAt)
	}
	return a.Name < b.Name
}

// begin checks a planned move and starts it. The status is written Running before the copy
// goes to the other site, so a manager that restarts in between carries on with the move.
func (r *SwitchoverReconciler) begin(ctx context.Context, s *switchoverScope, svc *deichv1alpha1.SharedService) (ctrl.Result, error) {
	sw := s.sw
	target := sw.Spec.TargetSite
	if r.servedHere(svc, target) {
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonAlreadyServed,
			fmt.Sprintf("SharedService %s is already served by %s; nothing was changed", svc.Name, target),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventSucceeded, action: "Validate"})
		return ctrl.Result{}, nil
	}

	within, age := r.copyWithinRPO(svc, s.now)
	forced := ""
	switch {
	case within:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonWithinRPO, age)
	case sw.Spec.Force:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonForced, age+"; moving anyway because force is set")
		forced = "; forced although the copy is older than the RPO: changes since the last sync are lost"
	default:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyTooOld, age)
		s.refuse(deichv1alpha1.SwitchoverReasonCopyTooOld,
			fmt.Sprintf("%s: moving now would lose the changes since the last sync. Wait until the copy is current (condition ObjectivesMet of SharedService %s), or create a Switchover with force: true to accept the loss", age, svc.Name))
		return ctrl.Result{}, nil
	}

	if target != r.site {
		if ok, why := peerReadiness(ctx, r.client, target); !ok {
			s.refuse(deichv1alpha1.SwitchoverReasonTargetUnreachable,
				fmt.Sprintf("target site %s cannot be reached from %s (%s): moving now would fence %s with nobody to take over. If %s runs on its own, create the Switchover there",
					target, r.site, why, activeSite(svc), target))
			return ctrl.Result{}, nil
		}
	}

	from := activeSite(svc)
	sw.Status.FromSite = from
	sw.Status.StartedAt = &metav1.Time{Time: s.now}
	requested := ""
	if by := requesterOf(sw); by != "" {
		requested = fmt.Sprintf(" (requested by %s)", by)
	}
	s.setPhase(deichv1alpha1.SwitchoverRunning, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonInProgress,
		fmt.Sprintf("moving SharedService %s from %s to %s%s: %s fences itself and releases the lease, then %s takes it%s", svc.Name, from, target, requested, from, target, forced),
		&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventStarted, action: "Start"})
	return ctrl.Result{RequeueAfter: switchoverPoll}, nil
}

// servedHere reports whether, as this site sees it, target holds the service's lease and
// serves it. When target is this site, its own status must also say it serves.
func (r *SwitchoverReconciler) servedHere(svc *deichv1alpha1.SharedService, target string) bool {
	st := svc.Status
	if st.Lease == nil || st.Lease.Holder != target || st.ActiveSite != target {
		return false
	}
	return target != r.site || serves(svc)
}

// serves reports whether a SharedService's status, written by its own site, says that site
// serves it.
func serves(svc *deichv1alpha1.SharedService) bool {
	if svc.Status.Role != deichv1alpha1.RoleActive {
		return false
	}
	switch svc.Status.Phase {
	case "", deichv1alpha1.PhasePending, deichv1alpha1.PhaseFenced, deichv1alpha1.PhaseFailingOver:
		return false
	}
	return true
}

// copyWithinRPO reports whether the standby's copy is younger than the RPO, as this site's
// SharedService status says (condition ObjectivesMet) and, in case the condition was computed
// a while ago, the time the copy was last confirmed current (lastSync), with a sentence saying
// how old it is.
func (r *SwitchoverReconciler) copyWithinRPO(svc *deichv1alpha1.SharedService, now time.Time) (bool, string) {
	c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	msg := ""
	switch {
	case c == nil:
		return false, "the age of the copy is not known yet"
	case c.Status == metav1.ConditionFalse && c.Reason == deichv1alpha1.ServiceReasonRecoverySlowerThanRTO:
		// The last promotion was slow; the condition says so only once the copy was found
		// within the RPO, which the age below checks again.
		msg = "the standby's copy is within the RPO"
		if obj := svc.Status.Objective; obj != nil && obj.RPO != nil {
			msg = fmt.Sprintf("the standby's copy is within the RPO of %s", obj.RPO.Duration)
		}
	case c.Status != metav1.ConditionTrue:
		return false, c.Message
	default:
		msg = c.Message
	}
	if obj := svc.Status.Objective; obj != nil && obj.RPO != nil {
		// The time may come from the other site's clock: allow for the skew.
		if synced, slack, ok := r.lastSync(svc, obj.RPO.Duration, c.Status == metav1.ConditionTrue); ok {
			if age := now.Sub(synced); age > obj.RPO.Duration+slack+r.maxSkew {
				return false, fmt.Sprintf("the copy was last confirmed current %s ago, longer than the RPO of %s", age.Round(time.Second), obj.RPO.Duration)
			}
		}
	}
	return true, msg
}

// lastSync is when svc's copy was last confirmed current: as this site's SharedService
// reconciler knows it now, or else as status.lastSyncTime stores it, which is written with
// other changes or once per statusRefresh (five minutes while the objectives are met, met),
// so that it may be as much (slack) older.
func (r *SwitchoverReconciler) lastSync(svc *deichv1alpha1.SharedService, rpo time.Duration, met bool) (synced time.Time, slack time.Duration, ok bool) {
	if r.syncTimes != nil {
		if t, ok := r.syncTimes(client.ObjectKeyFromObject(svc)); ok {
			return t, 0, true
		}
	}
	if svc.Status.LastSyncTime == nil {
		return time.Time{}, 0, false
	}
	return svc.Status.LastSyncTime.Time, statusRefresh(rpo, met), true
}

// connection returns the connection to site when its ReplicationPeer is Ready, and otherwise
// nil and why. Calls to a peer that is known to be unreachable would only wait for their
// timeout.
func (r *SwitchoverReconciler) connection(ctx context.Context, site string) (*peer.Connection, string) {
	if ok, why := peerReadiness(ctx, r.client, site); !ok {
		return nil, why
	}
	conn, ok := r.registry.Get(site)
	if !ok {
		return nil, fmt.Sprintf("no connection to %s yet", site)
	}
	return conn, ""
}
