package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

var partOfBuergerkonto = map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}

func syncedCondition(ctx context.Context, site *testenv.Site, ns, name string) func() *metav1.Condition {
	return func() *metav1.Condition {
		s, err := serviceStatus(ctx, site, ns, name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
	}
}

// settingsVersion reads key "v" of the ConfigMap "settings" at site.
func settingsVersion(ctx context.Context, site *testenv.Site, ns string) func() string {
	return func() string {
		cm := &corev1.ConfigMap{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "settings"}, cm); err != nil {
			return "<" + err.Error() + ">"
		}
		return cm.Data["v"]
	}
}

func TestSharedServiceAppliesSiteAndRoleOverrides(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-overrides"
	createNamespace(ctx, t, g, kiel, ns)
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: partOfBuergerkonto},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "buergerkonto.sh.example.de"}}}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}, Data: map[string]string{"mode": "primary"}}
	g.Expect(kiel.Client.Create(ctx, ing)).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())

	svc := testobjects.MakeSharedService("buergerkonto", ns).Resources(
		deichv1alpha1.ResourceKind{Kind: "ConfigMap"},
		deichv1alpha1.ResourceKind{Group: "networking.k8s.io", Kind: "Ingress"},
	).Obj()
	svc.Spec.Overrides = []deichv1alpha1.Override{
		{Site: testenv.SiteSchwerin, Patches: []deichv1alpha1.Patch{{
			// A strategic-merge patch naming its object.
			Patch: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: web\nspec:\n  rules:\n  - host: buergerkonto.mv.example.de\n",
		}, {
			// A JSON 6902 patch selected by label.
			Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap", LabelSelector: "app.kubernetes.io/part-of=buergerkonto"},
			Patch:  `[{"op": "add", "path": "/data/region", "value": "mv"}]`,
		}}},
		{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{{
			Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap", Name: "settings"},
			Patch:  `[{"op": "replace", "path": "/data/mode", "value": "replica"}]`,
		}, {
			Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
			Patch:  "metadata:\n  name: settings\ndata:\n  readOnly: \"true\"\n",
		}}},
		{Role: deichv1alpha1.RoleActive, Patches: []deichv1alpha1.Patch{{
			Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
			Patch:  `[{"op": "add", "path": "/data/active", "value": "yes"}]`,
		}}},
	}
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	got := &networkingv1.Ingress{}
	g.Eventually(func() string {
		if err := schwerin.Client.Get(ctx, client.ObjectKeyFromObject(ing), got); err != nil || len(got.Spec.Rules) == 0 {
			return ""
		}
		return got.Spec.Rules[0].Host
	}).Should(Equal("buergerkonto.mv.example.de"), "the site override (strategic merge) gives the standby its own hostname")
	gotCM := &corev1.ConfigMap{}
	g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), gotCM) }).Should(Succeed())
	g.Expect(gotCM.Data).To(Equal(map[string]string{"mode": "replica", "region": "mv", "readOnly": "true"}),
		"site and role overrides (JSON 6902 and strategic merge) apply in order; the Active override does not")
}

func TestSharedServiceCatchesUpAfterThePeerWasDown(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-peerdown"
	createNamespace(ctx, t, g, kiel, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(settingsVersion(ctx, schwerin, ns)).Should(Equal("1"))

	g.Expect(schwerin.StopAPIServer()).To(Succeed())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = schwerin.StartAPIServer()
		}
	})
	g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
	cm.Data["v"] = "2"
	g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
	g.Eventually(syncedCondition(ctx, kiel, ns, svc.Name)).Should(And(Not(BeNil()),
		HaveField("Status", Equal(metav1.ConditionFalse))), "an unreachable standby is reported")
	// The lease lives at the standby's cluster: a primary that cannot renew it for
	// leaseDuration minus the clock skew fences itself.
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseFenced)))

	g.Expect(schwerin.StartAPIServer()).To(Succeed())
	restarted = true
	g.Eventually(settingsVersion(ctx, schwerin, ns), time.Minute).Should(Equal("2"), "the change made while the standby was down arrives")
	g.Eventually(syncedCondition(ctx, kiel, ns, svc.Name), time.Minute).Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonSynced))
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
		"the primary renews the lease again and serves")
}

func TestSharedServiceAppliedAtBothSitesConvergesWithoutFighting(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-gitops"
	createNamespace(ctx, t, g, kiel, ns)
	createNamespace(ctx, t, g, schwerin, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())

	// A GitOps tool applies the same manifest at both sites with its own field manager.
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	for _, site := range []*testenv.Site{schwerin, kiel} {
		u := &deichv1alpha1.SharedService{TypeMeta: metav1.TypeMeta{APIVersion: deichv1alpha1.GroupVersion.String(), Kind: "SharedService"},
			ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: ns}, Spec: svc.Spec}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(u)
		g.Expect(err).NotTo(HaveOccurred())
		ac := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj})
		g.Expect(site.Client.Apply(ctx, ac, client.FieldOwner("argocd-controller"))).To(Succeed())
		cleanup(t, site, svc.DeepCopy())
	}
	g.Eventually(settingsVersion(ctx, schwerin, ns)).Should(Equal("1"))
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)))
	g.Eventually(serviceStatus(ctx, schwerin, ns, svc.Name)).Should(And(
		HaveField("Status.Role", Equal(deichv1alpha1.RoleStandby)),
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected))))

	// Re-applying the manifest at the standby changes nothing: no conflict, no generation bump.
	standby, err := serviceStatus(ctx, schwerin, ns, svc.Name)()
	g.Expect(err).NotTo(HaveOccurred())
	gen := standby.Generation
	u := &deichv1alpha1.SharedService{TypeMeta: metav1.TypeMeta{APIVersion: deichv1alpha1.GroupVersion.String(), Kind: "SharedService"},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: ns}, Spec: svc.Spec}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(schwerin.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: obj}), client.FieldOwner("argocd-controller"))).To(Succeed())
	g.Consistently(func() int64 {
		s, _ := serviceStatus(ctx, schwerin, ns, svc.Name)()
		return s.Generation
	}, 3*time.Second).Should(Equal(gen), "Deich and the GitOps tool do not fight over the spec")
}

func TestSharedServiceWithRetainPolicyLeavesItsCopies(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-retain"
	createNamespace(ctx, t, g, kiel, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).DeletionPolicy(deichv1alpha1.DeletionPolicyRetain).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	g.Eventually(settingsVersion(ctx, schwerin, ns)).Should(Equal("1"))
	g.Expect(kiel.Client.Delete(ctx, svc)).To(Succeed())
	g.Eventually(func() error {
		return kiel.Client.Get(ctx, client.ObjectKeyFromObject(svc), &deichv1alpha1.SharedService{})
	}).ShouldNot(Succeed())
	g.Consistently(settingsVersion(ctx, schwerin, ns), 2*time.Second).Should(Equal("1"))
}

func TestSharedServiceInTheManagersNamespaceIsRefused(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	svc := testobjects.MakeSharedService("buergerkonto", managerNamespace).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(syncedCondition(ctx, kiel, managerNamespace, svc.Name)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonResourceNotMirrorable))
	g.Expect(serviceStatus(ctx, kiel, managerNamespace, svc.Name)()).To(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseError)))
}
