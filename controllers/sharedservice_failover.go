package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
)

// peerStatusTimeout bounds the read of the peer's view of the health checks.
const peerStatusTimeout = 2 * time.Second

// adoptLeaseView sets status.activeSite to the holder the lease keeper last saw, before the
// health checks run: they judge that site. When it changed, the old results judged another
// site and are dropped.
func (r *SharedServiceReconciler) adoptLeaseView(s *serviceScope) {
	snap, ok := r.leases.snapshot(s.owner)
	if !ok || snap.record.Holder == "" {
		return
	}
	if s.svc.Status.ActiveSite != "" && s.svc.Status.ActiveSite != snap.record.Holder {
		s.svc.Status.HealthChecks = nil
	}
	s.svc.Status.ActiveSite = snap.record.Holder
}

// keepLease hands the lease keeper what this reconcile learned and returns its snapshot.
func (r *SharedServiceReconciler) keepLease(ctx context.Context, s *serviceScope) (leaseSnapshot, bool) {
	svc := s.svc
	sel, err := metav1.LabelSelectorAsSelector(&svc.Spec.Selector)
	if err != nil {
		s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, fmt.Sprintf("spec.selector: %v", err), true)
		return leaseSnapshot{}, false
	}
	in := leaseInputs{
		policy:    failover.PolicyFrom(s.objective, r.maxSkew),
		primary:   r.site == svc.Spec.PrimarySite,
		unclaimed: svc.Status.Lease == nil,
		arbiter:   failover.ArbiterSite(svc),
		judged:    activeSite(svc),
		form:      formSpec{svc: svc.DeepCopy(), kinds: s.kinds, selector: sel, standby: s.objective.Spec.Standby},
	}
	for _, hc := range svc.Status.HealthChecks {
		if hc.ConsecutiveFailures > in.failures {
			in.failures = hc.ConsecutiveFailures
		}
		if hc.ConsecutiveFailures > 0 && hc.LastTransitionTime != nil &&
			(in.failingSince.IsZero() || hc.LastTransitionTime.Before(&metav1.Time{Time: in.failingSince})) {
			in.failingSince = hc.LastTransitionTime.Time
		}
	}
	if in.judged == r.site && in.failures > 0 {
		in.peerFailures = r.peerFailures(ctx, svc)
		in.partnerReady = r.partnerReady(ctx, svc, s.objective)
	}
	if sw := r.runningSwitchover(ctx, svc); sw != nil {
		in.switchover = sw.Name
		in.takeOver = sw.Spec.TargetSite == r.site
		in.handOver = sw.Spec.TargetSite != r.site
	}
	return r.leases.update(s.owner, in)
}

// peerFailures returns how often in a row the peer site's checks of this site failed, as
// the peer's manager reports it; 0 when that cannot be read. A site hands the service over
// only when its partner agrees it is failing, so a site whose own probes are cut off does
// not give away a service its partner sees as healthy.
func (r *SharedServiceReconciler) peerFailures(ctx context.Context, svc *deichv1alpha1.SharedService) int32 {
	conn, ok := r.registry.Get(peerSite(svc, r.site))
	if !ok {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	theirs := &deichv1alpha1.SharedService{}
	if err := conn.Cluster.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(svc), theirs); err != nil {
		return 0
	}
	if theirs.Status.ActiveSite != r.site {
		return 0
	}
	var n int32
	for _, hc := range theirs.Status.HealthChecks {
		n = max(n, hc.ConsecutiveFailures)
	}
	return n
}

// runningSwitchover returns the Switchover that is moving svc now, if any.
func (r *SharedServiceReconciler) runningSwitchover(ctx context.Context, svc *deichv1alpha1.SharedService) *deichv1alpha1.Switchover {
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list, client.InNamespace(svc.Namespace), client.MatchingFields{switchoverServiceIndex: svc.Name}); err != nil {
		return nil
	}
	// The earliest started wins, as the Switchover controller decides a double start.
	var found *deichv1alpha1.Switchover
	for i := range list.Items {
		sw := &list.Items[i]
		if sw.Status.Phase != deichv1alpha1.SwitchoverRunning || sw.Spec.Drill {
			continue
		}
		if found == nil || startedBefore(sw, found) {
			found = sw
		}
	}
	return found
}

// applyLeaseView records in status what the lease keeper found: the lease, the active site,
// and the events of a lost lease and of a recommended failover.
func (r *SharedServiceReconciler) applyLeaseView(s *serviceScope) {
	snap := s.lease
	st := &s.svc.Status
	if !snap.read {
		return
	}
	rec := snap.record
	if lf := s.before.Status.LastFailover; rec.Holder != r.site && lf != nil && lf.To == r.site && lf.CompletedAt != nil &&
		snap.observedAt.Before(lf.CompletedAt.Time) {
		// The keeper recorded this site's promotion after it read this record: the record
		// is older than the promotion, and its next snapshot will show this site's lease.
		return
	}
	if rec.Exists() {
		ls := &deichv1alpha1.LeaseStatus{
			Holder:       rec.Holder,
			StoredAt:     failover.ArbiterSite(s.svc),
			Transitions:  rec.Transitions,
			ObservedTime: &metav1.Time{Time: snap.observedAt},
			Message:      truncate(snap.message, 1024),
		}
		if !rec.RenewTime.IsZero() {
			ls.RenewTime = &metav1.MicroTime{Time: rec.RenewTime}
			ls.ExpiryTime = &metav1.MicroTime{Time: rec.RenewTime.Add(rec.Duration)}
		}
		// The observation time moves with every read; keep the one already recorded while
		// nothing else changed, so status is not rewritten every few seconds.
		if old := s.before.Status.Lease; old != nil && old.ObservedTime != nil && sameLeaseStatus(old, ls) {
			ls.ObservedTime = old.ObservedTime
		}
		st.Lease = ls
	} else if st.Lease != nil {
		st.Lease.Holder = ""
		st.Lease.Message = truncate(snap.message, 1024)
	}
	if rec.Holder != "" {
		st.ActiveSite = rec.Holder
	}
	before := s.before.Status.ActiveSite
	if before == r.site && rec.Holder != "" && rec.Holder != r.site {
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventLeaseLost, "Lease",
			"%s holds the lease now; this site is fenced and stays standby until a Switchover (or automatic failback) moves the service back", rec.Holder)
	}
	if snap.recommend && !recommended(s.before) {
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFailoverRecommended, "Recommend",
			"%s; create a Switchover with targetSite %s to fail over", snap.message, r.site)
	}
}

func sameLeaseStatus(a, b *deichv1alpha1.LeaseStatus) bool {
	return a.Holder == b.Holder && a.StoredAt == b.StoredAt && a.Transitions == b.Transitions && a.Message == b.Message &&
		microEqual(a.RenewTime, b.RenewTime)
}

func microEqual(a, b *metav1.MicroTime) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(b)
}

// recommended reports whether svc's Ready condition already recommends a failover.
func recommended(svc *deichv1alpha1.SharedService) bool {
	for _, c := range svc.Status.Conditions {
		if c.Type == deichv1alpha1.ConditionReady {
			return c.Reason == deichv1alpha1.ServiceReasonFailoverRecommended
		}
	}
	return false
}

// isCopyFrom reports whether the SharedService at this site was last mirrored from site.
func isCopyFrom(svc *deichv1alpha1.SharedService, site string) bool {
	return svc.Labels[render.LabelSourceSite] == site
}

// LabelAutomaticFailback marks the Switchovers the primary site creates for automatic
// failback.
const LabelAutomaticFailback = "resilience.deich.io/automatic-failback"

// failBack asks for the service back at its primary site when the objective's failback is
// Automatic: once this site, the primary, has been a Ready standby (copy current, lease held
// by the active site, peer reachable) for the objective's stabilization window, it creates a
// Switchover to itself. The window restarts whenever Ready drops, and a new failback is not
// attempted within a window of the last, so a flapping site never ping-pongs the service.
func (r *SharedServiceReconciler) failBack(ctx context.Context, s *serviceScope) {
	svc, obj := s.svc, s.objective
	snap := s.lease
	if obj.Spec.Failback != deichv1alpha1.FailbackAutomatic || r.site != svc.Spec.PrimarySite ||
		snap == nil || snap.serving || snap.record.Holder == "" || snap.record.Holder == r.site {
		return
	}
	window := obj.Spec.FailbackStabilizationWindow.Duration
	if window <= 0 {
		window = 5 * time.Minute
	}
	ready := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || s.now.Sub(ready.LastTransitionTime.Time) < window {
		return
	}
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list, client.InNamespace(svc.Namespace), client.MatchingFields{switchoverServiceIndex: svc.Name}); err != nil {
		return
	}
	for _, sw := range list.Items {
		unfinished := sw.Status.Phase != deichv1alpha1.SwitchoverSucceeded && sw.Status.Phase != deichv1alpha1.SwitchoverFailed
		recentFailback := sw.Labels[LabelAutomaticFailback] == "true" && s.now.Sub(sw.CreationTimestamp.Time) < window
		if unfinished || recentFailback {
			return
		}
	}
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      truncate(fmt.Sprintf("%s-failback-%d", svc.Name, s.now.Unix()), 253),
			Labels:    map[string]string{LabelAutomaticFailback: "true", render.LabelSharedService: svc.Name},
		},
		Spec: deichv1alpha1.SwitchoverSpec{
			SharedServiceName: svc.Name,
			TargetSite:        r.site,
			Reason: fmt.Sprintf("automatic failback: %s has been a Ready standby for %s (failbackStabilizationWindow %s)",
				r.site, s.now.Sub(ready.LastTransitionTime.Time).Round(time.Second), window),
		},
	}
	if err := r.client.Create(ctx, sw); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Create the Switchover for automatic failback")
		return
	}
	r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventFailbackStarted, "Failback",
		"%s; created Switchover %s", sw.Spec.Reason, sw.Name)
}

// partnerReady reports whether the site this one would hand over to can serve: its
// ReplicationPeer is Ready and it held a complete, current copy of the service no longer ago
// than the RPO (status.lastSyncTime, which this site, the active, writes).
func (r *SharedServiceReconciler) partnerReady(ctx context.Context, svc *deichv1alpha1.SharedService, objective *deichv1alpha1.RecoveryObjective) bool {
	other := svc.Spec.StandbySite
	if other == r.site {
		other = svc.Spec.PrimarySite
	}
	synced := svc.Status.LastSyncTime
	if synced == nil || objective == nil || r.clock.Since(synced.Time) > objective.Spec.RPO.Duration {
		return false
	}
	return r.peerReady(ctx, other)
}
