package controllers

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
)

// report computes the status from what this reconcile found and writes it in one patch.
func (r *SharedServiceReconciler) report(ctx context.Context, s *serviceScope) error {
	svc := s.svc
	st := &svc.Status
	st.ObservedGeneration = svc.Generation
	st.Role = r.roleOf(svc)
	st.ActiveSite = activeSite(svc)
	if st.Role == deichv1alpha1.RoleActive && s.synced.Status == metav1.ConditionTrue && !s.changesOnly {
		mirrored := make([]deichv1alpha1.MirroredResource, 0, len(s.desired))
		for _, d := range s.desired {
			mirrored = append(mirrored, deichv1alpha1.MirroredResource{Group: d.kind.gk.Group, Kind: d.kind.gk.Kind, Name: d.obj.GetName(), Hash: d.hash})
		}
		setMirrored(svc, mirrored)
	}
	if s.synced.Type != "" {
		meta.SetStatusCondition(&st.Conditions, s.synced)
	}
	if s.quorum.Type != "" {
		meta.SetStatusCondition(&st.Conditions, s.quorum)
	}
	if s.lease != nil && s.lease.read && s.lease.targetSize > 0 {
		st.Quorum = quorumOf(s.lease)
	}

	// The copy's age: how long ago it was last confirmed complete and current.
	var lag time.Duration
	if st.LastSyncTime != nil {
		lag = max(s.now.Sub(st.LastSyncTime.Time), 0)
	} else {
		lag = max(s.now.Sub(svc.CreationTimestamp.Time), 0)
	}
	st.ReplicationLag = &metav1.Duration{Duration: lag.Round(time.Millisecond)}

	objectives := metav1.Condition{Type: deichv1alpha1.ServiceConditionObjectivesMet, ObservedGeneration: svc.Generation}
	switch {
	case s.objective == nil:
		objectives.Status, objectives.Reason, objectives.Message = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonObjectiveNotFound, "no RecoveryObjective to compare with"
	case st.LastSyncTime != nil && lag <= s.objective.Spec.RPO.Duration:
		objectives.Status, objectives.Reason = metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO
		objectives.Message = fmt.Sprintf("the standby's copy is %s old, within the RPO of %s", lag.Round(time.Second), s.objective.Spec.RPO.Duration)
	default:
		objectives.Status, objectives.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld
		objectives.Message = fmt.Sprintf("the standby's copy is %s old, older than the RPO of %s", lag.Round(time.Second), s.objective.Spec.RPO.Duration)
	}
	meta.SetStatusCondition(&st.Conditions, objectives)

	synced := meta.FindStatusCondition(st.Conditions, deichv1alpha1.ServiceConditionSynced)
	isSynced := synced != nil && synced.Status == metav1.ConditionTrue
	lease := s.lease
	if lease == nil {
		lease = &leaseSnapshot{}
	}
	leaseHeld := lease.read && lease.record.Holder != ""
	switch {
	case s.terminal:
		st.Phase = deichv1alpha1.PhaseError
	case lease.promoting:
		st.Phase = deichv1alpha1.PhaseFailingOver
	case lease.fenced || lease.handingOver || lease.returned && !isCopyFrom(svc, lease.record.Holder):
		st.Phase = deichv1alpha1.PhaseFenced
	case lease.recommend:
		st.Phase = deichv1alpha1.PhaseDegraded
	case st.LastSyncTime == nil:
		st.Phase = deichv1alpha1.PhasePending
	case isSynced && objectives.Status == metav1.ConditionTrue && leaseHeld:
		st.Phase = deichv1alpha1.PhaseProtected
	case lease.serving && st.LastFailover != nil && st.LastFailover.To == r.site && st.LastFailover.CompletedAt != nil:
		st.Phase = deichv1alpha1.PhaseFailedOver
	default:
		st.Phase = deichv1alpha1.PhaseDegraded
	}
	ready := metav1.Condition{Type: deichv1alpha1.ConditionReady, ObservedGeneration: svc.Generation, Status: metav1.ConditionFalse, Reason: string(st.Phase)}
	switch {
	case st.Phase == deichv1alpha1.PhaseProtected:
		ready.Status, ready.Message = metav1.ConditionTrue, fmt.Sprintf("%s serves; %s holds a copy within the RPO", st.ActiveSite, peerSite(svc, st.ActiveSite))
	case lease.recommend:
		ready.Reason, ready.Message = deichv1alpha1.ServiceReasonFailoverRecommended, lease.message
	case st.Phase == deichv1alpha1.PhaseFenced || st.Phase == deichv1alpha1.PhaseFailingOver:
		ready.Message = lease.message
	case synced != nil && synced.Status != metav1.ConditionTrue:
		ready.Message = synced.Message
	case !leaseHeld && lease.read:
		ready.Reason, ready.Message = deichv1alpha1.ServiceReasonLeaseUnknown, lease.message
	default:
		ready.Message = objectives.Message
	}
	if lease.formErr != "" {
		ready.Message = truncate("cannot switch this site's objects to the form the lease allows: "+lease.formErr, 1024)
	}
	ready.Message = truncate(ready.Message, 32768)
	// Ready as the active site and Ready as the standby are different states: a change of
	// role starts the condition afresh, so its lastTransitionTime says since when this site
	// has been ready in the role it has now.
	if before := s.before.Status.Role; before != "" && before != st.Role {
		meta.RemoveStatusCondition(&st.Conditions, deichv1alpha1.ConditionReady)
	}
	meta.SetStatusCondition(&st.Conditions, ready)

	r.recordTransitions(s)
	site := r.site
	metrics.ReplicationLag.WithLabelValues(svc.Namespace, svc.Name, site).Set(lag.Seconds())
	if st.MirroredResources != nil {
		metrics.MirroredObjects.WithLabelValues(svc.Namespace, svc.Name, site).Set(float64(st.MirroredResources.Count))
	}
	if s.synced.Status == metav1.ConditionFalse {
		metrics.SyncErrors.WithLabelValues(svc.Namespace, svc.Name, s.synced.Reason).Inc()
	}

	if err := patchStatus(ctx, r.client, "SharedService", s.before, svc, s.before.Status, svc.Status); err != nil {
		return err
	}
	r.notePromotionRecorded(s)
	return nil
}

// notePromotionRecorded notes, once the status patch of s succeeded, the promotion it recorded
// complete, so that a reconcile from a cache that does not show the patch yet records it no
// second time.
func (r *SharedServiceReconciler) notePromotionRecorded(s *serviceScope) {
	if s.recordedEpoch == 0 {
		return
	}
	ls := r.leaseStateOf(s.owner)
	ls.mu.Lock()
	ls.recordedEpoch = max(ls.recordedEpoch, s.recordedEpoch)
	ls.mu.Unlock()
}

// quorumOf is status.quorum, "held/arbiters": how many copies of the lease of the target
// configuration this site holds, by the lease keeper's last decision.
func quorumOf(lease *leaseSnapshot) string {
	return fmt.Sprintf("%d/%d", lease.held, lease.targetSize)
}

// recordQuorumTransition emits one event when the Quorum condition changes to a witness that
// cannot be used (Warning) or to a usable one (Normal). A witness peer that has not answered
// its first heartbeat yet (status Unknown) is not worth a Warning.
func (r *SharedServiceReconciler) recordQuorumTransition(s *serviceScope) {
	oldC := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.ServiceConditionQuorum)
	newC := meta.FindStatusCondition(s.svc.Status.Conditions, deichv1alpha1.ServiceConditionQuorum)
	if !changed(oldC, newC) || newC.Status == metav1.ConditionUnknown {
		return
	}
	switch newC.Reason {
	case deichv1alpha1.ServiceReasonWitnessNotFound, deichv1alpha1.ServiceReasonNotAWitness, deichv1alpha1.ServiceReasonWitnessNotReady:
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventWitnessUnusable, "Quorum", "%s", newC.Message)
	case deichv1alpha1.ServiceReasonWitnessReady:
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventWitnessReady, "Quorum", "%s", newC.Message)
	}
}

// recordTransitions emits one event per change of Synced, ObjectivesMet or Quorum.
func (r *SharedServiceReconciler) recordTransitions(s *serviceScope) {
	r.recordQuorumTransition(s)
	for _, t := range []string{deichv1alpha1.ServiceConditionSynced, deichv1alpha1.ServiceConditionObjectivesMet} {
		oldC := meta.FindStatusCondition(s.before.Status.Conditions, t)
		newC := meta.FindStatusCondition(s.svc.Status.Conditions, t)
		if !changed(oldC, newC) {
			continue
		}
		switch {
		case t == deichv1alpha1.ServiceConditionSynced && newC.Status == metav1.ConditionTrue:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventSynced, "Mirror", "%s", newC.Message)
		case t == deichv1alpha1.ServiceConditionSynced && newC.Status == metav1.ConditionFalse:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventSyncFailed, "Mirror", "%s", newC.Message)
		case t == deichv1alpha1.ServiceConditionObjectivesMet && newC.Status == metav1.ConditionFalse && oldC != nil:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventObjectivesMissed, "Mirror", "%s", newC.Message)
		case t == deichv1alpha1.ServiceConditionObjectivesMet && newC.Status == metav1.ConditionTrue && oldC != nil:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventObjectivesMet, "Mirror", "%s", newC.Message)
		}
	}
}

// setMirrored records the mirrored objects, sorted, listing at most maxListedResources.
func setMirrored(svc *deichv1alpha1.SharedService, items []deichv1alpha1.MirroredResource) {
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		return a.Name < b.Name
	})
	mr := &deichv1alpha1.MirroredResources{Count: int32(len(items))} //nolint:gosec // G115: object counts fit in int32.
	if len(items) > maxListedResources {
		items = items[:maxListedResources]
		mr.Truncated = true
	}
	mr.Items = items
	svc.Status.MirroredResources = mr
}
