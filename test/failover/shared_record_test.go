package failover

import (
	"context"
	"fmt"
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

// TestServicesOfOneSharedRecordFailOverOneByOne: two services whose copies of the lease are
// entries of the same shared records. One's checks fail and it hands over to mv-schwerin; the
// other, renewed in the same writes of the same records, stays served at sh-kiel, never
// fenced, and the records hold one entry naming each site.
func TestServicesOfOneSharedRecordFailOverOneByOne(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	const first = "shared-record-a"
	// A second namespace whose service's copies share first's records.
	second := ""
	for i := range 1000 {
		ns := fmt.Sprintf("shared-record-b%d", i)
		if (service{ns: ns, name: "buergerkonto"}).leaseRecord() == (service{ns: first, name: "buergerkonto"}).leaseRecord() {
			second = ns
			break
		}
	}
	g.Expect(second).NotTo(BeEmpty(), "no namespace shares a record with %s", first)

	check := func(code *atomic.Int32) deichv1alpha1.HealthCheck {
		code.Store(http.StatusOK)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) }))
		t.Cleanup(srv.Close)
		return deichv1alpha1.HealthCheck{Name: "kiel-web", Site: testenv.SiteKiel,
			HTTP: &deichv1alpha1.HTTPCheck{URL: srv.URL + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}}}
	}
	var codeA, codeB atomic.Int32
	objective := func() *testobjects.RecoveryObjectiveWrapper {
		return testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(time.Minute)
	}
	a := setUp(ctx, t, g, first, objective(), check(&codeA))
	b := setUp(ctx, t, g, second, objective(), check(&codeB))
	g.Expect(a.leaseRecord()).To(Equal(b.leaseRecord()))
	invA, invB := watchInvariant(ctx, a), watchInvariant(ctx, b)

	codeA.Store(http.StatusInternalServerError)
	served := a.servingSince(ctx, g, schwerin, time.Minute)
	t.Logf("%s handed over; mv-schwerin serves it since %s", a.key(), served.Format("15:04:05.000"))
	g.Eventually(a.events(ctx, kiel)).Should(ContainElement(deichv1alpha1.ServiceEventHandedOver))

	// The other service of the record stays where it is, at every sample, for longer than a
	// lease: its renewals go on in the same records.
	g.Consistently(b.replicas(ctx, kiel), 8*time.Second, 100*time.Millisecond).Should(BeEquivalentTo(sourceReplicas))
	g.Expect(b.status(ctx, kiel)()).To(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Expect(b.events(ctx, kiel)()).NotTo(ContainElement(deichv1alpha1.ServiceEventFenced), "%s was fenced at sh-kiel", b.key())
	g.Expect(b.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))

	// One record, two entries, two holders — at both clusters.
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(func() string { return a.leaseEntry(ctx, g, site).Holder }).Should(Equal(testenv.SiteSchwerin), "%s's copy at %s", a.key(), site.Name)
		g.Expect(b.leaseEntry(ctx, g, site).Holder).To(Equal(testenv.SiteKiel), "%s's copy at %s", b.key(), site.Name)
	}
	invA.check(t)
	invB.check(t)
}
