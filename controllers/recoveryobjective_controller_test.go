package controllers_test

import (
	"context"
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

func getObjective(ctx context.Context, name string) func() (*deichv1alpha1.RecoveryObjective, error) {
	return func() (*deichv1alpha1.RecoveryObjective, error) {
		o := &deichv1alpha1.RecoveryObjective{}
		return o, kiel.Client.Get(ctx, client.ObjectKey{Name: name}, o)
	}
}

func TestObjectiveCountsTheSharedServicesThatUseIt(t *testing.T) {
	ctx := context.Background()
	g := newG(t)

	obj := testobjects.MakeRecoveryObjective("counted").Obj()
	g.Expect(kiel.Client.Create(ctx, obj)).To(Succeed())
	cleanup(t, kiel, obj)
	g.Eventually(getObjective(ctx, obj.Name)).Should(And(
		HaveField("Status.SharedServices", BeZero()),
		HaveField("Status.ObservedGeneration", Equal(obj.Generation)),
		WithTransform(func(o *deichv1alpha1.RecoveryObjective) string {
			c := meta.FindStatusCondition(o.Status.Conditions, deichv1alpha1.ConditionReady)
			if c == nil {
				return ""
			}
			return c.Reason
		}, Equal(deichv1alpha1.ObjectiveReasonUnused)),
	))

	var created []*deichv1alpha1.SharedService
	for _, ns := range []string{"counted-a", "counted-b"} {
		g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		// Retain: no standby is connected in this test, so there are no copies to clean up.
		svc := testobjects.MakeSharedService("svc", ns).Objective(obj.Name).DeletionPolicy(deichv1alpha1.DeletionPolicyRetain).Obj()
		g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
		cleanup(t, kiel, svc)
		created = append(created, svc)
	}
	g.Eventually(getObjective(ctx, obj.Name)).Should(HaveField("Status.SharedServices", BeEquivalentTo(2)))

	g.Expect(kiel.Client.Delete(ctx, created[0])).To(Succeed())
	g.Eventually(getObjective(ctx, obj.Name)).Should(HaveField("Status.SharedServices", BeEquivalentTo(1)))

	// Pointing the remaining service at another objective moves the count.
	other := testobjects.MakeRecoveryObjective("counted-other").Obj()
	g.Expect(kiel.Client.Create(ctx, other)).To(Succeed())
	cleanup(t, kiel, other)
	svc := created[1]
	updateService(ctx, g, kiel, client.ObjectKeyFromObject(svc), func(svc *deichv1alpha1.SharedService) {
		svc.Spec.RecoveryObjectiveRef.Name = other.Name
	})
	g.Eventually(getObjective(ctx, obj.Name)).Should(HaveField("Status.SharedServices", BeZero()))
	g.Eventually(getObjective(ctx, other.Name)).Should(HaveField("Status.SharedServices", BeEquivalentTo(1)))
}

func TestObjectiveWhoseRTOIgnoresClockSkewIsInvalid(t *testing.T) {
	ctx := context.Background()
	g := newG(t)

	// The API server accepts rto = leaseDuration + failureThreshold × probeInterval exactly;
	// only the manager knows that --max-clock-skew must fit in it too.
	obj := testobjects.MakeRecoveryObjective("too-tight").Failover(3, 5*time.Second, 15*time.Second).RTO(30 * time.Second).Obj()
	g.Expect(kiel.Client.Create(ctx, obj)).To(Succeed())
	cleanup(t, kiel, obj)

	valid := func() *metav1.Condition {
		o, err := getObjective(ctx, obj.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(o.Status.Conditions, deichv1alpha1.ObjectiveConditionValid)
	}
	g.Eventually(valid).Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ObjectiveReasonRTOTooShort))
	g.Expect(valid().Message).To(ContainSubstring("max clock skew 2s"))
	o, err := getObjective(ctx, obj.Name)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o.Status.MinimumRTO.Duration).To(Equal(32 * time.Second))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "RecoveryObjective", obj.Name)
	}).Should(ContainElement(deichv1alpha1.ObjectiveEventInvalid))

	// Raising the RTO makes it valid again.
	g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	obj.Spec.RTO = metav1.Duration{Duration: time.Minute}
	g.Expect(kiel.Client.Update(ctx, obj)).To(Succeed())
	g.Eventually(valid).Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ObjectiveReasonConsistent))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "RecoveryObjective", obj.Name)
	}).Should(ContainElement(deichv1alpha1.ObjectiveEventValid))
}
