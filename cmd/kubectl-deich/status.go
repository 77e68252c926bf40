package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spf13/cobra"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// newStatusCommand builds `kubectl deich status`.
func newStatusCommand(o *options) *cobra.Command {
	return listCommand(&cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Show the SharedServices at every site side by side",
		Long: `Show the SharedServices of the namespace (or one of them) at each of their sites, one row
per service and site: the site's role and phase, whether it serves, the lease as that site last
read it, the quorum, the age of the standby's copy against the RPO, the last failover against the
RTO, and why the service is not Protected there.`,
		Example: `  kubectl deich status -n buergerkonto
  kubectl deich status buergerkonto -n buergerkonto -o yaml
  kubectl deich status -A --peer-context mv-schwerin`,
	}, "show the SharedServices of every namespace", o.runStatus)
}

// listCommand completes cmd as a command that reads one kind at every site: an optional NAME,
// -A (allHelp says what it shows) and -o, handed to run.
func listCommand(cmd *cobra.Command, allHelp string, run func(ctx context.Context, name string, allNamespaces bool, output string) error) *cobra.Command {
	var allNamespaces bool
	var output string
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOutput(output); err != nil {
			return err
		}
		name := ""
		if len(args) == 1 {
			name = args[0]
		}
		return run(cmd.Context(), name, allNamespaces, output)
	}
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, allHelp)
	addOutputFlag(cmd, &output)
	return cmd
}

// runStatus reads the services at every site and prints them.
func (o *options) runStatus(ctx context.Context, name string, allNamespaces bool, output string) error {
	ns, err := o.listNamespace(allNamespaces)
	if err != nil {
		return err
	}
	sites, found, err := readSites(ctx, o, func(ctx context.Context, sites []*site) map[string][]deichv1alpha1.SharedService {
		return o.readServices(ctx, sites, ns, name)
	})
	if err != nil {
		return err
	}
	view := buildStatus(sites, found, o.now())

	if name != "" && len(view.Services) == 0 {
		return notFoundError("SharedService", name, ns, sites)
	}
	if output != outputTable {
		return printStructured(o.streams.Out, output, view)
	}
	if len(view.Services) == 0 {
		o.warnUnreachable(sites)
		if ns == "" {
			_, _ = fmt.Fprintln(o.streams.ErrOut, "No SharedServices found.")
		} else {
			_, _ = fmt.Fprintf(o.streams.ErrOut, "No SharedServices found in namespace %s.\n", ns)
		}
		return nil
	}
	return printStatusTable(o.streams.Out, view, allNamespaces, o.now())
}

// listNamespace is the namespace a command that lists reads: every namespace ("") with -A,
// else namespace().
func (o *options) listNamespace(allNamespaces bool) (string, error) {
	if allNamespaces {
		return "", nil
	}
	return o.namespace()
}

// readSites finds the sites, reads each with read, prints on stderr what finding them warned
// of, and fails when no site could be read. It returns the sites and what read returned.
func readSites[T any](ctx context.Context, o *options, read func(context.Context, []*site) T) ([]*site, T, error) {
	var zero T
	sites, warnings, err := o.sites(ctx)
	if err != nil {
		return nil, zero, err
	}
	got := read(ctx, sites)
	o.warn(warnings)
	if err := anyReachable(sites); err != nil {
		return nil, zero, err
	}
	return sites, got, nil
}

// warn prints warnings on stderr.
func (o *options) warn(warnings []string) {
	for _, w := range warnings {
		_, _ = fmt.Fprintln(o.streams.ErrOut, "Warning:", w)
	}
}

// warnUnreachable tells on stderr which sites could not be read, for output that has no row
// to say it in.
func (o *options) warnUnreachable(sites []*site) {
	for _, s := range sites {
		if !s.reachable() {
			_, _ = fmt.Fprintf(o.streams.ErrOut, "Warning: site %s (%s): %s\n", s.name, s.via, describeSiteError(s.err))
		}
	}
}

// anyReachable returns an error naming every site and why it could not be read when none
// could.
func anyReachable(sites []*site) error {
	var why []string
	for _, s := range sites {
		if s.reachable() {
			return nil
		}
		why = append(why, fmt.Sprintf("%s (%s): %s", s.name, s.via, describeSiteError(s.err)))
	}
	return fmt.Errorf("no site could be read: %s", strings.Join(why, "; "))
}

// notFoundError says that no reachable site has the object, and which sites could not be
// asked.
func notFoundError(kind, name, namespace string, sites []*site) error {
	var asked, lost []string
	for _, s := range sites {
		if s.reachable() {
			asked = append(asked, s.name)
		} else {
			lost = append(lost, fmt.Sprintf("%s (%s)", s.name, describeSiteError(s.err)))
		}
	}
	where := "in namespace " + namespace
	if namespace == "" {
		where = "in any namespace"
	}
	msg := fmt.Sprintf("%s %q not found %s", kind, name, where)
	if len(asked) > 0 {
		msg += " at " + joinAnd(asked)
	}
	if len(lost) > 0 {
		msg += "; could not ask " + joinAnd(lost)
	}
	return fmt.Errorf("%s", msg)
}

// joinAnd joins names as "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return fmt.Sprintf("%s and %s", joinComma(names[:len(names)-1]), names[len(names)-1])
}

func joinComma(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	return out
}

// readServices reads the SharedServices in namespace (all namespaces when empty; only name
// when set) at every reachable site, in parallel. A site that cannot be read gets err set.
func (o *options) readServices(ctx context.Context, sites []*site, namespace, name string) map[string][]deichv1alpha1.SharedService {
	var mu sync.Mutex
	found := map[string][]deichv1alpha1.SharedService{}
	var wg sync.WaitGroup
	for _, s := range sites {
		if !s.reachable() {
			continue
		}
		wg.Go(func() {
			items, err := o.listServices(ctx, s, namespace, name)
			if err != nil {
				if !s.fail(err) {
					s.err = err
				}
				return
			}
			mu.Lock()
			found[s.name] = items
			mu.Unlock()
		})
	}
	wg.Wait()
	return found
}

// listServices reads the SharedServices of one site.
func (o *options) listServices(ctx context.Context, s *site, namespace, name string) ([]deichv1alpha1.SharedService, error) {
	ctx, cancel := context.WithTimeout(ctx, o.siteTimeout)
	defer cancel()
	if name != "" && namespace != "" {
		svc := &deichv1alpha1.SharedService{}
		err := s.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, svc)
		switch {
		case apierrors.IsNotFound(err) && !siteLost(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("read SharedService %s/%s at %s: %w", namespace, name, s.name, err)
		}
		return []deichv1alpha1.SharedService{*svc}, nil
	}
	var list deichv1alpha1.SharedServiceList
	if err := s.client.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list SharedServices at %s: %w", s.name, err)
	}
	if name == "" {
		return list.Items, nil
	}
	return slices.DeleteFunc(list.Items, func(svc deichv1alpha1.SharedService) bool { return svc.Name != name }), nil
}

// siteViews describes the sites for the JSON and YAML output.
func siteViews(sites []*site) []SiteView {
	out := make([]SiteView, 0, len(sites))
	for _, s := range sites {
		out = append(out, SiteView{Name: s.name, NameFrom: s.nameFrom, Via: s.via, Reachable: s.reachable(), Error: describeSiteError(s.err)})
	}
	return out
}

// buildStatus puts the services each site reported side by side: one entry per service,
// with a row for its primary and its standby site, whether or not that site could be read.
func buildStatus(sites []*site, found map[string][]deichv1alpha1.SharedService, now time.Time) StatusView {
	view := StatusView{APIVersion: viewAPIVersion, Kind: "Status", Sites: siteViews(sites), Services: []ServiceView{}}
	bySite := map[string]*site{}
	for _, s := range sites {
		bySite[s.name] = s
	}
	copies := map[types.NamespacedName]map[string]*deichv1alpha1.SharedService{}
	for siteName, items := range found {
		for i := range items {
			key := types.NamespacedName{Namespace: items[i].Namespace, Name: items[i].Name}
			if copies[key] == nil {
				copies[key] = map[string]*deichv1alpha1.SharedService{}
			}
			copies[key][siteName] = &items[i]
		}
	}
	keys := make([]types.NamespacedName, 0, len(copies))
	for k := range copies {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	for _, key := range keys {
		at := copies[key]
		spec := specOf(at, sites)
		sv := ServiceView{Namespace: key.Namespace, Name: key.Name, PrimarySite: spec.PrimarySite, StandbySite: spec.StandbySite, WitnessSite: spec.WitnessSite}
		// A site that could not be read, reached through a context, is named after the
		// context: when one of the service's sites has no connection otherwise, it is that.
		var unnamed []*site
		for _, s := range sites {
			if !s.reachable() && s.nameFrom == nameFromContext && s.name != spec.PrimarySite && s.name != spec.StandbySite {
				unnamed = append(unnamed, s)
			}
		}
		for _, siteName := range []string{spec.PrimarySite, spec.StandbySite} {
			s := bySite[siteName]
			if s == nil && len(unnamed) == 1 {
				s, unnamed = unnamed[0], nil
				row := serviceAt(siteName, s, nil, now)
				row.Error = fmt.Sprintf("%s (%s)", row.Error, s.via)
				sv.Sites = append(sv.Sites, row)
				continue
			}
			sv.Sites = append(sv.Sites, serviceAt(siteName, s, at[siteName], now))
		}
		for _, s := range unnamed {
			sv.Sites = append(sv.Sites, serviceAt(s.name, s, nil, now))
		}
		view.Services = append(view.Services, sv)
	}
	return view
}

// specOf returns the service's spec as the first site in order that has it reports it.
func specOf(at map[string]*deichv1alpha1.SharedService, sites []*site) deichv1alpha1.SharedServiceSpec {
	for _, s := range sites {
		if svc, ok := at[s.name]; ok {
			return svc.Spec
		}
	}
	for _, svc := range at {
		return svc.Spec
	}
	return deichv1alpha1.SharedServiceSpec{}
}

// serviceAt is the row of one service at one site: svc as the site reports it, or why there
// is nothing to report.
func serviceAt(siteName string, s *site, svc *deichv1alpha1.SharedService, now time.Time) ServiceAtSite {
	row := ServiceAtSite{Site: siteName}
	switch {
	case s == nil:
		row.Error = "not connected: no kubeconfig context or readable peer Secret reaches this site; pass --peer-context"
		return row
	case !s.reachable():
		row.Error = describeSiteError(s.err)
		return row
	}
	row.Reachable = true
	if svc == nil {
		row.Why = "no SharedService of this name here"
		return row
	}
	st := svc.Status
	row.Found = true
	row.Role, row.Phase, row.ActiveSite, row.Quorum = string(st.Role), string(st.Phase), st.ActiveSite, st.Quorum
	row.Serving = serves(svc)
	if q := meta.FindStatusCondition(st.Conditions, deichv1alpha1.ServiceConditionQuorum); q != nil {
		row.QuorumReason = q.Reason
	}
	row.Lease = leaseView(st.Lease)
	if obj := st.Objective; obj != nil {
		row.RPO, row.RTO = obj.RPO, obj.RTO
	}
	row.LastSyncTime = st.LastSyncTime
	row.DataAge = dataAge(svc, now)
	if row.DataAge != nil && row.RPO != nil {
		row.WithinRPO = boolPtr(row.DataAge.Duration <= row.RPO.Duration)
	}
	if lf := st.LastFailover; lf != nil {
		m := moveView(*lf, row.RTO)
		row.LastFailover = &m
	}
	row.Ready = conditionView(meta.FindStatusCondition(st.Conditions, deichv1alpha1.ConditionReady))
	row.Why = whyLine(svc)
	return row
}

// serves reports whether a site's own status says it serves the service: role Active and a
// phase that is not Pending, FailingOver or Fenced.
func serves(svc *deichv1alpha1.SharedService) bool {
	if svc.Status.Role != deichv1alpha1.RoleActive {
		return false
	}
	switch svc.Status.Phase {
	case "", deichv1alpha1.PhasePending, deichv1alpha1.PhaseFenced, deichv1alpha1.PhaseFailingOver:
		return false
	}
	return true
}

// dataAge is how old the standby's copy is by now, as far as the status says. While
// ObjectivesMet is True it is status.replicationLag: the manager writes the condition as soon
// as the copy ages past the RPO, and the clocks alone only once in five minutes, so the time
// since status.lastSyncTime would overstate it. Otherwise it is the time since lastSyncTime,
// or replicationLag where that is larger (it counts a data layer's lag, as of the last status
// write).
func dataAge(svc *deichv1alpha1.SharedService, now time.Time) *metav1.Duration {
	st := svc.Status
	if meta.IsStatusConditionTrue(st.Conditions, deichv1alpha1.ServiceConditionObjectivesMet) && st.ReplicationLag != nil {
		return durationPtr(st.ReplicationLag.Duration.Round(time.Millisecond))
	}
	var age time.Duration
	known := false
	if st.LastSyncTime != nil {
		age, known = max(now.Sub(st.LastSyncTime.Time), 0), true
	}
	if st.ReplicationLag != nil {
		age, known = max(age, st.ReplicationLag.Duration), true
	}
	if !known {
		return nil
	}
	return durationPtr(age.Round(time.Millisecond))
}

// leaseView is status.lease with the time it had left when it was read.
func leaseView(l *deichv1alpha1.LeaseStatus) *LeaseView {
	if l == nil {
		return nil
	}
	v := &LeaseView{Holder: l.Holder, Epoch: l.Epoch, ObservedTime: l.ObservedTime, StoredAt: l.StoredAt, Message: l.Message}
	if l.RenewTime != nil {
		v.RenewTime = &metav1.Time{Time: l.RenewTime.Time}
	}
	if l.ExpiryTime != nil {
		v.ExpiryTime = &metav1.Time{Time: l.ExpiryTime.Time}
		if l.ObservedTime != nil {
			v.ExpiresIn = durationPtr(l.ExpiryTime.Sub(l.ObservedTime.Time).Round(time.Millisecond))
		}
	}
	return v
}

// conditionView is c without its bookkeeping; nil for no condition.
func conditionView(c *metav1.Condition) *ConditionView {
	if c == nil {
		return nil
	}
	t := c.LastTransitionTime
	return &ConditionView{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: &t}
}

// moveView is a failover record, judged against rto.
func moveView(rec deichv1alpha1.FailoverRecord, rto *metav1.Duration) MoveView {
	m := MoveView{
		From: rec.From, To: rec.To, Epoch: rec.Epoch, Trigger: trigger(rec), InProgress: rec.CompletedAt == nil,
		DetectedAt: rec.DetectedAt, CompletedAt: rec.CompletedAt, RecoveryTime: rec.RecoveryTime, RTO: rto,
		RequestedBy: rec.RequestedBy, Reason: rec.Reason,
	}
	if rec.RecoveryTime != nil && rto != nil {
		m.WithinRTO = boolPtr(rec.RecoveryTime.Duration <= rto.Duration)
	}
	return m
}

// printStatusTable prints one row per service and site.
func printStatusTable(w io.Writer, view StatusView, withNamespace bool, now time.Time) error {
	header := []string{"SERVICE", "SITE", "ROLE", "PHASE", "SERVING", "LEASE", "QUORUM", "DATA AGE/RPO", "LAST FAILOVER", "WHY"}
	if withNamespace {
		header = append([]string{"NAMESPACE"}, header...)
	}
	var rows [][]string
	for _, svc := range view.Services {
		for _, r := range svc.Sites {
			row := statusCells(svc.Name, r, now)
			if withNamespace {
				row = append([]string{svc.Namespace}, row...)
			}
			rows = append(rows, row)
		}
	}
	return table(w, header, rows)
}

// statusCells are the table cells of one row.
func statusCells(service string, r ServiceAtSite, now time.Time) []string {
	switch {
	case !r.Reachable:
		return []string{service, r.Site, "-", "<unreachable>", "?", "-", "-", "-", "-", shorten(r.Error, whyWidth)}
	case !r.Found:
		return []string{service, r.Site, "-", "<absent>", "no", "-", "-", "-", "-", r.Why}
	}
	serving := "no"
	if r.Serving {
		serving = "yes"
	}
	return []string{service, r.Site, orDash(r.Role), orDash(r.Phase), serving, leaseCell(r.Lease), orDash(r.Quorum),
		ageCell(r), failoverCell(r.LastFailover, now), orDash(r.Why)}
}

// leaseCell is "holder/epoch" and the time the lease had left when the site read it.
func leaseCell(l *LeaseView) string {
	if l == nil {
		return "-"
	}
	holder := l.Holder
	if holder == "" {
		holder = "released"
	}
	cell := fmt.Sprintf("%s/%d", holder, l.Epoch)
	switch {
	case l.ExpiresIn == nil:
	case l.ExpiresIn.Duration >= 0:
		cell += " " + span(l.ExpiresIn.Duration) + " left"
	default:
		cell += " expired"
	}
	return cell
}

// ageCell is "data age/RPO", marked when the copy is older than the RPO.
func ageCell(r ServiceAtSite) string {
	if r.DataAge == nil && r.RPO == nil {
		return "-"
	}
	cell := spanOf(r.DataAge) + "/" + spanOf(r.RPO)
	if r.WithinRPO != nil && !*r.WithinRPO {
		cell += " (over)"
	}
	return cell
}

// failoverCell is when the last move completed and its recovery time against the RTO.
func failoverCell(m *MoveView, now time.Time) string {
	switch {
	case m == nil:
		return "-"
	case m.InProgress:
		return "running, detected " + ago(m.DetectedAt, now)
	}
	cell := ago(m.CompletedAt, now)
	if m.RecoveryTime != nil {
		cell += ", " + spanOf(m.RecoveryTime) + "/" + spanOf(m.RTO)
		if m.WithinRTO != nil && !*m.WithinRTO {
			cell += " (over)"
		}
	}
	return cell
}
