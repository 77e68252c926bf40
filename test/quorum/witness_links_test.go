package quorum

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/deich-io/deich/internal/testenv"
)

// TestActiveKeepsServingWhenItsLinkToTheWitnessIsCut: only the link between sh-kiel and
// hh-hamburg is cut. sh-kiel keeps its own copy and mv-schwerin's, two of three, and serves
// throughout; mv-schwerin, whose checks of sh-kiel pass, stands by.
func TestActiveKeepsServingWhenItsLinkToTheWitnessIsCut(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-active-witness-cut")
	inv := watchInvariant(ctx, s, kiel)

	restore := cut(t, testenv.SiteKiel, testenv.SiteHamburg)
	g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), window).Should(Succeed(), "sh-kiel serves and mv-schwerin stands by while sh-kiel cannot reach the witness")
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(leaseDuration).Should(Equal("2/3"), "sh-kiel holds its own copy and mv-schwerin's")
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.LastFailover", BeNil()), "mv-schwerin never started a failover")

	restore()
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel renews the witness's copy again once the link heals")
	g.Expect(s.staysStandby(ctx, schwerin)()).To(Succeed())
	inv.check(t)
}

// TestNothingMovesWhenTheStandbysLinkToTheWitnessIsCut: only the link between mv-schwerin and
// hh-hamburg is cut. sh-kiel reaches all three copies and serves throughout at 3/3;
// mv-schwerin stands by.
func TestNothingMovesWhenTheStandbysLinkToTheWitnessIsCut(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-standby-witness-cut")
	inv := watchInvariant(ctx, s, kiel)

	restore := cut(t, testenv.SiteSchwerin, testenv.SiteHamburg)
	g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), window).Should(Succeed(), "sh-kiel serves and mv-schwerin stands by while mv-schwerin cannot reach the witness")
	g.Expect(s.quorum(ctx, kiel)()).To(Equal("3/3"), "sh-kiel still holds all three copies")
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.LastFailover", BeNil()), "mv-schwerin never started a failover")

	restore()
	g.Consistently(s.staysStandby(ctx, schwerin), leaseDuration).Should(Succeed())
	inv.check(t)
}
