// Package gitops proves how GitOps tools judge the health of Deich's objects: what kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus/status, which Flux waits with) makes of them unaided,
// what Flux's kustomize-controller makes of them with the CEL health checks of
// config/flux/deich-kustomization.yaml, and what Argo CD makes of them with the Lua health checks of
// config/argocd. No API server is needed: every object is built from the Go API types with
// the statuses Deich's controllers write (controllers/sharedservice_status.go and the other
// reconcilers) and converted to unstructured, as a GitOps tool reads it from the API server.
package gitops

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testobjects"
)

// Argo CD health statuses (github.com/argoproj/gitops-engine/pkg/health).
const (
	argoHealthy     = "Healthy"
	argoProgressing = "Progressing"
	argoDegraded    = "Degraded"
	argoSuspended   = "Suspended"
	argoUnknown     = "Unknown"
)

// fixture is one object as Deich leaves it, with the verdict of each tool.
type fixture struct {
	name string
	obj  *unstructured.Unstructured
	// kstatus is what status.Compute says of the object unaided.
	kstatus status.Status
	// flux is what kustomize-controller says with config/flux's healthCheckExprs: Unknown
	// when the expressions cannot be evaluated yet (no status).
	flux status.Status
	// argo is the health Argo CD shows with config/argocd's scripts, and argoMessage a part
	// of the message it shows.
	argo        string
	argoMessage string
}

// kind is the object's kind.
func (f fixture) kind() string { return f.obj.GetKind() }

// hasStatus reports whether Deich has written the object's status.
func (f fixture) hasStatus() bool {
	_, ok := f.obj.Object["status"]
	return ok
}

var (
	// since is when every condition of the fixtures last changed.
	since = metav1.NewTime(time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC))
	// created is when every fixture was created.
	created = metav1.NewTime(time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC))
)

// condition is a condition of generation 1, as Deich's controllers write it.
func condition(conditionType string, s metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{
		Type: conditionType, Status: s, Reason: reason, Message: message,
		ObservedGeneration: 1, LastTransitionTime: since,
	}
}

// stored returns obj as a GitOps tool reads it from the API server: unstructured, with
// apiVersion, kind, metadata.generation and creationTimestamp set and integers as int64.
// Without withStatus the object has no status at all, as before the controller's first
// status write (the API server drops a status sent on create).
func stored(t *testing.T, obj k8sruntime.Object, kind string, generation int64, withStatus bool) *unstructured.Unstructured {
	t.Helper()
	m, ok := obj.(metav1.Object)
	if !ok {
		t.Fatalf("%T has no object metadata", obj)
	}
	m.SetGeneration(generation)
	m.SetCreationTimestamp(created)
	m.SetUID("3f1c6a52-7f1e-4d2a-9c51-0d6f3b8e2a10")
	m.SetResourceVersion("4711")
	content, err := k8sruntime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatalf("convert %s to unstructured: %v", kind, err)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind(kind)
	if !withStatus {
		delete(u.Object, "status")
	}
	return u
}

// sharedService returns the service buergerkonto, active at sh-kiel, with st as its status.
func sharedService(t *testing.T, generation int64, st *deichv1alpha1.SharedServiceStatus) *unstructured.Unstructured {
	t.Helper()
	svc := testobjects.MakeSharedService("buergerkonto", "buergerkonto").Witness("hh-hamburg").Obj()
	if st != nil {
		svc.Status = *st
	}
	return stored(t, svc, "SharedService", generation, st != nil)
}

// serviceStatus is the status Deich reports at sh-kiel for a service in phase, with Ready
// as readyCondition decides it: True only when Protected, otherwise reason (the phase, or
// what an SRE must act on) and message.
func serviceStatus(phase deichv1alpha1.Phase, ready metav1.Condition, more ...metav1.Condition) *deichv1alpha1.SharedServiceStatus {
	st := &deichv1alpha1.SharedServiceStatus{
		ObservedGeneration: 1,
		ActiveSite:         "sh-kiel",
		Role:               deichv1alpha1.RoleActive,
		Phase:              phase,
		Quorum:             "3/3",
		LastSyncTime:       &since,
		ReplicationLag:     &metav1.Duration{Duration: 1200 * time.Millisecond},
	}
	byType := map[string]metav1.Condition{
		deichv1alpha1.ServiceConditionSynced: condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionTrue,
			deichv1alpha1.ServiceReasonSynced, "4 object(s) mirrored to mv-schwerin"),
		deichv1alpha1.ServiceConditionHealthy: condition(deichv1alpha1.ServiceConditionHealthy, metav1.ConditionTrue,
			deichv1alpha1.ServiceReasonChecksPassing, "every check that judges sh-kiel passes"),
		deichv1alpha1.ServiceConditionObjectivesMet: condition(deichv1alpha1.ServiceConditionObjectivesMet, metav1.ConditionTrue,
			deichv1alpha1.ServiceReasonWithinRPO, "the standby's copy is within the RPO of 30s"),
		deichv1alpha1.ServiceConditionQuorum: condition(deichv1alpha1.ServiceConditionQuorum, metav1.ConditionTrue,
			deichv1alpha1.ServiceReasonWitnessReady, "witness hh-hamburg is a Ready witness"),
	}
	for _, c := range more {
		byType[c.Type] = c
	}
	for _, t := range []string{deichv1alpha1.ServiceConditionSynced, deichv1alpha1.ServiceConditionHealthy,
		deichv1alpha1.ServiceConditionObjectivesMet, deichv1alpha1.ServiceConditionQuorum} {
		st.Conditions = append(st.Conditions, byType[t])
	}
	ready.Type = deichv1alpha1.ConditionReady
	ready.ObservedGeneration, ready.LastTransitionTime = 1, since
	st.Conditions = append(st.Conditions, ready)
	return st
}

// notReady is a Ready condition False with reason and message.
func notReady(reason, message string) metav1.Condition {
	return metav1.Condition{Status: metav1.ConditionFalse, Reason: reason, Message: message}
}

// sharedServiceFixtures are the phases and conditions sharedservice_status.go produces.
func sharedServiceFixtures(t *testing.T) []fixture {
	protected := metav1.Condition{Status: metav1.ConditionTrue, Reason: string(deichv1alpha1.PhaseProtected),
		Message: "sh-kiel serves; mv-schwerin holds a copy within the RPO"}

	stale := serviceStatus(deichv1alpha1.PhaseProtected, protected)

	standby := serviceStatus(deichv1alpha1.PhaseProtected, protected,
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionTrue, deichv1alpha1.ServiceReasonMirroredFromActive,
			"4 object(s) held from sh-kiel"))
	standby.Role = deichv1alpha1.RoleStandby

	twoSite := serviceStatus(deichv1alpha1.PhaseProtected, protected,
		condition(deichv1alpha1.ServiceConditionQuorum, metav1.ConditionFalse, deichv1alpha1.ServiceReasonTwoSiteMode,
			"no witnessSite: sh-kiel serves only while it holds the lease at mv-schwerin"))
	twoSite.Quorum = ""

	pending := serviceStatus(deichv1alpha1.PhasePending, notReady(string(deichv1alpha1.PhasePending), "waiting for the caches of apps/Deployment"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionUnknown, deichv1alpha1.ServiceReasonWaitingForCaches,
			"waiting for the caches of apps/Deployment"),
		condition(deichv1alpha1.ServiceConditionObjectivesMet, metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld,
			"the standby's copy has not been confirmed current yet, so it counts as older than the RPO of 30s"))
	pending.LastSyncTime = nil

	unreachable := serviceStatus(deichv1alpha1.PhasePending, notReady(string(deichv1alpha1.PhasePending), "no Ready ReplicationPeer for site mv-schwerin"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionFalse, deichv1alpha1.ServiceReasonPeerNotConnected,
			"no Ready ReplicationPeer for site mv-schwerin"))
	unreachable.LastSyncTime = nil

	forbidden := serviceStatus(deichv1alpha1.PhasePending, notReady(string(deichv1alpha1.PhasePending), "mv-schwerin refuses deich the writes mirroring needs in namespace buergerkonto"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionFalse, deichv1alpha1.ServiceReasonPeerForbidden,
			"mv-schwerin refuses deich the writes mirroring needs in namespace buergerkonto"))
	forbidden.LastSyncTime = nil

	tooOld := serviceStatus(deichv1alpha1.PhaseDegraded, notReady(string(deichv1alpha1.PhaseDegraded), "the standby's copy was last confirmed current at 2026-12-07T10:00:00Z, older than the RPO of 30s"),
		condition(deichv1alpha1.ServiceConditionObjectivesMet, metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld,
			"the standby's copy was last confirmed current at 2026-12-07T10:00:00Z, older than the RPO of 30s"))

	recommended := serviceStatus(deichv1alpha1.PhaseDegraded,
		notReady(deichv1alpha1.ServiceReasonFailoverRecommended, "checks of sh-kiel failed 3 times in a row; failover mode is Manual: create a Switchover to mv-schwerin"),
		condition(deichv1alpha1.ServiceConditionHealthy, metav1.ConditionFalse, deichv1alpha1.ServiceReasonChecksFailing,
			"check portal: GET https://buergerkonto.example/healthz: 503"))

	failingOver := serviceStatus(deichv1alpha1.PhaseFailingOver, notReady(string(deichv1alpha1.PhaseFailingOver), "mv-schwerin took the lease (epoch 4) and promotes itself"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionUnknown, deichv1alpha1.ServiceReasonPromoting, "this site promotes itself"))
	failingOver.ActiveSite, failingOver.Role = "mv-schwerin", deichv1alpha1.RoleActive

	waitingStage := serviceStatus(deichv1alpha1.PhaseFailingOver, notReady(string(deichv1alpha1.PhaseFailingOver), "the promotion waits for stage database: self.status.phase == 'Cluster in healthy state' is false for Cluster db"))
	waitingStage.ActiveSite = "mv-schwerin"

	stageTimedOut := serviceStatus(deichv1alpha1.PhaseFailingOver,
		notReady(deichv1alpha1.ServiceReasonPromotionStageTimedOut, "the promotion stopped at stage database, not ready within its timeout"))
	stageTimedOut.ActiveSite = "mv-schwerin"

	failedOver := serviceStatus(deichv1alpha1.PhaseFailedOver, notReady(string(deichv1alpha1.PhaseFailedOver), "peer sh-kiel unreachable: dial tcp 10.0.0.7:6443: i/o timeout"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionFalse, deichv1alpha1.ServiceReasonPeerNotConnected,
			"peer sh-kiel unreachable: dial tcp 10.0.0.7:6443: i/o timeout"))
	failedOver.ActiveSite = "mv-schwerin"

	fenced := serviceStatus(deichv1alpha1.PhaseFenced, notReady(string(deichv1alpha1.PhaseFenced), "could not renew the lease at mv-schwerin for 13s: fenced"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionFalse, deichv1alpha1.ServiceReasonFenced,
			"could not renew the lease at mv-schwerin for 13s: fenced"))

	broken := serviceStatus(deichv1alpha1.PhaseError, notReady(string(deichv1alpha1.PhaseError), "kind example.org/Widget is not served at site sh-kiel"),
		condition(deichv1alpha1.ServiceConditionSynced, metav1.ConditionFalse, deichv1alpha1.ServiceReasonResourceNotMirrorable,
			"kind example.org/Widget is not served at site sh-kiel"))

	deleting := sharedService(t, 1, serviceStatus(deichv1alpha1.PhaseProtected, protected))
	deleting.SetDeletionTimestamp(&since)
	deleting.SetFinalizers([]string{deichv1alpha1.SharedServiceFinalizer})

	return []fixture{
		{name: "a service just created, before Deich wrote a status", obj: sharedService(t, 1, nil),
			kstatus: status.CurrentStatus, flux: status.UnknownStatus, argo: argoProgressing, argoMessage: "Waiting for Deich"},
		{name: "a Protected service whose spec changed since Deich's last status", obj: sharedService(t, 2, stale),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "not reconciled generation 2"},
		{name: "a service Pending while Deich lists its objects", obj: sharedService(t, 1, pending),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "waiting for the caches"},
		{name: "a service Pending while the standby's peer is not Ready", obj: sharedService(t, 1, unreachable),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "no Ready ReplicationPeer"},
		{name: "a service Pending because the standby refuses the copies", obj: sharedService(t, 1, forbidden),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Pending (PeerForbidden): mv-schwerin refuses"},
		{name: "a Protected service", obj: sharedService(t, 1, serviceStatus(deichv1alpha1.PhaseProtected, protected)),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Protected: sh-kiel serves"},
		{name: "a Protected service at its standby site", obj: sharedService(t, 1, standby),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Protected"},
		{name: "a Protected service in two-site mode", obj: sharedService(t, 1, twoSite),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Protected"},
		{name: "a service Degraded because its copy is older than the RPO", obj: sharedService(t, 1, tooOld),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Degraded: the standby's copy was last confirmed current at 2026-12-07T10:00:00Z"},
		{name: "a service Degraded with a failover recommended", obj: sharedService(t, 1, recommended),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Degraded (FailoverRecommended): checks of sh-kiel failed"},
		{name: "a service FailingOver", obj: sharedService(t, 1, failingOver),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "FailingOver: mv-schwerin took the lease"},
		{name: "a service FailingOver that waits for a promotion stage", obj: sharedService(t, 1, waitingStage),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "waits for stage database"},
		{name: "a service FailingOver whose promotion stage timed out", obj: sharedService(t, 1, stageTimedOut),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "FailingOver (PromotionStageTimedOut)"},
		{name: "a service FailedOver whose old primary is lost", obj: sharedService(t, 1, failedOver),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "FailedOver: peer sh-kiel unreachable"},
		{name: "a Fenced service", obj: sharedService(t, 1, fenced),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Fenced: could not renew the lease"},
		{name: "a service in Error", obj: sharedService(t, 1, broken),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Error: kind example.org/Widget is not served"},
		{name: "a service being deleted while its copies are removed", obj: deleting,
			kstatus: status.TerminatingStatus, flux: status.CurrentStatus, argo: argoProgressing, argoMessage: "Pending deletion"},
	}
}

// switchover returns the Switchover move-to-schwerin with st as its status.
func switchover(t *testing.T, drill bool, st *deichv1alpha1.SwitchoverStatus) *unstructured.Unstructured {
	t.Helper()
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Name: "move-to-schwerin", Namespace: "buergerkonto"},
		Spec: deichv1alpha1.SwitchoverSpec{
			SharedServiceName: "buergerkonto", TargetSite: "mv-schwerin", Reason: "CHG-2026-0412", Drill: drill,
		},
	}
	if st != nil {
		sw.Status = *st
	}
	return stored(t, sw, "Switchover", 1, st != nil)
}

// switchoverStatus is the status setPhase writes: phase, message and Ready.
func switchoverStatus(phase deichv1alpha1.SwitchoverPhase, ready metav1.ConditionStatus, reason, message string, more ...metav1.Condition) *deichv1alpha1.SwitchoverStatus {
	st := &deichv1alpha1.SwitchoverStatus{ObservedGeneration: 1, Phase: phase, Message: message, FromSite: "sh-kiel"}
	if phase != deichv1alpha1.SwitchoverPending {
		st.StartedAt = &since
	}
	if phase == deichv1alpha1.SwitchoverSucceeded || phase == deichv1alpha1.SwitchoverFailed {
		st.CompletedAt = &since
	}
	st.Conditions = append(st.Conditions, more...)
	st.Conditions = append(st.Conditions, condition(deichv1alpha1.ConditionReady, ready, reason, message))
	return st
}

// switchoverFixtures are the phases the Switchover controller produces, drills included.
func switchoverFixtures(t *testing.T) []fixture {
	// The copy of a running move at the other site: Deich there writes only phase, fromSite,
	// startedAt and message (applyCopyStatus), no conditions and no observedGeneration.
	copyAtPeer := switchover(t, false, &deichv1alpha1.SwitchoverStatus{
		Phase: deichv1alpha1.SwitchoverRunning, FromSite: "sh-kiel", StartedAt: &since,
		Message: "copy of Switchover move-to-schwerin at sh-kiel, which drives the move and removes this copy when it has finished",
	})
	copyAtPeer.SetLabels(map[string]string{"resilience.deich.io/source-site": "sh-kiel"})

	drillFailed := switchoverStatus(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDrillFailed,
		"drill failed: a failover to mv-schwerin would not succeed now: promotion at mv-schwerin would fail: Deployment portal: admission webhook denied the request",
		condition(deichv1alpha1.SwitchoverConditionPeerReachable, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonPeerReady, "peer mv-schwerin: Ready"),
		condition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonWithinRPO, "the copy is 2s old"),
		condition(deichv1alpha1.SwitchoverConditionPromotionAccepted, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDryRunRejected,
			"promotion at mv-schwerin would fail: Deployment portal: admission webhook denied the request"),
		condition(deichv1alpha1.SwitchoverConditionTargetChecksReachable, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonChecksReachable, "every check naming mv-schwerin ran"))

	return []fixture{
		{name: "a Switchover just created, before Deich wrote a status", obj: switchover(t, false, nil),
			kstatus: status.CurrentStatus, flux: status.UnknownStatus, argo: argoProgressing, argoMessage: "Waiting for Deich"},
		{name: "a Switchover Pending until its service is reconciled", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverPending,
			metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonWaitingForService, "waiting for SharedService buergerkonto to be reconciled at sh-kiel")),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "Pending (WaitingForService)"},
		{name: "a Switchover Running", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverRunning,
			metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonInProgress, "sh-kiel hands the lease of buergerkonto to mv-schwerin")),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "Running (InProgress): sh-kiel hands the lease"},
		{name: "a Switchover Running for longer than the RTO", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverRunning,
			metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonSlowerThanRTO, "the move has been running for 2m14s, longer than the RTO of 2m")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Running (SlowerThanRTO)"},
		{name: "the copy of a running Switchover at the other site", obj: copyAtPeer,
			kstatus: status.CurrentStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "copy of Switchover"},
		{name: "a Switchover Succeeded", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverSucceeded,
			metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonMoved, "mv-schwerin holds the lease of buergerkonto and serves it")),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Succeeded (Moved)"},
		{name: "a drill that passed", obj: switchover(t, true, switchoverStatus(deichv1alpha1.SwitchoverSucceeded,
			metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonDrillPassed, "drill passed: a failover to mv-schwerin would succeed now, estimated recovery time 32s (RTO 2m0s)")),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Succeeded (DrillPassed): drill passed"},
		{name: "a drill that failed", obj: switchover(t, true, drillFailed),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Failed (DrillFailed): drill failed"},
		{name: "a Switchover refused because another one runs", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverFailed,
			metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonAnotherSwitchover, "Switchover failback-kiel of buergerkonto has not finished")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Failed (AnotherSwitchoverActive)"},
		{name: "a Switchover refused because the copy is older than the RPO", obj: switchover(t, false, switchoverStatus(deichv1alpha1.SwitchoverFailed,
			metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyTooOld, "the copy at mv-schwerin is 3m old, older than the RPO of 30s; set force to move anyway")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "Failed (CopyOlderThanRPO)"},
	}
}

// replicationPeer returns the peer mv-schwerin (a witness when witness is set) with st as
// its status, of the given generation.
func replicationPeer(t *testing.T, witness bool, generation int64, st *deichv1alpha1.ReplicationPeerStatus) *unstructured.Unstructured {
	t.Helper()
	w := testobjects.MakeReplicationPeer("mv-schwerin")
	if witness {
		w = testobjects.MakeReplicationPeer("hh-hamburg").Witness("")
	}
	peer := w.Obj()
	if st != nil {
		peer.Status = *st
	}
	return stored(t, peer, "ReplicationPeer", generation, st != nil)
}

// peerStatus is the status report writes: Reachable and Ready.
func peerStatus(reachable metav1.ConditionStatus, reachableReason string, ready metav1.ConditionStatus, readyReason, message string) *deichv1alpha1.ReplicationPeerStatus {
	st := &deichv1alpha1.ReplicationPeerStatus{
		ObservedGeneration: 1,
		Conditions: []metav1.Condition{
			condition(deichv1alpha1.PeerConditionReachable, reachable, reachableReason, message),
			condition(deichv1alpha1.ConditionReady, ready, readyReason, message),
		},
	}
	if reachable == metav1.ConditionTrue {
		st.LastHeartbeatTime = &since
		st.Latency = &metav1.Duration{Duration: 3 * time.Millisecond}
		st.ServerVersion = "v1.37.2"
	} else {
		st.ConsecutiveFailures = 4
	}
	return st
}

// replicationPeerFixtures are the Ready reasons the ReplicationPeer controller produces.
func replicationPeerFixtures(t *testing.T) []fixture {
	connected := peerStatus(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded, metav1.ConditionTrue,
		deichv1alpha1.PeerReasonConnected, "peer mv-schwerin (Kubernetes v1.37.2) is reachable and serves resilience.deich.io/v1alpha1")
	return []fixture{
		{name: "a peer just created, before its first heartbeat", obj: replicationPeer(t, false, 1, nil),
			kstatus: status.CurrentStatus, flux: status.UnknownStatus, argo: argoProgressing, argoMessage: "Waiting for the first heartbeat"},
		{name: "a Ready peer whose spec changed since Deich's last status", obj: replicationPeer(t, false, 2, connected),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "not reconciled generation 2"},
		{name: "a Ready partner", obj: replicationPeer(t, false, 1, connected),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Connected: peer mv-schwerin"},
		{name: "a Ready witness", obj: replicationPeer(t, true, 1, peerStatus(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded,
			metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected, "witness hh-hamburg (Kubernetes v1.37.2) is reachable and this site may keep Leases in its namespace deich-witness")),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "WitnessConnected"},
		{name: "an unreachable peer", obj: replicationPeer(t, false, 1, peerStatus(metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed,
			metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed, "peer mv-schwerin unreachable: dial tcp 10.0.1.9:6443: i/o timeout")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "HeartbeatFailed: peer mv-schwerin unreachable"},
		{name: "a peer whose kubeconfig Secret does not exist yet", obj: replicationPeer(t, false, 1, peerStatus(metav1.ConditionUnknown, deichv1alpha1.PeerReasonSecretNotFound,
			metav1.ConditionFalse, deichv1alpha1.PeerReasonSecretNotFound, "Secret deich-system/peer-mv-schwerin not found")),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "SecretNotFound"},
		{name: "a peer whose kubeconfig is refused", obj: replicationPeer(t, false, 1, peerStatus(metav1.ConditionUnknown, deichv1alpha1.PeerReasonCredentialsRefused,
			metav1.ConditionFalse, deichv1alpha1.PeerReasonCredentialsRefused, "kubeconfig in Secret deich-system/peer-mv-schwerin refused (InsecureSkipTLSVerify)")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "CredentialsRefused"},
		{name: "a peer that does not serve Deich's API", obj: replicationPeer(t, false, 1, peerStatus(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded,
			metav1.ConditionFalse, deichv1alpha1.PeerReasonAPINotInstalled, "peer mv-schwerin does not serve resilience.deich.io/v1alpha1; install Deich's CRDs there")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "DeichAPINotInstalled"},
		{name: "a witness that refuses this site its Leases", obj: replicationPeer(t, true, 1, peerStatus(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded,
			metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseAccessDenied, "witness hh-hamburg refuses this site the Leases in namespace deich-witness")),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "LeaseAccessDenied"},
	}
}

// recoveryObjective returns the objective buergerdienste with st as its status.
func recoveryObjective(t *testing.T, generation int64, st *deichv1alpha1.RecoveryObjectiveStatus) *unstructured.Unstructured {
	t.Helper()
	obj := testobjects.MakeRecoveryObjective("buergerdienste").Obj()
	if st != nil {
		obj.Status = *st
	}
	return stored(t, obj, "RecoveryObjective", generation, st != nil)
}

// objectiveStatus is the status of an objective: Valid and Ready.
func objectiveStatus(valid metav1.ConditionStatus, validReason string, ready metav1.ConditionStatus, readyReason, message string, services int32) *deichv1alpha1.RecoveryObjectiveStatus {
	return &deichv1alpha1.RecoveryObjectiveStatus{
		ObservedGeneration: 1,
		SharedServices:     services,
		MinimumRTO:         &metav1.Duration{Duration: 32 * time.Second},
		Conditions: []metav1.Condition{
			condition(deichv1alpha1.ObjectiveConditionValid, valid, validReason, message),
			condition(deichv1alpha1.ConditionReady, ready, readyReason, message),
		},
	}
}

// recoveryObjectiveFixtures are the conditions the RecoveryObjective controller produces.
func recoveryObjectiveFixtures(t *testing.T) []fixture {
	inUse := objectiveStatus(metav1.ConditionTrue, deichv1alpha1.ObjectiveReasonConsistent, metav1.ConditionTrue,
		deichv1alpha1.ObjectiveReasonInUse, "the RTO of 2m leaves room for detection, lease expiry and clock skew (minimum 32s); 3 SharedService(s) use it", 3)
	return []fixture{
		{name: "an objective just created, before Deich validated it", obj: recoveryObjective(t, 1, nil),
			kstatus: status.CurrentStatus, flux: status.UnknownStatus, argo: argoProgressing, argoMessage: "Waiting for Deich"},
		{name: "an objective whose spec changed since Deich's last status", obj: recoveryObjective(t, 2, inUse),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "not reconciled generation 2"},
		{name: "a valid objective in use", obj: recoveryObjective(t, 1, inUse),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "InUse"},
		{name: "a valid objective no service uses yet", obj: recoveryObjective(t, 1, objectiveStatus(metav1.ConditionTrue, deichv1alpha1.ObjectiveReasonConsistent,
			metav1.ConditionTrue, deichv1alpha1.ObjectiveReasonUnused, "valid; no SharedService refers to it yet", 0)),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Unused"},
		{name: "an objective whose RTO is too short", obj: recoveryObjective(t, 1, objectiveStatus(metav1.ConditionFalse, deichv1alpha1.ObjectiveReasonRTOTooShort,
			metav1.ConditionFalse, deichv1alpha1.ObjectiveReasonInvalid, "the RTO of 30s is shorter than the 32s a failover needs at least", 1)),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "RTOTooShort"},
	}
}

// drillSchedule returns the DrillSchedule monthly with st as its status.
func drillSchedule(t *testing.T, generation int64, st *deichv1alpha1.DrillScheduleStatus) *unstructured.Unstructured {
	t.Helper()
	ds := &deichv1alpha1.DrillSchedule{
		ObjectMeta: metav1.ObjectMeta{Name: "monthly", Namespace: "buergerkonto"},
		Spec: deichv1alpha1.DrillScheduleSpec{
			Schedule: "0 3 1 * *", TimeZone: "Europe/Berlin", Owner: "Plattformbetrieb SH (bcm@sh.example)", HistoryLimit: 12,
		},
	}
	if st != nil {
		ds.Status = *st
	}
	return stored(t, ds, "DrillSchedule", generation, st != nil)
}

// drillStatus is the status of a schedule: Ready and LastRunPassed.
func drillStatus(ready metav1.ConditionStatus, readyReason, readyMessage string, lastRun metav1.ConditionStatus, lastRunReason, lastRunMessage string) *deichv1alpha1.DrillScheduleStatus {
	st := &deichv1alpha1.DrillScheduleStatus{
		ObservedGeneration: 1,
		Conditions: []metav1.Condition{
			condition(deichv1alpha1.DrillScheduleConditionReady, ready, readyReason, readyMessage),
			condition(deichv1alpha1.DrillScheduleConditionLastRunPassed, lastRun, lastRunReason, lastRunMessage),
		},
	}
	switch lastRun {
	case metav1.ConditionTrue:
		st.LastResult = deichv1alpha1.DrillPassed
	case metav1.ConditionFalse:
		st.LastResult = deichv1alpha1.DrillFailed
	}
	return st
}

// drillScheduleFixtures are the conditions the DrillSchedule controller produces.
func drillScheduleFixtures(t *testing.T) []fixture {
	const next = "next run 2026-06-01T03:00:00+02:00"
	const noRun = "no run has completed yet"
	passed := drillStatus(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled, next,
		metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonRunPassed, "run 1777597200: every drilled service passed")
	return []fixture{
		{name: "a schedule just created, before Deich read it", obj: drillSchedule(t, 1, nil),
			kstatus: status.CurrentStatus, flux: status.UnknownStatus, argo: argoProgressing, argoMessage: "Waiting for Deich"},
		{name: "a schedule whose spec changed since Deich's last status", obj: drillSchedule(t, 2, passed),
			kstatus: status.InProgressStatus, flux: status.InProgressStatus, argo: argoProgressing, argoMessage: "not reconciled generation 2"},
		{name: "a schedule before its first run", obj: drillSchedule(t, 1, drillStatus(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled, next,
			metav1.ConditionUnknown, deichv1alpha1.DrillScheduleReasonNoRunYet, noRun)),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Scheduled: next run"},
		{name: "a schedule whose last run passed", obj: drillSchedule(t, 1, passed),
			kstatus: status.CurrentStatus, flux: status.CurrentStatus, argo: argoHealthy, argoMessage: "Scheduled: next run"},
		{name: "a schedule whose last run failed", obj: drillSchedule(t, 1, drillStatus(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled, next,
			metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonRunFailed, "run 1777597200: 1 of 3 drills failed; status.reports[0] lists each failed check")),
			kstatus: status.CurrentStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "RunFailed: run 1777597200: 1 of 3 drills failed"},
		{name: "a schedule whose last run was missed", obj: drillSchedule(t, 1, drillStatus(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled, next,
			metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonRunMissed, "the run due 2026-05-01T03:00:00+02:00 did not start within 1h")),
			kstatus: status.CurrentStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "RunMissed"},
		{name: "a suspended schedule", obj: drillSchedule(t, 1, drillStatus(metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonSuspended, "spec.suspend is set: no run starts",
			metav1.ConditionUnknown, deichv1alpha1.DrillScheduleReasonNoRunYet, noRun)),
			kstatus: status.InProgressStatus, flux: status.CurrentStatus, argo: argoSuspended, argoMessage: "Suspended: spec.suspend is set"},
		{name: "a schedule that cannot be parsed", obj: drillSchedule(t, 1, drillStatus(metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonInvalidSchedule,
			`spec.schedule "0 3 31 2 *" names no time`, metav1.ConditionUnknown, deichv1alpha1.DrillScheduleReasonNoRunYet, noRun)),
			kstatus: status.InProgressStatus, flux: status.FailedStatus, argo: argoDegraded, argoMessage: "InvalidSchedule"},
	}
}

// fixtures returns every fixture of every kind.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	var all []fixture
	for _, kind := range []func(*testing.T) []fixture{
		sharedServiceFixtures, switchoverFixtures, replicationPeerFixtures, recoveryObjectiveFixtures, drillScheduleFixtures,
	} {
		all = append(all, kind(t)...)
	}
	return all
}

// deichKinds lists the kinds of resilience.deich.io/v1alpha1 (their lists left out), as the
// API package registers them: a kind added there needs health checks here too.
func deichKinds(t *testing.T) []string {
	t.Helper()
	scheme := k8sruntime.NewScheme()
	if err := deichv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatalf("register the Deich kinds: %v", err)
	}
	apiPackage := reflect.TypeFor[deichv1alpha1.SharedService]().PkgPath()
	var kinds []string
	for kind, typ := range scheme.KnownTypes(deichv1alpha1.GroupVersion) {
		if typ.PkgPath() == apiPackage && !strings.HasSuffix(kind, "List") {
			kinds = append(kinds, kind)
		}
	}
	sort.Strings(kinds)
	return kinds
}

// repoRoot is the repository's root directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot tell where the test's source is")
	}
	return filepath.Join(filepath.Dir(self), "..", "..")
}

// repoFile returns the contents of path, relative to the repository's root.
func repoFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(path)))
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return data
}

func TestFixturesCoverEveryPhaseAndKind(t *testing.T) {
	seen := map[string]map[string]bool{}
	for _, f := range fixtures(t) {
		if seen[f.kind()] == nil {
			seen[f.kind()] = map[string]bool{}
		}
		phase, _, _ := unstructured.NestedString(f.obj.Object, "status", "phase")
		seen[f.kind()][phase] = true
	}
	for _, k := range deichKinds(t) {
		if seen[k] == nil {
			t.Errorf("no fixture of kind %s: add its statuses to objects_test.go and health checks for it", k)
		}
	}
	phases := map[string][]string{
		"SharedService": {
			string(deichv1alpha1.PhasePending), string(deichv1alpha1.PhaseProtected), string(deichv1alpha1.PhaseDegraded),
			string(deichv1alpha1.PhaseFailingOver), string(deichv1alpha1.PhaseFailedOver), string(deichv1alpha1.PhaseFenced),
			string(deichv1alpha1.PhaseError),
		},
		"Switchover": {
			string(deichv1alpha1.SwitchoverPending), string(deichv1alpha1.SwitchoverRunning),
			string(deichv1alpha1.SwitchoverSucceeded), string(deichv1alpha1.SwitchoverFailed),
		},
	}
	for kind, want := range phases {
		for _, phase := range want {
			if !seen[kind][phase] {
				t.Errorf("no %s fixture in phase %s", kind, phase)
			}
		}
	}
}
