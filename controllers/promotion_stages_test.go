package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	g.Eventually(m.objectivesMet(ctx, schwerin)).
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

// TestDataLagCountsAgainstTheRPO gives a stage a replicationLag rule that reads when the data
// behind its object was last replicated (here a ConfigMap's data.lastSync stands in for a
// volume's status.lastSyncTime). While the data is older than the RPO the active reports the
// data's lag and ObjectivesMet False naming the object, the standby's evidence of a current
// copy stops advancing, so its own ObjectivesMet turns False and a Switchover to it is refused;
// once the data is current again, both recover. A readyWhen that does not compile is reported
// before any promotion needs it.
func TestDataLagCountsAgainstTheRPO(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "data-lag", fastManualObjective())
	setLastSync := func(at time.Time) {
		g.Eventually(func() error {
			cm := &corev1.ConfigMap{}
			if err := kiel.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "settings"}, cm); err != nil {
				return err
			}
			cm.Data["lastSync"] = at.UTC().Format(time.RFC3339)
			return kiel.Client.Update(ctx, cm)
		}).Should(Succeed())
	}
	setStages := func(stages ...deichv1alpha1.PromotionStage) {
		g.Eventually(func() error {
			svc := &deichv1alpha1.SharedService{}
			if err := kiel.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: m.name}, svc); err != nil {
				return err
			}
			svc.Spec.Promotion = &deichv1alpha1.Promotion{Stages: stages}
			return kiel.Client.Update(ctx, svc)
		}).Should(Succeed())
	}
	setLastSync(time.Now().Add(-10 * time.Minute))
	dataStage := deichv1alpha1.PromotionStage{Name: "data", Target: deichv1alpha1.PatchTarget{Kind: "ConfigMap", Name: "settings"},
		ReplicationLag: "timestamp(self.data.lastSync)"}
	setStages(dataStage)

	g.Eventually(m.objectivesMet(ctx, kiel)).Should(And(
		haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld),
		HaveField("Message", ContainSubstring("the data of ConfigMap settings (stage data) is behind by more than the RPO"))))
	g.Eventually(m.status(ctx, kiel)).Should(HaveField("Status.ReplicationLag.Duration", BeNumerically(">=", 10*time.Minute)))
	g.Eventually(m.objectivesMet(ctx, schwerin), time.Minute).Should(
		haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld),
		"the standby's evidence of a current copy stops advancing while the data is old")
	sw := m.switchover("move-with-old-data", testenv.SiteSchwerin, "CHG-4714")
	m.create(ctx, t, g, kiel, sw)
	got := finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverFailed, 30*time.Second)
	g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(HaveField("Reason", deichv1alpha1.SwitchoverReasonCopyTooOld))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas), "the refused move changed nothing")

	setLastSync(time.Now())
	g.Eventually(m.objectivesMet(ctx, kiel)).Should(
		haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))
	g.Eventually(m.objectivesMet(ctx, schwerin), time.Minute).Should(
		haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))

	dataStage.ReadyWhen = "self.data.ready =="
	setStages(dataStage)
	g.Eventually(m.objectivesMet(ctx, kiel)).Should(And(
		haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonPromotionInvalid),
		HaveField("Message", And(ContainSubstring("stage data"), ContainSubstring("does not compile"), ContainSubstring("the RTO cannot be met")))))
}

// TestPlannedMoveHandsAStageValueOver moves a service whose stage hands a value over, as a
// CloudNativePG Cluster hands its demotion token to the replica that is promoted: the test
// plays the data layer and puts the token on the fenced object at the site that hands the
// service over; the promotion waits for it and writes it into the promoted object. The move
// back finds no token within the stage's timeout: the stage is promoted without, the field
// that would carry it is removed (a token of the earlier move is never used again), and status
// says so.
func TestPlannedMoveHandsAStageValueOver(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	const demotion, promotion = "example.de/demotion-token", "example.de/promotion-token"
	m := setUpMovable(ctx, t, g, "stage-handoff", fastManualObjective(), func(svc *deichv1alpha1.SharedService) {
		svc.Spec.Promotion = &deichv1alpha1.Promotion{Stages: []deichv1alpha1.PromotionStage{{
			Name: "app", Target: deichv1alpha1.PatchTarget{Kind: "Deployment", Name: "web"},
			Handoff: &deichv1alpha1.StageHandoff{From: "self.metadata.annotations['" + demotion + "']", To: "/metadata/annotations/example.de~1promotion-token"},
			Timeout: &metav1.Duration{Duration: 4 * time.Second},
		}}}
	})
	g.Eventually(m.objectivesMet(ctx, schwerin)).Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))

	sw := m.switchover("move-with-token", testenv.SiteSchwerin, "CHG-4715")
	m.create(ctx, t, g, kiel, sw)
	g.Eventually(m.replicas(ctx, kiel)).Should(BeEquivalentTo(0), "sh-kiel is fenced")
	g.Eventually(m.status(ctx, schwerin)).Should(HaveField("Status.Promotion.Stages", ContainElement(And(
		HaveField("Phase", deichv1alpha1.StagePromoting), HaveField("Handoff", ContainSubstring("waiting for"))))))
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0), "the stage waits for its handoff")
	patch := []byte(`{"metadata":{"annotations":{"` + demotion + `":"T-4711"}}}`)
	g.Expect(kiel.Client.Patch(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: m.ns, Name: "web"}}, client.RawPatch(types.MergePatchType, patch))).To(Succeed())

	finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(webReplicas))
	g.Expect(m.annotations(ctx, schwerin)()).To(HaveKeyWithValue(promotion, "T-4711"), "the promoted object carries the token of the demoted one")
	g.Eventually(m.status(ctx, schwerin)).Should(HaveField("Status.Promotion.Stages", ContainElement(
		HaveField("Handoff", ContainSubstring("from sh-kiel")))))

	g.Eventually(m.objectivesMet(ctx, kiel)).Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))
	g.Eventually(m.annotations(ctx, kiel)).Should(HaveKeyWithValue(promotion, "T-4711"), "sh-kiel's copy carries the token mv-schwerin was promoted with")
	back := m.switchover("back-without-token", testenv.SiteKiel, "CHG-4716")
	m.create(ctx, t, g, kiel, back)
	finished(ctx, g, kiel, back, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Expect(m.annotations(ctx, kiel)()).NotTo(HaveKey(promotion), "no token of an earlier move is used again")
	g.Eventually(m.status(ctx, kiel)).Should(HaveField("Status.Promotion.Stages", ContainElement(
		HaveField("Handoff", ContainSubstring("none: no value from mv-schwerin within 4s")))))
}
