package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// defaultSwitchoverTimeout bounds --wait unless --timeout says otherwise.
const defaultSwitchoverTimeout = 10 * time.Minute

// switchoverFlags are the flags of `switchover`.
type switchoverFlags struct {
	to      string
	drill   bool
	force   bool
	reason  string
	name    string
	wait    bool
	timeout time.Duration
	output  string
}

// newSwitchoverCommand builds `kubectl deich switchover`.
func newSwitchoverCommand(o *options) *cobra.Command {
	var f switchoverFlags
	cmd := &cobra.Command{
		Use:   "switchover SERVICE --to SITE",
		Short: "Move a SharedService to a site, or rehearse the move with --drill",
		Long: `Create a Switchover that moves a SharedService to the site --to names: a planned move, a
failback after a failover, or with --drill a rehearsal that changes nothing. The Switchover is
created at the target site, whose manager copies it to the serving site (so it works while the
serving site is lost too); when the target cannot be read from here, at the other site.

With --wait the command follows the Switchover until it Succeeded or Failed, printing a line
for every change of its phase, conditions and message, and of the promotion stages at the
target, and exits non-zero when it failed or did not finish within --timeout.`,
		Example: `  kubectl deich switchover buergerkonto --to mv-schwerin --reason "CHG-4711: power maintenance in Kiel" --wait
  kubectl deich switchover buergerkonto --to mv-schwerin --drill --wait
  kubectl deich switchover buergerkonto --to sh-kiel --force --reason "INC-0815: copy older than the RPO accepted"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			if f.timeout <= 0 {
				return fmt.Errorf("--timeout %s must be positive", f.timeout)
			}
			return o.runSwitchover(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "the site that should serve the service afterwards (required)")
	fl.BoolVar(&f.drill, "drill", false, "rehearse: check that a failover to --to would succeed now, and change nothing")
	fl.BoolVar(&f.force, "force", false, "move even while the copy at --to is older than the RPO, losing the changes since the last sync")
	fl.StringVar(&f.reason, "reason", "", "why, for the failover history and the events, e.g. a change ticket (default: says it came from kubectl deich)")
	fl.StringVar(&f.name, "name", "", "name of the Switchover (default: generated from the service and the site)")
	fl.BoolVar(&f.wait, "wait", false, "follow the Switchover until it succeeded or failed")
	fl.DurationVar(&f.timeout, "timeout", defaultSwitchoverTimeout, "how long --wait waits")
	addOutputFlag(cmd, &f.output)
	_ = cmd.MarkFlagRequired("to") // the flag exists: it is defined above
	return cmd
}

// runSwitchover creates the Switchover and, with --wait, follows it.
func (o *options) runSwitchover(ctx context.Context, service string, f switchoverFlags) error {
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	sites, found, err := readSites(ctx, o, func(ctx context.Context, sites []*site) map[string][]deichv1alpha1.SharedService {
		return o.readServices(ctx, sites, ns, service)
	})
	if err != nil {
		return err
	}
	at, note, err := switchoverSite(service, ns, f.to, sites, found)
	if err != nil {
		return err
	}
	if note != "" {
		_, _ = fmt.Fprintln(o.streams.ErrOut, "Warning:", note)
	}

	sw := newSwitchover(ns, service, f)
	if err := at.client.Create(ctx, sw); err != nil {
		return fmt.Errorf("create the Switchover of SharedService %s/%s at %s: %w", ns, service, at.name, err)
	}
	progress := o.streams.Out
	if f.output != outputTable {
		progress = o.streams.ErrOut
	}
	_, _ = fmt.Fprintf(progress, "switchover.%s/%s created at %s\n", deichv1alpha1.GroupVersion.Group, sw.Name, at.name)
	if !f.wait {
		if f.output != outputTable {
			return printStructured(o.streams.Out, f.output, switchoverView(sw, at.name))
		}
		return nil
	}

	var target *site
	var before *deichv1alpha1.SharedService
	for _, s := range sites {
		if s.name == f.to && s.reachable() && len(found[s.name]) > 0 {
			target, before = s, &found[s.name][0]
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	p := &progressPrinter{w: progress, start: o.now(), now: o.now}
	last, err := o.follow(waitCtx, p, at, sw, target, before)
	if last == nil {
		last = sw
	}
	if f.output != outputTable {
		if perr := printStructured(o.streams.Out, f.output, switchoverView(last, at.name)); perr != nil {
			return errors.Join(err, perr)
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		phase := string(last.Status.Phase)
		if phase == "" {
			phase = "not taken up by the manager at " + at.name
		}
		return fmt.Errorf("switchover %s did not finish within %s: it is %s: %s", sw.Name, f.timeout, phase, orDash(last.Status.Message))
	case err != nil:
		return err
	case last.Status.Phase == deichv1alpha1.SwitchoverFailed:
		what := "switchover"
		if last.Spec.Drill {
			what = "drill"
		}
		return fmt.Errorf("%s %s failed: %s", what, sw.Name, last.Status.Message)
	}
	return nil
}

// switchoverSite decides where to create the Switchover: at the target, whose manager
// accepts it even while the serving site is lost and copies it to the serving site; when the
// target cannot be read from here, at the other site of the service, whose manager refuses
// it (TargetUnreachable) if it cannot reach the target either. note explains a choice the user
// should know of.
func switchoverSite(service, namespace, target string, sites []*site, found map[string][]deichv1alpha1.SharedService) (at *site, note string, err error) {
	var known bool
	var spec deichv1alpha1.SharedServiceSpec
	for _, s := range sites {
		if items := found[s.name]; len(items) > 0 {
			spec, known = items[0].Spec, true
			break
		}
	}
	if !known {
		return nil, "", notFoundError("SharedService", service, namespace, sites)
	}
	if target != spec.PrimarySite && target != spec.StandbySite {
		return nil, "", fmt.Errorf("unknown site %q: SharedService %s/%s is shared by %s (primary) and %s (standby)",
			target, namespace, service, spec.PrimarySite, spec.StandbySite)
	}
	other := spec.PrimarySite
	if other == target {
		other = spec.StandbySite
	}
	bySite := map[string]*site{}
	for _, s := range sites {
		bySite[s.name] = s
	}
	usable := func(name string) (*site, string) {
		s := bySite[name]
		switch {
		case s == nil:
			return nil, "not connected: pass --peer-context with a context for it"
		case !s.reachable():
			return nil, describeSiteError(s.err)
		case len(found[name]) == 0:
			return nil, fmt.Sprintf("it has no SharedService %s yet", service)
		}
		return s, ""
	}
	t, why := usable(target)
	if t != nil {
		return t, "", nil
	}
	o, whyOther := usable(other)
	if o == nil {
		return nil, "", fmt.Errorf("cannot create the Switchover at %s (%s) nor at %s (%s)", target, why, other, whyOther)
	}
	return o, fmt.Sprintf("cannot create the Switchover at the target %s (%s): creating it at %s, whose manager refuses it if it cannot reach %s either",
		target, why, other, target), nil
}

// newSwitchover is the Switchover the flags ask for.
func newSwitchover(namespace, service string, f switchoverFlags) *deichv1alpha1.Switchover {
	reason := f.reason
	if reason == "" {
		if f.drill {
			reason = fmt.Sprintf("drill of a failover to %s, with kubectl deich", f.to)
		} else {
			reason = fmt.Sprintf("move to %s, with kubectl deich", f.to)
		}
	}
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: f.name},
		Spec: deichv1alpha1.SwitchoverSpec{
			SharedServiceName: service, TargetSite: f.to, Reason: reason, Drill: f.drill, Force: f.force,
		},
	}
	if f.name == "" {
		kind := "to"
		if f.drill {
			kind = "drill"
		}
		// The API server appends five random characters and cuts the prefix to fit.
		sw.GenerateName = fmt.Sprintf("%s-%s-%s-", service, kind, f.to)
	}
	return sw
}

// switchoverView is the Switchover as the site it was created at reports it.
func switchoverView(sw *deichv1alpha1.Switchover, site string) SwitchoverView {
	st := sw.Status
	v := SwitchoverView{
		APIVersion: viewAPIVersion, Kind: "Switchover", Namespace: sw.Namespace, Name: sw.Name, Site: site,
		Service: sw.Spec.SharedServiceName, TargetSite: sw.Spec.TargetSite, Drill: sw.Spec.Drill, Force: sw.Spec.Force, Reason: sw.Spec.Reason,
		Phase: string(st.Phase), Message: st.Message, FromSite: st.FromSite, RequestedBy: st.RequestedBy,
		StartedAt: st.StartedAt, CompletedAt: st.CompletedAt, EstimatedRecoveryTime: st.EstimatedRecoveryTime,
	}
	for i := range st.Conditions {
		v.Conditions = append(v.Conditions, *conditionView(&st.Conditions[i]))
	}
	return v
}

// finished reports whether a Switchover reached its end.
func finished(sw *deichv1alpha1.Switchover) bool {
	return sw.Status.Phase == deichv1alpha1.SwitchoverSucceeded || sw.Status.Phase == deichv1alpha1.SwitchoverFailed
}

// progressPrinter writes progress lines, each with the time since the command started.
type progressPrinter struct {
	w     io.Writer
	start time.Time
	now   func() time.Time
}

// print writes lines, stamped with the time elapsed.
func (p *progressPrinter) print(lines []string) {
	stamp := "+" + span(p.now().Sub(p.start).Round(100*time.Millisecond))
	for _, l := range lines {
		_, _ = fmt.Fprintf(p.w, "%-7s %s\n", stamp, l)
	}
}

// get reads the Switchover at s.
func getSwitchover(ctx context.Context, s *site, key client.ObjectKey) (*deichv1alpha1.Switchover, error) {
	sw := &deichv1alpha1.Switchover{}
	if err := s.client.Get(ctx, key, sw); err != nil {
		return nil, fmt.Errorf("read Switchover %s at %s: %w", key, s.name, err)
	}
	return sw, nil
}

// describePhase names a phase for a line; a Switchover not yet taken up has none.
func describePhase(p deichv1alpha1.SwitchoverPhase) string {
	if p == "" {
		return "New"
	}
	return strings.TrimSpace(string(p))
}
