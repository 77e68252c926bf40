package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// installCRD installs a namespaced CRD for kind in group at site, with a status subresource,
// and removes it when the test ends.
func installCRD(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, group, kind string) {
	t.Helper()
	plural := strings.ToLower(kind) + "s"
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": plural + "." + group},
		"spec": map[string]any{
			"group": group,
			"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": plural, "singular": strings.ToLower(kind)},
			"scope": "Namespaced",
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec":   map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
						"status": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true},
					},
				}},
			}},
		},
	}}
	g.Expect(client.IgnoreAlreadyExists(site.Client.Create(ctx, crd))).To(Succeed())
	cleanup(t, site, crd)
	g.Eventually(func() error {
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(group + "/v1")
		list.SetKind(kind + "List")
		return site.Client.List(ctx, list)
	}).Should(Succeed())
}

// managedFieldsOf returns the fields the "deich" manager owns on obj, as JSON.
func managedFieldsOf(obj client.Object) string {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == "deich" && mf.FieldsV1 != nil {
			return mf.FieldsV1.GetRawString()
		}
	}
	return ""
}

func TestSharedServiceMirrorsEveryKindItSelects(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	installCRD(ctx, t, g, kiel, "registers.example.de", "Register")
	installCRD(ctx, t, g, schwerin, "registers.example.de", "Register")
	const ns = "mirror-kinds"
	createNamespace(ctx, t, g, kiel, ns)
	lbl := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}
	om := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}
	}
	podSpec := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "buergerkonto"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example.de/buergerkonto:1.0"}}},
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "buergerkonto"}}
	register := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "registers.example.de/v1", "kind": "Register",
		"metadata": map[string]any{"name": "melderegister", "namespace": ns, "labels": map[string]any{"app.kubernetes.io/part-of": "buergerkonto"}},
		"spec":     map[string]any{"replicas": int64(2), "retention": "10y"},
	}}
	sources := []client.Object{
		&appsv1.Deployment{ObjectMeta: om("web"), Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](3), Selector: selector, Template: podSpec}},
		&appsv1.StatefulSet{ObjectMeta: om("db"), Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: selector, Template: podSpec, ServiceName: "db"}},
		&appsv1.DaemonSet{ObjectMeta: om("agent"), Spec: appsv1.DaemonSetSpec{Selector: selector, Template: podSpec}},
		&corev1.Service{ObjectMeta: om("web"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "buergerkonto"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}},
		&corev1.ConfigMap{ObjectMeta: om("settings"), Data: map[string]string{"greeting": "Moin"}},
		&corev1.Secret{ObjectMeta: om("db-credentials"), StringData: map[string]string{"password": "geheim"}},
		&corev1.ServiceAccount{ObjectMeta: om("buergerkonto")},
		&networkingv1.Ingress{ObjectMeta: om("web"), Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "buergerkonto.example.de"}}}},
		&networkingv1.NetworkPolicy{ObjectMeta: om("web"), Spec: networkingv1.NetworkPolicySpec{PodSelector: *selector}},
		&corev1.PersistentVolumeClaim{ObjectMeta: om("data"), Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			VolumeName:  "pv-kiel-0042",
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: om("web"), Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](3), MaxReplicas: 12,
		}},
		register,
	}
	for _, o := range sources {
		g.Expect(kiel.Client.Create(ctx, o)).To(Succeed(), "create %T %s", o, o.GetName())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Resources(
		deichv1alpha1.ResourceKind{Group: "apps", Kind: "Deployment"},
		deichv1alpha1.ResourceKind{Group: "apps", Kind: "StatefulSet"},
		deichv1alpha1.ResourceKind{Group: "apps", Kind: "DaemonSet"},
		deichv1alpha1.ResourceKind{Kind: "Service"},
		deichv1alpha1.ResourceKind{Kind: "ConfigMap"},
		deichv1alpha1.ResourceKind{Kind: "Secret"},
		deichv1alpha1.ResourceKind{Kind: "ServiceAccount"},
		deichv1alpha1.ResourceKind{Group: "networking.k8s.io", Kind: "Ingress"},
		deichv1alpha1.ResourceKind{Group: "networking.k8s.io", Kind: "NetworkPolicy"},
		deichv1alpha1.ResourceKind{Kind: "PersistentVolumeClaim"},
		deichv1alpha1.ResourceKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"},
		deichv1alpha1.ResourceKind{Group: "registers.example.de", Kind: "Register"},
	).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
		HaveField("Status.MirroredResources.Count", BeEquivalentTo(len(sources))),
	))

	for _, src := range sources {
		kind := fmt.Sprintf("%T", src)
		if u, ok := src.(*unstructured.Unstructured); ok {
			kind = u.GetKind()
		}
		t.Run("mirrors the "+strings.TrimPrefix(kind, "*v1."), func(t *testing.T) {
			g := newG(t)
			got := src.DeepCopyObject().(client.Object)
			g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(src), got) }).Should(Succeed())
			g.Expect(got.GetLabels()).To(HaveKeyWithValue(render.LabelSourceSite, testenv.SiteKiel))
			g.Expect(got.GetAnnotations()).To(HaveKey(render.AnnotationContentHash))
			g.Expect(got.GetOwnerReferences()).To(BeEmpty())
			fields := managedFieldsOf(got)
			g.Expect(fields).NotTo(BeEmpty(), "the copy is applied by the deich field manager")
			g.Expect(fields).NotTo(ContainSubstring(`"f:status"`))

			switch c := got.(type) {
			case *appsv1.Deployment:
				g.Expect(c.Spec.Replicas).To(HaveValue(BeEquivalentTo(0)))
				g.Expect(c.Annotations).To(HaveKeyWithValue(render.AnnotationSourceReplicas, "3"))
			case *appsv1.StatefulSet:
				g.Expect(c.Spec.Replicas).To(HaveValue(BeEquivalentTo(0)))
				g.Expect(c.Annotations).To(HaveKeyWithValue(render.AnnotationSourceReplicas, "2"))
			case *appsv1.DaemonSet:
				g.Expect(c.Spec.Template.Spec.NodeSelector).To(HaveKey(render.NodeSelectorStandby), "a cold DaemonSet runs on no node")
			case *corev1.Service:
				g.Expect(fields).NotTo(ContainSubstring(`"f:clusterIP"`), "the clusterIP belongs to the source cluster")
				g.Expect(fields).NotTo(ContainSubstring(`"f:nodePort"`), "nodePorts belong to the source cluster")
				g.Expect(c.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
			case *corev1.Secret:
				g.Expect(c.Data).To(HaveKeyWithValue("password", []byte("geheim")))
			case *corev1.PersistentVolumeClaim:
				g.Expect(c.Spec.VolumeName).To(BeEmpty(), "the volume belongs to the source cluster")
			case *networkingv1.Ingress:
				g.Expect(c.Spec.Rules[0].Host).To(Equal("buergerkonto.example.de"))
			case *autoscalingv2.HorizontalPodAutoscaler:
				g.Expect(c.Spec.MinReplicas).To(HaveValue(BeEquivalentTo(1)), "a cold standby's autoscaler keeps one replica at most")
				g.Expect(c.Spec.MaxReplicas).To(BeEquivalentTo(1))
				g.Expect(c.Annotations).To(HaveKey(render.AnnotationActivePatch), "its range comes back with the active form")
			case *unstructured.Unstructured:
				replicas, _, _ := unstructured.NestedInt64(c.Object, "spec", "replicas")
				g.Expect(replicas).To(BeZero(), "custom resources with spec.replicas get the standby form too")
				retention, _, _ := unstructured.NestedString(c.Object, "spec", "retention")
				g.Expect(retention).To(Equal("10y"))
			}
		})
	}
}

func TestSharedServiceMirrorsSecretsOnlyWhenListed(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-nosecrets"
	createNamespace(ctx, t, g, kiel, ns)
	lbl := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-credentials", Labels: lbl}, StringData: map[string]string{"password": "geheim"}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: lbl}}
	g.Expect(kiel.Client.Create(ctx, secret)).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj() // Deployments and ConfigMaps
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(func() error { return schwerin.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}) }).Should(Succeed())
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)))
	g.Expect(apierrors.IsNotFound(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}))).To(BeTrue())
}

func TestSharedServiceReportsAKindMissingAtThePeer(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	installCRD(ctx, t, g, kiel, "gadgets.example.de", "Gadget") // not at mv-schwerin
	const ns = "mirror-nocrd"
	createNamespace(ctx, t, g, kiel, ns)
	svc := testobjects.MakeSharedService("buergerkonto", ns).Resources(deichv1alpha1.ResourceKind{Group: "gadgets.example.de", Kind: "Gadget"}).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	synced := func() *metav1.Condition {
		s, err := serviceStatus(ctx, kiel, ns, svc.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
	}
	g.Eventually(synced).Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonKindMissingAtPeer))
	g.Expect(synced().Message).To(ContainSubstring("install its CRD there"))
}
