package quorum

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// TestLeaderKilledDuringEachFault runs the single-fault matrix with two manager replicas per
// partner, as the chart deploys them, and kills the elected leader of the site that has to
// act while the fault lasts: the active's where the active must serve on, the standby's
// where the standby must stand by or promote. The replica that is elected next resumes every
// service from what the clusters hold: an active serves on without a gap, a standby that
// must promote does so within the RTO and records one failover, not two.
func TestLeaderKilledDuringEachFault(t *testing.T) {
	requireSites(t)
	g := newG(t)
	useReplicas(t, g, 2)

	serving := []struct {
		name  string
		fault func(t testing.TB) (heal func() error)
		// kill is the site whose leader is killed once the fault took effect.
		kill *testenv.Site
		// quorum is what sh-kiel holds while the fault lasts.
		quorum string
		// standbyLost is set when mv-schwerin's API server is down during the fault.
		standbyLost bool
	}{
		{"standby site lost", func(t testing.TB) func() error { return loseSite(t, schwerin) }, kiel, "2/3", true},
		{"witness lost", loseWitness, kiel, "2/3", false},
		{"partners cut apart", func(t testing.TB) func() error {
			return noError(cut(t, testenv.SiteKiel, testenv.SiteSchwerin))
		}, kiel, "2/3", false},
		{"active cut from the witness", func(t testing.TB) func() error {
			return noError(cut(t, testenv.SiteKiel, testenv.SiteHamburg))
		}, kiel, "2/3", false},
		{"standby cut from the witness", func(t testing.TB) func() error {
			return noError(cut(t, testenv.SiteSchwerin, testenv.SiteHamburg))
		}, schwerin, "3/3", false},
	}
	for _, tc := range serving {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			g := newG(t)
			s := setUp(ctx, t, g, "quorum-leader-"+slug(tc.name))
			s.expectObjectiveValid(ctx, g)
			inv := watchInvariant(ctx, s, kiel)

			heal := tc.fault(t)
			g.Eventually(s.quorum(ctx, kiel)).WithTimeout(2*leaseDuration).Should(Equal(tc.quorum), "the fault took effect at sh-kiel")
			killLeader(ctx, t, g, tc.kill)
			check := s.servesAndStandsBy(ctx, kiel, schwerin)
			if tc.standbyLost {
				check = s.keepsServing(ctx, kiel)
			}
			g.Consistently(check, window).Should(Succeed(), "sh-kiel serves and mv-schwerin stands by through the fault and the new leader's start")
			g.Expect(s.quorum(ctx, kiel)()).To(Equal(tc.quorum), "the new leader at %s holds what the old one held", tc.kill.Name)

			g.Expect(heal()).To(Succeed())
			g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel holds all three copies once the fault heals")
			g.Eventually(s.status(ctx, kiel)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseProtected))
			g.Eventually(s.staysStandby(ctx, schwerin)).Should(Succeed())
			for _, site := range []*testenv.Site{kiel, schwerin} {
				g.Expect(s.status(ctx, site)()).To(HaveField("Status.LastFailover", BeNil()), "no failover at %s", site.Name)
			}
			inv.check(t)
		})
	}

	promoting := []struct {
		name  string
		fault func(t testing.TB) (heal func() error)
	}{
		{"active lost", func(t testing.TB) func() error { return loseSite(t, kiel) }},
		{"active cut off from both", func(t testing.TB) func() error {
			return noError(cut(t, testenv.SiteKiel, testenv.SiteSchwerin, testenv.SiteHamburg))
		}},
	}
	for _, tc := range promoting {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			g := newG(t)
			s := setUp(ctx, t, g, "quorum-leader-"+slug(tc.name))
			s.expectObjectiveValid(ctx, g)
			before, err := s.epoch(ctx, kiel)()
			g.Expect(err).NotTo(HaveOccurred())
			inv := watchInvariant(ctx, s)

			faultAt := time.Now()
			heal := tc.fault(t)
			g.Eventually(s.checkFailures(ctx, schwerin)).WithTimeout(rto).Should(BeNumerically(">=", 1),
				"mv-schwerin's checks of sh-kiel start failing")
			killLeader(ctx, t, g, schwerin)
			served := s.firstSeen(ctx, g, rto+leaseDuration, map[*testenv.Site]form{schwerin: formActive})[schwerin.Name]
			t.Logf("%s; mv-schwerin, its leader killed while detecting, served after %s (RTO %s)",
				tc.name, served.Sub(faultAt).Round(time.Millisecond), rto)
			// The new leader has no history of the copies: rule 5 lets it take one over only a
			// lease plus the skew after its own first read of it, whatever the old leader saw.
			bound := rto + electionLease + leaseDuration + maxClockSkew
			g.Expect(served.Sub(faultAt)).To(BeNumerically("<=", bound), "mv-schwerin serves within the RTO plus the election and one lease")
			g.Eventually(s.status(ctx, schwerin)).Should(And(
				HaveField("Status.Role", deichv1alpha1.RoleActive),
				HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
				HaveField("Status.LastFailover.From", testenv.SiteKiel),
				HaveField("Status.LastFailover.CompletedAt", Not(BeNil())),
				HaveField("Status.FailoverHistory", HaveLen(1))), "mv-schwerin records one failover")
			g.Eventually(s.epoch(ctx, schwerin)).Should(BeNumerically(">", before), "the promotion raised the epoch from %d", before)
			s.markReady(ctx, g, schwerin)
			inv.check(t)

			g.Expect(heal()).To(Succeed())
			g.Eventually(s.form(ctx, kiel, deploymentGVK, "web")).WithTimeout(rto).Should(Equal(formStandby), "sh-kiel fences once it is back")
			inv = watchInvariant(ctx, s, schwerin)
			g.Eventually(s.status(ctx, kiel)).Should(And(
				HaveField("Status.Role", deichv1alpha1.RoleStandby),
				HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
				HaveField("Status.Phase", deichv1alpha1.PhaseProtected)), "sh-kiel comes back as a Ready standby")
			g.Eventually(s.quorum(ctx, schwerin)).Should(Equal("3/3"))
			g.Consistently(s.staysStandby(ctx, kiel), leaseDuration).Should(Succeed(), "sh-kiel stays the standby")
			g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.FailoverHistory", HaveLen(1)), "still one failover")
			inv.check(t)
		})
	}
}

// expectObjectiveValid checks that the managers at both partners find the service's
// objective valid: among other things, that their leader election is fast enough for its
// lease (LeaderElectionTooSlow otherwise).
func (s service) expectObjectiveValid(ctx context.Context, g Gomega) {
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(func() (string, error) {
			o := &deichv1alpha1.RecoveryObjective{}
			if err := site.Client.Get(ctx, client.ObjectKey{Name: s.ns}, o); err != nil {
				return "", err
			}
			if c := meta.FindStatusCondition(o.Status.Conditions, deichv1alpha1.ObjectiveConditionValid); c != nil {
				return c.Reason, nil
			}
			return "", nil
		}).Should(Equal(deichv1alpha1.ObjectiveReasonConsistent), "the objective is valid at %s", site.Name)
	}
}

// slug turns a test case's name into a namespace name.
func slug(name string) string { return strings.ReplaceAll(name, " ", "-") }

// noError turns a function that cannot fail into a heal function.
func noError(f func()) func() error {
	return func() error { f(); return nil }
}

// TestLeaderCutFromItsOwnAPIServer cuts the elected replica of each partner off from its own
// site's API server while it still reaches the other sites, as a node whose link to its
// control plane fails would be: it can no longer renew its election lease, so it stops leading
// and exits within the renew deadline, and the other replica takes over from what the clusters
// hold. The active serves on without a gap, the standby stands by, nobody fails over, and a
// replica started in the cut one's place joins as a follower.
func TestLeaderCutFromItsOwnAPIServer(t *testing.T) {
	requireSites(t)
	g := newG(t)
	useReplicas(t, g, 2)

	for _, site := range []*testenv.Site{kiel, schwerin} {
		t.Run(site.Name, func(t *testing.T) {
			ctx := context.Background()
			g := newG(t)
			s := setUp(ctx, t, g, "quorum-leader-cut-"+site.Name)
			s.expectObjectiveValid(ctx, g)
			inv := watchInvariant(ctx, s, kiel)

			old := awaitLeader(ctx, g, site, "a replica leads")
			old.own.Cut()
			cutAt := time.Now()
			t.Logf("cut the leader at %s (log %s) off from its API server", site.Name, old.log)

			g.Eventually(func() bool { done, _ := old.Exited(); return done }).WithTimeout(electionLease+5*time.Second).
				Should(BeTrue(), "the cut leader at %s gives up leading and exits", site.Name)
			forget(site, old)
			next := awaitLeader(ctx, g, site, "the other replica is elected")
			t.Logf("a new leader at %s %s after the cut (log %s)", site.Name, time.Since(cutAt).Round(time.Millisecond), next.log)
			g.Expect(startReplica(site)).To(Succeed(), "start a replica in place of the cut one at %s", site.Name)

			g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), window).Should(Succeed(),
				"sh-kiel serves and mv-schwerin stands by through the lost election lease and the new leader's start")
			g.Expect(s.quorum(ctx, kiel)()).To(Equal("3/3"), "sh-kiel holds all three copies")
			g.Eventually(s.status(ctx, kiel)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseProtected))
			g.Eventually(func() (*replica, error) { return leader(ctx, site) }).Should(Equal(next), "the replica that took over still leads")
			for _, at := range []*testenv.Site{kiel, schwerin} {
				g.Expect(s.status(ctx, at)()).To(HaveField("Status.LastFailover", BeNil()), "no failover at %s", at.Name)
			}
			inv.check(t)
		})
	}
}
