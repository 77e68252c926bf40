package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// setEgress sets the egress policy of sh-kiel's ReplicationPeer for mv-schwerin.
func setEgress(ctx context.Context, g Gomega, egress *deichv1alpha1.EgressPolicy) {
	g.Eventually(func() error {
		p := &deichv1alpha1.ReplicationPeer{}
		if err := kiel.Client.Get(ctx, client.ObjectKey{Name: testenv.SiteSchwerin}, p); err != nil {
			return err
		}
		p.Spec.Egress = egress
		return kiel.Client.Update(ctx, p)
	}).Should(Succeed())
}

// atPeer reports whether schwerin's API server holds obj's copy.
func atPeer(ctx context.Context, obj client.Object) func() (bool, error) {
	return func() (bool, error) {
		got := obj.DeepCopyObject().(client.Object)
		err := schwerin.Client.Get(ctx, client.ObjectKeyFromObject(obj), got)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
}

// expectInventoryMatches waits until site's inventory of its partner says for ns what the
// partner's API server holds of site's objects.
func expectInventoryMatches(ctx context.Context, g Gomega, site, partner *testenv.Site, ns string) {
	g.Eventually(func(g Gomega) {
		held, err := testenv.HeldAt(ctx, partner, site.Name, ns)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(testenv.InventoryOf(ctx, site, partner.Name, ns)).To(Equal(held))
	}).Should(Succeed())
}

func withdrawals(rule string) float64 {
	return testutil.ToFloat64(metrics.EgressWithdrawals.WithLabelValues(testenv.SiteSchwerin, rule))
}

func denials(rule string) float64 {
	return testutil.ToFloat64(metrics.EgressDenials.WithLabelValues(testenv.SiteSchwerin, rule))
}

// TestEgressPolicyKeepsWhatItDeniesAndWithdrawsIt tightens the egress policy of sh-kiel's
// ReplicationPeer for mv-schwerin rule by rule, and checks at mv-schwerin's API server that
// exactly the denied copies go and that nothing denied is written there, with the condition,
// the events and the metrics; then loosens it and checks that everything is sent again.
func TestEgressPolicyKeepsWhatItDeniesAndWithdrawsIt(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	t.Cleanup(func() { setEgress(ctx, newG(t), nil) })
	const ns = "egress-rules"
	createNamespace(ctx, t, g, kiel, ns)
	om := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}}
	}
	settings := &corev1.ConfigMap{ObjectMeta: om("settings"), Data: map[string]string{"greeting": "Moin"}}
	akte := &corev1.ConfigMap{ObjectMeta: om("akte"), Data: map[string]string{"az": "4711"}}
	secret := &corev1.Secret{ObjectMeta: om("db"), StringData: map[string]string{"password": "geheim"}}
	web := &corev1.Service{ObjectMeta: om("web"), Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	all := []client.Object{settings, akte, secret, web}
	for _, o := range all {
		g.Expect(kiel.Client.Create(ctx, o)).To(Succeed())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Resources(
		deichv1alpha1.ResourceKind{Kind: "ConfigMap"}, deichv1alpha1.ResourceKind{Kind: "Secret"}, deichv1alpha1.ResourceKind{Kind: "Service"},
	).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)))
	for _, o := range all {
		g.Eventually(atPeer(ctx, o)).Should(BeTrue(), "%s mirrored before any policy", o.GetName())
	}
	expectInventoryMatches(ctx, g, kiel, schwerin, ns)
	g.Expect(testenv.InventoryOf(ctx, kiel, testenv.SiteSchwerin, ns)).To(Equal("ConfigMap=2,Secret=1,Service=1,SharedService=1 secrets:db"))
	synced := func() *metav1.Condition {
		s := &deichv1alpha1.SharedService{}
		if err := kiel.Client.Get(ctx, client.ObjectKeyFromObject(svc), s); err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
	}
	egress := &deichv1alpha1.EgressPolicy{}

	t.Run("Secrets denied: the Secret's copy is withdrawn, and a new Secret is never sent", func(t *testing.T) {
		g := newG(t)
		before := withdrawals(render.EgressRuleSecrets)
		egress.Secrets = deichv1alpha1.SecretsDeny
		setEgress(ctx, g, egress.DeepCopy())
		g.Eventually(atPeer(ctx, secret)).Should(BeFalse())
		g.Eventually(synced).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", deichv1alpha1.ServiceReasonEgressDenied),
			HaveField("Message", ContainSubstring("Secret egress-rules/db may not leave for mv-schwerin: egress.secrets is Deny")),
		))
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseDegraded)))
		g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "SharedService", svc.Name) }).
			Should(ContainElements(deichv1alpha1.ServiceEventEgressDenied, deichv1alpha1.ServiceEventEgressWithdrawn))
		g.Expect(withdrawals(render.EgressRuleSecrets)).To(BeNumerically(">", before))
		g.Expect(denials(render.EgressRuleSecrets)).To(BeNumerically(">", 0))

		second := &corev1.Secret{ObjectMeta: om("api-token"), StringData: map[string]string{"token": "t"}}
		g.Expect(kiel.Client.Create(ctx, second)).To(Succeed())
		g.Consistently(atPeer(ctx, second)).WithTimeout(3 * time.Second).Should(BeFalse())
		for _, o := range []client.Object{settings, akte, web} {
			g.Expect(atPeer(ctx, o)()).To(BeTrue(), "%s is still mirrored", o.GetName())
		}
		expectInventoryMatches(ctx, g, kiel, schwerin, ns)
		g.Expect(testenv.InventoryOf(ctx, kiel, testenv.SiteSchwerin, ns)).To(Equal("ConfigMap=2,Service=1,SharedService=1 secrets:"), "the withdrawn Secret is gone from the inventory")
		g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "ReplicationPeer", testenv.SiteSchwerin) }).
			Should(ContainElement(deichv1alpha1.PeerEventInventoryChanged))
	})

	t.Run("kinds allowed: the Service's copy is withdrawn", func(t *testing.T) {
		g := newG(t)
		egress.Kinds = []deichv1alpha1.ResourceKind{{Kind: "ConfigMap"}, {Kind: "Secret"}}
		setEgress(ctx, g, egress.DeepCopy())
		g.Eventually(atPeer(ctx, web)).Should(BeFalse())
		g.Eventually(synced).Should(HaveField("Message", ContainSubstring("Service egress-rules/web may not leave for mv-schwerin: kind Service is not in egress.kinds")))
		g.Expect(atPeer(ctx, settings)()).To(BeTrue())
		g.Expect(atPeer(ctx, akte)()).To(BeTrue())
		expectInventoryMatches(ctx, g, kiel, schwerin, ns)
	})

	t.Run("a classification denied: the ConfigMap labelled with it is withdrawn", func(t *testing.T) {
		g := newG(t)
		egress.DeniedClassifications = []string{"vs-nfd"}
		setEgress(ctx, g, egress.DeepCopy())
		g.Consistently(atPeer(ctx, akte)).WithTimeout(2*time.Second).Should(BeTrue(), "not classified yet")
		g.Eventually(func() error {
			cm := &corev1.ConfigMap{}
			if err := kiel.Client.Get(ctx, client.ObjectKeyFromObject(akte), cm); err != nil {
				return err
			}
			cm.Labels[deichv1alpha1.LabelClassification] = "vs-nfd"
			return kiel.Client.Update(ctx, cm)
		}).Should(Succeed())
		g.Eventually(atPeer(ctx, akte)).Should(BeFalse())
		g.Eventually(synced).Should(HaveField("Message", ContainSubstring("ConfigMap egress-rules/akte may not leave for mv-schwerin: its classification vs-nfd is in egress.deniedClassifications")))
		g.Expect(atPeer(ctx, settings)()).To(BeTrue())
	})

	t.Run("the namespace not allowed: nothing of the service stays at the peer", func(t *testing.T) {
		g := newG(t)
		egress.Namespaces = []string{"steuer"}
		setEgress(ctx, g, egress.DeepCopy())
		g.Eventually(atPeer(ctx, settings)).Should(BeFalse())
		g.Eventually(atPeer(ctx, svc)).Should(BeFalse(), "the SharedService itself is withdrawn")
		g.Eventually(synced).Should(And(
			HaveField("Reason", deichv1alpha1.ServiceReasonEgressDenied),
			HaveField("Message", ContainSubstring("namespace egress-rules is not in egress.namespaces")),
		))
		expectInventoryMatches(ctx, g, kiel, schwerin, ns)
		g.Expect(testenv.InventoryOf(ctx, kiel, testenv.SiteSchwerin, ns)).To(Equal(" secrets:"), "nothing of the namespace is held at the peer")
	})

	t.Run("the policy lifted: everything is sent again", func(t *testing.T) {
		g := newG(t)
		setEgress(ctx, g, nil)
		for _, o := range all {
			g.Eventually(atPeer(ctx, o)).Should(BeTrue(), "%s sent again", o.GetName())
		}
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)))
		expectInventoryMatches(ctx, g, kiel, schwerin, ns)
		g.Expect(testenv.InventoryOf(ctx, kiel, testenv.SiteSchwerin, ns)).To(Equal("ConfigMap=2,Secret=2,Service=1,SharedService=1 secrets:api-token,db"))
	})
}
