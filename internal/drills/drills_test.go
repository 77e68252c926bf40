package drills

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseRejectsWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct{ name, schedule, tz, want string }{
		{name: "a schedule that is not cron", schedule: "monthly please", want: `schedule "monthly please"`},
		{name: "six fields", schedule: "0 0 3 1 * *", want: "expected exactly 5 fields"},
		{name: "an unknown time zone", schedule: "@daily", tz: "Europe/Kiel", want: `time zone "Europe/Kiel"`},
		{name: "a time zone inside the schedule", schedule: "CRON_TZ=Europe/Berlin 0 3 * * *", want: "spec.timeZone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.schedule, tc.tz)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse(%q, %q) = %v, want an error containing %q", tc.schedule, tc.tz, err, tc.want)
			}
		})
	}
}

func TestScheduleIsReadInItsTimeZone(t *testing.T) {
	s, err := Parse("0 3 1 * *", "Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// 03:00 in Berlin on 1 January is 02:00 UTC (CET), on 1 July 01:00 UTC (CEST).
	if got, want := s.Next(at("2026-12-06T00:00:00Z")), at("2027-01-01T02:00:00Z"); !got.Equal(want) {
		t.Errorf("next in winter = %s, want %s", got.UTC(), want)
	}
	if got, want := s.Next(at("2027-06-02T00:00:00Z")), at("2027-07-01T01:00:00Z"); !got.Equal(want) {
		t.Errorf("next in summer = %s, want %s", got.UTC(), want)
	}
}

func TestPlanStartsTheDueRunAndRecordsWhatWasMissed(t *testing.T) {
	hourly, err := Parse("0 * * * *", "")
	if err != nil {
		t.Fatal(err)
	}
	every10s, err := Parse("@every 10s", "")
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		Run, MissedFirst, LastScheduled, Next string
		MissedCount                           int
	}
	format := func(d Decision) want {
		f := func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format(time.RFC3339)
		}
		return want{Run: f(d.Run), MissedFirst: f(d.MissedFirst), MissedCount: d.MissedCount, LastScheduled: f(d.LastScheduled), Next: f(d.Next)}
	}
	for _, tc := range []struct {
		name       string
		s          Schedule
		since, now string
		deadline   time.Duration
		want       want
	}{
		{
			name: "nothing is due before the first scheduled time",
			s:    hourly, since: "2026-12-06T10:20:00Z", now: "2026-12-06T10:59:59Z", deadline: time.Hour,
			want: want{Next: "2026-12-06T11:00:00Z"},
		},
		{
			name: "the scheduled time starts a run",
			s:    hourly, since: "2026-12-06T10:20:00Z", now: "2026-12-06T11:00:00Z", deadline: time.Hour,
			want: want{Run: "2026-12-06T11:00:00Z", LastScheduled: "2026-12-06T11:00:00Z", Next: "2026-12-06T12:00:00Z"},
		},
		{
			name: "a run still starts within the starting deadline",
			s:    hourly, since: "2026-12-06T10:20:00Z", now: "2026-12-06T11:04:59Z", deadline: 5 * time.Minute,
			want: want{Run: "2026-12-06T11:00:00Z", LastScheduled: "2026-12-06T11:00:00Z", Next: "2026-12-06T12:00:00Z"},
		},
		{
			name: "a run later than its starting deadline is missed",
			s:    hourly, since: "2026-12-06T10:20:00Z", now: "2026-12-06T11:05:01Z", deadline: 5 * time.Minute,
			want: want{MissedFirst: "2026-12-06T11:00:00Z", MissedCount: 1, LastScheduled: "2026-12-06T11:00:00Z", Next: "2026-12-06T12:00:00Z"},
		},
		{
			name: "after an outage the newest run starts and the ones before it are missed",
			s:    hourly, since: "2026-12-06T10:00:00Z", now: "2026-12-06T13:30:00Z", deadline: time.Hour,
			want: want{Run: "2026-12-06T13:00:00Z", MissedFirst: "2026-12-06T11:00:00Z", MissedCount: 2, LastScheduled: "2026-12-06T13:00:00Z", Next: "2026-12-06T14:00:00Z"},
		},
		{
			name: "the last run accounted for is not run again",
			s:    hourly, since: "2026-12-06T11:00:00Z", now: "2026-12-06T11:30:00Z", deadline: time.Hour,
			want: want{Next: "2026-12-06T12:00:00Z"},
		},
		{
			name: "a very long outage is walked in bounded steps",
			s:    every10s, since: "2026-01-01T00:00:00Z", now: "2026-12-06T00:00:05Z", deadline: time.Minute,
			// @every counts from the time before: after the jump to a minute before now, the
			// times are 23:59:14, …, 00:00:04.
			want: want{Run: "2026-12-06T00:00:04Z", MissedFirst: "2026-01-01T00:00:10Z", MissedCount: maxCatchUp + 5, LastScheduled: "2026-12-06T00:00:04Z", Next: "2026-12-06T00:00:14Z"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := format(Plan(tc.s, at(tc.since), at(tc.now), tc.deadline))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

func drill(phase deichv1alpha1.SwitchoverPhase, estimate time.Duration, conds ...metav1.Condition) *deichv1alpha1.Switchover {
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Name: "monthly-buergerkonto-1796083200", Namespace: "buergerkonto"},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: "buergerkonto", TargetSite: "mv-schwerin", Reason: "drill", Drill: true},
		Status:     deichv1alpha1.SwitchoverStatus{Phase: phase, FromSite: "sh-kiel", Conditions: conds, Message: "drill " + string(phase)},
	}
	if estimate > 0 {
		sw.Status.EstimatedRecoveryTime = &metav1.Duration{Duration: estimate}
	}
	return sw
}

func TestVerdictJudgesTheChecksAndTheEstimateAgainstTheRTO(t *testing.T) {
	obj := &Objective{RTO: 2 * time.Minute, RPO: 30 * time.Second}
	ready := func(s metav1.ConditionStatus) metav1.Condition {
		return metav1.Condition{Type: deichv1alpha1.ConditionReady, Status: s, Reason: "x", Message: "ready says"}
	}
	dryRunRejected := metav1.Condition{Type: deichv1alpha1.SwitchoverConditionPromotionAccepted, Status: metav1.ConditionFalse, Reason: "DryRunRejected", Message: "promotion at mv-schwerin would fail"}
	for _, tc := range []struct {
		name         string
		sw           *deichv1alpha1.Switchover
		timedOut     bool
		wantResult   deichv1alpha1.DrillResult
		wantFailures []string
	}{
		{name: "a passed drill within the RTO passes", sw: drill(deichv1alpha1.SwitchoverSucceeded, 40*time.Second, ready(metav1.ConditionTrue)), wantResult: deichv1alpha1.DrillPassed},
		{name: "an unfinished drill runs", sw: drill(deichv1alpha1.SwitchoverPending, 0), wantResult: deichv1alpha1.DrillRunning},
		{
			name: "an unfinished drill fails once the run timed out", sw: drill("", 0), timedOut: true,
			wantResult: deichv1alpha1.DrillFailed,
		},
		{
			name: "a failed check is named", sw: drill(deichv1alpha1.SwitchoverFailed, 40*time.Second, ready(metav1.ConditionFalse), dryRunRejected),
			wantResult: deichv1alpha1.DrillFailed, wantFailures: []string{"PromotionAccepted: promotion at mv-schwerin would fail"},
		},
		{
			name: "a passed drill whose estimate exceeds the RTO fails", sw: drill(deichv1alpha1.SwitchoverSucceeded, 3*time.Minute, ready(metav1.ConditionTrue)),
			wantResult: deichv1alpha1.DrillFailed, wantFailures: []string{"EstimatedRecoveryTime: a failover would take 3m0s, longer than the RTO of 2m0s"},
		},
		{
			name: "a failed drill without a failed check repeats its message", sw: drill(deichv1alpha1.SwitchoverFailed, 0, ready(metav1.ConditionFalse)),
			wantResult: deichv1alpha1.DrillFailed, wantFailures: []string{"drill Failed"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Verdict(tc.sw, obj, tc.timedOut)
			if got.Result != tc.wantResult {
				t.Errorf("result = %s, want %s (%s)", got.Result, tc.wantResult, got.Message)
			}
			if diff := cmp.Diff(tc.wantFailures, got.FailedChecks); diff != "" {
				t.Errorf("failed checks (-want +got):\n%s", diff)
			}
			if got.RTO == nil || got.RTO.Duration != obj.RTO || got.RPO == nil || got.RPO.Duration != obj.RPO {
				t.Errorf("objective = %v / %v, want the RTO and RPO", got.RTO, got.RPO)
			}
			if got.Switchover != tc.sw.Name || got.TargetSite != "mv-schwerin" {
				t.Errorf("drill = %s to %s, want the Switchover and its target", got.Switchover, got.TargetSite)
			}
		})
	}
}

func TestSummarizeListsFailedDrillsFirstAndBoundsTheList(t *testing.T) {
	v := func(name string, r deichv1alpha1.DrillResult) deichv1alpha1.DrillServiceReport {
		return deichv1alpha1.DrillServiceReport{Name: name, Result: r}
	}
	t.Run("a failed drill fails the run and comes first", func(t *testing.T) {
		var rep deichv1alpha1.DrillReport
		Summarize(&rep, []deichv1alpha1.DrillServiceReport{v("a", deichv1alpha1.DrillPassed), v("b", deichv1alpha1.DrillFailed)}, []deichv1alpha1.DrillServiceReport{v("c", deichv1alpha1.DrillSkipped)})
		got := []string{string(rep.Result), rep.Services[0].Name, rep.Services[1].Name, rep.Services[2].Name, rep.Message}
		want := []string{"Failed", "b", "a", "c", "1 of 2 drill(s) failed: b; 1 service(s) skipped"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if rep.Drilled != 2 || rep.Passed != 1 || rep.Failed != 1 || rep.Skipped != 1 {
			t.Errorf("counts drilled/passed/failed/skipped = %d/%d/%d/%d, want 2/1/1/1", rep.Drilled, rep.Passed, rep.Failed, rep.Skipped)
		}
	})
	t.Run("a run with a drill still running runs", func(t *testing.T) {
		var rep deichv1alpha1.DrillReport
		Summarize(&rep, []deichv1alpha1.DrillServiceReport{v("a", deichv1alpha1.DrillFailed), v("b", deichv1alpha1.DrillRunning)}, nil)
		if rep.Result != deichv1alpha1.DrillRunning {
			t.Errorf("result = %s, want Running", rep.Result)
		}
	})
	t.Run("a run that drilled nothing is skipped", func(t *testing.T) {
		var rep deichv1alpha1.DrillReport
		Summarize(&rep, nil, []deichv1alpha1.DrillServiceReport{v("a", deichv1alpha1.DrillSkipped)})
		if rep.Result != deichv1alpha1.DrillSkipped {
			t.Errorf("result = %s, want Skipped", rep.Result)
		}
	})
	t.Run("more services than a report lists are counted and marked", func(t *testing.T) {
		var rep deichv1alpha1.DrillReport
		var verdicts []deichv1alpha1.DrillServiceReport
		for i := range MaxServices + 5 {
			verdicts = append(verdicts, v(string(rune('a'+i)), deichv1alpha1.DrillPassed))
		}
		Summarize(&rep, verdicts, nil)
		if len(rep.Services) != MaxServices || !rep.Truncated || rep.Passed != MaxServices+5 || rep.Result != deichv1alpha1.DrillPassed {
			t.Errorf("listed %d, truncated %t, passed %d, result %s; want %d, true, %d, Passed", len(rep.Services), rep.Truncated, rep.Passed, rep.Result, MaxServices, MaxServices+5)
		}
	})
}

func TestTruncateCutsAtARuneBoundary(t *testing.T) {
	got := truncate("Prüfung der Wiederanlaufzeit", 6)
	if got != "Pr..." {
		t.Errorf("truncate = %q, want %q", got, "Pr...")
	}
}
