package controllers

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testobjects"
)

func TestObjectivesCondition(t *testing.T) {
	objective := testobjects.MakeRecoveryObjective("standard").RPO(30 * time.Second).Obj()
	synced := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		objective *deichv1alpha1.RecoveryObjective
		syncedAt  time.Time
		lag       time.Duration
		// promotionProblem and slowRecovery are the RTO's inputs.
		promotionProblem string
		slowRecovery     *deichv1alpha1.FailoverRecord
		data             dataLag
		want             metav1.Condition
	}{{
		name: "without an objective there is nothing to compare with",
		lag:  time.Second, syncedAt: synced,
		want: metav1.Condition{Status: metav1.ConditionUnknown, Reason: deichv1alpha1.ServiceReasonObjectiveNotFound, Message: "no RecoveryObjective to compare with"},
	}, {
		name: "a copy as old as the RPO meets it", objective: objective, syncedAt: synced, lag: 30 * time.Second,
		want: metav1.Condition{Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonWithinRPO, Message: "the standby's copy is within the RPO of 30s"},
	}, {
		name: "a copy older than the RPO misses it", objective: objective, syncedAt: synced, lag: 31 * time.Second,
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld, Message: "the standby's copy was last confirmed current at 2026-12-07T10:00:00Z, older than the RPO of 30s"},
	}, {
		name: "a copy never synced misses the RPO however young the service is", objective: objective, lag: time.Second,
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld, Message: "the standby's copy has not been confirmed current yet, so it counts as older than the RPO of 30s"},
	}, {
		name: "a stage that can never be ready misses the RTO, whatever the copy's age", objective: objective, syncedAt: synced, lag: time.Second,
		promotionProblem: "stage database: readyWhen \"self.status.phase ==\" does not compile; a promotion would stop at this stage, so the RTO cannot be met",
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonPromotionInvalid,
			Message: "spec.promotion: stage database: readyWhen \"self.status.phase ==\" does not compile; a promotion would stop at this stage, so the RTO cannot be met"},
	}, {
		name: "data older than the RPO misses it, though the copies are current", objective: objective, syncedAt: synced, lag: time.Second,
		data: dataLag{known: true, lag: 45 * time.Second, from: "VolumeReplication files (stage volume)"},
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld,
			Message: "the data of VolumeReplication files (stage volume) is behind by more than the RPO of 30s"},
	}, {
		name: "data whose lag is not known cannot be shown within the RPO", objective: objective, syncedAt: synced, lag: time.Second,
		data: dataLag{unknown: "VolumeReplication files (stage volume): timestamp(self.status.lastSyncTime) cannot be evaluated yet: no such key: lastSyncTime"},
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld,
			Message: "the data's lag is not known, so the RPO of 30s cannot be shown to hold: VolumeReplication files (stage volume): timestamp(self.status.lastSyncTime) cannot be evaluated yet: no such key: lastSyncTime"},
	}, {
		name: "data within the RPO meets it", objective: objective, syncedAt: synced, lag: time.Second,
		data: dataLag{known: true, lag: 20 * time.Second, from: "VolumeReplication files (stage volume)"},
		want: metav1.Condition{Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonWithinRPO, Message: "the standby's copy is within the RPO of 30s"},
	}, {
		name: "a recent promotion slower than the RTO misses it", objective: objective, syncedAt: synced, lag: time.Second,
		slowRecovery: &deichv1alpha1.FailoverRecord{Epoch: 7, CompletedAt: &metav1.Time{Time: time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)},
			RecoveryTime: &metav1.Duration{Duration: 3 * time.Minute}},
		want: metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonRecoverySlowerThanRTO,
			Message: "the promotion of epoch 7 completed at 2026-12-06T03:00:00Z took 3m0s after the failure was detected, longer than the RTO of 2m0s"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.Type, tc.want.ObservedGeneration = deichv1alpha1.ServiceConditionObjectivesMet, 4
			got := objectivesCondition(4, objectiveInputs{objective: tc.objective, syncedAt: tc.syncedAt, lag: tc.lag,
				promotionProblem: tc.promotionProblem, slowRecovery: tc.slowRecovery, data: tc.data})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("objectivesCondition (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAMissedRPOReadsTheSameAsTheCopyAges: while the copy or the data stays older than the
// RPO, ObjectivesMet does not change with its age (status.replicationLag has it), so missing the
// RPO costs no status write per reconcile.
func TestAMissedRPOReadsTheSameAsTheCopyAges(t *testing.T) {
	objective := testobjects.MakeRecoveryObjective("standard").RPO(30 * time.Second).Obj()
	synced := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	volume := "VolumeReplication files (stage volume)"
	for _, tc := range []struct {
		name         string
		early, later objectiveInputs
	}{
		{"a copy too old", objectiveInputs{syncedAt: synced, lag: 31 * time.Second}, objectiveInputs{syncedAt: synced, lag: 5 * time.Minute}},
		{"a copy never confirmed", objectiveInputs{lag: time.Second}, objectiveInputs{lag: 5 * time.Minute}},
		{"data too old", objectiveInputs{syncedAt: synced, lag: time.Second, data: dataLag{known: true, lag: 45 * time.Second, from: volume}},
			objectiveInputs{syncedAt: synced, lag: 2 * time.Second, data: dataLag{known: true, lag: 10 * time.Minute, from: volume}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.early.objective, tc.later.objective = objective, objective
			early, later := objectivesCondition(4, tc.early), objectivesCondition(4, tc.later)
			if early.Status != metav1.ConditionFalse {
				t.Fatalf("the objective is met: %+v", early)
			}
			if diff := cmp.Diff(early, later); diff != "" {
				t.Errorf("ObjectivesMet changed as the copy aged (-early +later):\n%s", diff)
			}
		})
	}
}

// protected is what a reconcile at the active sh-kiel knows of a service it serves, in sync
// and within the RPO, holding the lease.
func protected() summaryInputs {
	return summaryInputs{
		site: "sh-kiel", activeSite: "sh-kiel", standbySite: "mv-schwerin",
		lease:      leaseSnapshot{read: true, serving: true, record: failover.LeaseRecord{Holder: "sh-kiel"}, message: "this site holds a majority"},
		everSynced: true,
		synced:     &metav1.Condition{Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonSynced, Message: "5 object(s) mirrored to mv-schwerin"},
		objectives: metav1.Condition{Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonWithinRPO, Message: "the standby's copy is within the RPO of 30s"},
	}
}

func TestServicePhaseAndReady(t *testing.T) {
	completed := metav1.NewTime(time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC))
	for _, tc := range []struct {
		name       string
		mutate     func(*summaryInputs)
		wantPhase  deichv1alpha1.Phase
		wantReady  metav1.ConditionStatus
		wantReason string
		wantMsg    string
	}{{
		name:      "a synced service within the RPO whose lease is held is Protected and Ready",
		mutate:    func(*summaryInputs) {},
		wantPhase: deichv1alpha1.PhaseProtected, wantReady: metav1.ConditionTrue, wantReason: string(deichv1alpha1.PhaseProtected),
		wantMsg: "sh-kiel serves; mv-schwerin holds a copy within the RPO",
	}, {
		name: "something the user must fix is an Error whatever the lease says",
		mutate: func(in *summaryInputs) {
			in.terminal, in.lease.promoting = true, true
			in.synced = &metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonResourceNotMirrorable, Message: "kind Node is cluster-scoped"}
		},
		wantPhase: deichv1alpha1.PhaseError, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseError),
		wantMsg: "kind Node is cluster-scoped",
	}, {
		name:      "a promotion in progress is FailingOver and says what the keeper waits for",
		mutate:    func(in *summaryInputs) { in.lease.promoting, in.lease.message = true, "promoting with epoch 2" },
		wantPhase: deichv1alpha1.PhaseFailingOver, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFailingOver),
		wantMsg: "promoting with epoch 2",
	}, {
		name: "a promotion that waits for a stage says which and why",
		mutate: func(in *summaryInputs) {
			in.lease.promoting, in.lease.message = true, "promoting with epoch 2"
			in.promotion = &deichv1alpha1.PromotionStatus{Stages: []deichv1alpha1.PromotionStageStatus{
				{Name: "database", Phase: deichv1alpha1.StagePromoting, Message: "Cluster db: self.status.phase == 'Cluster in healthy state' is false"},
				{Name: "app", Phase: deichv1alpha1.StagePending},
			}}
		},
		wantPhase: deichv1alpha1.PhaseFailingOver, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFailingOver),
		wantMsg: "the promotion waits for stage database: Cluster db: self.status.phase == 'Cluster in healthy state' is false",
	}, {
		name: "a promotion stopped at a stage that timed out says what to do",
		mutate: func(in *summaryInputs) {
			in.lease.promoting = true
			in.promotion = &deichv1alpha1.PromotionStatus{Stages: []deichv1alpha1.PromotionStageStatus{
				{Name: "database", Phase: deichv1alpha1.StageReady},
				{Name: "app", Phase: deichv1alpha1.StageTimedOut, Message: "Deployment web: self.status.readyReplicas >= 1 is false"},
			}}
		},
		wantPhase: deichv1alpha1.PhaseFailingOver, wantReady: metav1.ConditionFalse, wantReason: deichv1alpha1.ServiceReasonPromotionStageTimedOut,
		wantMsg: "the promotion stopped at stage app, not ready within its timeout: Deployment web: self.status.readyReplicas >= 1 is false; " +
			"the later stages stay in standby form until it is ready, or a Switchover moves the service",
	}, {
		name:      "a site that lost its majority is Fenced",
		mutate:    func(in *summaryInputs) { in.lease.fenced, in.lease.message = true, "cannot show a majority: fenced" },
		wantPhase: deichv1alpha1.PhaseFenced, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFenced),
		wantMsg: "cannot show a majority: fenced",
	}, {
		name: "a site handing the service over is Fenced",
		mutate: func(in *summaryInputs) {
			in.lease.handingOver, in.lease.message = true, "a Switchover moves the service away"
		},
		wantPhase: deichv1alpha1.PhaseFenced, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFenced),
		wantMsg: "a Switchover moves the service away",
	}, {
		name: "a site that came back after a failover is Fenced until it holds a copy from the new active",
		mutate: func(in *summaryInputs) {
			in.lease.returned, in.lease.record.Holder, in.lease.message = true, "mv-schwerin", "mv-schwerin holds the lease"
		},
		wantPhase: deichv1alpha1.PhaseFenced, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFenced),
		wantMsg: "mv-schwerin holds the lease",
	}, {
		name: "a returned site that holds the new active's copy is a standby again",
		mutate: func(in *summaryInputs) {
			in.lease.returned, in.lease.serving, in.copyFromHolder = true, false, true
			in.lease.record.Holder, in.activeSite, in.standbySite = "mv-schwerin", "mv-schwerin", "sh-kiel"
		},
		wantPhase: deichv1alpha1.PhaseProtected, wantReady: metav1.ConditionTrue, wantReason: string(deichv1alpha1.PhaseProtected),
		wantMsg: "mv-schwerin serves; sh-kiel holds a copy within the RPO",
	}, {
		name: "a failover that may not run by itself is Degraded with FailoverRecommended",
		mutate: func(in *summaryInputs) {
			in.lease.recommend, in.lease.message = true, "the copy was older than the RPO"
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: deichv1alpha1.ServiceReasonFailoverRecommended,
		wantMsg: "the copy was older than the RPO",
	}, {
		name: "a service the egress policy keeps in part from the standby is Degraded, never synced or not",
		mutate: func(in *summaryInputs) {
			in.everSynced = false
			in.synced = &metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonEgressDenied, Message: "1 selected object(s) may not leave for mv-schwerin"}
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseDegraded),
		wantMsg: "1 selected object(s) may not leave for mv-schwerin",
	}, {
		name: "a service the standby refuses in its namespace is Degraded, never synced or not",
		mutate: func(in *summaryInputs) {
			in.everSynced = false
			in.synced = &metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonPeerForbidden, Message: "peer mv-schwerin forbids writes to namespace register"}
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseDegraded),
		wantMsg: "peer mv-schwerin forbids writes to namespace register",
	}, {
		name:      "a service never synced is Pending",
		mutate:    func(in *summaryInputs) { in.everSynced, in.synced = false, nil },
		wantPhase: deichv1alpha1.PhasePending, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhasePending),
		wantMsg: "the standby's copy is within the RPO of 30s",
	}, {
		name: "a service whose last sync failed is Degraded and says why",
		mutate: func(in *summaryInputs) {
			in.synced = &metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonApplyFailed, Message: "apply ConfigMap settings: forbidden"}
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseDegraded),
		wantMsg: "apply ConfigMap settings: forbidden",
	}, {
		name: "a copy older than the RPO is Degraded with the objective's message",
		mutate: func(in *summaryInputs) {
			in.objectives = metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld, Message: "the standby's copy was last confirmed current at 2026-12-07T10:00:00Z, older than the RPO of 30s"}
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseDegraded),
		wantMsg: "the standby's copy was last confirmed current at 2026-12-07T10:00:00Z, older than the RPO of 30s",
	}, {
		name: "a site serving after it failed over, its copy not yet in sync at the old active, is FailedOver",
		mutate: func(in *summaryInputs) {
			in.activeSite, in.standbySite, in.site = "mv-schwerin", "sh-kiel", "mv-schwerin"
			in.lease.record.Holder = "mv-schwerin"
			in.synced = &metav1.Condition{Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonPeerNotConnected, Message: "no Ready ReplicationPeer for site sh-kiel"}
			in.lastFailover = &deichv1alpha1.FailoverRecord{From: "sh-kiel", To: "mv-schwerin", CompletedAt: &completed}
		},
		wantPhase: deichv1alpha1.PhaseFailedOver, wantReady: metav1.ConditionFalse, wantReason: string(deichv1alpha1.PhaseFailedOver),
		wantMsg: "no Ready ReplicationPeer for site sh-kiel",
	}, {
		name: "a lease read but held by nobody leaves the service Degraded with LeaseUnknown",
		mutate: func(in *summaryInputs) {
			in.lease.record.Holder, in.lease.serving, in.lease.message = "", false, "every copy of the lease was released"
		},
		wantPhase: deichv1alpha1.PhaseDegraded, wantReady: metav1.ConditionFalse, wantReason: deichv1alpha1.ServiceReasonLeaseUnknown,
		wantMsg: "every copy of the lease was released",
	}, {
		name:      "a failed switch of the objects' form overrides the message",
		mutate:    func(in *summaryInputs) { in.lease.formErr = "update Deployment web: conflict" },
		wantPhase: deichv1alpha1.PhaseProtected, wantReady: metav1.ConditionTrue, wantReason: string(deichv1alpha1.PhaseProtected),
		wantMsg: "cannot switch this site's objects to the form the lease allows: update Deployment web: conflict",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			in := protected()
			tc.mutate(&in)
			phase := servicePhase(in)
			if phase != tc.wantPhase {
				t.Errorf("servicePhase = %s, want %s", phase, tc.wantPhase)
			}
			want := metav1.Condition{Type: deichv1alpha1.ConditionReady, ObservedGeneration: 7, Status: tc.wantReady, Reason: tc.wantReason, Message: tc.wantMsg}
			if diff := cmp.Diff(want, readyCondition(7, phase, in)); diff != "" {
				t.Errorf("readyCondition (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdoptSyncStampTakesTheLatestEvidenceOfTheActive(t *testing.T) {
	const here, active = "mv-schwerin", "sh-kiel"
	base := time.Date(2026, time.December, 6, 9, 0, 0, 0, time.UTC)
	held := func(holder string, synced time.Time) failover.Observation {
		return failover.Observation{Record: failover.LeaseRecord{Holder: holder, ResourceVersion: "1", SyncedAt: synced}, ObservedAt: base}
	}
	tests := []struct {
		name         string
		status       *time.Time
		annotation   string
		observations map[string]failover.Observation
		watched      time.Time
		want         *time.Time
	}{{
		name:         "the lease's copies carry a newer round than the annotation",
		annotation:   base.Format(time.RFC3339Nano),
		observations: map[string]failover.Observation{active: held(active, base.Add(4*time.Second)), here: held(active, base.Add(9*time.Second))},
		want:         ptr.To(base.Add(9 * time.Second)),
	}, {
		name:         "the annotation is newer than the lease's copies",
		annotation:   base.Add(12 * time.Second).Format(time.RFC3339Nano),
		observations: map[string]failover.Observation{here: held(active, base.Add(9*time.Second))},
		want:         ptr.To(base.Add(12 * time.Second)),
	}, {
		name:         "a copy this site holds says nothing of its own copy",
		observations: map[string]failover.Observation{here: held(here, base.Add(9*time.Second))},
	}, {
		name:         "the Lease watch saw a renewal the keeper has not read yet",
		observations: map[string]failover.Observation{here: held(active, base.Add(9*time.Second))},
		watched:      base.Add(19 * time.Second),
		want:         ptr.To(base.Add(19 * time.Second)),
	}, {
		name:         "an older stamp never moves the age back",
		status:       ptr.To(base.Add(20 * time.Second)),
		observations: map[string]failover.Observation{here: held(active, base.Add(9*time.Second))},
		want:         ptr.To(base.Add(20 * time.Second)),
	}, {
		name:         "a renewal without a sync time leaves the status as it is",
		status:       ptr.To(base),
		observations: map[string]failover.Observation{here: held(active, time.Time{})},
		want:         ptr.To(base),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := testobjects.MakeSharedService("buergerkonto", "buergerdienste").Obj()
			if tt.annotation != "" {
				svc.Annotations = map[string]string{deichv1alpha1.AnnotationLastSyncTime: tt.annotation}
			}
			if tt.status != nil {
				svc.Status.LastSyncTime = &metav1.Time{Time: *tt.status}
			}
			adoptSyncStamp(svc, here, tt.observations, tt.watched)
			var got *time.Time
			if svc.Status.LastSyncTime != nil {
				got = &svc.Status.LastSyncTime.Time
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("status.lastSyncTime (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangedEntriesWakeServicesOnNewSyncTimesOfAnotherSite(t *testing.T) {
	at := time.Date(2026, time.December, 6, 9, 0, 0, 0, time.UTC)
	record := func(entries map[string]failover.LeaseRecord) *coordinationv1.Lease {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: lease.PartnerLeaseNamespace, Name: "deich-mv-schwerin.sh-kiel.3",
			Labels: map[string]string{render.LabelManagedBy: render.ManagedByDeich}}}
		if err := failover.ApplyEntries(l, entries); err != nil {
			t.Fatal(err)
		}
		return l
	}
	entry := func(holder string, synced time.Time) failover.LeaseRecord {
		return failover.LeaseRecord{Holder: holder, Epoch: 2, ResourceVersion: "v", SyncedAt: synced}
	}
	before := record(map[string]failover.LeaseRecord{
		"a/renewed": entry("sh-kiel", at), "b/synced": entry("sh-kiel", at), "c/own": entry("mv-schwerin", at),
	})
	after := record(map[string]failover.LeaseRecord{
		"a/renewed": entry("sh-kiel", at), "b/synced": entry("sh-kiel", at.Add(10*time.Second)), "c/own": entry("mv-schwerin", at.Add(10*time.Second)),
	})
	changed, synced := changedEntries("mv-schwerin", before, after)
	if len(changed) != 0 {
		t.Errorf("renewals changed holder or epoch of %v", changed)
	}
	want := map[types.NamespacedName]time.Time{{Namespace: "b", Name: "synced"}: at.Add(10 * time.Second)}
	if diff := cmp.Diff(want, synced); diff != "" {
		t.Errorf("new sync times of another site (-want +got):\n%s", diff)
	}
}

func TestOnlyClocksMovedWritesWhatChangedAndRefreshesTheClocks(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	objective := testobjects.MakeRecoveryObjective("rpo-30s").RPO(30 * time.Second).Obj()
	owner := types.NamespacedName{Namespace: "ns", Name: "svc"}
	stored := deichv1alpha1.SharedServiceStatus{
		Phase:          deichv1alpha1.PhaseProtected,
		LastSyncTime:   &metav1.Time{Time: t0},
		ReplicationLag: &metav1.Duration{Duration: time.Second},
		Lease:          &deichv1alpha1.LeaseStatus{Holder: "sh-kiel", Epoch: 1, RenewTime: &metav1.MicroTime{Time: t0}},
		HealthChecks: []deichv1alpha1.HealthCheckStatus{{Name: "front-door", Status: deichv1alpha1.HealthHealthy,
			LastProbeTime: &metav1.Time{Time: t0}, LastTransitionTime: &metav1.Time{Time: t0}}},
		Conditions: []metav1.Condition{{Type: deichv1alpha1.ServiceConditionSynced, Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonSynced}},
		MirroredResources: &deichv1alpha1.MirroredResources{Count: 2, Items: []deichv1alpha1.MirroredResource{
			{Kind: "ConfigMap", Name: "settings", Hash: "1b2c"}, {Group: "apps", Kind: "Deployment", Name: "web", Hash: "3d4e"},
		}},
	}
	clocksMoved := func(st *deichv1alpha1.SharedServiceStatus) {
		st.LastSyncTime = &metav1.Time{Time: t0.Add(5 * time.Second)}
		st.ReplicationLag = &metav1.Duration{Duration: 2 * time.Second}
		st.Lease.RenewTime = &metav1.MicroTime{Time: t0.Add(5 * time.Second)}
		st.HealthChecks[0].LastProbeTime = &metav1.Time{Time: t0.Add(4 * time.Second)}
		st.HealthChecks[0].Latency = &metav1.Duration{Duration: time.Millisecond}
		st.Lease.ObservedTime = &metav1.Time{Time: t0.Add(5 * time.Second)}
		// Held in memory to the nanosecond, stored to the second.
		st.HealthChecks[0].LastTransitionTime = &metav1.Time{Time: t0.Add(123 * time.Millisecond)}
	}
	tests := []struct {
		name      string
		written   *time.Duration // since this process last wrote the status; nil: never
		objective *deichv1alpha1.RecoveryObjective
		// base, if set, changes the stored status before change changes it further.
		base   func(*deichv1alpha1.SharedServiceStatus)
		change func(*deichv1alpha1.SharedServiceStatus)
		// lastWrote says this process last wrote the status change makes, which the stored
		// status the reconcile read does not show yet.
		lastWrote bool
		// met says ObjectivesMet is True before and after the change.
		met  bool
		skip bool
	}{
		{name: "clocks only, written recently", written: ptr.To(5 * time.Second), objective: objective, change: clocksMoved, skip: true},
		{name: "clocks only, written half an RPO ago", written: ptr.To(15 * time.Second), objective: objective, change: clocksMoved},
		{name: "clocks only, never written by this process", objective: objective, change: clocksMoved},
		{name: "clocks only, objective unknown", written: ptr.To(time.Second), change: clocksMoved},
		// Within the RPO the clocks say nothing new for five minutes.
		{name: "clocks only, objectives met, written half an RPO ago", written: ptr.To(15 * time.Second), objective: objective, met: true, change: clocksMoved, skip: true},
		{name: "clocks only, objectives met, written four minutes ago", written: ptr.To(4 * time.Minute), objective: objective, met: true, change: clocksMoved, skip: true},
		{name: "clocks only, objectives met, written five minutes ago", written: ptr.To(5 * time.Minute), objective: objective, met: true, change: clocksMoved},
		{name: "clocks only, objectives met, never written by this process", objective: objective, met: true, change: clocksMoved},
		// An edit changes a copy's content hash: written with the clocks.
		{name: "a copy's content hash, objectives met, written four minutes ago", written: ptr.To(4 * time.Minute), objective: objective, met: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			clocksMoved(st)
			st.MirroredResources.Items[0].Hash = "5f6a"
		}, skip: true},
		{name: "a copy's content hash, objectives met, written five minutes ago", written: ptr.To(5 * time.Minute), objective: objective, met: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.MirroredResources.Items[0].Hash = "5f6a"
		}},
		{name: "a copy more", written: ptr.To(time.Second), objective: objective, met: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.MirroredResources.Count = 3
			st.MirroredResources.Items = append(st.MirroredResources.Items, deichv1alpha1.MirroredResource{Kind: "Secret", Name: "tls", Hash: "7b8c"})
		}},
		{name: "a copy renamed", written: ptr.To(time.Second), objective: objective, met: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.MirroredResources.Items[0].Name = "settings-v2"
		}},
		{name: "objectives missed from now on", written: ptr.To(time.Second), objective: objective, met: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			clocksMoved(st)
			meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: deichv1alpha1.ServiceConditionObjectivesMet, Status: metav1.ConditionFalse, Reason: deichv1alpha1.ServiceReasonCopyTooOld})
		}},
		{name: "a phase", written: ptr.To(time.Second), objective: objective, change: func(st *deichv1alpha1.SharedServiceStatus) {
			clocksMoved(st)
			st.Phase = deichv1alpha1.PhaseDegraded
		}},
		{name: "a condition", written: ptr.To(time.Second), objective: objective, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.Conditions[0].Status = metav1.ConditionFalse
		}},
		{name: "a check's failures", written: ptr.To(time.Second), objective: objective, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].ConsecutiveFailures = 1
		}},
		{name: "the lease's epoch", written: ptr.To(time.Second), objective: objective, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.Lease.Epoch = 2
		}},
		// A run of failures is written when it starts and when it reaches failureThreshold (3).
		{name: "a check's second failure", written: ptr.To(time.Second), objective: objective, base: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 1
		}, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 2
		}, skip: true},
		{name: "a check's failures reach the threshold", written: ptr.To(time.Second), objective: objective, base: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 2
		}, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 3
		}},
		{name: "a check's failures past the threshold", written: ptr.To(time.Second), objective: objective, base: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 3
		}, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 4
		}, skip: true},
		{name: "a check's second failure, written half an RPO ago", written: ptr.To(15 * time.Second), objective: objective, base: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 1
		}, change: func(st *deichv1alpha1.SharedServiceStatus) {
			st.HealthChecks[0].Status, st.HealthChecks[0].ConsecutiveFailures = deichv1alpha1.HealthUnhealthy, 2
		}},
		{name: "what this process wrote last, not yet in the cache", written: ptr.To(time.Second), objective: objective, lastWrote: true, change: func(st *deichv1alpha1.SharedServiceStatus) {
			clocksMoved(st)
			st.Phase = deichv1alpha1.PhaseDegraded
		}, skip: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &SharedServiceReconciler{}
			now := t0.Add(20 * time.Second)
			before := &deichv1alpha1.SharedService{Status: *stored.DeepCopy()}
			if tc.met {
				meta.SetStatusCondition(&before.Status.Conditions, metav1.Condition{Type: deichv1alpha1.ServiceConditionObjectivesMet, Status: metav1.ConditionTrue, Reason: deichv1alpha1.ServiceReasonWithinRPO})
			}
			if tc.base != nil {
				tc.base(&before.Status)
			}
			after := before.DeepCopy()
			tc.change(&after.Status)
			s := &serviceScope{owner: owner, before: before, svc: after, objective: tc.objective, now: now}
			if tc.written != nil {
				w := round{at: now.Add(-*tc.written)}
				if tc.lastWrote {
					w.status = statusDigest(&after.Status, tc.objective)
				}
				r.statusWrites.set(owner, w)
			}
			if got := r.onlyClocksMoved(s, statusDigest(&after.Status, tc.objective)); got != tc.skip {
				t.Fatalf("onlyClocksMoved() = %v, want %v", got, tc.skip)
			}
		})
	}
}

func TestSlowRecovery(t *testing.T) {
	objective := testobjects.MakeRecoveryObjective("standard").RTO(2 * time.Minute).Obj()
	done := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	record := func(to string, took time.Duration) *deichv1alpha1.FailoverRecord {
		return &deichv1alpha1.FailoverRecord{To: to, CompletedAt: &metav1.Time{Time: done}, RecoveryTime: &metav1.Duration{Duration: took}}
	}
	for _, tc := range []struct {
		name string
		last *deichv1alpha1.FailoverRecord
		now  time.Time
		want bool
	}{
		{"slower than the RTO, just now", record("mv-schwerin", 3*time.Minute), done.Add(time.Minute), true},
		{"as fast as the RTO", record("mv-schwerin", 2*time.Minute), done.Add(time.Minute), false},
		{"slower, but an hour ago", record("mv-schwerin", 3*time.Minute), done.Add(time.Hour), false},
		{"slower, at the other site", record("sh-kiel", 3*time.Minute), done.Add(time.Minute), false},
		{"still running", &deichv1alpha1.FailoverRecord{To: "mv-schwerin"}, done, false},
		{"none", nil, done, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := slowRecovery(tc.last, "mv-schwerin", objective, tc.now) != nil; got != tc.want {
				t.Errorf("slowRecovery = %t, want %t", got, tc.want)
			}
		})
	}
}

// TestDataSyncedAtForTheRPOGate tells the partner's RPO gate now less the data's lag while
// every rule tells it, the last such time while one cannot, and a time older than any RPO if
// none ever could.
func TestDataSyncedAtForTheRPOGate(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	st := &leaseState{}
	if got := st.dataSyncedAt(dataLag{}, now); !got.IsZero() {
		t.Errorf("no rules: %s, want none", got)
	}
	if got := st.dataSyncedAt(dataLag{unknown: "lastSyncTime not set"}, now); !got.Equal(neverSynced) {
		t.Errorf("never known: %s, want %s", got, neverSynced)
	}
	if got := st.dataSyncedAt(dataLag{known: true, lag: 20 * time.Second}, now); !got.Equal(now.Add(-20 * time.Second)) {
		t.Errorf("known: %s", got)
	}
	later := now.Add(time.Minute)
	if got := st.dataSyncedAt(dataLag{known: true, lag: time.Second, unknown: "another object's lastSyncTime not set"}, later); !got.Equal(now.Add(-20 * time.Second)) {
		t.Errorf("unknown again: %s, want the last known %s", got, now.Add(-20*time.Second))
	}
}

// TestHealthyChangesWhenARunOfFailuresStartsAndReachesTheThreshold: the Healthy condition says
// which checks fail and whether they reached failureThreshold, not how often they failed so far,
// so that a failing check does not change it at every probe.
func TestHealthyChangesWhenARunOfFailuresStartsAndReachesTheThreshold(t *testing.T) {
	svc := &deichv1alpha1.SharedService{Spec: deichv1alpha1.SharedServiceSpec{PrimarySite: "sh-kiel", StandbySite: "mv-schwerin",
		HealthChecks: []deichv1alpha1.HealthCheck{{Name: "front-door", Site: "sh-kiel"}}}}
	healthy := func(failures int32) metav1.Condition {
		s := svc.DeepCopy()
		st := deichv1alpha1.HealthCheckStatus{Name: "front-door", Status: deichv1alpha1.HealthHealthy}
		if failures > 0 {
			st.Status, st.ConsecutiveFailures, st.Message = deichv1alpha1.HealthUnhealthy, failures, "connection refused"
		}
		s.Status.HealthChecks = []deichv1alpha1.HealthCheckStatus{st}
		return healthCondition(s, 3)
	}
	messages := make([]string, 6)
	for n := range messages {
		c := healthy(int32(n))
		messages[n] = c.Message
		want := metav1.ConditionFalse
		if n == 0 {
			want = metav1.ConditionTrue
		}
		if c.Status != want {
			t.Errorf("%d failures: Healthy=%s, want %s", n, c.Status, want)
		}
	}
	for _, same := range [][2]int{{1, 2}, {3, 4}, {3, 5}} {
		if messages[same[0]] != messages[same[1]] {
			t.Errorf("%d and %d failures: %q and %q, want the same message", same[0], same[1], messages[same[0]], messages[same[1]])
		}
	}
	for _, differ := range [][2]int{{0, 1}, {2, 3}} {
		if messages[differ[0]] == messages[differ[1]] {
			t.Errorf("%d and %d failures: both %q", differ[0], differ[1], messages[differ[0]])
		}
	}
	if !strings.Contains(messages[3], "connection refused") || !strings.Contains(messages[1], "front-door") {
		t.Errorf("messages %q and %q should name the check and say why it fails", messages[1], messages[3])
	}
}
