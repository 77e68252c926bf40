package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

var t0 = time.Date(2026, 12, 7, 1, 10, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time { return &metav1.Time{Time: t0.Add(d)} }

// record is a completed move detected at detected and completed recovery later.
func record(from, to string, epoch int64, detected, recovery time.Duration, reason string) deichv1alpha1.FailoverRecord {
	return deichv1alpha1.FailoverRecord{
		From: from, To: to, Epoch: epoch, Reason: reason, DetectedAt: at(detected), CompletedAt: at(detected + recovery),
		RecoveryTime: &metav1.Duration{Duration: recovery},
	}
}

func TestMergeMoves(t *testing.T) {
	rto := &metav1.Duration{Duration: 30 * time.Second}
	failover := record("sh-kiel", "mv-schwerin", 2, time.Minute, 20*time.Second, "health check kiel-web failed 3 times")
	back := record("mv-schwerin", "sh-kiel", 3, 10*time.Minute, 40*time.Second, "Switchover home: a Switchover moves the service")
	back.RequestedBy = "alice@sh.example"
	// mv-schwerin's copy of the move home, merged from sh-kiel, without the requester.
	backCopy := back
	backCopy.RequestedBy = ""
	running := deichv1alpha1.FailoverRecord{From: "sh-kiel", To: "mv-schwerin", Reason: "health check kiel-web failed", DetectedAt: at(20 * time.Minute)}
	old := deichv1alpha1.FailoverRecord{From: "sh-kiel", To: "mv-schwerin", DetectedAt: at(-time.Hour), CompletedAt: at(-time.Hour + time.Second)}

	view := func(rec deichv1alpha1.FailoverRecord, sites ...string) MoveView {
		m := moveView(rec, rto)
		m.RecordedAt = sites
		return m
	}

	for _, c := range []struct {
		name string
		in   []siteRecords
		want []MoveView
	}{
		{"a move both sites record is shown once, as the site that served after it wrote it",
			[]siteRecords{
				{site: "sh-kiel", history: []deichv1alpha1.FailoverRecord{back, failover}, last: &back},
				{site: "mv-schwerin", history: []deichv1alpha1.FailoverRecord{backCopy, failover}, last: &failover},
			},
			[]MoveView{view(back, "mv-schwerin", "sh-kiel"), view(failover, "mv-schwerin", "sh-kiel")}},
		{"a move only one site knows is kept, newest first",
			[]siteRecords{
				{site: "sh-kiel", history: []deichv1alpha1.FailoverRecord{failover}},
				{site: "mv-schwerin", history: []deichv1alpha1.FailoverRecord{back}},
			},
			[]MoveView{view(back, "mv-schwerin"), view(failover, "sh-kiel")}},
		{"a running promotion comes first, and its completed record replaces it",
			[]siteRecords{
				{site: "mv-schwerin", history: []deichv1alpha1.FailoverRecord{back}, last: &running},
				{site: "sh-kiel", history: []deichv1alpha1.FailoverRecord{back}},
			},
			[]MoveView{view(running, "mv-schwerin"), view(back, "mv-schwerin", "sh-kiel")}},
		{"records without an epoch are one move when their sites and times agree",
			[]siteRecords{
				{site: "sh-kiel", history: []deichv1alpha1.FailoverRecord{old}},
				{site: "mv-schwerin", history: []deichv1alpha1.FailoverRecord{old}},
			},
			[]MoveView{view(old, "mv-schwerin", "sh-kiel")}},
		{"no records, no moves", []siteRecords{{site: "sh-kiel"}}, []MoveView{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, mergeMoves(c.in, rto)); diff != "" {
				t.Errorf("mergeMoves() (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a completed record of a running promotion replaces it", func(t *testing.T) {
		done := running
		done.CompletedAt, done.Epoch = at(20*time.Minute+15*time.Second), 4
		got := mergeMoves([]siteRecords{{site: "sh-kiel", last: &running}, {site: "mv-schwerin", history: []deichv1alpha1.FailoverRecord{done}}}, rto)
		if diff := cmp.Diff([]MoveView{view(done, "mv-schwerin", "sh-kiel")}, got); diff != "" {
			t.Errorf("mergeMoves() (-want +got):\n%s", diff)
		}
	})
}

func TestMoveViewJudgesTriggerAndRTO(t *testing.T) {
	rto := &metav1.Duration{Duration: 30 * time.Second}
	for _, c := range []struct {
		name        string
		rec         deichv1alpha1.FailoverRecord
		wantTrigger string
		wantWithin  *bool
	}{
		{"a Switchover's record is a switchover within the RTO",
			record("sh-kiel", "mv-schwerin", 2, 0, 3*time.Second, "Switchover move: a Switchover moves the service"), "switchover", boolPtr(true)},
		{"failed checks are a failover, here slower than the RTO",
			record("sh-kiel", "mv-schwerin", 2, 0, 45*time.Second, "health check kiel-web failed 3 times in a row"), "failover", boolPtr(false)},
		{"a running promotion has no verdict yet",
			deichv1alpha1.FailoverRecord{From: "sh-kiel", To: "mv-schwerin", DetectedAt: at(0)}, "failover", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := moveView(c.rec, rto)
			if m.Trigger != c.wantTrigger {
				t.Errorf("trigger = %q, want %q", m.Trigger, c.wantTrigger)
			}
			if diff := cmp.Diff(c.wantWithin, m.WithinRTO); diff != "" {
				t.Errorf("withinRTO (-want +got):\n%s", diff)
			}
		})
	}
}
