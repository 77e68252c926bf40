package failover

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// kielReachable judges sh-kiel by whether its API server accepts connections at addr: a
// stand-in for the service's own endpoint in these tests, where no pods run.
func kielReachable(addr string) deichv1alpha1.HealthCheck {
	return deichv1alpha1.HealthCheck{Name: "kiel-reachable", Site: testenv.SiteKiel, TCP: &deichv1alpha1.TCPCheck{Address: addr}}
}

func TestStandbyPromotesWhenTheActiveSiteIsLost(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	// The RTO leaves room for the stopping API server, which may accept connections for a
	// few seconds while it shuts down.
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(45 * time.Second)
	s := setUp(ctx, t, g, "failover-site-lost", objective, kielReachable(kiel.HostPort()))
	inv := watchInvariant(ctx, s)

	// sh-kiel's data centre goes dark: its manager and its API server stop.
	lost := time.Now()
	g.Expect(stopManager(kiel)).To(Succeed())
	g.Expect(kiel.StopAPIServer()).To(Succeed())
	t.Cleanup(func() {
		_ = kiel.StartAPIServer()
		if !managers.Running(kiel) {
			_ = startManager(kiel)
		}
	})

	served := s.servingSince(ctx, g, schwerin, time.Minute)
	recovery := served.Sub(lost)
	t.Logf("mv-schwerin serves %s after sh-kiel was lost (RTO %s)", recovery.Round(time.Millisecond), objective.Spec.RTO.Duration)
	g.Expect(recovery).To(BeNumerically("<=", objective.Spec.RTO.Duration), "recovery within the RTO")
	g.Expect(s.replicas(ctx, schwerin)()).To(BeEquivalentTo(sourceReplicas), "the source's replica count is restored")
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.From", testenv.SiteKiel),
		HaveField("Status.LastFailover.To", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.CompletedAt", Not(BeNil())),
		HaveField("Status.FailoverHistory", HaveLen(1))))
	svc, err := s.status(ctx, schwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(svc.Status.LastFailover.RecoveryTime.Duration).To(BeNumerically("<=", objective.Spec.RTO.Duration))
	failover := svc.Status.LastFailover
	g.Eventually(s.events(ctx, schwerin)).Should(ContainElements(deichv1alpha1.ServiceEventFailingOver, deichv1alpha1.ServiceEventFailedOver))
	g.Expect(s.events(ctx, schwerin)()).NotTo(ContainElement(deichv1alpha1.ServiceEventLeaseLost),
		"the new active was told it lost the lease it had just taken")
	inv.check(t)

	t.Run("the returning site comes back fenced and becomes the standby", func(t *testing.T) {
		g := newG(t)
		// Its workloads come back in the form they had when the site went dark; its manager
		// fences them as soon as it reads the lease.
		g.Expect(kiel.StartAPIServer()).To(Succeed())
		g.Expect(startManager(kiel)).To(Succeed())
		g.Eventually(s.replicas(ctx, kiel)).Should(BeEquivalentTo(0), "sh-kiel is fenced")
		g.Eventually(s.status(ctx, kiel)).Should(And(
			HaveField("Status.Role", deichv1alpha1.RoleStandby),
			HaveField("Status.ActiveSite", testenv.SiteSchwerin)))
		g.Eventually(s.events(ctx, kiel)).Should(ContainElement(deichv1alpha1.ServiceEventLeaseLost))
		g.Eventually(s.sourceSite(ctx, kiel)).Should(Equal(testenv.SiteSchwerin), "mirroring now flows from mv-schwerin to sh-kiel")
		g.Eventually(s.status(ctx, schwerin)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseProtected))
		inv := watchInvariant(ctx, s)
		g.Consistently(s.replicas(ctx, schwerin), 3*time.Second).Should(BeEquivalentTo(sourceReplicas), "the service stays at mv-schwerin")
		inv.check(t)

		// The returning site learns from mv-schwerin what happened while it was dark.
		g.Eventually(s.status(ctx, kiel)).Should(And(
			HaveField("Status.FailoverHistory", ContainElement(And(
				HaveField("Epoch", failover.Epoch), HaveField("From", testenv.SiteKiel), HaveField("To", testenv.SiteSchwerin),
				HaveField("CompletedAt", Equal(failover.CompletedAt))))),
			HaveField("Status.LastFailover.Epoch", failover.Epoch)), "sh-kiel's history holds the failover mv-schwerin recorded")
		// Each site's inventory of the other says what the other's API server holds: mv-schwerin
		// serves what sh-kiel wrote there before it went dark, and sh-kiel holds mv-schwerin's
		// copies.
		for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
			site, partner := pair[0], pair[1]
			g.Eventually(func(g Gomega) {
				held, err := testenv.HeldAt(ctx, partner, site.Name, s.ns)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(held).To(ContainSubstring("Deployment=1"), "%s holds the Deployment of %s's", partner.Name, site.Name)
				g.Expect(testenv.InventoryOf(ctx, site, partner.Name, s.ns)).To(Equal(held), "%s's inventory of %s", site.Name, partner.Name)
			}).Should(Succeed())
		}
	})
}

func TestCutLinkFencesTheActiveBeforeTheStandbyPromotes(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second)
	// sh-kiel's service, as mv-schwerin reaches it: across the same link.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	toKielService, err := testenv.NewProxy(srv.Listener.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = toKielService.Close() })
	s := setUp(ctx, t, g, "failover-link-cut", objective, deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: "http://" + toKielService.Addr() + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	})
	inv := watchInvariant(ctx, s)

	cut := time.Now()
	for _, p := range []*testenv.Proxy{toKiel, toSchwerin, toKielService} {
		p.Cut()
	}
	restored := false
	restore := func() {
		if !restored {
			for _, p := range []*testenv.Proxy{toKiel, toSchwerin, toKielService} {
				p.Restore()
			}
			restored = true
		}
	}
	t.Cleanup(restore)

	var fenced time.Time
	g.Eventually(func() (int32, error) {
		n, err := s.replicas(ctx, kiel)()
		if n == 0 && fenced.IsZero() {
			fenced = time.Now()
		}
		return n, err
	}).Should(BeEquivalentTo(0), "sh-kiel fences itself when it cannot renew the lease")
	served := s.servingSince(ctx, g, schwerin, time.Minute)
	t.Logf("link cut; sh-kiel fenced after %s, mv-schwerin served after %s", fenced.Sub(cut).Round(time.Millisecond), served.Sub(cut).Round(time.Millisecond))
	g.Expect(fenced).To(BeTemporally("<", served), "the active fences before the standby promotes")
	g.Eventually(s.status(ctx, kiel)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseFenced))

	restore()
	g.Eventually(s.status(ctx, kiel)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin)))
	g.Eventually(s.sourceSite(ctx, kiel)).Should(Equal(testenv.SiteSchwerin), "mirroring flows from the new active")
	g.Expect(s.replicas(ctx, kiel)()).To(BeEquivalentTo(0))
	inv.check(t)
}

func TestFailingChecksHandOverWithoutWaitingForTheLease(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) }))
	t.Cleanup(srv.Close)
	// A long lease: waiting for it to expire would take at least leaseDuration + skew.
	lease := 30 * time.Second
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, lease).RTO(time.Minute)
	s := setUp(ctx, t, g, "failover-handover", objective, deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: srv.URL + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	})
	inv := watchInvariant(ctx, s)

	failed := time.Now()
	code.Store(http.StatusInternalServerError)
	served := s.servingSince(ctx, g, schwerin, time.Minute)
	t.Logf("sh-kiel's endpoint answers 500; mv-schwerin serves %s later", served.Sub(failed).Round(time.Millisecond))
	g.Expect(served.Sub(failed)).To(BeNumerically("<", lease), "the standby promoted before the lease could have expired")
	g.Eventually(s.events(ctx, kiel)).Should(ContainElement(deichv1alpha1.ServiceEventHandedOver))
	g.Eventually(s.replicas(ctx, kiel)).Should(BeEquivalentTo(0))
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.From", testenv.SiteKiel)))
	// mv-schwerin has no check of its own that fails: the service stays there.
	g.Consistently(s.replicas(ctx, schwerin), 3*time.Second).Should(BeEquivalentTo(sourceReplicas))
	g.Expect(s.events(ctx, schwerin)()).NotTo(ContainElement(deichv1alpha1.ServiceEventLeaseLost),
		"the new active was told it lost the lease it had just taken")
	inv.check(t)
}

func TestManagerKilledMidPromotionResumes(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second)
	s := setUp(ctx, t, g, "failover-resume", objective, kielReachable(toKiel.Addr()))

	// The state a manager leaves behind when it is killed right after taking the lease:
	// the promotion recorded, the lease written, the copies still in standby form. Built by
	// hand with both managers stopped, then mv-schwerin's manager starts again.
	g.Expect(stopManager(kiel)).To(Succeed())
	g.Expect(stopManager(schwerin)).To(Succeed())
	t.Cleanup(func() {
		for _, site := range []*testenv.Site{kiel, schwerin} {
			if !managers.Running(site) {
				_ = startManager(site)
			}
		}
	})
	// sh-kiel is gone for good in this story: its workloads stopped with it.
	dep, err := s.replicas(ctx, kiel)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(dep).To(BeEquivalentTo(sourceReplicas))
	toKiel.Cut()
	t.Cleanup(toKiel.Restore)

	detected := metav1.NewTime(time.Now())
	svc, err := s.status(ctx, schwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	svc.Status.LastFailover = &deichv1alpha1.FailoverRecord{From: testenv.SiteKiel, To: testenv.SiteSchwerin, Reason: "sh-kiel unreachable", DetectedAt: &detected}
	svc.Status.Phase = deichv1alpha1.PhaseFailingOver
	g.Expect(schwerin.Client.Status().Update(ctx, svc)).To(Succeed())
	s.editLeaseEntry(ctx, g, schwerin, func(rec *failover.LeaseRecord) {
		rec.Holder, rec.RenewTime = testenv.SiteSchwerin, time.Now()
	})
	g.Expect(s.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))

	g.Expect(startManager(schwerin)).To(Succeed())
	g.Eventually(s.replicas(ctx, schwerin)).Should(BeEquivalentTo(sourceReplicas), "the restarted manager renews the lease and finishes the promotion")
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.LastFailover.CompletedAt", Not(BeNil())),
		HaveField("Status.LastFailover.RecoveryTime", Not(BeNil())),
		HaveField("Status.FailoverHistory", HaveLen(1)),
		HaveField("Status.Role", deichv1alpha1.RoleActive)))
}
