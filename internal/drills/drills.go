// Package drills holds the decisions of scheduled DR drills, with no I/O: when a
// DrillSchedule's next run is due (or was missed), what one service's drill found, and the
// report of a run. The DrillSchedule controller observes the Switchovers a run created and
// calls these with the time as an argument, so tests can replay any schedule.
package drills

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	// The manager reads spec.timeZone wherever it runs, whatever the image holds.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// Bounds of a report, matching the API's.
const (
	// MaxServices is how many services a report lists.
	MaxServices = 20
	// maxFailedChecks is how many failed checks a service's report lists.
	maxFailedChecks = 8
	// maxCheckLength bounds each failed check's text.
	maxCheckLength = 512
	// maxMessage bounds a message.
	maxMessage = 512
	// maxCatchUp bounds how many scheduled times Plan walks through after a long outage.
	maxCatchUp = 10000
)

// Schedule is a parsed spec.schedule in its time zone.
type Schedule struct {
	cron cron.Schedule
	loc  *time.Location
}

// Parse reads a cron schedule (five fields or a descriptor such as @daily or @every 24h) in
// the IANA time zone tz (UTC when empty).
func Parse(schedule, tz string) (Schedule, error) {
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return Schedule{}, fmt.Errorf("time zone %q: %w", tz, err)
		}
		loc = l
	}
	if strings.HasPrefix(strings.TrimSpace(schedule), "TZ=") || strings.HasPrefix(strings.TrimSpace(schedule), "CRON_TZ=") {
		return Schedule{}, fmt.Errorf("schedule %q: set the time zone in spec.timeZone, not in the schedule", schedule)
	}
	c, err := cron.ParseStandard(schedule)
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", schedule, err)
	}
	return Schedule{cron: c, loc: loc}, nil
}

// Next is the first scheduled time after t; zero when there is none (a date that never comes).
func (s Schedule) Next(t time.Time) time.Time {
	return s.cron.Next(t.In(s.loc))
}

// Decision is what a schedule asks for at one instant.
type Decision struct {
	// Run is the scheduled time of the run to start now; zero for none.
	Run time.Time
	// MissedFirst is the first of the scheduled times that passed their starting deadline
	// without a run, and MissedCount how many there were; zero when none was missed.
	MissedFirst time.Time
	MissedCount int
	// LastScheduled is the newest scheduled time now accounted for (run or missed), which the
	// next Plan starts from; zero when nothing was due.
	LastScheduled time.Time
	// Next is the first scheduled time after now.
	Next time.Time
}

// Plan decides, at now, which run of s is due: the newest scheduled time after since (the last
// run accounted for, or the schedule's creation) that is not later than now. It starts when now
// is within deadline of it; the times before it, and the newest itself when it is later than
// that, are missed. After a very long outage (more than maxCatchUp scheduled times) the times
// before now minus deadline are counted as one missed stretch without walking each.
func Plan(s Schedule, since, now time.Time, deadline time.Duration) Decision {
	var d Decision
	miss := func(t time.Time, n int) {
		if d.MissedCount == 0 {
			d.MissedFirst = t
		}
		d.MissedCount += n
	}
	var newest time.Time
	walked := 0
	t := s.Next(since)
	for ; !t.IsZero() && !t.After(now); t = s.Next(t) {
		if !newest.IsZero() {
			miss(newest, 1)
		}
		newest = t
		if walked++; walked == maxCatchUp && now.Sub(t) > deadline {
			// Every time up to now minus deadline was missed; walk on from there.
			miss(t, 1)
			newest = time.Time{}
			t = now.Add(-deadline).Add(-time.Second)
		}
	}
	d.Next = t
	if newest.IsZero() {
		if d.MissedCount > 0 {
			d.LastScheduled = now.Add(-deadline)
		}
		return d
	}
	d.LastScheduled = newest
	if now.Sub(newest) <= deadline {
		d.Run = newest
	} else {
		miss(newest, 1)
	}
	return d
}

// RunID is the run's identifier: its scheduled time in Unix seconds.
func RunID(scheduled time.Time) string {
	return strconv.FormatInt(scheduled.Unix(), 10)
}

// Objective is what a service's drill is judged against.
type Objective struct {
	RTO, RPO time.Duration
}

// Verdict judges one service's drill from its Switchover: Running until it finished, Passed
// when every check passed and the estimated recovery time is within the RTO, Failed otherwise
// (timedOut: the run's timeout passed before it finished).
func Verdict(sw *deichv1alpha1.Switchover, obj *Objective, timedOut bool) deichv1alpha1.DrillServiceReport {
	rep := deichv1alpha1.DrillServiceReport{
		Name:                  sw.Spec.SharedServiceName,
		TargetSite:            sw.Spec.TargetSite,
		FromSite:              sw.Status.FromSite,
		Switchover:            sw.Name,
		EstimatedRecoveryTime: sw.Status.EstimatedRecoveryTime,
	}
	if obj != nil {
		rep.RTO = &metav1.Duration{Duration: obj.RTO}
		rep.RPO = &metav1.Duration{Duration: obj.RPO}
	}
	switch sw.Status.Phase {
	case deichv1alpha1.SwitchoverSucceeded:
		rep.Result = deichv1alpha1.DrillPassed
		rep.Message = truncate(sw.Status.Message, maxMessage)
	case deichv1alpha1.SwitchoverFailed:
		rep.Result = deichv1alpha1.DrillFailed
		rep.Message = truncate(sw.Status.Message, maxMessage)
	default:
		if !timedOut {
			rep.Result = deichv1alpha1.DrillRunning
			return rep
		}
		rep.Result = deichv1alpha1.DrillFailed
		rep.Message = fmt.Sprintf("the drill did not finish within the run's timeout (phase %s)", phaseOrPending(sw.Status.Phase))
	}
	for _, c := range sw.Status.Conditions {
		if c.Type == deichv1alpha1.ConditionReady || c.Status != metav1.ConditionFalse {
			continue
		}
		rep.FailedChecks = append(rep.FailedChecks, truncate(fmt.Sprintf("%s: %s", c.Type, c.Message), maxCheckLength))
	}
	if est := sw.Status.EstimatedRecoveryTime; est != nil && obj != nil && obj.RTO > 0 && est.Duration > obj.RTO {
		rep.Result = deichv1alpha1.DrillFailed
		rep.FailedChecks = append(rep.FailedChecks, fmt.Sprintf("EstimatedRecoveryTime: a failover would take %s, longer than the RTO of %s", est.Duration, obj.RTO))
	}
	if rep.Result == deichv1alpha1.DrillFailed && len(rep.FailedChecks) == 0 && meta.FindStatusCondition(sw.Status.Conditions, deichv1alpha1.ConditionReady) != nil {
		rep.FailedChecks = append(rep.FailedChecks, truncate(rep.Message, maxCheckLength))
	}
	if len(rep.FailedChecks) > maxFailedChecks {
		rep.FailedChecks = rep.FailedChecks[:maxFailedChecks]
	}
	return rep
}

func phaseOrPending(p deichv1alpha1.SwitchoverPhase) deichv1alpha1.SwitchoverPhase {
	if p == "" {
		return deichv1alpha1.SwitchoverPending
	}
	return p
}

// Summarize completes report from the services' verdicts and the ones skipped: the counts,
// the services listed (failed first, then running, passed and skipped, each by name, at most
// MaxServices) and the result — Running while a drill runs, Failed when one failed, Passed
// when at least one was drilled and all passed, Skipped when this site drilled none.
func Summarize(report *deichv1alpha1.DrillReport, verdicts, skipped []deichv1alpha1.DrillServiceReport) {
	all := make([]deichv1alpha1.DrillServiceReport, 0, len(verdicts)+len(skipped))
	all = append(all, verdicts...)
	all = append(all, skipped...)
	var drilled, skippedCount, passed, failed, running int32
	for range skipped {
		skippedCount++
	}
	for _, v := range verdicts {
		drilled++
		switch v.Result {
		case deichv1alpha1.DrillPassed:
			passed++
		case deichv1alpha1.DrillFailed:
			failed++
		default:
			running++
		}
	}
	report.Drilled, report.Passed, report.Failed, report.Skipped = drilled, passed, failed, skippedCount
	rank := map[deichv1alpha1.DrillResult]int{deichv1alpha1.DrillFailed: 0, deichv1alpha1.DrillRunning: 1, deichv1alpha1.DrillPassed: 2, deichv1alpha1.DrillSkipped: 3}
	sort.SliceStable(all, func(i, j int) bool {
		if rank[all[i].Result] != rank[all[j].Result] {
			return rank[all[i].Result] < rank[all[j].Result]
		}
		return all[i].Name < all[j].Name
	})
	report.Truncated = len(all) > MaxServices
	if report.Truncated {
		all = all[:MaxServices]
	}
	report.Services = all
	switch {
	case running > 0:
		report.Result = deichv1alpha1.DrillRunning
		report.Message = fmt.Sprintf("%d of %d drill(s) running; %d passed, %d failed so far", running, len(verdicts), passed, failed)
	case failed > 0:
		report.Result = deichv1alpha1.DrillFailed
		report.Message = fmt.Sprintf("%d of %d drill(s) failed: %s", failed, len(verdicts), failedNames(verdicts))
	case passed > 0:
		report.Result = deichv1alpha1.DrillPassed
		report.Message = fmt.Sprintf("all %d drill(s) passed", passed)
	default:
		report.Result = deichv1alpha1.DrillSkipped
		report.Message = "this site serves none of the selected services, so it drilled none"
	}
	if len(skipped) > 0 {
		report.Message += fmt.Sprintf("; %d service(s) skipped", len(skipped))
	}
	report.Message = truncate(report.Message, 1024)
}

func failedNames(verdicts []deichv1alpha1.DrillServiceReport) string {
	var names []string
	for _, v := range verdicts {
		if v.Result == deichv1alpha1.DrillFailed {
			names = append(names, v.Name)
		}
	}
	sort.Strings(names)
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

// Missed is the report of scheduled runs that never started.
func Missed(first time.Time, count int, deadline time.Duration, site, owner string) deichv1alpha1.DrillReport {
	msg := fmt.Sprintf("the run due %s did not start within the starting deadline of %s", first.UTC().Format(time.RFC3339), deadline)
	if count > 1 {
		msg = fmt.Sprintf("%d runs due from %s on did not start within the starting deadline of %s", count, first.UTC().Format(time.RFC3339), deadline)
	}
	return deichv1alpha1.DrillReport{
		Run:           RunID(first),
		ScheduledTime: metav1.Time{Time: first},
		Result:        deichv1alpha1.DrillMissed,
		Site:          site,
		Owner:         owner,
		Message:       msg + " (was the manager at " + site + " running?)",
	}
}

// truncate shortens s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
