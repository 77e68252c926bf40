package quorum

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// TestEachActiveLostInTurnIsSurvived: the active site is lost whole (its API server and its
// manager stop), and later the new active is lost too. With the witness each loss leaves two
// of three arbiters, so each time the standby promotes within the RTO under a higher epoch; in
// two-site mode the second loss would strand the service unless the lease had moved back.
//
// A site lost whole comes back with its objects as it left them: its manager, once started,
// reads the lease and fences them. The invariant checker therefore watches from each loss
// until the lost site is brought back, and again from when the returned site stands by.
func TestEachActiveLostInTurnIsSurvived(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-each-active-lost", deichv1alpha1.HealthCheck{
		Name: "schwerin-web", Site: testenv.SiteSchwerin,
		Workload: &deichv1alpha1.WorkloadCheck{Kind: "Deployment", Name: "web", MinReady: 1},
	})
	first, err := s.epoch(ctx, kiel)()
	g.Expect(err).NotTo(HaveOccurred())

	// sh-kiel is lost: mv-schwerin and the witness are a majority.
	second := s.loseActive(ctx, t, g, kiel, schwerin, first)

	// mv-schwerin is lost: sh-kiel and the witness are a majority again.
	third := s.loseActive(ctx, t, g, schwerin, kiel, second)
	t.Logf("epochs: %d at the start, %d after the first loss, %d after the second", first, second, third)
	g.Eventually(s.leaseCopy(ctx, testenv.SiteHamburg)).Should(And(
		HaveField("Holder", testenv.SiteKiel),
		HaveField("Epoch", third)), "the witness's copy names sh-kiel under the newest epoch")
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel holds all three copies once mv-schwerin is back")
}

// loseActive loses the site active, checks that standby promotes within the RTO under an
// epoch above before, lets standby's web report ready, brings active back, waits until it stands by, and returns the new
// epoch.
func (s service) loseActive(ctx context.Context, t testing.TB, g Gomega, active, standby *testenv.Site, before int64) int64 {
	t.Helper()
	inv := watchInvariant(ctx, s)
	lostAt := time.Now()
	bringBack := loseSite(t, active)
	served := s.firstSeen(ctx, g, rto+leaseDuration, map[*testenv.Site]form{standby: formActive})[standby.Name]
	t.Logf("%s lost; %s served after %s (RTO %s)", active.Name, standby.Name, served.Sub(lostAt).Round(time.Millisecond), rto)
	g.Expect(served.Sub(lostAt)).To(BeNumerically("<=", rto), "%s serves within the RTO", standby.Name)
	g.Eventually(s.status(ctx, standby)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.Lease.Holder", standby.Name),
		HaveField("Status.Quorum", "2/3"),
		HaveField("Status.LastFailover.From", active.Name),
		HaveField("Status.LastFailover.To", standby.Name)), "%s serves on its own copy and the witness's", standby.Name)
	g.Eventually(s.epoch(ctx, standby)).Should(BeNumerically(">", before), "the promotion raised the epoch from %d", before)
	epoch, err := s.epoch(ctx, standby)()
	g.Expect(err).NotTo(HaveOccurred())
	s.markReady(ctx, g, standby)
	inv.check(t)

	returned := time.Now()
	g.Expect(bringBack()).To(Succeed())
	g.Eventually(s.form(ctx, active, deploymentGVK, "web")).WithTimeout(rto).WithPolling(20*time.Millisecond).Should(Equal(formStandby),
		"%s fences what it left in active form", active.Name)
	t.Logf("%s back; its manager fenced its copies after %s", active.Name, time.Since(returned).Round(time.Millisecond))
	inv = watchInvariant(ctx, s, standby)
	g.Eventually(s.status(ctx, active)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.ActiveSite", standby.Name),
		HaveField("Status.Lease.Holder", standby.Name),
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected)), "%s comes back as a Ready standby", active.Name)
	g.Eventually(s.sourceSite(ctx, active)).Should(Equal(standby.Name), "mirroring flows from %s to %s", standby.Name, active.Name)
	g.Eventually(s.quorum(ctx, standby)).Should(Equal("3/3"), "%s takes %s's copy too once it is back", standby.Name, active.Name)
	g.Consistently(s.staysStandby(ctx, active), leaseDuration).Should(Succeed())
	inv.check(t)
	return epoch
}

// markReady plays the Deployment controller at site: web reports its replicas ready, so that
// the site's own health check passes while it serves.
func (s service) markReady(ctx context.Context, g Gomega, site *testenv.Site) {
	g.Eventually(func() error {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "web"}, dep); err != nil {
			return err
		}
		dep.Status = appsv1.DeploymentStatus{
			ObservedGeneration: dep.Generation,
			Replicas:           sourceReplicas, UpdatedReplicas: sourceReplicas, ReadyReplicas: sourceReplicas, AvailableReplicas: sourceReplicas,
		}
		return site.Client.Status().Update(ctx, dep)
	}).Should(Succeed(), "%s's web reports its replicas ready", site.Name)
}
