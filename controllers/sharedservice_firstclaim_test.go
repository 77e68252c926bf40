package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testobjects"
)

// TestFirstClaimSwitchesObjectsLeftInStandbyForm: a service created over objects its site left
// fenced (the service was deleted while the site did not serve it) gets them back in their
// active form with its first claim, stamped with epoch 1, beside objects that were active.
func TestFirstClaimSwitchesObjectsLeftInStandbyForm(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "first-claim-fenced"
	createNamespace(ctx, t, g, kiel, ns)
	partOf := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}

	deployment := func(name string, replicas int32, annotations map[string]string) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: partOf, Annotations: annotations},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example.de/buergerkonto:1.0"}}},
				},
			},
		}
	}
	fenced := deployment("web", 3, nil)
	active := deployment("worker", 2, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOf}, Data: map[string]string{"TZ": "Europe/Berlin"}}
	for _, o := range []client.Object{fenced, active, cm} {
		g.Expect(kiel.Client.Create(ctx, o)).To(Succeed())
	}
	// The standby form a fence of the earlier service left on web, written as Deich writes it.
	standby := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"namespace": ns, "name": fenced.Name, "annotations": map[string]any{render.AnnotationSourceReplicas: "3"}},
		"spec":     map[string]any{"replicas": int64(0)},
	}}
	g.Expect(kiel.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(standby), client.FieldOwner(mirror.FieldManager), client.ForceOwnership)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	got := &appsv1.Deployment{}
	g.Eventually(func(g Gomega) {
		g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(fenced), got)).To(Succeed())
		g.Expect(got.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)), "the Deployment left fenced runs its replicas again")
		g.Expect(got.Annotations).NotTo(HaveKey(render.AnnotationSourceReplicas))
		g.Expect(got.Annotations).To(HaveKeyWithValue(failover.EpochAnnotation, "1"))
	}).Should(Succeed())
	g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(active), got)).To(Succeed())
	g.Expect(got.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)), "an active Deployment is left as it is")
	g.Expect(got.Annotations).NotTo(HaveKey(failover.EpochAnnotation), "the first claim stamps only what it switches")
}
