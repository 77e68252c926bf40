package quorum

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// The objective every service of these tests has: the short timings of the failover tests.
const (
	leaseDuration    = 6 * time.Second
	probeInterval    = time.Second
	failureThreshold = 2
	rto              = 30 * time.Second
	// detection is how long the standby's checks take to fail failureThreshold times.
	detection = failureThreshold * probeInterval
	// window is how long a fault that must not move the service is watched: long enough for
	// every lease copy the fault keeps from being renewed to expire twice over, for the
	// standby's checks to fail, and for the clock-skew margins on both sides.
	window = 2*leaseDuration + detection + 2*maxClockSkew
	// sampleEvery is how often the invariant checker samples both partners.
	sampleEvery = 200 * time.Millisecond
	// readTimeout bounds each read of a site, so that a stopped API server does not stall
	// the checker.
	readTimeout = time.Second
)

// sourceReplicas is the replica count of the service's Deployment at the site that serves.
const sourceReplicas = 3

var (
	deploymentGVK    = appsv1.SchemeGroupVersion.WithKind("Deployment")
	configMapGVK     = corev1.SchemeGroupVersion.WithKind("ConfigMap")
	sharedServiceGVK = deichv1alpha1.GroupVersion.WithKind("SharedService")
)

// arbiters is the configuration of arbiters of every service here: both partners and the
// witness.
var arbiters = failover.QuorumConfig(testenv.SiteKiel, testenv.SiteSchwerin, testenv.SiteHamburg)

func newG(t testing.TB) Gomega {
	t.Helper()
	requireSites(t)
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	g.SetDefaultConsistentlyPollingInterval(sampleEvery)
	return g
}

// service is one SharedService under test, in its own namespace: primary at sh-kiel, standby
// at mv-schwerin, witness hh-hamburg.
type service struct {
	ns, name string
}

func (s service) key() types.NamespacedName {
	return types.NamespacedName{Namespace: s.ns, Name: s.name}
}

// setUp creates, at both partners, an objective named after the namespace, and at sh-kiel the
// namespace, a Deployment "web" with sourceReplicas ready replicas, a ConfigMap "settings" and
// the SharedService with witness hh-hamburg, judged by a workload check of sh-kiel's "web". It
// waits until sh-kiel serves, mv-schwerin holds the copies in standby form and its check of
// sh-kiel passes; then it checks, without stopping the test, that the manager keeps the quorum
// lease.
//
// sh-kiel's manager reads its own Deployment and always finds it ready; mv-schwerin's reads it
// through the link between the partners, so its check fails as soon as it cannot reach
// sh-kiel. The status is written by hand: no controller runs pods here. extraChecks are
// added to the service's health checks.
func setUp(ctx context.Context, t testing.TB, g Gomega, ns string, extraChecks ...deichv1alpha1.HealthCheck) service {
	t.Helper()
	objective := testobjects.MakeRecoveryObjective(ns).Failover(failureThreshold, probeInterval, leaseDuration).RTO(rto).Obj()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := objective.DeepCopy()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed(), "create the objective at %s", site.Name)
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	labels := map[string]string{"app.kubernetes.io/part-of": "buergerkonto", "app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(sourceReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/buergerkonto:1.4"}}},
			},
		},
	}
	g.Expect(kiel.Client.Create(ctx, dep)).To(Succeed())
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation,
		Replicas:           sourceReplicas, UpdatedReplicas: sourceReplicas, ReadyReplicas: sourceReplicas, AvailableReplicas: sourceReplicas,
	}
	g.Expect(kiel.Client.Status().Update(ctx, dep)).To(Succeed(), "sh-kiel's web reports its replicas ready")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: labels}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	b := testobjects.MakeSharedService("buergerkonto", ns).Objective(ns).Witness(testenv.SiteHamburg).
		HealthCheck(deichv1alpha1.HealthCheck{
			Name: "kiel-web", Site: testenv.SiteKiel,
			Workload: &deichv1alpha1.WorkloadCheck{Kind: "Deployment", Name: "web", MinReady: 1},
		})
	for _, hc := range extraChecks {
		b = b.HealthCheck(hc)
	}
	svc := b.Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	s := service{ns: ns, name: svc.Name}
	t.Cleanup(func() { s.tearDown(objective) })

	g.Eventually(s.status(ctx, kiel)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)), "sh-kiel serves and the service is protected")
	g.Eventually(s.form(ctx, schwerin, deploymentGVK, "web")).Should(Equal(formStandby), "mv-schwerin holds a standby copy")
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteKiel),
		HaveField("Status.HealthChecks", ConsistOf(HaveField("Status", deichv1alpha1.HealthHealthy)))),
		"mv-schwerin stands by and its check of sh-kiel passes")
	g.Expect(s.form(ctx, kiel, deploymentGVK, "web")()).To(Equal(formActive))

	s.expectQuorumLease(ctx, t, testenv.SiteKiel)
	return s
}

// expectQuorumLease checks that the manager keeps the quorum lease for the service: each of
// the three arbiters stores a copy that names holder and carries an epoch and the three
// arbiters, and the holder counts all three as held. This is where these tests need the
// manager's wiring of the quorum lease; a manager that decides on the single lease at the
// standby's cluster keeps no copy at the primary's cluster nor at the witness. It reports a
// failure and lets the test go on, so the fault that follows shows what the missing lease
// costs.
func (s service) expectQuorumLease(ctx context.Context, t testing.TB, holder string) {
	t.Helper()
	g := NewGomega(func(message string, _ ...int) {
		t.Helper()
		t.Errorf("the manager keeps no quorum lease for %s: %s", s.key(), message)
	})
	for _, arbiter := range arbiters {
		g.Eventually(s.leaseCopy(ctx, arbiter)).WithTimeout(2*leaseDuration).WithPolling(100*time.Millisecond).Should(And(
			HaveField("Holder", holder),
			HaveField("Epoch", BeNumerically(">", 0)),
			HaveField("Configs", ContainElement(Equal(arbiters)))),
			"the copy of the lease at %s", arbiter)
	}
	g.Eventually(s.quorum(ctx, env.Site(holder))).WithTimeout(2*leaseDuration).WithPolling(100*time.Millisecond).Should(Equal("3/3"),
		"status.quorum at %s", holder)
}

// tearDown deletes the service at both partners and the objective, so that it neither loads
// the managers nor reacts to the faults of later tests. Nothing waits for the deletion.
func (s service) tearDown(objective *deichv1alpha1.RecoveryObjective) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		svc := &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name}}
		_ = client.IgnoreNotFound(site.Client.Delete(ctx, svc)) // best effort: the test is over
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		_ = client.IgnoreNotFound(site.Client.Delete(ctx, objective.DeepCopy())) // best effort
	}
}

// status reads the SharedService at site.
func (s service) status(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, svc)
	}
}

// quorum reads status.quorum at site.
func (s service) quorum(ctx context.Context, site *testenv.Site) func() (string, error) {
	return func() (string, error) {
		svc, err := s.status(ctx, site)()
		return svc.Status.Quorum, err
	}
}

// epoch reads status.lease.epoch at site: the fencing token of the claim the site last saw
// serve. It reads the object unstructured, so that it needs no Go field for it; 0 when the
// status has none.
func (s service) epoch(ctx context.Context, site *testenv.Site) func() (int64, error) {
	return func() (int64, error) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(sharedServiceGVK)
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, u); err != nil {
			return 0, err
		}
		e, _, err := unstructured.NestedInt64(u.Object, "status", "lease", "epoch")
		return e, err
	}
}

// checkFailures reads, at site, the most consecutive failures of a check that judges the
// active site.
func (s service) checkFailures(ctx context.Context, site *testenv.Site) func() (int32, error) {
	return func() (int32, error) {
		svc, err := s.status(ctx, site)()
		var n int32
		for _, hc := range svc.Status.HealthChecks {
			n = max(n, hc.ConsecutiveFailures)
		}
		return n, err
	}
}

// object reads an object of the service's namespace at site, within readTimeout.
func (s service) object(ctx context.Context, site *testenv.Site, gvk schema.GroupVersionKind, name string) (*unstructured.Unstructured, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, u)
}

// annotation reads an annotation of an object at site.
func (s service) annotation(ctx context.Context, site *testenv.Site, gvk schema.GroupVersionKind, name, key string) func() (string, error) {
	return func() (string, error) {
		u, err := s.object(ctx, site, gvk, name)
		if err != nil {
			return "", err
		}
		return u.GetAnnotations()[key], nil
	}
}

// sourceSite reads which site the Deployment "web" at site was last mirrored from.
func (s service) sourceSite(ctx context.Context, site *testenv.Site) func() (string, error) {
	return func() (string, error) {
		u, err := s.object(ctx, site, deploymentGVK, "web")
		if err != nil {
			return "", err
		}
		return u.GetLabels()[render.LabelSourceSite], nil
	}
}

// form is the form of an object at a site, as the invariant checker sees it.
type form string

const (
	// formActive is an object that serves: not in standby form (render.InStandbyForm).
	formActive form = "active"
	// formStandby is a standby copy or a fenced object.
	formStandby form = "standby"
	// formAbsent is an object the site does not have.
	formAbsent form = "absent"
	// formUnread is an object that could not be read: its site's API server is down. The
	// tests stop an API server only together with its manager, as a lost data centre, so
	// nothing there can switch the object to its active form meanwhile.
	formUnread form = "unread"
)

// formOf reads the form of an object at site; an object that cannot be read is formUnread,
// with the error.
func (s service) formOf(ctx context.Context, site *testenv.Site, gvk schema.GroupVersionKind, name string) (form, error) {
	u, err := s.object(ctx, site, gvk, name)
	switch {
	case apierrors.IsNotFound(err):
		return formAbsent, nil
	case err != nil:
		return formUnread, err
	case render.InStandbyForm(u):
		return formStandby, nil
	}
	return formActive, nil
}

// form reads the form of an object at site, as a poll function.
func (s service) form(ctx context.Context, site *testenv.Site, gvk schema.GroupVersionKind, name string) func() (form, error) {
	return func() (form, error) { return s.formOf(ctx, site, gvk, name) }
}

// firstSeen polls the Deployment web at each site of want, all in one loop, until every one
// has been seen in the form want names for it, and returns when each was first seen so.
func (s service) firstSeen(ctx context.Context, g Gomega, timeout time.Duration, want map[*testenv.Site]form) map[string]time.Time {
	at := map[string]time.Time{}
	g.Eventually(func() error {
		var missing []string
		for site, f := range want {
			if !at[site.Name].IsZero() {
				continue
			}
			got, err := s.formOf(ctx, site, deploymentGVK, "web")
			if got == f {
				at[site.Name] = time.Now()
				continue
			}
			missing = append(missing, fmt.Sprintf("%s: web in %s form (%v), want %s; %s", site.Name, got, err, f, s.describe(ctx, site)))
		}
		if len(missing) > 0 {
			return errors.New(strings.Join(missing, "; "))
		}
		return nil
	}).WithTimeout(timeout).WithPolling(20 * time.Millisecond).Should(Succeed())
	return at
}

// keepsServing checks that site serves the service: its Deployment is in active form and its
// SharedService is not Fenced.
func (s service) keepsServing(ctx context.Context, site *testenv.Site) func() error {
	return func() error {
		f, err := s.formOf(ctx, site, deploymentGVK, "web")
		if err != nil {
			return err
		}
		svc, err := s.status(ctx, site)()
		if err != nil {
			return err
		}
		if f != formActive || svc.Status.Phase == deichv1alpha1.PhaseFenced {
			return fmt.Errorf("%s stopped serving: web is in %s form, phase %s, quorum %s, lease %s", site.Name, f, svc.Status.Phase, svc.Status.Quorum, leaseMessage(svc))
		}
		return nil
	}
}

// staysStandby checks that site holds the service's Deployment in standby form and does not
// call itself active.
func (s service) staysStandby(ctx context.Context, site *testenv.Site) func() error {
	return func() error {
		f, err := s.formOf(ctx, site, deploymentGVK, "web")
		if err != nil {
			return err
		}
		svc, err := s.status(ctx, site)()
		if err != nil {
			return err
		}
		if f != formStandby || svc.Status.Role == deichv1alpha1.RoleActive {
			return fmt.Errorf("%s no longer stands by: web is in %s form, role %s, phase %s, quorum %s, lease %s", site.Name, f, svc.Status.Role, svc.Status.Phase, svc.Status.Quorum, leaseMessage(svc))
		}
		return nil
	}
}

// servesAndStandsBy checks that active serves the service and standby stands by.
func (s service) servesAndStandsBy(ctx context.Context, active, standby *testenv.Site) func() error {
	return func() error {
		if err := s.keepsServing(ctx, active)(); err != nil {
			return err
		}
		return s.staysStandby(ctx, standby)()
	}
}

// leaseMessage is what a site's status says about the lease, for failure messages.
// describe says what site's manager reports of the service — phase, role, quorum, the lease
// keeper's message and the checks — so that a test that times out says why.
func (s service) describe(ctx context.Context, site *testenv.Site) string {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	svc, err := s.status(ctx, site)()
	if err != nil {
		return fmt.Sprintf("status unread: %v", err)
	}
	checks := make([]string, 0, len(svc.Status.HealthChecks))
	for _, hc := range svc.Status.HealthChecks {
		checks = append(checks, fmt.Sprintf("%s %s ×%d (%s)", hc.Name, hc.Status, hc.ConsecutiveFailures, hc.Message))
	}
	conditions := make([]string, 0, len(svc.Status.Conditions))
	for _, c := range svc.Status.Conditions {
		conditions = append(conditions, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return fmt.Sprintf("phase %s, role %s, quorum %s, lease %s, checks [%s], conditions [%s]",
		svc.Status.Phase, svc.Status.Role, svc.Status.Quorum, leaseMessage(svc), strings.Join(checks, "; "), strings.Join(conditions, ", "))
}

func leaseMessage(svc *deichv1alpha1.SharedService) string {
	if svc.Status.Lease == nil {
		return "none"
	}
	return fmt.Sprintf("held by %q: %s", svc.Status.Lease.Holder, svc.Status.Lease.Message)
}

// leaseCopy reads the copy of the service's lease at arbiter: its entry in the shared record,
// in lease.PartnerLeaseNamespace at a partner and in the witness's lease namespace there.
func (s service) leaseCopy(ctx context.Context, arbiter string) func() (failover.LeaseRecord, error) {
	return func() (failover.LeaseRecord, error) {
		ns := lease.PartnerLeaseNamespace
		if arbiter == witness.Site.Name {
			ns = witness.Namespace
		}
		key := lease.RecordKey(ns, testenv.SiteKiel, testenv.SiteSchwerin, s.key())
		ctx, cancel := context.WithTimeout(ctx, readTimeout)
		defer cancel()
		rec, err := lease.ReadEntry(ctx, env.Site(arbiter).Client, key, s.key())
		if err != nil {
			// A plain error: gomega would print a StatusError field by field.
			return failover.LeaseRecord{}, fmt.Errorf("read the copy at %s: %v", arbiter, err) //nolint:errorlint // flattened on purpose, see above
		}
		if !rec.Exists() {
			return rec, fmt.Errorf("no copy of the lease of %s at %s (record %s)", s.key(), arbiter, key)
		}
		return rec, nil
	}
}

// sample is one look of the invariant checker at both partners.
type sample struct {
	at       time.Time
	forms    map[string]form
	phases   map[string]deichv1alpha1.Phase
	failures []string
}

func (sm sample) String() string {
	parts := []string{sm.at.Format("15:04:05.000")}
	for _, site := range []string{testenv.SiteKiel, testenv.SiteSchwerin} {
		parts = append(parts, fmt.Sprintf("%s: web %s, phase %q", site, sm.forms[site], sm.phases[site]))
	}
	return strings.Join(parts, "; ")
}

// invariant samples both partners every sampleEvery and keeps every sample: the form of the
// Deployment "web" and the phase of the SharedService at each. check fails the test if in
// any sample both hold web in its active form, and if a site that must serve throughout did
// not, or reported phase Fenced.
type invariant struct {
	s         service
	mustServe []*testenv.Site
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	samples   []sample
	// serveFrom are sites that must serve in every sample taken after the time given.
	serveFrom map[*testenv.Site]time.Time
}

// watchInvariant starts sampling. mustServe are the sites that must serve in every sample
// until check.
func watchInvariant(ctx context.Context, s service, mustServe ...*testenv.Site) *invariant {
	inv := &invariant{s: s, mustServe: mustServe, stop: make(chan struct{}), done: make(chan struct{}), serveFrom: map[*testenv.Site]time.Time{}}
	go func() {
		defer close(inv.done)
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		for {
			inv.take(ctx)
			select {
			case <-inv.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return inv
}

// mustServeFrom makes site one that must serve in every sample from now until check: a site
// that was seen serving after a failover must go on serving through what follows.
func (inv *invariant) mustServeFrom(site *testenv.Site) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.serveFrom[site] = time.Now()
}

// take takes one sample.
func (inv *invariant) take(ctx context.Context) {
	sm := sample{at: time.Now(), forms: map[string]form{}, phases: map[string]deichv1alpha1.Phase{}}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		f, err := inv.s.formOf(ctx, site, deploymentGVK, "web")
		sm.forms[site.Name] = f
		if err != nil {
			sm.failures = append(sm.failures, fmt.Sprintf("%s: %v", site.Name, err))
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, readTimeout)
		svc := &deichv1alpha1.SharedService{}
		if err := site.Client.Get(rctx, client.ObjectKey{Namespace: inv.s.ns, Name: inv.s.name}, svc); err == nil {
			sm.phases[site.Name] = svc.Status.Phase
		} else if !errors.Is(err, context.Canceled) {
			sm.failures = append(sm.failures, fmt.Sprintf("%s: %v", site.Name, err))
		}
		cancel()
	}
	inv.mu.Lock()
	inv.samples = append(inv.samples, sm)
	inv.mu.Unlock()
}

// check stops sampling and reports what the samples show.
func (inv *invariant) check(t testing.TB) {
	t.Helper()
	close(inv.stop)
	<-inv.done
	inv.mu.Lock()
	defer inv.mu.Unlock()

	var both []sample
	notServing := map[string][]sample{}
	counts := map[string]map[form]int{}
	for _, sm := range inv.samples {
		for site, f := range sm.forms {
			if counts[site] == nil {
				counts[site] = map[form]int{}
			}
			counts[site][f]++
		}
		if sm.forms[testenv.SiteKiel] == formActive && sm.forms[testenv.SiteSchwerin] == formActive {
			both = append(both, sm)
		}
		for _, site := range inv.mustServe {
			if sm.forms[site.Name] != formActive || sm.phases[site.Name] == deichv1alpha1.PhaseFenced {
				notServing[site.Name] = append(notServing[site.Name], sm)
			}
		}
		for site, from := range inv.serveFrom {
			if sm.at.After(from) && (sm.forms[site.Name] != formActive || sm.phases[site.Name] == deichv1alpha1.PhaseFenced) {
				notServing[site.Name] = append(notServing[site.Name], sm)
			}
		}
	}
	t.Logf("invariant checker: %d samples over %s; sh-kiel %v, mv-schwerin %v", len(inv.samples),
		inv.span().Round(time.Millisecond), counts[testenv.SiteKiel], counts[testenv.SiteSchwerin])
	if n := len(inv.samples); n < 10 {
		t.Errorf("invariant checker took only %d samples", n)
	}
	if len(both) > 0 {
		t.Errorf("split brain: both sites held web in active form in %d samples, first: %s", len(both), both[0])
	}
	for _, site := range append(slices.Collect(maps.Keys(inv.serveFrom)), inv.mustServe...) {
		if bad := notServing[site.Name]; len(bad) > 0 {
			t.Errorf("%s did not serve throughout: it did not in %d of %d samples, first: %s (read errors: %v); its web now: %s",
				site.Name, len(bad), len(inv.samples), bad[0], bad[0].failures, inv.s.provenance(site))
		}
	}
}

// provenance says who last wrote the Deployment web at site: its provenance labels and
// annotations, and the field managers of its fields.
func (s service) provenance(site *testenv.Site) string {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(deploymentGVK)
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	if err := site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "web"}, u); err != nil {
		return err.Error()
	}
	var managers []string
	for _, mf := range u.GetManagedFields() {
		managers = append(managers, fmt.Sprintf("%s/%s@%s", mf.Manager, mf.Operation, mf.Time))
	}
	return fmt.Sprintf("labels %v, annotations %v, managers %v", u.GetLabels(), u.GetAnnotations(), managers)
}

// span is the time between the first and the last sample.
func (inv *invariant) span() time.Duration {
	if len(inv.samples) < 2 {
		return 0
	}
	return inv.samples[len(inv.samples)-1].at.Sub(inv.samples[0].at)
}
