package quorum

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/testenv"
)

// TestWitnessRemovedAndAddedUnderACutLink changes the arbiters of a service that sh-kiel
// serves, each time while a link the change needs is cut, and checks that sh-kiel serves
// throughout and mv-schwerin never promotes.
//
// The witness is removed while the partners are cut apart, once sh-kiel's copy at
// mv-schwerin's cluster has expired: sh-kiel holds no majority of the new configuration, whose
// only arbiter is that cluster, so it keeps serving on the old configuration's majority (its
// own copy and the witness's) and moves to two-site mode once the link heals. The witness is then added back while sh-kiel cannot reach it: sh-kiel
// holds its own copy and mv-schwerin's, a majority of both configurations, so the change
// completes at once and the witness's copy follows when that link heals.
func TestWitnessRemovedAndAddedUnderACutLink(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-witness-change")
	inv := watchInvariant(ctx, s, kiel)
	twoSite := failover.TwoSiteConfig(testenv.SiteSchwerin)
	servesAndStandsBy := s.servesAndStandsBy(ctx, kiel, schwerin)

	restore := cut(t, testenv.SiteKiel, testenv.SiteSchwerin)
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(2*leaseDuration).Should(Equal("2/3"),
		"sh-kiel's copy at mv-schwerin's cluster expires by its clock")
	s.setWitness(ctx, g, "")
	g.Consistently(servesAndStandsBy, window).Should(Succeed(),
		"sh-kiel serves on the old configuration's majority while it cannot reach mv-schwerin's cluster")
	g.Expect(s.leaseCopy(ctx, testenv.SiteHamburg)()).To(And(
		HaveField("Holder", testenv.SiteKiel),
		HaveField("Configs", ContainElement(Equal(arbiters)))), "sh-kiel still renews the witness's copy under the old configuration")

	restore()
	g.Eventually(s.leaseCopy(ctx, testenv.SiteSchwerin)).Should(And(
		HaveField("Holder", testenv.SiteKiel),
		HaveField("Configs", Equal([]failover.Config{twoSite}))), "once the link heals, the claim drops the witness")
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("1/1"), "sh-kiel holds the two-site lease at mv-schwerin's cluster")
	g.Eventually(s.status(ctx, schwerin)).Should(HaveField("Spec.WitnessSite", BeEmpty()), "mv-schwerin's copy of the service names no witness")
	g.Expect(servesAndStandsBy()).To(Succeed())

	restore = cut(t, testenv.SiteKiel, testenv.SiteHamburg)
	s.setWitness(ctx, g, testenv.SiteHamburg)
	g.Eventually(s.leaseCopy(ctx, testenv.SiteKiel)).Should(And(
		HaveField("Holder", testenv.SiteKiel),
		HaveField("Configs", Equal([]failover.Config{arbiters}))), "sh-kiel holds a majority of the three arbiters without the witness")
	g.Eventually(s.leaseCopy(ctx, testenv.SiteSchwerin)).Should(HaveField("Configs", Equal([]failover.Config{arbiters})))
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("2/3"), "sh-kiel holds its own copy and mv-schwerin's")
	g.Consistently(servesAndStandsBy, window).Should(Succeed(), "sh-kiel serves while it cannot reach the witness it was given")

	restore()
	s.expectQuorumLease(ctx, t, testenv.SiteKiel)
	g.Expect(servesAndStandsBy()).To(Succeed())
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.LastFailover", BeNil()), "mv-schwerin never started a failover")
	inv.check(t)
}

// setWitness sets spec.witnessSite of the service at sh-kiel, where it is declared; an empty
// site removes the witness.
func (s service) setWitness(ctx context.Context, g Gomega, site string) {
	svc := &deichv1alpha1.SharedService{}
	g.Expect(kiel.Client.Get(ctx, s.key(), svc)).To(Succeed())
	base := svc.DeepCopy()
	svc.Spec.WitnessSite = site
	g.Expect(kiel.Client.Patch(ctx, svc, client.MergeFrom(base))).To(Succeed(), "set spec.witnessSite to %q at sh-kiel", site)
}
