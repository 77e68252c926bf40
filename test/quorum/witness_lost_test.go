package quorum

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// TestActiveKeepsServingWhenTheWitnessIsLost: hh-hamburg's API server stops. sh-kiel keeps
// both partners' copies and serves throughout; both partners report the witness as not
// ready, since a second fault would now stop the service, and return to a usable witness and
// QUORUM 3/3 once it is back.
func TestActiveKeepsServingWhenTheWitnessIsLost(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "quorum-witness-lost")
	inv := watchInvariant(ctx, s, kiel)

	bringBack := loseWitness(t)

	g.Consistently(s.servesAndStandsBy(ctx, kiel, schwerin), window).Should(Succeed(), "sh-kiel serves and mv-schwerin stands by while the witness is lost")
	g.Eventually(s.quorum(ctx, kiel)).WithTimeout(leaseDuration).Should(Equal("2/3"), "sh-kiel holds both partners' copies")
	g.Eventually(s.quorumReason(ctx, kiel)).Should(Equal(deichv1alpha1.ServiceReasonWitnessNotReady),
		"sh-kiel says that a second fault would stop the service")
	g.Expect(s.status(ctx, kiel)()).To(HaveField("Status.LastFailover", BeNil()))

	g.Expect(bringBack()).To(Succeed())
	g.Eventually(s.quorum(ctx, kiel)).Should(Equal("3/3"), "sh-kiel renews the witness's copy again once it is back")
	g.Eventually(s.quorumReason(ctx, kiel)).ShouldNot(Equal(deichv1alpha1.ServiceReasonWitnessNotReady))
	g.Expect(s.staysStandby(ctx, schwerin)()).To(Succeed())
	inv.check(t)
}

// quorumReason reads the reason of the Quorum condition at site.
func (s service) quorumReason(ctx context.Context, site *testenv.Site) func() (string, error) {
	return func() (string, error) {
		svc, err := s.status(ctx, site)()
		if err != nil {
			return "", err
		}
		if c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionQuorum); c != nil {
			return c.Reason, nil
		}
		return "", nil
	}
}
