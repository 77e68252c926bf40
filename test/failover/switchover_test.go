package failover

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/controllers"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// darkKiel is sh-kiel's service endpoint as mv-schwerin reaches it, across the link, and a
// way to take the whole site away at one instant: its manager stopped, every link cut.
type darkKiel struct {
	service *testenv.Proxy
	check   deichv1alpha1.HealthCheck
}

func newDarkKiel(t *testing.T, g Gomega) *darkKiel {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	p, err := testenv.NewProxy(srv.Listener.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = p.Close() })
	return &darkKiel{service: p, check: deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: "http://" + p.Addr() + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	}}
}

// lose takes sh-kiel away; the returned function brings it back (idempotent, also run at
// cleanup).
func (d *darkKiel) lose(t *testing.T, g Gomega) func() {
	t.Helper()
	g.Expect(stopManager(kiel)).To(Succeed())
	toKiel.Cut()
	d.service.Cut()
	back := false
	bringBack := func() {
		if back {
			return
		}
		back = true
		toKiel.Restore()
		d.service.Restore()
		_ = startManager(kiel)
	}
	t.Cleanup(bringBack)
	return bringBack
}

func switchover(ctx context.Context, site *testenv.Site, ns, name string) func() (*deichv1alpha1.Switchover, error) {
	return func() (*deichv1alpha1.Switchover, error) {
		sw := &deichv1alpha1.Switchover{}
		return sw, site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sw)
	}
}

func TestManualModeRecommendsAndASwitchoverPromotes(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	dark := newDarkKiel(t, g)
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second).
		RPO(time.Minute).Mode(deichv1alpha1.FailoverManual)
	s := setUp(ctx, t, g, "failover-manual", objective, dark.check)
	dark.lose(t, g)

	g.Eventually(s.readyReason(ctx, schwerin)).Should(Equal(deichv1alpha1.ServiceReasonFailoverRecommended))
	g.Eventually(s.events(ctx, schwerin)).Should(ContainElement(deichv1alpha1.ServiceEventFailoverRecommended))
	// Well past the lease's expiry: Manual mode never promotes on its own.
	g.Consistently(s.replicas(ctx, schwerin), 10*time.Second, 100*time.Millisecond).Should(BeEquivalentTo(0))
	g.Expect(s.status(ctx, schwerin)()).To(HaveField("Status.Lease.Holder", testenv.SiteKiel))

	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "failover-to-schwerin"},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: s.name, TargetSite: testenv.SiteSchwerin, Reason: "INC-0815: Kiel data centre dark"},
	}
	g.Expect(schwerin.Client.Create(ctx, sw)).To(Succeed())
	s.servingSince(ctx, g, schwerin, time.Minute)
	g.Eventually(switchover(ctx, schwerin, s.ns, sw.Name)).Should(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded))
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.Reason", ContainSubstring(sw.Name))))
}

func TestAutomaticFailbackAfterTheStabilizationWindow(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	dark := newDarkKiel(t, g)
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second)
	objective.Spec.Failback = deichv1alpha1.FailbackAutomatic
	objective.Spec.FailbackStabilizationWindow = metav1.Duration{Duration: time.Minute}
	s := setUp(ctx, t, g, "failover-failback", objective, dark.check)

	bringBack := dark.lose(t, g)
	s.servingSince(ctx, g, schwerin, time.Minute)
	bringBack()
	g.Eventually(s.replicas(ctx, kiel)).Should(BeEquivalentTo(0), "sh-kiel returns fenced")
	inv := watchInvariant(ctx, s)
	g.Eventually(s.status(ctx, kiel)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected)))
	readySince := time.Now()

	// After the window, sh-kiel asks for the service back with a Switchover of its own.
	var list deichv1alpha1.SwitchoverList
	g.Eventually(func() ([]deichv1alpha1.Switchover, error) {
		err := kiel.Client.List(ctx, &list, client.InNamespace(s.ns), client.MatchingLabels{controllers.LabelAutomaticFailback: "true"})
		return list.Items, err
	}, 2*time.Minute).Should(HaveLen(1))
	g.Expect(time.Since(readySince)).To(BeNumerically(">=", 50*time.Second), "not before the stabilization window")
	s.servingSince(ctx, g, kiel, time.Minute)
	g.Eventually(switchover(ctx, kiel, s.ns, list.Items[0].Name)).Should(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded))
	g.Eventually(s.replicas(ctx, schwerin)).Should(BeEquivalentTo(0))
	g.Eventually(s.status(ctx, kiel)).Should(HaveField("Status.Lease.Holder", testenv.SiteKiel))
	g.Eventually(s.events(ctx, kiel)).Should(ContainElement(deichv1alpha1.ServiceEventFailbackStarted))
	inv.check(t)
}
