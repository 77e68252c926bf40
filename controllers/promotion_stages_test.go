package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// TestPromotionRunsItsStagesInOrderAndWaitsForEachToBeReady moves a service whose promotion
// has two stages — a Deployment "db" that must report a ready replica, then the Deployment
// "web" — and the ConfigMap in no stage. The test plays the data layer: it sets the
// Deployments' status at mv-schwerin as their controller would. The promotion switches db,
// waits for it (web stays in standby form, also once db's stage timed out), switches web when
// db is ready, and completes when web is ready; status, events and the recorded recovery time
// follow.
func TestPromotionRunsItsStagesInOrderAndWaitsForEachToBeReady(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	readyReplicas := "has(self.status.readyReplicas) && self.status.readyReplicas >= 1"
	m := setUpMovable(ctx, t, g, "promotion-stages", fastManualObjective(), func(svc *deichv1alpha1.SharedService) {
		svc.Spec.Promotion = &deichv1alpha1.Promotion{Stages: []deichv1alpha1.PromotionStage{
			{Name: "database", Target: deichv1alpha1.PatchTarget{Kind: "Deployment", Name: "db"}, ReadyWhen: readyReplicas,
				Timeout: &metav1.Duration{Duration: 3 * time.Second}},
			{Name: "app", Target: deichv1alpha1.PatchTarget{Kind: "Deployment", Name: "web"}, ReadyWhen: readyReplicas},
		}}
	})
	db := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.ns, Name: "db", Labels: partOfBuergerkonto},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "registry.example.de/postgres:17"}}},
			},
		},
	}
	g.Expect(kiel.Client.Create(ctx, db)).To(Succeed())
	replicasOf := func(site *testenv.Site, name string) func() (int32, error) {
		return func() (int32, error) {
			d := &appsv1.Deployment{}
			err := site.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: name}, d)
			return ptr.Deref(d.Spec.Replicas, -1), err
		}
	}
	g.Eventually(replicasOf(schwerin, "db")).Should(BeEquivalentTo(0), "mv-schwerin holds db in standby form")
	g.Eventually(m.serviceCondition(ctx, schwerin, deichv1alpha1.ServiceConditionObjectivesMet)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))

	sw := m.switchover("move-to-schwerin", testenv.SiteSchwerin, "CHG-4713: the database moves first")
	m.create(ctx, t, g, kiel, sw)

	g.Eventually(replicasOf(schwerin, "db")).Should(BeEquivalentTo(1), "the first stage is switched to its active form")
	g.Consistently(m.replicas(ctx, schwerin), 2*time.Second).Should(BeEquivalentTo(0), "web waits for db to be ready")
	g.Eventually(m.status(ctx, schwerin)).Should(HaveField("Status.Promotion.Stages", ConsistOf(
		And(HaveField("Name", "database"), HaveField("Phase", deichv1alpha1.StagePromoting), HaveField("Objects", BeEquivalentTo(1)),
			HaveField("Message", ContainSubstring("Deployment db: "+readyReplicas))),
		And(HaveField("Name", "app"), HaveField("Phase", deichv1alpha1.StagePending)))))

	// The database does not come up within its timeout: the promotion stops there.
	g.Eventually(m.status(ctx, schwerin), 10*time.Second).Should(And(
		HaveField("Status.Promotion.Stages", ContainElement(And(HaveField("Name", "database"), HaveField("Phase", deichv1alpha1.StageTimedOut)))),
		HaveField("Status.Promotion.CompletedAt", BeNil()),
		HaveField("Status.LastFailover.CompletedAt", BeNil())))
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, schwerin, "SharedService", m.name) }).Should(
		ContainElements(deichv1alpha1.ServiceEventPromotionStageStarted, deichv1alpha1.ServiceEventPromotionStageTimedOut))
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0), "a stage that timed out keeps the later ones in standby form")
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(0), "sh-kiel handed the service over: it does not serve either")

	// The data layer reports the database ready: the promotion goes on by itself.
	dbReady := time.Now()
	setReadyReplicas(ctx, g, schwerin, m.ns, "db", 1)
	g.Eventually(m.replicas(ctx, schwerin)).Should(BeEquivalentTo(webReplicas), "web is switched once db is ready")
	g.Eventually(m.status(ctx, schwerin)).Should(HaveField("Status.Promotion.Stages", ContainElements(
		And(HaveField("Name", "database"), HaveField("Phase", deichv1alpha1.StageReady)),
		And(HaveField("Name", "app"), HaveField("Phase", deichv1alpha1.StagePromoting)))))
	g.Consistently(m.status(ctx, schwerin), time.Second).Should(HaveField("Status.LastFailover.CompletedAt", BeNil()),
		"the promotion is not complete before its last stage is ready")

	setReadyReplicas(ctx, g, schwerin, m.ns, "web", webReplicas)
	got := finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	t.Logf("%s: %s", sw.Name, got.Status.Message)
	g.Eventually(m.status(ctx, schwerin)).Should(And(
		HaveField("Status.Promotion.CompletedAt", Not(BeNil())),
		HaveField("Status.Promotion.Stages", HaveEach(HaveField("Phase", deichv1alpha1.StageReady))),
		HaveField("Status.LastFailover.CompletedAt", Not(BeNil())),
		HaveField("Status.Role", deichv1alpha1.RoleActive)))
	svc, err := m.status(ctx, schwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(svc.Status.LastFailover.CompletedAt.Time).To(BeTemporally(">=", dbReady.Truncate(time.Second)),
		"the recovery time runs until the last stage is ready")
	g.Expect(svc.Status.Promotion.Epoch).To(Equal(svc.Status.LastFailover.Epoch))
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, schwerin, "SharedService", m.name) }).Should(
		ContainElement(deichv1alpha1.ServiceEventPromotionStageReady))
}

// setReadyReplicas sets a Deployment's status.readyReplicas, as its controller would.
func setReadyReplicas(ctx context.Context, g Gomega, site *testenv.Site, ns, name string, n int32) {
	g.Eventually(func() error {
		d := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = n, n, n
		return site.Client.Status().Update(ctx, d)
	}).Should(Succeed())
}
