package failover

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// TestCopyOlderThanTheRPOIsNotPromotedAutomatically: mv-schwerin's copy was already older
// than the RPO when sh-kiel was last seen healthy. When sh-kiel is lost, mv-schwerin does not
// promote on its own, although failover is Automatic: it recommends a failover and says why.
// A Switchover with force promotes it and records that the copy was too old.
func TestCopyOlderThanTheRPOIsNotPromotedAutomatically(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	dark := newDarkKiel(t, g)
	const rpo = 5 * time.Second
	objective := testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RPO(rpo).RTO(time.Minute)
	s := setUp(ctx, t, g, "failover-rpo-gate", objective, dark.check)
	unblock := s.ageCopyPastRPO(ctx, t, g, schwerin, rpo)

	// Past the RPO by more than the clock-skew margin the gate allows, by mv-schwerin's own
	// view of the copy's age.
	g.Eventually(func() (time.Duration, error) {
		svc, err := s.status(ctx, schwerin)()
		if err != nil || svc.Status.ReplicationLag == nil {
			return 0, err
		}
		return svc.Status.ReplicationLag.Duration, nil
	}, time.Minute).Should(BeNumerically(">", rpo+maxClockSkew+3*time.Second))

	dark.lose(t, g)
	g.Eventually(s.readyReason(ctx, schwerin), time.Minute).Should(Equal(deichv1alpha1.ServiceReasonFailoverRecommended))
	svc, err := s.status(ctx, schwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	ready := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ConditionReady)
	g.Expect(ready).NotTo(BeNil())
	g.Expect(ready.Message).To(And(ContainSubstring("older than the RPO"), MatchRegexp(`\(it was [0-9hms]+ old\)`)),
		"the recommendation says how old the copy was")
	// Well past the lease's expiry: a copy too old is never promoted on its own.
	g.Consistently(s.replicas(ctx, schwerin), 10*time.Second, 100*time.Millisecond).Should(BeEquivalentTo(0))

	// mv-schwerin's API server accepts writes again, so the promotion can switch the copies.
	unblock()
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "forced-to-schwerin"},
		Spec: deichv1alpha1.SwitchoverSpec{SharedServiceName: s.name, TargetSite: testenv.SiteSchwerin, Force: true,
			Reason: "INC-4711: Kiel dark, accepting the loss of the last changes"},
	}
	g.Expect(schwerin.Client.Create(ctx, sw)).To(Succeed())
	s.servingSince(ctx, g, schwerin, time.Minute)
	g.Eventually(switchover(ctx, schwerin, s.ns, sw.Name)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded),
		HaveField("Status.Conditions", ContainElement(And(
			HaveField("Type", deichv1alpha1.SwitchoverConditionCopyWithinRPO),
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", deichv1alpha1.SwitchoverReasonForced))))))
}

// ageCopyPastRPO makes mv-schwerin's API server refuse every write of a ConfigMap in the
// service's namespace and changes the source until the copy's age, as the status at site
// reports it, is past rpo. The returned function lifts the refusal; it is also a cleanup.
func (s service) ageCopyPastRPO(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, rpo time.Duration) (unblock func()) {
	t.Helper()
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
	unblock = func() {
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
		svc, err := s.status(ctx, site)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(svc.Status.ReplicationLag).NotTo(BeNil())
		g.Expect(svc.Status.ReplicationLag.Duration).To(BeNumerically(">", rpo))
	}, time.Minute, time.Second).Should(Succeed(), "mv-schwerin's copy never aged past the RPO")
	return unblock
}
