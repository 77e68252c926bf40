package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestSwitchoverProgress(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
	}
	sw := func(phase deichv1alpha1.SwitchoverPhase, msg string, conds ...metav1.Condition) *deichv1alpha1.Switchover {
		return &deichv1alpha1.Switchover{Status: deichv1alpha1.SwitchoverStatus{Phase: phase, Message: msg, Conditions: conds}}
	}
	ready := cond(deichv1alpha1.ConditionReady, metav1.ConditionFalse, "InProgress", "moving")
	within := cond(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionTrue, "WithinRPO", "the copy is 2s old")
	informed := cond(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionTrue, "CopyApplied", "a copy is at sh-kiel")

	for _, c := range []struct {
		name      string
		prev, cur *deichv1alpha1.Switchover
		want      []string
	}{
		{"a new phase comes with its message and the conditions it set, but Ready",
			sw("", ""), sw(deichv1alpha1.SwitchoverRunning, "moving", ready, within),
			[]string{"Running: moving", "  condition CopyWithinRPO=True (WithinRPO): the copy is 2s old"}},
		{"a changed condition and message within the phase",
			sw(deichv1alpha1.SwitchoverRunning, "moving", ready, within), sw(deichv1alpha1.SwitchoverRunning, "waiting for mv-schwerin", ready, within, informed),
			[]string{"  condition PeerInformed=True (CopyApplied): a copy is at sh-kiel", "Running: waiting for mv-schwerin"}},
		{"a condition whose message alone changed is not repeated",
			sw(deichv1alpha1.SwitchoverRunning, "moving", within),
			sw(deichv1alpha1.SwitchoverRunning, "moving", cond(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionTrue, "WithinRPO", "the copy is 3s old")),
			nil},
		{"nothing changed, nothing to say", sw(deichv1alpha1.SwitchoverRunning, "moving"), sw(deichv1alpha1.SwitchoverRunning, "moving"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, switchoverProgress(c.prev, c.cur)); diff != "" {
				t.Errorf("switchoverProgress() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStageProgress(t *testing.T) {
	svc := func(epoch int64, completed bool, stages ...deichv1alpha1.PromotionStageStatus) *deichv1alpha1.SharedService {
		s := &deichv1alpha1.SharedService{}
		s.Status.Promotion = &deichv1alpha1.PromotionStatus{Epoch: epoch, Stages: stages}
		if completed {
			s.Status.Promotion.CompletedAt = &metav1.Time{Time: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
		}
		return s
	}
	stage := func(name string, phase deichv1alpha1.StagePhase, msg string) deichv1alpha1.PromotionStageStatus {
		return deichv1alpha1.PromotionStageStatus{Name: name, Phase: phase, Message: msg}
	}
	for _, c := range []struct {
		name      string
		prev, cur *deichv1alpha1.SharedService
		want      []string
	}{
		{"the promotion of an earlier move is not told",
			svc(1, true), svc(1, true, stage("database", deichv1alpha1.StageReady, "")), nil},
		{"a new promotion tells each stage that started",
			svc(1, true, stage("database", deichv1alpha1.StageReady, "")),
			svc(2, false, stage("database", deichv1alpha1.StagePromoting, "waiting for self.status.phase == 'primary' of Cluster/db"), stage("app", deichv1alpha1.StagePending, "")),
			[]string{
				"  stage database Promoting at mv-schwerin (epoch 2): waiting for self.status.phase == 'primary' of Cluster/db",
			}},
		{"a stage ready and the promotion complete",
			svc(2, false, stage("database", deichv1alpha1.StageReady, ""), stage("app", deichv1alpha1.StagePromoting, "")),
			svc(2, true, stage("database", deichv1alpha1.StageReady, ""), stage("app", deichv1alpha1.StageReady, "")),
			[]string{"  stage app Ready at mv-schwerin (epoch 2)", "  promotion at mv-schwerin complete (epoch 2)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, stageProgress("mv-schwerin", c.prev, c.cur, 1)); diff != "" {
				t.Errorf("stageProgress() (-want +got):\n%s", diff)
			}
		})
	}
}
