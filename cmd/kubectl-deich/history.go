package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/spf13/cobra"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// reasonWidth bounds the REASON column of `history`.
const reasonWidth = 60

// newHistoryCommand builds `kubectl deich history`.
func newHistoryCommand(o *options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history SERVICE",
		Short: "Show every move of a SharedService between sites, from both sites' records",
		Long: `Show the failovers and Switchovers of a SharedService, newest first: both sites'
status.failoverHistory merged (a move both sites record is shown once), with when the failure
was detected, when the new site served, the recovery time against the RTO, who requested the
move and why.`,
		Example: `  kubectl deich history buergerkonto -n buergerkonto
  kubectl deich history buergerkonto -n buergerkonto -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return o.runHistory(cmd.Context(), args[0], output)
		},
	}
	addOutputFlag(cmd, &output)
	return cmd
}

// runHistory reads the service at every site and prints its merged history.
func (o *options) runHistory(ctx context.Context, name, output string) error {
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	sites, found, err := readSites(ctx, o, func(ctx context.Context, sites []*site) map[string][]deichv1alpha1.SharedService {
		return o.readServices(ctx, sites, ns, name)
	})
	if err != nil {
		return err
	}

	var records []siteRecords
	var rto *metav1.Duration
	for _, s := range sites {
		items := found[s.name]
		if len(items) == 0 {
			continue
		}
		st := items[0].Status
		records = append(records, siteRecords{site: s.name, history: st.FailoverHistory, last: st.LastFailover})
		if rto == nil && st.Objective != nil {
			rto = st.Objective.RTO
		}
	}
	if len(records) == 0 {
		return notFoundError("SharedService", name, ns, sites)
	}
	view := HistoryView{APIVersion: viewAPIVersion, Kind: "History", Namespace: ns, Service: name, Sites: siteViews(sites), Moves: mergeMoves(records, rto)}
	if output != outputTable {
		return printStructured(o.streams.Out, output, view)
	}
	o.warnUnreachable(sites)
	if len(view.Moves) == 0 {
		_, _ = fmt.Fprintf(o.streams.ErrOut, "SharedService %s has not moved between sites.\n", name)
		return nil
	}
	return printHistoryTable(o.streams.Out, view.Moves, o.now())
}

// siteRecords are the moves one site's status records of a service.
type siteRecords struct {
	site    string
	history []deichv1alpha1.FailoverRecord
	// last is status.lastFailover, which is not in the history while its promotion runs.
	last *deichv1alpha1.FailoverRecord
}

// mergeMoves merges the sites' records into one history, newest first. Two records are one
// move when they carry the same epoch, or, when one lacks an epoch (written before epochs
// were recorded), the same sites and times. Of a move both sites record, the record of the
// site that served after it (its writer) is shown, or else a completed one; recordedAt lists
// every site that has it. The order is by completion (or, while a promotion runs, detection)
// time, then by epoch.
func mergeMoves(in []siteRecords, rto *metav1.Duration) []MoveView {
	type entry struct {
		rec  deichv1alpha1.FailoverRecord
		from string // the site whose record rec is
		at   []string
	}
	var moves []*entry
	add := func(site string, rec deichv1alpha1.FailoverRecord) {
		for _, e := range moves {
			if !sameMove(e.rec, rec) {
				continue
			}
			if !slices.Contains(e.at, site) {
				e.at = append(e.at, site)
			}
			if better(rec, site, e.rec, e.from) {
				e.rec, e.from = rec, site
			}
			return
		}
		moves = append(moves, &entry{rec: rec, from: site, at: []string{site}})
	}
	for _, sr := range in {
		for _, rec := range sr.history {
			add(sr.site, rec)
		}
		if sr.last != nil {
			add(sr.site, *sr.last)
		}
	}
	slices.SortStableFunc(moves, func(a, b *entry) int {
		return cmp.Or(b.rec.MovedAt().Compare(a.rec.MovedAt()), cmp.Compare(b.rec.Epoch, a.rec.Epoch))
	})
	out := make([]MoveView, 0, len(moves))
	for _, e := range moves {
		m := moveView(e.rec, rto)
		slices.Sort(e.at)
		m.RecordedAt = e.at
		out = append(out, m)
	}
	return out
}

// sameMove reports whether two records describe one move: the same epoch, or, for records
// without one, the same sites and times.
func sameMove(a, b deichv1alpha1.FailoverRecord) bool {
	if a.Epoch != 0 && b.Epoch != 0 {
		return a.Epoch == b.Epoch
	}
	return a.From == b.From && a.To == b.To && sameTime(a.DetectedAt, b.DetectedAt) &&
		(sameTime(a.CompletedAt, b.CompletedAt) || a.CompletedAt == nil || b.CompletedAt == nil)
}

func sameTime(a, b *metav1.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(b)
}

// better reports whether rec, recorded at site, describes a move better than cur, recorded
// at curSite: a completed record over one of a promotion still running, then the record of
// the site that served after the move, which wrote it.
func better(rec deichv1alpha1.FailoverRecord, site string, cur deichv1alpha1.FailoverRecord, curSite string) bool {
	if (rec.CompletedAt != nil) != (cur.CompletedAt != nil) {
		return rec.CompletedAt != nil
	}
	return site == rec.To && curSite != cur.To
}

// trigger says what moved the service: a Switchover (its record's reason names it, as the
// manager writes it and counts it in deich_failovers_total) or a failover.
func trigger(rec deichv1alpha1.FailoverRecord) string {
	if strings.HasPrefix(rec.Reason, "Switchover ") {
		return "switchover"
	}
	return "failover"
}

// printHistoryTable prints one row per move.
func printHistoryTable(w io.Writer, moves []MoveView, now time.Time) error {
	header := []string{"WHEN", "FROM", "TO", "EPOCH", "TRIGGER", "DETECTED", "COMPLETED", "RECOVERY", "RTO", "REQUESTED BY", "REASON"}
	rows := make([][]string, 0, len(moves))
	for _, m := range moves {
		when := ago(m.CompletedAt, now)
		if m.InProgress {
			when = "running"
		}
		epoch := "-"
		if m.Epoch != 0 {
			epoch = strconv.FormatInt(m.Epoch, 10)
		}
		rto := spanOf(m.RTO)
		if m.WithinRTO != nil {
			if *m.WithinRTO {
				rto = "within " + rto
			} else {
				rto = "over " + rto
			}
		}
		rows = append(rows, []string{when, m.From, m.To, epoch, m.Trigger, ago(m.DetectedAt, now), ago(m.CompletedAt, now),
			spanOf(m.RecoveryTime), rto, orDash(m.RequestedBy), orDash(shorten(m.Reason, reasonWidth))})
	}
	return table(w, header, rows)
}
