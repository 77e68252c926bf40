package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// connectSites makes each site a Ready peer of the other and applies the objective
// "buergerdienste" at both, for the duration of the test.
func connectSites(ctx context.Context, t *testing.T, g Gomega) {
	t.Helper()
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		on, other := pair[0], pair[1]
		kubeconfig, err := other.Kubeconfig()
		g.Expect(err).NotTo(HaveOccurred())
		putSecret(ctx, t, on, managerNamespace, "peer-"+other.Name, kubeconfig)
		p := testobjects.MakeReplicationPeer(other.Name).Obj()
		g.Expect(client.IgnoreAlreadyExists(on.Client.Create(ctx, p))).To(Succeed())
		cleanup(t, on, p)
		obj := testobjects.MakeRecoveryObjective("buergerdienste").Obj()
		g.Expect(client.IgnoreAlreadyExists(on.Client.Create(ctx, obj))).To(Succeed())
		cleanup(t, on, obj)
	}
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		g.Eventually(peerCondition(ctx, pair[0], pair[1].Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))
	}
}

// createNamespace creates ns at site.
func createNamespace(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, ns string) {
	t.Helper()
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	g.Expect(client.IgnoreAlreadyExists(site.Client.Create(ctx, obj))).To(Succeed())
}

// updateService changes the SharedService at site with mutate, reading it afresh and trying
// again when the write conflicts with one of the controller's (finalizer, status).
func updateService(ctx context.Context, g Gomega, site *testenv.Site, key client.ObjectKey, mutate func(*deichv1alpha1.SharedService)) {
	g.Eventually(func() error {
		svc := &deichv1alpha1.SharedService{}
		if err := site.Client.Get(ctx, key, svc); err != nil {
			return err
		}
		mutate(svc)
		return site.Client.Update(ctx, svc)
	}).Should(Succeed())
}

func serviceStatus(ctx context.Context, site *testenv.Site, ns, name string) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		s := &deichv1alpha1.SharedService{}
		return s, site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s)
	}
}

func TestSharedServiceMirrorsItsObjectsToTheStandby(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-basic"
	createNamespace(ctx, t, g, kiel, ns)
	partOf := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOf}, Data: map[string]string{"greeting": "Moin"}}
	unrelated := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}, Data: map[string]string{"x": "y"}}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: partOf},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example.de/buergerkonto:1.0"}}},
			},
		},
	}
	for _, o := range []client.Object{cm, unrelated, deploy} {
		g.Expect(kiel.Client.Create(ctx, o)).To(Succeed())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	// The copies appear at the standby, stripped, in standby form and with provenance.
	gotCM := &corev1.ConfigMap{}
	g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), gotCM) }).Should(Succeed())
	g.Expect(gotCM.Data).To(Equal(cm.Data))
	g.Expect(gotCM.Labels).To(HaveKeyWithValue(render.LabelSourceSite, testenv.SiteKiel))
	g.Expect(gotCM.Labels).To(HaveKeyWithValue(render.LabelSharedService, "buergerkonto"))
	g.Expect(gotCM.Annotations).To(HaveKey(render.AnnotationContentHash))
	g.Expect(gotCM.UID).NotTo(Equal(cm.UID))

	gotDeploy := &appsv1.Deployment{}
	g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(deploy), gotDeploy) }).Should(Succeed())
	g.Expect(gotDeploy.Spec.Replicas).To(HaveValue(BeEquivalentTo(0)), "a Cold standby runs no replicas")
	g.Expect(gotDeploy.Annotations).To(HaveKeyWithValue(render.AnnotationSourceReplicas, "3"))

	g.Expect(apierrors.IsNotFound(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(unrelated), &corev1.ConfigMap{}))).
		To(BeTrue(), "an object the selector does not select must not be mirrored")

	// Status at the active site, and the service itself known at the standby.
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
		HaveField("Status.Role", Equal(deichv1alpha1.RoleActive)),
		HaveField("Status.ActiveSite", Equal(testenv.SiteKiel)),
		HaveField("Status.MirroredResources.Count", BeEquivalentTo(2)),
		HaveField("Status.LastSyncTime", Not(BeNil())),
	))
	g.Eventually(serviceStatus(ctx, schwerin, ns, svc.Name)).Should(And(
		HaveField("Status.Role", Equal(deichv1alpha1.RoleStandby)),
		HaveField("Status.ActiveSite", Equal(testenv.SiteKiel)),
		HaveField("Status.MirroredResources.Count", BeEquivalentTo(2)),
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
	))
	g.Expect(serviceStatus(ctx, schwerin, ns, svc.Name)()).To(HaveField("Finalizers", ContainElement(deichv1alpha1.SharedServiceFinalizer)),
		"the standby's SharedService carries the finalizer it needs once promoted")

	t.Run("an update at the source reaches the copy", func(t *testing.T) {
		g := newG(t)
		g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
		cm.Data["greeting"] = "Moin moin"
		g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
		g.Eventually(func() string {
			_ = schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), gotCM)
			return gotCM.Data["greeting"]
		}).Should(Equal("Moin moin"))
	})

	t.Run("an edit of the copy at the standby is reverted", func(t *testing.T) {
		g := newG(t)
		g.Expect(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), gotCM)).To(Succeed())
		gotCM.Data["greeting"] = "Tach"
		g.Expect(schwerin.Client.Update(ctx, gotCM)).To(Succeed())
		g.Eventually(func() string {
			_ = schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), gotCM)
			return gotCM.Data["greeting"]
		}).Should(Equal("Moin moin"))
	})

	t.Run("an object that leaves the selection is pruned from the standby", func(t *testing.T) {
		g := newG(t)
		g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
		delete(cm.Labels, "app.kubernetes.io/part-of")
		g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}))
		}).Should(BeTrue())
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.MirroredResources.Count", BeEquivalentTo(1)))
	})

	t.Run("deleting the SharedService removes its copies from the standby", func(t *testing.T) {
		g := newG(t)
		g.Expect(kiel.Client.Delete(ctx, svc)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(deploy), &appsv1.Deployment{}))
		}).Should(BeTrue())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(svc), &deichv1alpha1.SharedService{}))
		}).Should(BeTrue())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(kiel.Client.Get(ctx, client.ObjectKeyFromObject(svc), &deichv1alpha1.SharedService{}))
		}).Should(BeTrue())
	})
}

func TestSharedServiceWithABadPatchKeepsTheLastGoodCopy(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-badpatch"
	createNamespace(ctx, t, g, kiel, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}}, Data: map[string]string{"mode": "good"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}) }).Should(Succeed())

	// A JSON 6902 patch removing a key that does not exist cannot apply.
	updateService(ctx, g, kiel, client.ObjectKeyFromObject(svc), func(svc *deichv1alpha1.SharedService) {
		svc.Spec.Overrides = []deichv1alpha1.Override{{
			Role: deichv1alpha1.RoleStandby,
			Patches: []deichv1alpha1.Patch{{
				Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
				Patch:  `[{"op": "remove", "path": "/data/missing"}]`,
			}},
		}}
	})
	g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)).To(Succeed())
	cm.Data["mode"] = "changed"
	g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())

	g.Eventually(func() *metav1.Condition {
		s, err := serviceStatus(ctx, kiel, ns, svc.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
	}).Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonRenderFailed))
	// The copy keeps its last good content while the override is broken.
	got := &corev1.ConfigMap{}
	g.Consistently(func() string {
		_ = schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), got)
		return got.Data["mode"]
	}, 2*time.Second).Should(Equal("good"))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "SharedService", svc.Name)
	}).Should(ContainElement(deichv1alpha1.ServiceEventSyncFailed))
}
