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
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// TestFailingChecksDoNotHandOverToAStandbyWithoutAReadyCopy: when the active site's own
// checks fail while the standby's copy is older than the RPO, handing over would leave
// nobody serving with current data; the active keeps serving until the standby's copy is
// current again, and only then hands over.
func TestFailingChecksDoNotHandOverToAStandbyWithoutAReadyCopy(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	var code atomic.Int32
	code.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) }))
	t.Cleanup(srv.Close)
	const rpo = 5 * time.Second
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 30*time.Second).RPO(rpo).RTO(time.Minute)
	s := setUp(ctx, t, g, "failover-handover-refused", objective, deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: srv.URL + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	})
	inv := watchInvariant(ctx, s)

	// mv-schwerin's API server refuses every write of the copies in the service's
	// namespace, so its copy ages past the RPO while the lease still works.
	unblock := s.ageCopyPastRPO(ctx, t, g, kiel, rpo)

	code.Store(http.StatusInternalServerError)
	// Two failed checks a second apart would hand over within a few seconds; the active
	// keeps serving instead.
	g.Consistently(func(g Gomega) {
		g.Expect(s.replicas(ctx, kiel)()).To(BeEquivalentTo(sourceReplicas))
		g.Expect(s.events(ctx, kiel)()).NotTo(ContainElement(deichv1alpha1.ServiceEventHandedOver))
	}, 10*time.Second, 250*time.Millisecond).Should(Succeed(), "sh-kiel handed over to a standby without a ready copy")
	svc, err := s.status(ctx, kiel)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(svc.Status.Lease.Holder).To(Equal(testenv.SiteKiel))

	// Once the copy is current again, the hand-over goes ahead.
	unblock()
	g.Eventually(s.replicas(ctx, schwerin), 90*time.Second).Should(BeEquivalentTo(sourceReplicas))
	g.Eventually(s.events(ctx, kiel)).Should(ContainElement(deichv1alpha1.ServiceEventHandedOver))
	g.Eventually(s.replicas(ctx, kiel)).Should(BeEquivalentTo(0))
	inv.check(t)
}
