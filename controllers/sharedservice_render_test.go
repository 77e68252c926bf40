package controllers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testobjects"
)

// TestALargeServiceIsRenderedAllOrNothing mirrors a service of several hundred objects, which a
// full round renders on several workers: every copy arrives with its own content, and an
// object that does not render, among hundreds that do, stops the whole round: no copy at the
// standby changes until the override is mended, and then every one does.
func TestALargeServiceIsRenderedAllOrNothing(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns, n = "render-large", 300
	createNamespace(ctx, t, g, kiel, ns)
	partOf := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}
	name := func(i int) string { return fmt.Sprintf("settings-%03d", i) }
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name(i), Labels: partOf}, Data: map[string]string{"index": fmt.Sprint(i)}}
		g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	copies := func(g Gomega) map[string]map[string]string {
		list := &corev1.ConfigMapList{}
		g.Expect(schwerin.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels(partOf))).To(Succeed())
		got := map[string]map[string]string{}
		for _, cm := range list.Items {
			got[cm.Name] = cm.Data
		}
		return got
	}
	g.Eventually(func(g Gomega) {
		got := copies(g)
		g.Expect(got).To(HaveLen(n))
		for i := range n {
			g.Expect(got[name(i)]).To(Equal(map[string]string{"index": fmt.Sprint(i)}), "each copy holds its own source's content")
		}
	}).Should(Succeed())

	// Every ConfigMap gets a value for the standby; the second patch cannot apply to one of them.
	key := client.ObjectKeyFromObject(svc)
	patches := func(broken bool) []deichv1alpha1.Override {
		o := deichv1alpha1.Override{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{{
			Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
			Patch:  `[{"op": "add", "path": "/data/state", "value": "MV"}]`,
		}}}
		if broken {
			o.Patches = append(o.Patches, deichv1alpha1.Patch{
				Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap", Name: name(n - 7)},
				Patch:  `[{"op": "remove", "path": "/data/missing"}]`,
			})
		}
		return []deichv1alpha1.Override{o}
	}
	updateService(ctx, g, kiel, key, func(svc *deichv1alpha1.SharedService) { svc.Spec.Overrides = patches(true) })
	g.Eventually(func() *metav1.Condition {
		s, err := serviceStatus(ctx, kiel, ns, svc.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
	}).Should(And(
		haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonRenderFailed),
		HaveField("Message", ContainSubstring(name(n-7))),
	))
	g.Consistently(func(g Gomega) {
		for cm, data := range copies(g) {
			g.Expect(data).NotTo(HaveKey("state"), "ConfigMap %s changed at the standby though the round could not render all", cm)
		}
	}, 3*time.Second, 500*time.Millisecond).Should(Succeed())

	updateService(ctx, g, kiel, key, func(svc *deichv1alpha1.SharedService) { svc.Spec.Overrides = patches(false) })
	g.Eventually(func(g Gomega) {
		got := copies(g)
		g.Expect(got).To(HaveLen(n))
		for i := range n {
			g.Expect(got[name(i)]).To(Equal(map[string]string{"index": fmt.Sprint(i), "state": "MV"}))
		}
	}).Should(Succeed())
}
