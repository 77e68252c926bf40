package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/render"
)

// peerStatusTimeout bounds the read of the peer's view of the health checks.
const peerStatusTimeout = 2 * time.Second

// adoptLeaseView sets status.activeSite to the holder the lease keeper last saw, before the
// health checks run: they judge that site. When it changed, the old results judged another
// site and are dropped.
func (r *SharedServiceReconciler) adoptLeaseView(s *serviceScope) {
	raw, ok := r.keeper.Snapshot(s.owner)
	if !ok || !raw.OwnRead {
		return
	}
	holder := judgedHolder(r.site, snapshotOf(r.site, raw, nil, s.now))
	if holder == "" {
		return
	}
	if s.svc.Status.ActiveSite != "" && s.svc.Status.ActiveSite != holder {
		s.svc.Status.HealthChecks = nil
	}
	s.svc.Status.ActiveSite = holder
}

// judgedHolder is the site the lease names as active, for the health checks to judge and for
// status.activeSite; "" when it names none, or names this site while it does not serve: a
// promotion that has written its first copies but holds no majority yet. Judging this site
// then would drop the failing checks of the partner that the promotion stands on, and the
// keeper would give the promotion up.
func judgedHolder(site string, snap leaseSnapshot) string {
	if snap.record.Holder == site && !snap.serving {
		return ""
	}
	return snap.record.Holder
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
// the promotions of this site, and the events of a lost lease, a hand-over and a recommended
// failover. The reconcile is the only writer of the service's status; the keeper only
// decides.
func (r *SharedServiceReconciler) applyLeaseView(s *serviceScope) {
	snap := s.lease
	st := &s.svc.Status
	if !snap.read {
		return
	}
	rec := snap.record
	before := s.before.Status.Lease
	r.recordPromotion(s)
	st.Promotion = promotionStatus(s.svc, r.leaseStateOf(s.owner))
	if rec.Exists() {
		ls := &deichv1alpha1.LeaseStatus{
			Holder:       rec.Holder,
			StoredAt:     strings.Join(snap.storedAt, ","),
			Transitions:  rec.Transitions,
			ObservedTime: &metav1.Time{Time: snap.observedAt},
			Message:      truncate(snap.message, 1024),
		}
		// The epoch of a claim that served: this site's while it serves, the holder's as its
		// copy says otherwise. A claim of this site that has not served yet is not recorded.
		switch {
		case snap.serving:
			ls.Epoch = snap.epoch
		case rec.Holder != "" && rec.Holder != r.site:
			ls.Epoch = rec.Epoch
		case before != nil:
			ls.Epoch = before.Epoch
		}
		if !rec.RenewTime.IsZero() {
			ls.RenewTime = &metav1.MicroTime{Time: rec.RenewTime}
			ls.ExpiryTime = &metav1.MicroTime{Time: rec.RenewTime.Add(rec.Duration)}
		}
		// The observation time moves with every read; keep the one already recorded while
		// nothing else changed, so status is not rewritten every few seconds.
		if before != nil && before.ObservedTime != nil && sameLeaseStatus(before, ls) {
			ls.ObservedTime = before.ObservedTime
		}
		st.Lease = ls
	} else if st.Lease != nil {
		st.Lease.Holder = ""
		st.Lease.Message = truncate(snap.message, 1024)
	}
	if holder := judgedHolder(r.site, *snap); holder != "" {
		st.ActiveSite = holder
	}
	held := before != nil && before.Holder == r.site || before == nil && s.before.Status.ActiveSite == r.site
	switch {
	// Only the holder releases its own claim, and the keeper may be done releasing by the
	// reconcile that first reads the released copy: the release itself says it.
	case held && rec.Released():
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventHandedOver, "HandOver",
			"Fenced and released the lease so %s can promote without waiting for it to expire", peerSite(s.svc, r.site))
	case held && rec.Holder != "" && rec.Holder != r.site:
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventLeaseLost, "Lease",
			"%s holds the lease now (epoch %d); this site is fenced and stays standby until a Switchover (or automatic failback) moves the service back", rec.Holder, rec.Epoch)
	}
	if snap.recommend && !recommended(s.before) {
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFailoverRecommended, "Recommend",
			"%s; create a Switchover with targetSite %s to fail over", snap.message, r.site)
	}
}

// recordPromotion records this site's promotions in status: a lastFailover without
// completedAt while the keeper promotes, completed (recovery time, history, metrics, event)
// once this site serves on a claim newer than the one status last recorded. A promotion the
// keeper gave up before it served is dropped again. A manager that restarts mid-promotion
// finds the record and completes it; a promotion that served before any reconcile saw it
// start is recorded complete, with both events.
func (r *SharedServiceReconciler) recordPromotion(s *serviceScope) {
	snap, st, site := s.lease, &s.svc.Status, r.site
	lf := st.LastFailover
	inProgress := lf != nil && lf.CompletedAt == nil && lf.To == site
	before := s.before.Status.Lease
	now := r.clock.Now()
	newClaim := snap.serving && before != nil && before.Epoch > 0 && (before.Holder != site || snap.epoch > before.Epoch)
	ls := r.leaseStateOf(s.owner)
	ls.mu.Lock()
	recorded := ls.recordedEpoch >= snap.epoch && snap.epoch > 0
	probedSince := ls.failingSince
	ls.mu.Unlock()
	// The keeper may promote before a reconcile records the failures it promoted on: the
	// scheduler's account of when they began stands in for status's then.
	failedSince := func(site string) time.Time {
		if since := failingSince(s.before, site); !since.IsZero() {
			return since
		}
		return probedSince
	}
	switch {
	case snap.promoting && !inProgress:
		from := snap.record.Holder
		if from == "" || from == site {
			from = peerSite(s.svc, site)
		}
		reason, detected := snap.message, now
		if s.switchover != "" {
			reason = fmt.Sprintf("Switchover %s: %s", s.switchover, snap.message)
		} else if since := failedSince(from); !since.IsZero() {
			detected = since
		}
		st.LastFailover = &deichv1alpha1.FailoverRecord{From: from, To: site, Reason: truncate(reason, 1024), DetectedAt: &metav1.Time{Time: detected}, RequestedBy: s.switchoverBy}
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFailingOver, "Promote",
			"Promoting %s (was served by %s): %s", site, from, snap.message)
	case (newClaim || snap.serving && inProgress) && !recorded:
		rec := deichv1alpha1.FailoverRecord{From: peerSite(s.svc, site), To: site, Reason: truncate(snap.message, 1024), DetectedAt: &metav1.Time{Time: now}}
		if inProgress {
			rec = *lf
		} else {
			// The keeper promoted and served before a reconcile saw it promote (this one was
			// busy, or the manager restarted): the record and the audit trail still say when
			// the failure was detected and that a promotion started.
			if s.switchover != "" {
				rec.Reason = truncate(fmt.Sprintf("Switchover %s: %s", s.switchover, snap.message), 1024)
				rec.RequestedBy = s.switchoverBy
			} else if since := failedSince(rec.From); !since.IsZero() {
				rec.DetectedAt = &metav1.Time{Time: since}
			}
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFailingOver, "Promote",
				"Promoting %s (was served by %s): %s", site, rec.From, snap.message)
		}
		// The promotion completed when the keeper's switch did, however long this reconcile
		// waited in the queue after it.
		completed := now
		if !snap.servedAt.IsZero() && snap.servedAt.Before(now) {
			completed = snap.servedAt
		}
		rec.CompletedAt = &metav1.Time{Time: completed}
		rec.Epoch = snap.epoch
		if rec.DetectedAt != nil {
			rec.RecoveryTime = &metav1.Duration{Duration: max(completed.Sub(rec.DetectedAt.Time), 0).Round(time.Millisecond)}
		}
		st.LastFailover = &rec
		st.ActiveSite = site
		st.FailoverHistory = append([]deichv1alpha1.FailoverRecord{rec}, st.FailoverHistory...)
		if len(st.FailoverHistory) > maxFailoverHistory {
			st.FailoverHistory = st.FailoverHistory[:maxFailoverHistory]
		}
		trigger := "failover"
		if s.switchover != "" || strings.HasPrefix(rec.Reason, "Switchover ") {
			trigger = "switchover"
		}
		metrics.Failovers.WithLabelValues(s.svc.Namespace, s.svc.Name, site, trigger).Inc()
		recovery := "unknown"
		if rec.RecoveryTime != nil {
			metrics.RecoverySeconds.WithLabelValues(s.svc.Namespace, s.svc.Name, site).Observe(rec.RecoveryTime.Seconds())
			recovery = rec.RecoveryTime.Duration.String()
		}
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventFailedOver, "Promote",
			"%s serves the service with epoch %d (was %s); recovery time %s", site, snap.epoch, rec.From, recovery)
		if rec.RecoveryTime != nil && s.objective != nil && rec.RecoveryTime.Duration > s.objective.Spec.RTO.Duration {
			metrics.RecoverySlowerThanRTO.WithLabelValues(s.svc.Namespace, s.svc.Name, site).Inc()
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventRecoverySlowerThanRTO, "Promote",
				"%s served %s after the failure was detected (%s), longer than the RTO of %s of RecoveryObjective %s",
				site, recovery, rec.DetectedAt.UTC().Format(time.RFC3339), s.objective.Spec.RTO.Duration, s.objective.Name)
		}
		s.recordedEpoch = snap.epoch
		ls.mu.Lock()
		ls.failingSince = time.Time{} // the failures that caused this promotion are accounted for
		ls.mu.Unlock()
	case inProgress && !snap.promoting && !snap.serving && !snap.hold:
		// The promotion was given up before this site served.
		st.LastFailover = nil
		if len(st.FailoverHistory) > 0 {
			last := st.FailoverHistory[0]
			st.LastFailover = &last
		}
	}
}

// failingSince is when the run of failing health checks that judge site began, as svc's status
// records them; zero when none fails. Promotions read it from the status as it was before the
// reconcile that records them: by then this reconcile's probes judge the new active site, whose
// checks have only just begun.
func failingSince(svc *deichv1alpha1.SharedService, site string) time.Time {
	judges := map[string]bool{}
	for _, c := range svc.Spec.HealthChecks {
		judges[c.Name] = c.Site == "" || c.Site == site
	}
	var since time.Time
	for _, hc := range svc.Status.HealthChecks {
		if !judges[hc.Name] {
			continue
		}
		if hc.ConsecutiveFailures > 0 && hc.LastTransitionTime != nil && (since.IsZero() || hc.LastTransitionTime.Time.Before(since)) {
			since = hc.LastTransitionTime.Time
		}
	}
	return since
}

// maxFailoverHistory is how many moves status.failoverHistory keeps.
const maxFailoverHistory = 10

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func sameLeaseStatus(a, b *deichv1alpha1.LeaseStatus) bool {
	return a.Holder == b.Holder && a.StoredAt == b.StoredAt && a.Transitions == b.Transitions && a.Message == b.Message && a.Epoch == b.Epoch &&
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
		snap == nil || snap.serving || snap.epoch != 0 || snap.record.Holder == "" || snap.record.Holder == r.site ||
		s.before.Status.Role != deichv1alpha1.RoleStandby {
		return
	}
	window := obj.Spec.FailbackStabilizationWindow.Duration
	if window <= 0 {
		window = 5 * time.Minute
	}
	// The window counts from when this site became Ready as the standby: a change of role
	// restarts the Ready condition (see report), so a Ready condition left from its time
	// as the active site does not count.
	ready := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue {
		return
	}
	since := ready.LastTransitionTime.Time
	if s.now.Sub(since) < window {
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
