package failover

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: s.ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "copies refused for this test"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: s.ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        s.ns,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{corev1.LabelMetadataName: s.ns}}},
		},
	}
	g.Expect(schwerin.Client.Create(ctx, policy)).To(Succeed())
	g.Expect(schwerin.Client.Create(ctx, binding)).To(Succeed())
	unblock := func() {
		_ = schwerin.Client.Delete(context.Background(), binding)
		_ = schwerin.Client.Delete(context.Background(), policy)
	}
	t.Cleanup(unblock)
	// Change the source so that the copy must change, which the policy refuses. The policy
	// takes effect once the API server has loaded it, so keep changing until a sync fails.
	g.Eventually(func(g Gomega) {
		cm := &corev1.ConfigMap{}
		g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "settings"}, cm)).To(Succeed())
		cm.Data["v"] = time.Now().Format(time.RFC3339Nano)
		g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
		svc, err := s.status(ctx, kiel)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(svc.Status.ReplicationLag).NotTo(BeNil())
		g.Expect(svc.Status.ReplicationLag.Duration).To(BeNumerically(">", rpo))
	}, time.Minute, time.Second).Should(Succeed(), "mv-schwerin's copy never aged past the RPO")

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
