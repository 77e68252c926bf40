package dashboard

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// The service the scenario runs through, and the timings of its objective and managers.
const (
	serviceName   = "buergerkonto"
	namespace     = "buergerkonto"
	objectiveName = "buergerdienste"
	maxClockSkew  = time.Second
	leaseDuration = 6 * time.Second
	probeInterval = time.Second
	// rto is the shortest the API accepts for the failover settings above: leaseDuration +
	// failureThreshold (1) × probeInterval + maxClockSkew.
	rto = leaseDuration + probeInterval + maxClockSkew
	// The managers' leader election must hand over within 2/3 × leaseDuration (the
	// RecoveryObjective is invalid otherwise): lease + 2 × retry = 4s.
	electionLease = 3 * time.Second
	electionRenew = 2 * time.Second
	electionRetry = 500 * time.Millisecond
	// readyWhen is the readiness rule of the service's one promotion stage, its Deployment. No
	// controller sets a Deployment's status in these control planes: the test does, which
	// holds a promotion at the stage for as long as the test wants.
	readyWhen = "has(self.status.readyReplicas) && self.status.readyReplicas >= 1"
	// exportTimeout bounds the wait, after the scenario, for the last series to appear.
	exportTimeout = 15 * time.Second
)

// targetLabels are the labels Prometheus adds to every scraped series; queries may match on
// them although no manager exports them.
var targetLabels = []string{"job", "instance"}

// TestDashboardQueriesOnlyMetricsTheManagersExport runs the manager binary at two sites
// through what the dashboard shows — a protected service with a health check, a drill, a
// Switchover whose promotion takes longer than the RTO, a DrillSchedule's run, a cut link
// between the sites — and then scrapes both managers: every metric a query of the dashboard
// reads must be exported by at least one of them (a histogram's _bucket, _sum and _count
// series by the histogram), with every label the query matches on.
func TestDashboardQueriesOnlyMetricsTheManagersExport(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes and two managers")
	}
	queried := queriedMetrics(t)
	s := startSites(t)

	for _, step := range scenario {
		start := time.Now()
		if !t.Run(step.name, func(t *testing.T) { step.run(t, s) }) {
			t.FailNow()
		}
		t.Logf("%s: %s", step.name, time.Since(start).Round(100*time.Millisecond))
	}

	g := NewWithT(t)
	g.Eventually(func() ([]string, error) {
		got, err := s.scrape(t.Context())
		if err != nil {
			return nil, err
		}
		return check(queried, got), nil
	}).WithTimeout(exportTimeout).WithPolling(500*time.Millisecond).Should(BeEmpty(),
		"the dashboard queries series that neither manager exports after the scenario")
}

// step drives the managers into exporting the series of one part of the dashboard.
type step struct {
	name string
	run  func(t *testing.T, s *sites)
}

// scenario is what the sites go through before they are scraped, in order.
var scenario = []step{
	{"the sites protect a service with a health check", protect},
	{"a drill rehearses the move to mv-schwerin", drill},
	{"a Switchover moves the service, slower than its RTO", switchover},
	{"a DrillSchedule runs a drill where the service is served", drillSchedule},
	{"the link between the sites is cut until heartbeats fail", cutLink},
}

// protect creates the objective at both sites, and at sh-kiel a Deployment and a ConfigMap and
// the SharedService that mirrors them to mv-schwerin, with an HTTP health check and a
// promotion stage for the Deployment; it waits until sh-kiel serves and mv-schwerin holds the
// copies, and edits the ConfigMap until the copy shows the edit.
func protect(t *testing.T, s *sites) {
	ctx, g := t.Context(), newG(t)
	objective := testobjects.MakeRecoveryObjective(objectiveName).
		Failover(1, probeInterval, leaseDuration).RTO(rto).Mode(deichv1alpha1.FailoverManual)
	for _, site := range []*testenv.Site{s.kiel, s.schwerin} {
		g.Expect(site.Client.Create(ctx, objective.Obj())).To(Succeed())
	}

	g.Expect(s.kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	labels := map[string]string{"app.kubernetes.io/part-of": serviceName, "app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/buergerkonto:1.4"}}},
			},
		},
	}
	g.Expect(s.kiel.Client.Create(ctx, dep)).To(Succeed())
	markReady(ctx, g, s.kiel)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "settings", Labels: labels}, Data: map[string]string{"v": "1"}}
	g.Expect(s.kiel.Client.Create(ctx, cm)).To(Succeed())

	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(web.Close)
	svc := testobjects.MakeSharedService(serviceName, namespace).Objective(objectiveName).
		HealthCheck(deichv1alpha1.HealthCheck{Name: "web", HTTP: &deichv1alpha1.HTTPCheck{
			URL: web.URL + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second},
		}}).Obj()
	svc.Spec.Promotion = &deichv1alpha1.Promotion{Stages: []deichv1alpha1.PromotionStage{{
		Name:      "web",
		Target:    deichv1alpha1.PatchTarget{Group: "apps", Kind: "Deployment", Name: "web"},
		ReadyWhen: readyWhen,
	}}}
	g.Expect(s.kiel.Client.Create(ctx, svc)).To(Succeed())

	g.Eventually(status(ctx, s.kiel)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Eventually(status(ctx, s.schwerin)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))

	// An edit reaches the standby in a round of its own (deich_change_propagation_seconds).
	g.Expect(s.kiel.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
	cm.Data["v"] = "2"
	g.Expect(s.kiel.Client.Update(ctx, cm)).To(Succeed())
	g.Eventually(func() (map[string]string, error) {
		cp := &corev1.ConfigMap{}
		err := s.schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), cp)
		return cp.Data, err
	}).Should(HaveKeyWithValue("v", "2"))
}

// drill rehearses the move to mv-schwerin with a Switchover with drill: true, which changes
// nothing, and waits until it has a result.
func drill(t *testing.T, s *sites) {
	ctx, g := t.Context(), newG(t)
	sw := newSwitchover("drill-to-schwerin", testenv.SiteSchwerin, "quarterly DR drill")
	sw.Spec.Drill = true
	g.Expect(s.schwerin.Client.Create(ctx, sw)).To(Succeed())
	g.Eventually(switchoverAt(ctx, s.schwerin, sw.Name)).Should(HaveField("Status.Phase",
		BeElementOf(deichv1alpha1.SwitchoverSucceeded, deichv1alpha1.SwitchoverFailed)))
	done, err := switchoverAt(ctx, s.schwerin, sw.Name)()
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("drill %s: %s", done.Status.Phase, done.Status.Message)
	g.Expect(status(ctx, s.kiel)()).To(HaveField("Status.Lease.Holder", testenv.SiteKiel), "a drill moves nothing")
}

// switchover moves the service to mv-schwerin. Its promotion waits at the Deployment's stage
// until the test reports the Deployment ready there, after the RTO has passed since the
// promotion began, so the move completes slower than the RTO.
func switchover(t *testing.T, s *sites) {
	ctx, g := t.Context(), newG(t)
	sw := newSwitchover("move-to-schwerin", testenv.SiteSchwerin, "maintenance of the Kiel data centre")
	g.Expect(s.schwerin.Client.Create(ctx, sw)).To(Succeed())

	g.Eventually(func() (time.Duration, error) {
		svc, err := status(ctx, s.schwerin)()
		if err != nil {
			return 0, err
		}
		lf := svc.Status.LastFailover
		if lf == nil || lf.To != testenv.SiteSchwerin || lf.DetectedAt == nil {
			return 0, nil
		}
		if lf.CompletedAt != nil {
			return 0, StopTrying("mv-schwerin's promotion completed before its Deployment was ready")
		}
		return time.Since(lf.DetectedAt.Time), nil
	}).WithTimeout(rto+time.Minute).Should(BeNumerically(">", rto+maxClockSkew), "mv-schwerin's promotion has been waiting longer than the RTO")
	markReady(ctx, g, s.schwerin)

	g.Eventually(switchoverAt(ctx, s.schwerin, sw.Name)).Should(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded))
	g.Eventually(status(ctx, s.schwerin)).Should(And(
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.RecoveryTime.Duration", BeNumerically(">", rto))))
}

// drillSchedule creates, at mv-schwerin (which serves the service now), a DrillSchedule due
// every few seconds, waits until its first run has completed and suspends it, so no further
// run starts.
func drillSchedule(t *testing.T, s *sites) {
	ctx, g := t.Context(), newG(t)
	ds := &deichv1alpha1.DrillSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "rehearsal"},
		Spec:       deichv1alpha1.DrillScheduleSpec{Schedule: "@every 3s", Owner: "platform team Schwerin"},
	}
	g.Expect(s.schwerin.Client.Create(ctx, ds)).To(Succeed())
	key := client.ObjectKeyFromObject(ds)
	g.Eventually(func() ([]deichv1alpha1.DrillReport, error) {
		err := s.schwerin.Client.Get(ctx, key, ds)
		return ds.Status.Reports, err
	}).Should(ContainElement(HaveField("CompletedAt", Not(BeNil()))), "a run of the DrillSchedule completes")
	for _, rep := range ds.Status.Reports {
		if rep.CompletedAt != nil {
			t.Logf("run %s %s: %s", rep.Run, rep.Result, rep.Message)
			for _, svc := range rep.Services {
				t.Logf("drill of %s %s: %s %q", svc.Name, svc.Result, svc.Message, svc.FailedChecks)
			}
			break
		}
	}
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := s.schwerin.Client.Get(ctx, key, ds); err != nil {
			return err
		}
		ds.Spec.Suspend = true
		return s.schwerin.Client.Update(ctx, ds)
	})).To(Succeed())
}

// cutLink cuts the link between the sites until the managers' heartbeats to each other have
// failed, then restores it.
func cutLink(t *testing.T, s *sites) {
	ctx, g := t.Context(), newG(t)
	s.link.Cut()
	defer s.link.Restore()
	for _, site := range []*testenv.Site{s.kiel, s.schwerin} {
		g.Eventually(func() (float64, error) {
			return testenv.ScrapeSum(ctx, s.metrics[site.Name], "deich_peer_heartbeat_failures_total", "")
		}).Should(BeNumerically(">", 0), "%s's heartbeats fail", site.Name)
	}
}

// sites are the two control planes and their managers.
type sites struct {
	kiel, schwerin *testenv.Site
	link           *testenv.Link
	// managers and metrics (the address of its endpoint) by site name.
	managers map[string]*testenv.Manager
	metrics  map[string]string
	logs     map[string]string
}

// startSites builds the manager binary while two control planes start, connects the sites
// and starts a manager per site with leader election and a metrics endpoint.
func startSites(t *testing.T) *sites {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	binary := filepath.Join(dir, "manager")
	built := make(chan error, 1)
	start := time.Now()
	go func() {
		err := testenv.BuildManager(root, binary)
		t.Logf("built the manager in %s", time.Since(start).Round(100*time.Millisecond))
		built <- err
	}()

	env, err := testenv.StartDeich()
	if err != nil {
		t.Fatal(errors.Join(err, <-built))
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop sites: %v", err)
		}
	})
	t.Logf("started the sites in %s", time.Since(start).Round(100*time.Millisecond))
	if err := <-built; err != nil {
		t.Fatal(err)
	}
	s := &sites{
		kiel: env.Site(testenv.SiteKiel), schwerin: env.Site(testenv.SiteSchwerin),
		managers: map[string]*testenv.Manager{}, metrics: map[string]string{}, logs: map[string]string{},
	}
	s.link = env.Link(s.kiel.Name, s.schwerin.Name)
	if err := s.link.Connect(t.Context(), operator.DefaultNamespace, time.Second); err != nil {
		t.Fatal(err)
	}
	for _, site := range []*testenv.Site{s.kiel, s.schwerin} {
		addr, err := testenv.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(dir, site.Name+".log")
		m, err := testenv.StartManagerBinary(site, binary, dir, log,
			"--metrics-bind-address="+addr,
			"--max-clock-skew="+maxClockSkew.String(),
			"--leader-elect",
			"--leader-elect-lease-duration="+electionLease.String(),
			"--leader-elect-renew-deadline="+electionRenew.String(),
			"--leader-elect-retry-period="+electionRetry.String(),
		)
		if err != nil {
			t.Fatal(err)
		}
		s.managers[site.Name], s.metrics[site.Name], s.logs[site.Name] = m, addr, log
		t.Cleanup(func() {
			if err := m.Stop(); err != nil {
				t.Errorf("stop manager of %s: %v", site.Name, err)
			}
		})
	}
	// Registered last, so it runs first: the logs of a failed test, while they exist.
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range slices.Sorted(maps.Keys(s.logs)) {
				t.Logf("last lines of the manager log of %s:\n%s", name, tail(s.logs[name], 40))
			}
		}
	})
	return s
}

// exported describes the metric families one scrape or several found: their type and the
// label names of their series.
type exported map[string]family

type family struct {
	kind   dto.MetricType
	labels map[string]bool
}

// scrape reads both managers' metrics and merges them.
func (s *sites) scrape(ctx context.Context) (exported, error) {
	out := exported{}
	for name, addr := range s.metrics {
		families, err := scrapeOnce(ctx, addr)
		if err != nil {
			if done, exitErr := s.managers[name].Exited(); done {
				return nil, fmt.Errorf("scrape the manager of %s, which exited: %w", name, errors.Join(exitErr, err))
			}
			return nil, fmt.Errorf("scrape the manager of %s: %w", name, err)
		}
		for fname, mf := range families {
			f, ok := out[fname]
			if !ok {
				f = family{kind: mf.GetType(), labels: map[string]bool{}}
				out[fname] = f
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					f.labels[l.GetName()] = true
				}
			}
		}
	}
	return out, nil
}

func scrapeOnce(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return families, nil
}

// queried are the metrics the dashboard reads: by series name, the label names its queries
// match on and where it reads them.
type queried map[string]*use

type use struct {
	labels map[string]bool
	where  []string
}

func queriedMetrics(t *testing.T) queried {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Load(filepath.Join(root, Path))
	if err != nil {
		t.Fatal(err)
	}
	out := queried{}
	for _, q := range d.Queries() {
		e, err := Scan(q.PromQL)
		if err != nil {
			t.Fatalf("%s: %v", q.Where, err)
		}
		for _, sel := range e.Selectors {
			u, ok := out[sel.Metric]
			if !ok {
				u = &use{labels: map[string]bool{}}
				out[sel.Metric] = u
			}
			for _, l := range sel.Labels {
				u.labels[l] = true
			}
			if !slices.Contains(u.where, q.Where) {
				u.where = append(u.where, q.Where)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard queries no metrics")
	}
	return out
}

// check returns what the dashboard queries that the scrape did not find: a metric no manager
// exports, or a label a query matches on that the metric's series do not carry.
func check(q queried, got exported) []string {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(q)) {
		u := q[name]
		f, ok := familyOf(name, got)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is not exported (queried by %s)", name, strings.Join(u.where, "; ")))
			continue
		}
		for _, l := range slices.Sorted(maps.Keys(u.labels)) {
			if !f.labels[l] && !slices.Contains(targetLabels, l) {
				problems = append(problems, fmt.Sprintf("%s has no label %s (its labels: %s; queried by %s)",
					name, l, strings.Join(slices.Sorted(maps.Keys(f.labels)), ", "), strings.Join(u.where, "; ")))
			}
		}
	}
	return problems
}

// familyOf finds the family a queried series name belongs to: the family of that name, or for
// _bucket, _sum and _count the histogram (or summary) they are series of.
func familyOf(series string, got exported) (family, bool) {
	if f, ok := got[series]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		f, ok := got[base]
		if ok && (f.kind == dto.MetricType_HISTOGRAM || suffix != "_bucket" && f.kind == dto.MetricType_SUMMARY) {
			return f, true
		}
	}
	return family{}, false
}

func newG(t *testing.T) Gomega {
	t.Helper()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(time.Minute)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	return g
}

func newSwitchover(name, target, reason string) *deichv1alpha1.Switchover {
	return &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: serviceName, TargetSite: target, Reason: reason},
	}
}

// status reads the SharedService at site.
func status(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: serviceName}, svc)
	}
}

// switchoverAt reads the Switchover name at site.
func switchoverAt(ctx context.Context, site *testenv.Site, name string) func() (*deichv1alpha1.Switchover, error) {
	return func() (*deichv1alpha1.Switchover, error) {
		sw := &deichv1alpha1.Switchover{}
		return sw, site.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, sw)
	}
}

// markReady reports the Deployment "web" at site ready, as its controller would once its Pods
// run: what the promotion stage waits for.
func markReady(ctx context.Context, g Gomega, site *testenv.Site) {
	g.ExpectWithOffset(1, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "web"}, dep); err != nil {
			return err
		}
		n := ptr.Deref(dep.Spec.Replicas, 1)
		dep.Status.Replicas, dep.Status.ReadyReplicas, dep.Status.AvailableReplicas, dep.Status.UpdatedReplicas = n, n, n, n
		return site.Client.Status().Update(ctx, dep)
	})).To(Succeed(), "mark the Deployment web ready at %s", site.Name)
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
