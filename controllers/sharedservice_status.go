package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
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
			mirrored = append(mirrored, deichv1alpha1.MirroredResource{Group: d.kind.gk.Group, Kind: d.kind.gk.Kind, Name: d.name, Hash: d.hash})
		}
		setMirrored(svc, mirrored)
	}
	if s.synced.Type != "" {
		meta.SetStatusCondition(&st.Conditions, s.synced)
	}
	if s.quorum.Type != "" {
		if s.quorum.Reason == deichv1alpha1.ServiceReasonTwoSiteMode {
			s.quorum.Message = twoSiteModeMessage(svc)
		}
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
	// The data's lag, where the service's stages say how to read it, counts as much.
	copyAge := lag
	if s.data.known {
		lag = max(lag, s.data.lag)
	}
	st.ReplicationLag = &metav1.Duration{Duration: lag.Round(time.Millisecond)}

	var syncedAt time.Time
	if st.LastSyncTime != nil {
		syncedAt = st.LastSyncTime.Time
	}
	objectives := objectivesCondition(svc.Generation, objectiveInputs{syncedAt: syncedAt,
		objective: s.objective, lag: copyAge, data: s.data,
		promotionProblem: r.promotionProblem(svc), slowRecovery: slowRecovery(st.LastFailover, r.site, s.objective, s.now),
	})
	meta.SetStatusCondition(&st.Conditions, objectives)

	lease := s.lease
	if lease == nil {
		lease = &leaseSnapshot{}
	}
	in := summaryInputs{
		site: r.site, activeSite: st.ActiveSite, standbySite: peerSite(svc, st.ActiveSite),
		terminal: s.terminal, lease: *lease, copyFromHolder: isCopyFrom(svc, lease.record.Holder),
		everSynced: st.LastSyncTime != nil, synced: meta.FindStatusCondition(st.Conditions, deichv1alpha1.ServiceConditionSynced),
		objectives: objectives, lastFailover: st.LastFailover, promotion: st.Promotion,
	}
	st.Phase = servicePhase(in)
	ready := readyCondition(svc.Generation, st.Phase, in)
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

	if st.LastSyncTime != nil {
		r.syncTimes.set(s.owner, round{at: st.LastSyncTime.Time})
	}
	digest := statusDigest(&svc.Status, s.objective)
	if r.onlyClocksMoved(s, digest) {
		return nil
	}
	if err := patchStatus(ctx, r.client, "SharedService", s.before, svc, s.before.Status, svc.Status); err != nil {
		return err
	}
	r.statusWrites.set(s.owner, round{at: s.now, status: digest})
	r.notePromotionRecorded(s)
	return nil
}

// onlyClocksMoved reports whether the status need not be written: nothing in it changed but
// what moves at every reconcile, probe or edit — the copy's age, the lease's renewal and when
// it was read, the checks' last probe and latency, a check's count of failures between the
// first and failureThreshold, or past it, and the mirrored objects' content hashes — and this
// process wrote it less than statusRefresh ago.
// digest is statusDigest of the status to write. It is compared with the status stored and with
// the one this process last wrote, whose write the cache this reconcile read may not show yet;
// as they are stored, as JSON: a time kept in memory to the nanosecond is stored to the second.
// Writing those alone would cost every service a status write per resync, and one per probe
// while a check fails: after a site is lost, a thousand services' statuses would be written
// once per probe interval, competing with their promotions for the API server. The decisions
// never read them from the stored status.
func (r *SharedServiceReconciler) onlyClocksMoved(s *serviceScope, digest [sha256.Size]byte) bool {
	if s.objective == nil || digest == ([sha256.Size]byte{}) {
		return false
	}
	last, ok := r.statusWrites.get(s.owner)
	met := meta.IsStatusConditionTrue(s.svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	if !ok || s.now.Sub(last.at) >= statusRefresh(s.objective.Spec.RPO.Duration, met) {
		return false
	}
	return last.status == digest || statusDigest(&s.before.Status, s.objective) == digest
}

// statusDigest is the digest of st as onlyClocksMoved compares it (withoutClocks, as JSON), or
// zero when it cannot be encoded.
func statusDigest(st *deichv1alpha1.SharedServiceStatus, objective *deichv1alpha1.RecoveryObjective) [sha256.Size]byte {
	b, err := json.Marshal(withoutClocks(st, failureThreshold(objective)))
	if err != nil {
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(b)
}

// failureThreshold is objective's failureThreshold, or zero when the objective is not known.
func failureThreshold(objective *deichv1alpha1.RecoveryObjective) int32 {
	if objective == nil {
		return 0
	}
	return failover.PolicyFrom(objective, 0).FailureThreshold
}

// withoutClocks is a copy of st without the fields onlyClocksMoved ignores. A check's run of
// failures counts as changed when it starts and when it reaches threshold. The content hashes
// of the mirrored objects move like clocks too: an edit of one object changes one, at both
// sites, and written at once they made every edit cost a status write at each site, as many
// requests as the edit itself. Which objects are mirrored, and how many, is written at once.
func withoutClocks(st *deichv1alpha1.SharedServiceStatus, threshold int32) *deichv1alpha1.SharedServiceStatus {
	out := st.DeepCopy()
	out.LastSyncTime, out.ReplicationLag = nil, nil
	if out.MirroredResources != nil {
		for i := range out.MirroredResources.Items {
			out.MirroredResources.Items[i].Hash = ""
		}
	}
	if out.Lease != nil {
		out.Lease.RenewTime, out.Lease.ExpiryTime, out.Lease.ObservedTime = nil, nil, nil
	}
	for i := range out.HealthChecks {
		hc := &out.HealthChecks[i]
		hc.LastProbeTime, hc.Latency = nil, nil
		switch n := hc.ConsecutiveFailures; {
		case threshold > 1 && n > 1 && n < threshold:
			hc.ConsecutiveFailures = 1
		case threshold > 0 && n > threshold:
			hc.ConsecutiveFailures = threshold
		}
	}
	return out
}

// statusRefresh is how long a status in which only clocks moved may go unwritten.
//
// While the objectives are met (met), statusReport: the clocks then only say again that the
// copy is current, and every reader that needs that as it is has it elsewhere — the standby's
// RPO gate from the lease, whose renewals carry the sync time; a Switchover from this
// manager (LastSyncTime); an alert from the metric deich_replication_lag_seconds, set at every
// reconcile — while ObjectivesMet is written as soon as it changes. A Node's status works
// alike since its heartbeat moved to a Lease. Written once per half RPO instead, the clocks
// alone cost each site 3 / (2 × RPO) status writes per second and service, the largest part
// of its API server's steady work.
//
// While they are missed, half the RPO (between 1s and 5m), so that status.replicationLag, as
// stored, grows as the copy ages.
func statusRefresh(rpo time.Duration, met bool) time.Duration {
	if met {
		return statusReport
	}
	return min(max(rpo/2, minResync), maxResync)
}

// statusReport is how long a status in which only clocks moved may go unwritten while the
// objectives are met.
const statusReport = 5 * time.Minute

// LastSyncTime is when the standby's copy of the service was last confirmed complete and
// current, as this manager knows it now: status.lastSyncTime as the last reconcile computed
// it, which the status stores only at its next write (statusRefresh). ok is false when this
// manager has not reconciled the service, or the copy was never confirmed.
func (r *SharedServiceReconciler) LastSyncTime(owner types.NamespacedName) (t time.Time, ok bool) {
	last, ok := r.syncTimes.get(owner)
	return last.at, ok
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
		case t == deichv1alpha1.ServiceConditionSynced && newC.Reason == deichv1alpha1.ServiceReasonEgressDenied:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventEgressDenied, "Mirror", "%s", newC.Message)
		case t == deichv1alpha1.ServiceConditionSynced && newC.Reason == deichv1alpha1.ServiceReasonPeerForbidden:
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventPeerForbidden, "Mirror", "%s", newC.Message)
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

// objectiveInputs is what the ObjectivesMet condition is decided from.
type objectiveInputs struct {
	objective *deichv1alpha1.RecoveryObjective
	// syncedAt is when the standby's copy was last confirmed current, zero if never; lag is
	// how long ago.
	syncedAt time.Time
	lag      time.Duration
	// data is the data's lag, as the stages' replicationLag rules read it at the site that
	// serves.
	data dataLag
	// promotionProblem says why a promotion would stop at one of the service's stages;
	// empty when none would.
	promotionProblem string
	// slowRecovery is this site's last promotion while it counts as missing the RTO (see
	// slowRecovery); nil otherwise.
	slowRecovery *deichv1alpha1.FailoverRecord
}

// rtoMissWindow is how long a promotion slower than the RTO keeps ObjectivesMet False: as
// long as the chart's alert DeichRecoverySlowerThanRTO looks back by default.
const rtoMissWindow = time.Hour

// objectivesCondition is the ObjectivesMet condition: whether the service meets its objective,
// and if not, which one it misses. The RPO: the standby's copy, last confirmed current lag ago
// (never, if syncedAt is zero), must be within it. The RTO: a promotion must be able to complete
// (no stage that can never become ready), and the last one at this site did not take longer
// within the last hour.
func objectivesCondition(generation int64, in objectiveInputs) metav1.Condition {
	c := metav1.Condition{Type: deichv1alpha1.ServiceConditionObjectivesMet, ObservedGeneration: generation}
	objective := in.objective
	switch {
	case objective == nil:
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonObjectiveNotFound, "no RecoveryObjective to compare with"
	case in.promotionProblem != "":
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonPromotionInvalid
		c.Message = truncate("spec.promotion: "+in.promotionProblem, 1024)
	// The messages name no age: it is status.replicationLag, and a message that moved with it
	// would make every reconcile a status write for as long as the objective is missed — after
	// a site is lost, for every service at once.
	case in.syncedAt.IsZero():
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld
		c.Message = fmt.Sprintf("the standby's copy has not been confirmed current yet, so it counts as older than the RPO of %s", objective.Spec.RPO.Duration)
	case in.lag > objective.Spec.RPO.Duration:
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld
		c.Message = fmt.Sprintf("the standby's copy was last confirmed current at %s, older than the RPO of %s",
			in.syncedAt.UTC().Format(time.RFC3339), objective.Spec.RPO.Duration)
	case in.data.known && in.data.lag > objective.Spec.RPO.Duration:
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld
		c.Message = truncate(fmt.Sprintf("the data of %s is behind by more than the RPO of %s", in.data.from, objective.Spec.RPO.Duration), 1024)
	case in.data.unknown != "":
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld
		c.Message = truncate(fmt.Sprintf("the data's lag is not known, so the RPO of %s cannot be shown to hold: %s", objective.Spec.RPO.Duration, in.data.unknown), 1024)
	case in.slowRecovery != nil:
		rec := in.slowRecovery
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonRecoverySlowerThanRTO
		c.Message = fmt.Sprintf("the promotion of epoch %d completed at %s took %s after the failure was detected, longer than the RTO of %s",
			rec.Epoch, rec.CompletedAt.UTC().Format(time.RFC3339), rec.RecoveryTime.Duration, objective.Spec.RTO.Duration)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO
		c.Message = fmt.Sprintf("the standby's copy is within the RPO of %s", objective.Spec.RPO.Duration)
	}
	return c
}

// slowRecovery returns the last failover when it promoted site, took longer than the
// objective's RTO and completed less than rtoMissWindow before now.
func slowRecovery(last *deichv1alpha1.FailoverRecord, site string, objective *deichv1alpha1.RecoveryObjective, now time.Time) *deichv1alpha1.FailoverRecord {
	if last == nil || objective == nil || last.To != site || last.CompletedAt == nil || last.RecoveryTime == nil {
		return nil
	}
	if last.RecoveryTime.Duration <= objective.Spec.RTO.Duration || now.Sub(last.CompletedAt.Time) >= rtoMissWindow {
		return nil
	}
	return last
}

// summaryInputs is what the phase and the Ready condition of a service are decided from.
type summaryInputs struct {
	// site is this manager's site; activeSite the site that serves the service, standbySite
	// its partner.
	site, activeSite, standbySite string
	// terminal is set when the reconcile met something the user must fix.
	terminal bool
	// lease is the lease keeper's last decision; copyFromHolder is set when this site's
	// SharedService was mirrored from the site the lease names.
	lease          leaseSnapshot
	copyFromHolder bool
	// everSynced is set once the copy was synced at least once; synced is the Synced
	// condition (nil before the first) and objectives the ObjectivesMet condition.
	everSynced bool
	synced     *metav1.Condition
	objectives metav1.Condition
	// lastFailover is the last failover status records.
	lastFailover *deichv1alpha1.FailoverRecord
	// promotion is the progress of this site's latest promotion through its stages.
	promotion *deichv1alpha1.PromotionStatus
}

// servicePhase is the one-word summary of a service at this site. What needs a human wins:
// an error, then a move in progress, then a fence, then a failover that waits for one.
func servicePhase(in summaryInputs) deichv1alpha1.Phase {
	isSynced := in.synced != nil && in.synced.Status == metav1.ConditionTrue
	leaseHeld := in.lease.read && in.lease.record.Holder != ""
	switch {
	case in.terminal:
		return deichv1alpha1.PhaseError
	case in.lease.promoting:
		return deichv1alpha1.PhaseFailingOver
	case in.lease.fenced || in.lease.handingOver || in.lease.returned && !in.copyFromHolder:
		return deichv1alpha1.PhaseFenced
	case in.lease.recommend:
		return deichv1alpha1.PhaseDegraded
	case in.synced != nil && (in.synced.Reason == deichv1alpha1.ServiceReasonEgressDenied || in.synced.Reason == deichv1alpha1.ServiceReasonPeerForbidden) && in.lease.serving:
		// Not waiting for anything: the egress policy, or the standby's grant, keeps the
		// standby from holding the whole service until someone changes it.
		return deichv1alpha1.PhaseDegraded
	case !in.everSynced:
		return deichv1alpha1.PhasePending
	case isSynced && in.objectives.Status == metav1.ConditionTrue && leaseHeld:
		return deichv1alpha1.PhaseProtected
	case in.lease.serving && in.lastFailover != nil && in.lastFailover.To == in.site && in.lastFailover.CompletedAt != nil:
		return deichv1alpha1.PhaseFailedOver
	default:
		return deichv1alpha1.PhaseDegraded
	}
}

// readyCondition is the Ready condition for a service in phase: True only when Protected,
// otherwise the reason is the phase (or what an SRE must act on) and the message says why.
func readyCondition(generation int64, phase deichv1alpha1.Phase, in summaryInputs) metav1.Condition {
	ready := metav1.Condition{Type: deichv1alpha1.ConditionReady, ObservedGeneration: generation, Status: metav1.ConditionFalse, Reason: string(phase)}
	leaseHeld := in.lease.read && in.lease.record.Holder != ""
	switch {
	case phase == deichv1alpha1.PhaseProtected:
		ready.Status, ready.Message = metav1.ConditionTrue, fmt.Sprintf("%s serves; %s holds a copy within the RPO", in.activeSite, in.standbySite)
	case in.lease.recommend:
		ready.Reason, ready.Message = deichv1alpha1.ServiceReasonFailoverRecommended, in.lease.message
	case phase == deichv1alpha1.PhaseFailingOver && waitingStage(in.promotion) != nil:
		stage := waitingStage(in.promotion)
		if stage.Phase == deichv1alpha1.StageTimedOut {
			ready.Reason = deichv1alpha1.ServiceReasonPromotionStageTimedOut
			ready.Message = fmt.Sprintf("the promotion stopped at stage %s, not ready within its timeout: %s; the later stages stay in standby form until it is ready, or a Switchover moves the service", stage.Name, stage.Message)
		} else {
			ready.Message = fmt.Sprintf("the promotion waits for stage %s: %s", stage.Name, stage.Message)
		}
	case phase == deichv1alpha1.PhaseFenced || phase == deichv1alpha1.PhaseFailingOver:
		ready.Message = in.lease.message
	case in.synced != nil && in.synced.Status != metav1.ConditionTrue:
		ready.Message = in.synced.Message
	case !leaseHeld && in.lease.read:
		ready.Reason, ready.Message = deichv1alpha1.ServiceReasonLeaseUnknown, in.lease.message
	default:
		ready.Message = in.objectives.Message
	}
	if in.lease.formErr != "" {
		ready.Message = truncate("cannot switch this site's objects to the form the lease allows: "+in.lease.formErr, 1024)
	}
	ready.Message = truncate(ready.Message, 32768)
	return ready
}

// waitingStage is the stage an unfinished promotion waits for: switched, not ready yet.
func waitingStage(p *deichv1alpha1.PromotionStatus) *deichv1alpha1.PromotionStageStatus {
	if p == nil || p.CompletedAt != nil {
		return nil
	}
	for i := range p.Stages {
		if ph := p.Stages[i].Phase; ph == deichv1alpha1.StagePromoting || ph == deichv1alpha1.StageTimedOut {
			return &p.Stages[i]
		}
	}
	return nil
}
