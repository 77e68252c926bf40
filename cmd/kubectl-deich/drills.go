package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// newDrillsCommand builds `kubectl deich drills`.
func newDrillsCommand(o *options) *cobra.Command {
	return listCommand(&cobra.Command{
		Use:   "drills [SCHEDULE]",
		Short: "Show the DrillSchedules at every site and their last reports",
		Long: `Show the DrillSchedules of the namespace at each site: the cron schedule, who answers for
it, the last run and its result, and the next run. With a SCHEDULE, also every report the sites
keep of it, one row per drilled service, newest first.`,
		Example: `  kubectl deich drills -n buergerkonto
  kubectl deich drills monthly -n buergerkonto
  kubectl deich drills -A -o yaml`,
	}, "show the DrillSchedules of every namespace", o.runDrills)
}

// runDrills reads the DrillSchedules at every site and prints them.
func (o *options) runDrills(ctx context.Context, name string, allNamespaces bool, output string) error {
	ns, err := o.listNamespace(allNamespaces)
	if err != nil {
		return err
	}
	var missing []string
	sites, schedules, err := readSites(ctx, o, func(ctx context.Context, sites []*site) map[string][]deichv1alpha1.DrillSchedule {
		schedules, m := o.readDrills(ctx, sites, ns, name)
		missing = m
		return schedules
	})
	if err != nil {
		return err
	}
	for _, s := range missing {
		_, _ = fmt.Fprintf(o.streams.ErrOut, "Warning: site %s does not serve DrillSchedules: its Deich is older than the drills\n", s)
	}
	view := DrillsView{APIVersion: viewAPIVersion, Kind: "Drills", Sites: siteViews(sites), Schedules: []DrillScheduleView{}}
	for _, s := range sites {
		for i := range schedules[s.name] {
			view.Schedules = append(view.Schedules, drillScheduleView(&schedules[s.name][i], s.name))
		}
	}
	slices.SortStableFunc(view.Schedules, func(a, b DrillScheduleView) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	if name != "" && len(view.Schedules) == 0 {
		return notFoundError("DrillSchedule", name, ns, sites)
	}
	if output != outputTable {
		return printStructured(o.streams.Out, output, view)
	}
	o.warnUnreachable(sites)
	if len(view.Schedules) == 0 {
		if ns == "" {
			_, _ = fmt.Fprintln(o.streams.ErrOut, "No DrillSchedules found.")
		} else {
			_, _ = fmt.Fprintf(o.streams.ErrOut, "No DrillSchedules found in namespace %s.\n", ns)
		}
		return nil
	}
	now := o.now()
	if err := printDrillsTable(o.streams.Out, view.Schedules, allNamespaces, now); err != nil {
		return err
	}
	if name == "" {
		return nil
	}
	_, _ = fmt.Fprintln(o.streams.Out)
	return printReportsTable(o.streams.Out, view.Schedules, now)
}

// readDrills reads the DrillSchedules at every reachable site; missing lists the sites that
// do not serve the kind.
func (o *options) readDrills(ctx context.Context, sites []*site, namespace, name string) (map[string][]deichv1alpha1.DrillSchedule, []string) {
	var mu sync.Mutex
	out := map[string][]deichv1alpha1.DrillSchedule{}
	var missing []string
	var wg sync.WaitGroup
	for _, s := range sites {
		if !s.reachable() {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, o.siteTimeout)
			defer cancel()
			var list deichv1alpha1.DrillScheduleList
			err := s.client.List(ctx, &list, client.InNamespace(namespace))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
				missing = append(missing, s.name)
			case err != nil:
				if !s.fail(err) {
					s.err = fmt.Errorf("list DrillSchedules at %s: %w", s.name, err)
				}
			default:
				out[s.name] = slices.DeleteFunc(list.Items, func(d deichv1alpha1.DrillSchedule) bool { return name != "" && d.Name != name })
			}
		})
	}
	wg.Wait()
	slices.Sort(missing)
	return out, missing
}

// drillScheduleView is a DrillSchedule as one site reports it.
func drillScheduleView(d *deichv1alpha1.DrillSchedule, site string) DrillScheduleView {
	st := d.Status
	v := DrillScheduleView{
		Namespace: d.Namespace, Name: d.Name, Site: site, Schedule: d.Spec.Schedule, TimeZone: d.Spec.TimeZone, Owner: d.Spec.Owner,
		Suspended: d.Spec.Suspend, Ready: conditionView(meta.FindStatusCondition(st.Conditions, deichv1alpha1.DrillScheduleConditionReady)),
		LastScheduleTime: st.LastScheduleTime, LastSuccessfulTime: st.LastSuccessfulTime, NextScheduleTime: st.NextScheduleTime,
		LastResult: string(st.LastResult),
	}
	for _, r := range st.Reports {
		rv := DrillReportView{
			Run: r.Run, Site: r.Site, Result: string(r.Result), StartedAt: r.StartedAt, CompletedAt: r.CompletedAt, Owner: r.Owner,
			Drilled: r.Drilled, Passed: r.Passed, Failed: r.Failed, Skipped: r.Skipped, Message: r.Message, Truncated: r.Truncated,
		}
		if !r.ScheduledTime.IsZero() {
			t := r.ScheduledTime
			rv.ScheduledTime = &t
		}
		if rv.Site == "" {
			rv.Site = site
		}
		for _, s := range r.Services {
			rv.Services = append(rv.Services, DrillServiceView{
				Name: s.Name, Result: string(s.Result), FromSite: s.FromSite, TargetSite: s.TargetSite, Switchover: s.Switchover,
				EstimatedRecoveryTime: s.EstimatedRecoveryTime, RTO: s.RTO, DataAge: s.DataAge, RPO: s.RPO,
				FailedChecks: s.FailedChecks, Message: s.Message,
			})
		}
		v.Reports = append(v.Reports, rv)
	}
	return v
}

// printDrillsTable prints one row per schedule and site.
func printDrillsTable(w io.Writer, schedules []DrillScheduleView, withNamespace bool, now time.Time) error {
	header := []string{"NAME", "SITE", "SCHEDULE", "OWNER", "LAST RUN", "RESULT", "PASSED/FAILED/SKIPPED", "NEXT RUN", "WHY"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	rows := make([][]string, 0, len(schedules))
	for _, d := range schedules {
		cron := d.Schedule
		if d.TimeZone != "" {
			cron += " " + d.TimeZone
		}
		counts := "-"
		why := ""
		if len(d.Reports) > 0 {
			r := d.Reports[0]
			counts = fmt.Sprintf("%d/%d/%d", r.Passed, r.Failed, r.Skipped)
			if r.Result != string(deichv1alpha1.DrillPassed) {
				why = firstClause(r.Message)
			}
		}
		next := ago(d.NextScheduleTime, now)
		switch {
		case d.Suspended:
			next, why = "suspended", "spec.suspend is set"
		case d.Ready != nil && d.Ready.Status != "True":
			why = d.Ready.Reason + ": " + firstClause(d.Ready.Message)
		}
		row := []string{d.Name, d.Site, cron, d.Owner, ago(d.LastScheduleTime, now), orDash(d.LastResult), counts, next, orDash(shorten(why, whyWidth))}
		if withNamespace {
			row = append([]string{d.Namespace}, row...)
		}
		rows = append(rows, row)
	}
	return table(w, header, rows)
}

// printReportsTable prints the reports of the schedules, newest first, one row per drilled
// service (or per run, for a run without services).
func printReportsTable(w io.Writer, schedules []DrillScheduleView, now time.Time) error {
	type report struct {
		DrillReportView
		at time.Time
	}
	var reports []report
	for _, d := range schedules {
		for _, r := range d.Reports {
			var at time.Time
			if r.ScheduledTime != nil {
				at = r.ScheduledTime.Time
			}
			reports = append(reports, report{DrillReportView: r, at: at})
		}
	}
	slices.SortStableFunc(reports, func(a, b report) int {
		return cmp.Or(b.at.Compare(a.at), cmp.Compare(a.Site, b.Site))
	})
	header := []string{"RUN", "SITE", "RESULT", "SERVICE", "DRILL", "FROM", "TO", "EST. RECOVERY/RTO", "DATA AGE/RPO", "MESSAGE"}
	var rows [][]string
	for _, r := range reports {
		run := ago(r.ScheduledTime, now)
		if len(r.Services) == 0 {
			rows = append(rows, []string{run, r.Site, r.Result, "-", "-", "-", "-", "-", "-", orDash(shorten(r.Message, whyWidth))})
			continue
		}
		for _, s := range r.Services {
			msg := s.Message
			if len(s.FailedChecks) > 0 {
				msg = s.FailedChecks[0]
			}
			rows = append(rows, []string{run, r.Site, r.Result, s.Name, s.Result, orDash(s.FromSite), orDash(s.TargetSite),
				spanOf(s.EstimatedRecoveryTime) + "/" + spanOf(s.RTO), spanOf(s.DataAge) + "/" + spanOf(s.RPO), orDash(shorten(msg, whyWidth))})
		}
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No drill has run yet.")
		return err
	}
	return table(w, header, rows)
}
