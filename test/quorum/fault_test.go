package quorum

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// The fault matrix of DESIGN.md, "With a witness": any one site or any one link can be lost
// without stopping a healthy active, and losing the active moves the service to the standby
// with a higher epoch. Each test gets a fresh service, makes one fault, heals it, and runs the
// invariant checker from before the fault until the end.

// TestActiveKeepsServingWhenTheStandbySiteIsLost: mv-schwerin's data centre goes dark. sh-kiel
// keeps its own copy of the lease and the witness's, two of three, and serves throughout; in
// two-site mode the lease lived at mv-schwerin and sh-kiel would have fenced.
func TestActiveKeepsServingWhenTheStandbySiteIsLost(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-standby-lost")
	inv := watchInvariant(ctx, s, kiel)

	bringBack := loseSite(t, schwerin)
	g.Consistently(s.keepsServing(ctx, kiel), window).Should(Succeed(), "sh-kiel serves while mv-schwerin is lost")
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(leaseDuration).Should(Equal("2/3"), "sh-kiel holds its own copy and the witness's")
	g.Expect(s.status(ctx, kiel)()).To(And(
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.Lease.Holder", testenv.SiteKiel),
		HaveField("Status.LastFailover", BeNil())))

	g.Expect(bringBack()).To(Succeed())
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel renews its copy at mv-schwerin again once the site is back")
	g.Eventually(s.staysStandby(ctx, schwerin)).Should(Succeed(), "mv-schwerin comes back as the standby")
	inv.check(t)
}

// TestActiveKeepsServingWhenTheWitnessIsCutOff: both links to hh-hamburg are cut. sh-kiel
// keeps both partners' copies and serves throughout; mv-schwerin, whose checks of sh-kiel
// pass, does not move the service.
func TestActiveKeepsServingWhenTheWitnessIsCutOff(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-witness-cut")
	inv := watchInvariant(ctx, s, kiel)

	restore := cut(t, testenv.SiteHamburg, testenv.SiteKiel, testenv.SiteSchwerin)
	g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), window).Should(Succeed(), "sh-kiel serves and mv-schwerin stands by while the witness is cut off")
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(leaseDuration).Should(Equal("2/3"), "sh-kiel holds both partners' copies")
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Expect(s.status(ctx, site)()).To(And(
			HaveField("Status.Lease.Holder", testenv.SiteKiel),
			HaveField("Status.LastFailover", BeNil())), "no failover seen at %s", site.Name)
	}

	restore()
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel renews the witness's copy again once it is reachable")
	g.Expect(s.staysStandby(ctx, schwerin)()).To(Succeed())
	inv.check(t)
}

// TestStandbyCannotPromoteWhenOnlyThePartnersAreCutApart: the link between sh-kiel and
// mv-schwerin is cut while both live and both reach the witness. mv-schwerin's checks of
// sh-kiel fail, so only the lease keeps it from promoting: sh-kiel goes on renewing its own
// copy and the witness's, and mv-schwerin can hold no more than its own. sh-kiel serves
// throughout, and mv-schwerin's copies stay in standby form from the cut through detection
// and two lease durations (plus the clock-skew margins) past it, and after the link heals.
func TestStandbyCannotPromoteWhenOnlyThePartnersAreCutApart(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-partners-cut")
	inv := watchInvariant(ctx, s, kiel)

	cutAt := time.Now()
	restore := cut(t, testenv.SiteKiel, testenv.SiteSchwerin)
	// A read through the cut link fails only after the client's retries, so detection may
	// take longer than failureThreshold probe intervals; the watch starts from it.
	g.Eventually(s.checkFailures(ctx, schwerin)).WithTimeout(rto).Should(BeNumerically(">=", failureThreshold),
		"mv-schwerin's checks of sh-kiel fail across the cut link")
	detected := time.Now()
	t.Logf("mv-schwerin's checks of sh-kiel failed %d times %s after the cut", failureThreshold, detected.Sub(cutAt).Round(time.Millisecond))
	g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), 2*leaseDuration+2*maxClockSkew).Should(Succeed(), "sh-kiel serves and mv-schwerin does not promote while the partners are cut apart")
	g.Expect(s.form(ctx, schwerin, configMapGVK, "settings")()).To(Equal(formStandby), "mv-schwerin's ConfigMap copy stays in standby form")
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(leaseDuration).Should(Equal("2/3"), "sh-kiel holds its own copy and the witness's")
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.LastFailover", BeNil()), "mv-schwerin never started a failover")
	t.Logf("partners cut apart for %s, %s of it with mv-schwerin's checks of sh-kiel failing, without a promotion",
		time.Since(cutAt).Round(time.Millisecond), time.Since(detected).Round(time.Millisecond))

	restore()
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel holds mv-schwerin's copy again once the link heals")
	g.Eventually(s.checkFailures(ctx, schwerin)).Should(BeZero(), "mv-schwerin's checks of sh-kiel pass again")
	g.Consistently(s.staysStandby(ctx, schwerin), leaseDuration).Should(Succeed(), "mv-schwerin still stands by after the link healed")
	inv.check(t)
}

// TestStandbyPromotesWithAHigherEpochWhenTheActiveIsCutOff: sh-kiel, alive, is cut off from
// both mv-schwerin and the witness. It can hold only its own copy and fences; mv-schwerin and
// the witness make a majority and mv-schwerin promotes within the RTO, under a higher epoch that
// it stamps on the promoted objects. When the links heal, sh-kiel stays fenced and becomes the
// standby; the two never serve at once.
func TestStandbyPromotesWithAHigherEpochWhenTheActiveIsCutOff(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-active-cut")
	var before int64
	for _, site := range []*testenv.Site{kiel, schwerin} {
		e, err := s.epoch(ctx, site)()
		g.Expect(err).NotTo(HaveOccurred())
		before = max(before, e)
	}
	inv := watchInvariant(ctx, s)

	cutAt := time.Now()
	restore := cut(t, testenv.SiteKiel, testenv.SiteSchwerin, testenv.SiteHamburg)
	seen := s.firstSeen(ctx, g, rto+leaseDuration, map[*testenv.Site]form{kiel: formStandby, schwerin: formActive})
	fenced, served := seen[kiel.Name], seen[schwerin.Name]
	recovery := served.Sub(cutAt)
	t.Logf("sh-kiel cut off; it fenced after %s, mv-schwerin served after %s (RTO %s)",
		fenced.Sub(cutAt).Round(time.Millisecond), recovery.Round(time.Millisecond), rto)
	g.Expect(fenced.Sub(cutAt)).To(BeNumerically("<=", leaseDuration), "sh-kiel, alone with its own copy, fences within a lease duration")
	g.Expect(fenced).To(BeTemporally("<", served), "sh-kiel fenced before mv-schwerin promoted")
	g.Expect(recovery).To(BeNumerically("<=", rto), "mv-schwerin serves within the RTO")
	g.Eventually(s.status(ctx, kiel)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseFenced), "sh-kiel, cut off, reports itself fenced")

	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.Quorum", "2/3"),
		HaveField("Status.LastFailover.From", testenv.SiteKiel),
		HaveField("Status.LastFailover.To", testenv.SiteSchwerin)))
	g.Eventually(s.epoch(ctx, schwerin)).Should(BeNumerically(">", before), "the promotion raised the epoch from %d", before)
	epoch, err := s.epoch(ctx, schwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("epoch %d before the cut, %d after the promotion", before, epoch)
	g.Eventually(s.annotation(ctx, schwerin, deploymentGVK, "web", failover.EpochAnnotation)).WithTimeout(5*time.Second).Should(Equal(strconv.FormatInt(epoch, 10)),
		"the promoted Deployment web at mv-schwerin carries the epoch")
	g.Expect(s.annotation(ctx, schwerin, configMapGVK, "settings", render.AnnotationActivePatch)()).To(Equal("{}"),
		"the ConfigMap settings, the same in both forms, serves at mv-schwerin as it is")
	g.Expect(s.annotation(ctx, schwerin, configMapGVK, "settings", failover.EpochAnnotation)()).To(BeEmpty(),
		"the ConfigMap settings, not switched, is not stamped")
	for _, arbiter := range []string{testenv.SiteSchwerin, testenv.SiteHamburg} {
		g.Expect(s.leaseCopy(ctx, arbiter)()).To(And(
			HaveField("Holder", testenv.SiteSchwerin),
			HaveField("Epoch", epoch)), "the copy of the lease at %s", arbiter)
	}

	// sh-kiel gives up the claim it lost once it is back; nothing it does then may touch what
	// mv-schwerin serves.
	g.Expect(s.keepsServing(ctx, schwerin)()).To(Succeed())
	inv.mustServeFrom(schwerin)
	restore()
	g.Eventually(s.status(ctx, kiel)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin)), "sh-kiel comes back as the standby")
	g.Eventually(s.epoch(ctx, kiel)).Should(Equal(epoch), "sh-kiel sees the new epoch")
	g.Eventually(s.sourceSite(ctx, kiel)).Should(Equal(testenv.SiteSchwerin), "mirroring flows from mv-schwerin to sh-kiel")
	g.Consistently(s.staysStandby(ctx, kiel), leaseDuration).Should(Succeed(), "sh-kiel stays fenced")
	g.Expect(s.keepsServing(ctx, schwerin)()).To(Succeed())
	g.Eventually(s.quorum(ctx, schwerin)).Should(Equal("3/3"), "mv-schwerin takes sh-kiel's copy too once sh-kiel is back")
	inv.check(t)
}

// TestPromotionThatCannotReachTheWitnessYetCompletesOnceItCan: sh-kiel is cut off from both
// other sites while mv-schwerin cannot reach the witness either. mv-schwerin's checks of
// sh-kiel fail and it starts promoting: it writes its own cluster's copy, but without the
// witness's it holds no majority, and nobody serves. Its promotion must go on standing on
// those failing checks — its own copy naming it does not make it the site the checks judge —
// so that once its link to the witness heals it takes the witness's copy and serves, with
// one failover recorded.
func TestPromotionThatCannotReachTheWitnessYetCompletesOnceItCan(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-promotion-waits")
	inv := watchInvariant(ctx, s)

	cut(t, testenv.SiteKiel, testenv.SiteSchwerin, testenv.SiteHamburg)
	restoreWitness := cut(t, testenv.SiteSchwerin, testenv.SiteHamburg)
	g.Eventually(s.form(ctx, kiel, deploymentGVK, "web")).WithTimeout(2*leaseDuration).Should(Equal(formStandby), "sh-kiel, alone with its own copy, fences")
	g.Eventually(s.leaseCopy(ctx, testenv.SiteSchwerin)).WithTimeout(rto).Should(HaveField("Holder", testenv.SiteSchwerin),
		"mv-schwerin starts promoting: its own cluster's copy names it")
	g.Consistently(s.staysStandby(ctx, schwerin), 2*leaseDuration).Should(Succeed(),
		"without the witness's copy mv-schwerin holds no majority and does not serve")
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.ActiveSite", testenv.SiteKiel),
		"mv-schwerin does not call itself active before it serves")

	restoreWitness()
	healedAt := time.Now()
	g.Eventually(s.keepsServing(ctx, schwerin)).WithTimeout(2*leaseDuration).Should(Succeed(),
		"mv-schwerin takes the witness's copy and serves once it can reach it")
	t.Logf("mv-schwerin served %s after its link to the witness healed", time.Since(healedAt).Round(time.Millisecond))
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Quorum", "2/3"),
		HaveField("Status.FailoverHistory", HaveLen(1))), "mv-schwerin records one failover")
	inv.check(t)
}
