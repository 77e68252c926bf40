package stateful

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// serviceRPO is the RPO of the test's objective: short, so that a volume whose replication
// stalls misses it within seconds, and long enough for the copies' confirmations (every lease
// renewal, two seconds apart) and the volume's lastSyncTime (to the second) to keep within it.
const serviceRPO = 5 * time.Second

// TestStatefulServiceFailsOverInOrderAndTrafficFollows runs a service made of a csi-addons
// VolumeReplication with its PersistentVolumeClaim, a CloudNativePG Cluster, a Deployment and
// an external-dns DNSEndpoint, configured as docs/stateful.md shows, through the loss of its
// active site and a planned move back. The test plays the data layer at both sites and watches
// every write to the objects: when sh-kiel is lost, mv-schwerin promotes its volume first, the
// database only after the volume reported itself primary, the application only after the
// database reported itself primary, and publishes the record only after the application
// reported ready replicas; the move back fences mv-schwerin in the reverse order and promotes
// sh-kiel in the same order. The failover promotes the database without a promotion token;
// the move back hands mv-schwerin's demotion token to sh-kiel's Cluster in the write that
// makes it primary. Once the service is back, a stalled volume replication makes the data's
// lag miss the RPO, and its recovery meets it again. Throughout, a sampler checks that the two
// sites never both publish the record, never both run a primary database and never both ask
// for a primary volume.
func TestStatefulServiceFailsOverInOrderAndTrafficFollows(t *testing.T) {
	requireSites(t)
	ctx := context.Background()
	g := NewWithT(t)
	const ns = "buergerkonto"
	dark := newDarkKiel(t, g)

	// A short lease so the loss is detected and the lease expires within seconds.
	objective := testobjects.MakeRecoveryObjective(ns).Failover(2, time.Second, 6*time.Second).RTO(45 * time.Second).RPO(serviceRPO)
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Expect(site.Client.Create(ctx, objective.Obj())).To(Succeed())
	}
	forms := map[string]*formLog{}
	layers := map[string]*dataLayer{}
	world := newDataWorld()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		forms[site.Name] = watchForms(ctx, t, site, ns)
		layers[site.Name] = runDataLayer(ctx, t, site, ns, world)
	}

	// 1. The service at sh-kiel, and the copies mv-schwerin holds of it.
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	for _, obj := range []client.Object{filesClaim(ns), volumeReplication(ns), dbCluster(ns), webDeployment(ns), dnsEndpoint(ns)} {
		g.Expect(kiel.Client.Create(ctx, obj)).To(Succeed(), "create %s at sh-kiel", obj.GetObjectKind().GroupVersionKind().Kind)
	}
	g.Eventually(layers[kiel.Name].reported("primary", time.Time{}), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"sh-kiel's database reports itself primary")
	g.Eventually(layers[kiel.Name].reported("volume primary", time.Time{}), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"sh-kiel's volume reports itself primary")
	svc := statefulService(ns, dark.check)
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	g.Eventually(status(ctx, kiel, ns, svc.Name), time.Minute, 50*time.Millisecond).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Eventually(func(g Gomega) {
		c, err := get(ctx, schwerin, clusterGVK, ns, clusterName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(clusterDetail(c)).To(Equal("self="+dbSchwerin+" primary="+dbKiel), "mv-schwerin's Cluster follows sh-kiel's")
		w, err := get(ctx, schwerin, webGVK, ns, webName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(specReplicas(w)).To(BeZero(), "mv-schwerin holds a cold copy of web")
		d, err := get(ctx, schwerin, dnsGVK, ns, dnsName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(dnsTargets(d)).To(BeEmpty(), "mv-schwerin publishes no record")
		v, err := get(ctx, schwerin, volumeGVK, ns, volumeName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(replicationState(v)).To(Equal("secondary"), "mv-schwerin's volume is the secondary")
		_, err = get(ctx, schwerin, pvcGVK, ns, volumeName)
		g.Expect(err).NotTo(HaveOccurred(), "mv-schwerin holds a copy of the PersistentVolumeClaim")
	}, time.Minute, 50*time.Millisecond).Should(Succeed())
	g.Eventually(status(ctx, schwerin, ns, svc.Name), time.Minute, 50*time.Millisecond).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Eventually(layers[schwerin.Name].reported("replica", time.Time{}), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"mv-schwerin's database reports itself a replica")
	g.Eventually(layers[schwerin.Name].reported("volume secondary", time.Time{}), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"mv-schwerin's volume reports itself secondary")
	// The failover's RPO gate judges sh-kiel's data too: wait until the volume has synced and
	// the service is Protected with it.
	g.Eventually(status(ctx, kiel, ns, svc.Name), time.Minute, 50*time.Millisecond).Should(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected), "sh-kiel is Protected with its volume in sync")
	// ... and until mv-schwerin holds the evidence of it: the time its partner last confirmed
	// the copies and the data, which is what its RPO gate judges after the loss.
	g.Eventually(func() *metav1.Condition {
		s, err := status(ctx, schwerin, ns, svc.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	}, time.Minute, 50*time.Millisecond).Should(HaveField("Status", metav1.ConditionTrue), "mv-schwerin knows its copy and the data are within the RPO")

	inv := watchInvariant(ctx, ns)
	var lost time.Time
	t.Cleanup(func() {
		// Also when the test stopped early: what the sampler found, and what the watches saw.
		inv.check(t)
		t0 := lost
		if t0.IsZero() {
			t0 = time.Now()
		}
		for _, site := range []*testenv.Site{schwerin, kiel} {
			t.Logf("%s's objects, relative to the loss of sh-kiel:%s", site.Name, forms[site.Name].timeline(t0))
			t.Logf("%s's data layer, relative to the loss of sh-kiel:%s", site.Name, layers[site.Name].history(t0))
		}
	})

	// 2. sh-kiel's data centre goes dark: its manager stops and every link to it is cut. Its
	// API server keeps running so that the test can watch the site come back in the form it
	// left; until its manager fenced it, the sampler counts it as serving nothing.
	lost = time.Now()
	inv.setDark(kiel, true)
	bringBack := dark.lose(t, g)

	failedOver := checkPromotion(ctx, t, g, schwerin, ns, svc.Name, lost, schwerinTarget, 2, layers[schwerin.Name], forms[schwerin.Name])
	g.Expect(failedOver.Status.LastFailover.From).To(Equal(testenv.SiteKiel))
	g.Expect(failedOver.Status.LastFailover.RecoveryTime).NotTo(BeNil())
	g.Expect(failedOver.Status.LastFailover.DetectedAt).NotTo(BeNil())
	t.Logf("failover: recovery time %s from the first failed probe (RTO %s)",
		failedOver.Status.LastFailover.RecoveryTime.Duration, objective.Spec.RTO.Duration)
	g.Expect(failedOver.Status.LastFailover.RecoveryTime.Duration).To(BeNumerically("<=", objective.Spec.RTO.Duration))

	// A failover hands nothing over: mv-schwerin's Cluster became primary without a promotion
	// token, so CloudNativePG failed over to a new timeline and sh-kiel's former primary would
	// have to be rebuilt.
	checkFailoverWithoutToken(ctx, t, g, ns, lost, failedOver, layers[schwerin.Name], forms[schwerin.Name])

	// 3. sh-kiel comes back with its objects as it left them; its manager fences them and
	// the copies of mv-schwerin's objects replace them.
	returned := time.Now()
	bringBack()
	g.Eventually(func(g Gomega) {
		d, err := get(ctx, kiel, dnsGVK, ns, dnsName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(dnsTargets(d)).To(BeEmpty(), "sh-kiel withdrew its record")
		c, err := get(ctx, kiel, clusterGVK, ns, clusterName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(clusterPrimary(c)).To(BeFalse(), "sh-kiel's database is no longer primary: %s", clusterDetail(c))
		v, err := get(ctx, kiel, volumeGVK, ns, volumeName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(volumePrimary(v)).To(BeFalse(), "sh-kiel's volume is no longer primary")
	}, time.Minute, 20*time.Millisecond).Should(Succeed())
	fenced := time.Now()
	inv.setDark(kiel, false)
	t.Logf("sh-kiel back: fenced %s after its manager started", fenced.Sub(returned).Round(time.Millisecond))

	g.Eventually(status(ctx, kiel, ns, svc.Name), time.Minute, 50*time.Millisecond).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.ActiveSite", testenv.SiteSchwerin)))
	g.Eventually(func(g Gomega) {
		for _, o := range serviceObjects {
			u, err := get(ctx, kiel, o.gvk, ns, o.name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(u.GetLabels()).To(HaveKeyWithValue(render.LabelSourceSite, testenv.SiteSchwerin),
				"sh-kiel holds mv-schwerin's copy of %s %s", o.gvk.Kind, o.name)
		}
		c, err := get(ctx, kiel, clusterGVK, ns, clusterName)
		g.Expect(err).NotTo(HaveOccurred())
		// sh-kiel's cluster keeps its own name: a copy that took mv-schwerin's name would, with
		// primary naming mv-schwerin's cluster, name itself primary, a second one.
		g.Expect(clusterDetail(c)).To(Equal("self="+dbKiel+" primary="+dbSchwerin), "sh-kiel's Cluster follows mv-schwerin's under its own name")
		d, err := get(ctx, kiel, dnsGVK, ns, dnsName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(dnsTargets(d)).To(BeEmpty())
		w, err := get(ctx, kiel, webGVK, ns, webName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(specReplicas(w)).To(BeZero())
		v, err := get(ctx, kiel, volumeGVK, ns, volumeName)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(replicationState(v)).To(Equal("secondary"))
	}, time.Minute, 50*time.Millisecond).Should(Succeed())
	g.Eventually(layers[kiel.Name].reported("replica", returned), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"sh-kiel's database reports itself a replica")
	g.Eventually(layers[kiel.Name].reported("volume secondary", returned), 10*time.Second, 20*time.Millisecond).Should(BeTrue(),
		"sh-kiel's volume reports itself secondary")
	t.Logf("sh-kiel holds mv-schwerin's copies %s after its manager started", time.Since(returned).Round(time.Millisecond))

	// 4. The service moves back with a Switchover, once sh-kiel's copies are within the RPO.
	g.Eventually(func() *metav1.Condition {
		s, err := status(ctx, kiel, ns, svc.Name)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	}, time.Minute, 100*time.Millisecond).Should(HaveField("Status", metav1.ConditionTrue), "sh-kiel's copies are within the RPO")
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "back-to-kiel"},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: svc.Name, TargetSite: testenv.SiteKiel, Reason: "CHG-0816: Kiel's data centre is restored"},
	}
	moved := time.Now()
	g.Expect(kiel.Client.Create(ctx, sw)).To(Succeed())
	g.Eventually(func() (*deichv1alpha1.Switchover, error) {
		got := &deichv1alpha1.Switchover{}
		return got, kiel.Client.Get(ctx, client.ObjectKeyFromObject(sw), got)
	}, 90*time.Second, 100*time.Millisecond).Should(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded))

	// mv-schwerin fenced in reverse: the record withdrawn first, then the application, then
	// the database, then the volume.
	var fence [4]sighting
	for i, kind := range []string{"DNSEndpoint", "Deployment", "Cluster", "VolumeReplication"} {
		g.Eventually(func() bool {
			var ok bool
			fence[i], ok = forms[schwerin.Name].first(kind, false, moved)
			return ok
		}, 30*time.Second, 20*time.Millisecond).Should(BeTrue(), "mv-schwerin's %s is switched to its standby form", kind)
	}
	t.Logf("switchover: mv-schwerin fenced the record %s, web %s, the database %s, the volume %s after the Switchover was created",
		fence[0].at.Sub(moved).Round(time.Millisecond), fence[1].at.Sub(moved).Round(time.Millisecond),
		fence[2].at.Sub(moved).Round(time.Millisecond), fence[3].at.Sub(moved).Round(time.Millisecond))
	g.Expect(fence[0].rv).To(BeNumerically("<", fence[1].rv), "the record is withdrawn before web is scaled down")
	g.Expect(fence[1].rv).To(BeNumerically("<", fence[2].rv), "web is scaled down before the database is demoted")
	g.Expect(fence[2].rv).To(BeNumerically("<", fence[3].rv), "the database is demoted before the volume")
	g.Expect(fence[2].detail).To(HavePrefix("self="+dbSchwerin+" primary="+dbKiel), "mv-schwerin's database follows sh-kiel's")

	movedBack := checkPromotion(ctx, t, g, kiel, ns, svc.Name, moved, kielTarget, failedOver.Status.LastFailover.Epoch+1, layers[kiel.Name], forms[kiel.Name])
	g.Expect(movedBack.Status.LastFailover.From).To(Equal(testenv.SiteSchwerin))
	c, err := get(ctx, kiel, clusterGVK, ns, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(clusterDetail(c)).To(Equal("self="+dbKiel+" primary="+dbKiel), "sh-kiel's database is primary under its own name")

	// The planned move handed mv-schwerin's demotion token to sh-kiel's Cluster, in the write
	// that made it primary, and CloudNativePG promoted it with the token: no rebuild.
	checkPlannedMoveWithToken(ctx, t, g, ns, moved, fence[2], movedBack, layers, forms[kiel.Name])

	// 5. The data's lag counts: while sh-kiel's volume does not sync, its data grows older than
	// the RPO and the service misses its objective, at the active and at the standby.
	checkDataLagCounts(ctx, t, g, ns, svc.Name, layers[kiel.Name])

	// 6. The sampler found no instant at which both sites served.
	inv.check(t)
}

// stageStatus returns the status of the stage name of svc's latest promotion.
func stageStatus(g Gomega, svc *deichv1alpha1.SharedService, name string) deichv1alpha1.PromotionStageStatus {
	g.Expect(svc.Status.Promotion).NotTo(BeNil())
	for _, s := range svc.Status.Promotion.Stages {
		if s.Name == name {
			return s
		}
	}
	g.Expect(svc.Status.Promotion.Stages).To(ContainElement(HaveField("Name", name)))
	return deichv1alpha1.PromotionStageStatus{}
}

// checkFailoverWithoutToken checks that the failover after the loss of sh-kiel promoted
// mv-schwerin's Cluster without spec.replica.promotionToken: the watch saw it primary without a
// token, it has none now, the stage's handoff says it was a failover, and CloudNativePG failed
// over to a new timeline with the former primary to be rebuilt.
func checkFailoverWithoutToken(ctx context.Context, t *testing.T, g Gomega, ns string, lost time.Time, svc *deichv1alpha1.SharedService, layer *dataLayer, forms *formLog) {
	t.Helper()
	seen, ok := forms.first("Cluster", true, lost)
	g.Expect(ok).To(BeTrue())
	_, found := promotionToken(seen.obj)
	g.Expect(found).To(BeFalse(), "mv-schwerin's Cluster was switched to primary without spec.replica.promotionToken")
	c, err := get(ctx, schwerin, clusterGVK, ns, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	_, found = promotionToken(c)
	g.Expect(found).To(BeFalse(), "mv-schwerin's Cluster has no spec.replica.promotionToken")
	_, found, _ = unstructured.NestedString(c.Object, "status", "lastPromotionToken")
	g.Expect(found).To(BeFalse(), "mv-schwerin's Cluster was promoted with no token")
	promoted, ok := layer.first("primary", lost)
	g.Expect(ok).To(BeTrue())
	g.Expect(promoted.how).To(Equal(promotedByFailover), "CloudNativePG failed over")
	g.Expect(promoted.rebuild).To(Equal(dbKiel), "sh-kiel's former primary would have to be rebuilt")
	handoff := stageStatus(g, svc, "database").Handoff
	g.Expect(handoff).To(ContainSubstring("none: a failover"))
	t.Logf("failover: stage database handoff %q; CloudNativePG at mv-schwerin promoted by %s to timeline %d, %s to be rebuilt",
		handoff, promoted.how, layer.timelineNow(), promoted.rebuild)
}

// checkPlannedMoveWithToken checks the handoff of the move back: mv-schwerin's Cluster, demoted
// by its fence (demotion, the sighting of the write), wrote status.demotionToken; sh-kiel's
// Cluster was first seen primary with that token in spec.replica.promotionToken, so the two
// came in one write; CloudNativePG promoted it with the token and recorded it in
// status.lastPromotionToken; and status.promotion says where the token came from.
func checkPlannedMoveWithToken(ctx context.Context, t *testing.T, g Gomega, ns string, moved time.Time, demotion sighting,
	svc *deichv1alpha1.SharedService, layers map[string]*dataLayer, forms *formLog) {
	t.Helper()
	demoted, ok := layers[schwerin.Name].first("replica", moved)
	g.Expect(ok).To(BeTrue(), "mv-schwerin's database reports itself a replica")
	g.Expect(demoted.token).NotTo(BeEmpty(), "mv-schwerin's demoted primary wrote a demotion token")
	g.Expect(demoted.rv).To(BeNumerically(">", demotion.rv), "the token is written after the demotion")
	token, err := decodeToken(demoted.token)
	g.Expect(err).NotTo(HaveOccurred())
	c, err := get(ctx, schwerin, clusterGVK, ns, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Object).To(HaveKeyWithValue("status", HaveKeyWithValue("demotionToken", demoted.token)),
		"mv-schwerin's status.demotionToken is the token it wrote")

	seen, ok := forms.first("Cluster", true, moved)
	g.Expect(ok).To(BeTrue())
	handed, found := promotionToken(seen.obj)
	g.Expect(found).To(BeTrue(), "sh-kiel's Cluster carries spec.replica.promotionToken in the write that made it primary (rv %d)", seen.rv)
	g.Expect(handed).To(Equal(demoted.token), "the promotion token is mv-schwerin's demotion token")
	g.Expect(seen.at).To(BeTemporally(">=", demoted.at), "sh-kiel is promoted only once the token was written")

	promoted, ok := layers[kiel.Name].first("primary", moved)
	g.Expect(ok).To(BeTrue())
	g.Expect(promoted.how).To(Equal(promotedWithToken), "CloudNativePG promoted sh-kiel's Cluster with the token")
	g.Expect(promoted.token).To(Equal(demoted.token))
	g.Expect(promoted.rebuild).To(BeEmpty(), "nothing to rebuild after a planned move")
	k, err := get(ctx, kiel, clusterGVK, ns, clusterName)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(k.Object).To(HaveKeyWithValue("status", HaveKeyWithValue("lastPromotionToken", demoted.token)),
		"sh-kiel's status.lastPromotionToken is the token it was promoted with")
	g.Expect(k.Object).To(HaveKeyWithValue("status", Not(HaveKey("demotionToken"))), "a primary has no demotion token")

	handoff := stageStatus(g, svc, "database").Handoff
	g.Expect(handoff).To(Equal("self.status.demotionToken from " + testenv.SiteSchwerin))
	rel := func(at time.Time) time.Duration { return at.Sub(moved).Round(time.Millisecond) }
	t.Logf("switchover: mv-schwerin wrote its demotion token (%s) %s after the Switchover was created; sh-kiel's database was switched with it %s, promoted %s to timeline %d; handoff %q",
		token, rel(demoted.at), rel(seen.at), rel(promoted.at), layers[kiel.Name].timelineNow(), handoff)
}

// checkDataLagCounts stops the volume driver's syncs at sh-kiel, the active site, for longer
// than the RPO: the data of the VolumeReplication grows older than the RPO, so ObjectivesMet
// turns False at sh-kiel naming it and status.replicationLag exceeds the RPO; the standby's copy
// counts as no younger than the data, so mv-schwerin misses the RPO too. Once the syncs resume
// both meet it again.
func checkDataLagCounts(ctx context.Context, t *testing.T, g Gomega, ns, name string, layer *dataLayer) {
	t.Helper()
	objectivesMet := func(site *testenv.Site) func() (*metav1.Condition, error) {
		return func() (*metav1.Condition, error) {
			svc, err := status(ctx, site, ns, name)()
			if err != nil {
				return nil, err
			}
			return meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet), nil
		}
	}
	g.Eventually(status(ctx, kiel, ns, name), time.Minute, 50*time.Millisecond).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.ReplicationLag.Duration", BeNumerically("<=", serviceRPO))), "sh-kiel is Protected again")
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(objectivesMet(site), 30*time.Second, 50*time.Millisecond).Should(HaveField("Status", metav1.ConditionTrue),
			"%s meets the RPO before the volume stalls", site.Name)
	}

	stalled := time.Now()
	layer.pauseSync(true)
	defer layer.pauseSync(false)
	var missed *deichv1alpha1.SharedService
	g.Eventually(func(g Gomega) {
		svc, err := status(ctx, kiel, ns, name)()
		g.Expect(err).NotTo(HaveOccurred())
		c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
		g.Expect(c).NotTo(BeNil())
		g.Expect(*c).To(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", deichv1alpha1.ServiceReasonCopyTooOld),
			HaveField("Message", ContainSubstring("VolumeReplication "+volumeName+" (stage storage)"))))
		missed = svc
	}, serviceRPO+20*time.Second, 50*time.Millisecond).Should(Succeed(), "sh-kiel misses the RPO for the stalled volume")
	missedAt := time.Now()
	g.Expect(missed.Status.ReplicationLag).NotTo(BeNil())
	g.Expect(missed.Status.ReplicationLag.Duration).To(BeNumerically(">", serviceRPO), "status.replicationLag counts the data's lag")
	missedMessage := meta.FindStatusCondition(missed.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet).Message
	var standby metav1.Condition
	g.Eventually(func(g Gomega) {
		c, err := objectivesMet(schwerin)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c).NotTo(BeNil())
		g.Expect(*c).To(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", deichv1alpha1.ServiceReasonCopyTooOld)))
		standby = *c
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "mv-schwerin's copy is no younger than the data")
	standbyAt := time.Now()
	v, err := get(ctx, kiel, volumeGVK, ns, volumeName)
	g.Expect(err).NotTo(HaveOccurred())
	lastSync, _, _ := unstructured.NestedString(v.Object, "status", "lastSyncTime")

	layer.pauseSync(false)
	resumed := time.Now()
	var lag time.Duration
	g.Eventually(func(g Gomega) {
		svc, err := status(ctx, kiel, ns, name)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)).To(
			And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue)))
		g.Expect(svc.Status.ReplicationLag).NotTo(BeNil())
		g.Expect(svc.Status.ReplicationLag.Duration).To(BeNumerically("<=", serviceRPO))
		lag = svc.Status.ReplicationLag.Duration
	}, 30*time.Second, 50*time.Millisecond).Should(Succeed(), "sh-kiel meets the RPO once the volume syncs again")
	metAt := time.Now()
	g.Eventually(objectivesMet(schwerin), 30*time.Second, 50*time.Millisecond).Should(And(Not(BeNil()), HaveField("Status", metav1.ConditionTrue)),
		"mv-schwerin meets the RPO once the volume syncs again")
	standbyMetAt := time.Now()
	rel := func(at time.Time) time.Duration { return at.Sub(stalled).Round(time.Millisecond) }
	t.Logf("data lag: sh-kiel's volume stopped syncing (lastSyncTime %s); ObjectivesMet False at sh-kiel %s after (replicationLag %s, %q), at mv-schwerin %s after (%q)",
		lastSync, rel(missedAt), missed.Status.ReplicationLag.Duration, missedMessage, rel(standbyAt), standby.Message)
	t.Logf("data lag: syncs resumed %s after they stopped; ObjectivesMet True at sh-kiel %s after they resumed (replicationLag %s), at mv-schwerin %s after",
		rel(resumed), metAt.Sub(resumed).Round(time.Millisecond), lag, standbyMetAt.Sub(resumed).Round(time.Millisecond))
}

// checkPromotion waits until site serves the service after a promotion that started no
// earlier than since, and checks its order from the writes the watches saw: the volume
// switched first; the database only after the data layer reported the volume primary; the
// application only after the data layer reported the database primary; the record, with the
// site's own target, only after the application reported ready replicas.
// It then checks status.promotion and status.lastFailover (epoch at least minEpoch) and the
// epoch on each object, and returns the SharedService.
func checkPromotion(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, ns, name string, since time.Time, target string,
	minEpoch int64, layer *dataLayer, forms *formLog) *deichv1alpha1.SharedService {
	t.Helper()
	var vol, db, app, dns sighting
	var volPrimary, primary, ready dataEvent
	g.Eventually(func(g Gomega) {
		var ok bool
		vol, ok = forms.first("VolumeReplication", true, since)
		g.Expect(ok).To(BeTrue(), "the volume is switched to its active form")
		volPrimary, ok = layer.first("volume primary", since)
		g.Expect(ok).To(BeTrue(), "the volume reports itself primary")
		db, ok = forms.first("Cluster", true, since)
		g.Expect(ok).To(BeTrue(), "the database is switched to its active form")
		primary, ok = layer.first("primary", since)
		g.Expect(ok).To(BeTrue(), "the database reports itself primary")
		app, ok = forms.first("Deployment", true, since)
		g.Expect(ok).To(BeTrue(), "web is switched to its active form")
		ready, ok = layer.first("ready", since)
		g.Expect(ok).To(BeTrue(), "web reports ready replicas")
		dns, ok = forms.first("DNSEndpoint", true, since)
		g.Expect(ok).To(BeTrue(), "the record is published")
	}, 90*time.Second, 20*time.Millisecond).Should(Succeed(), "%s promotes the service", site.Name)
	rel := func(at time.Time) time.Duration { return at.Sub(since).Round(time.Millisecond) }
	t.Logf("%s: volume switched %s, reported Primary %s, database switched %s, reported primary %s, web switched %s, reported ready %s, record published %s",
		site.Name, rel(vol.at), rel(volPrimary.at), rel(db.at), rel(primary.at), rel(app.at), rel(ready.at), rel(dns.at))

	g.Expect(vol.rv).To(BeNumerically("<", volPrimary.rv), "the volume is reported primary after it was switched")
	g.Expect(volPrimary.rv).To(BeNumerically("<", db.rv), "the database is switched only after the volume reported itself primary")
	g.Expect(db.at).To(BeTemporally(">=", volPrimary.at), "the database is switched only after the volume reported itself primary")
	g.Expect(db.rv).To(BeNumerically("<", primary.rv), "the database is reported primary after it was switched")
	g.Expect(primary.rv).To(BeNumerically("<", app.rv), "web is switched only after the database reported itself primary")
	g.Expect(app.at).To(BeTemporally(">=", primary.at), "web is switched only after the database reported itself primary")
	g.Expect(app.rv).To(BeNumerically("<", ready.rv), "web reports ready after it was switched")
	g.Expect(ready.rv).To(BeNumerically("<", dns.rv), "the record is published only after web reported ready replicas")
	g.Expect(dns.at).To(BeTemporally(">=", ready.at), "the record is published only after web reported ready replicas")
	g.Expect(dns.detail).To(HavePrefix("targets=[" + target + "]"))

	var svc *deichv1alpha1.SharedService
	g.Eventually(func(g Gomega) {
		var err error
		svc, err = status(ctx, site, ns, name)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(svc.Status.Role).To(Equal(deichv1alpha1.RoleActive))
		g.Expect(svc.Status.Lease).NotTo(BeNil())
		g.Expect(svc.Status.Lease.Holder).To(Equal(site.Name))
		g.Expect(svc.Status.Promotion).NotTo(BeNil())
		g.Expect(svc.Status.Promotion.CompletedAt).NotTo(BeNil())
		g.Expect(svc.Status.Promotion.Stages).To(HaveExactElements(
			HaveField("Name", "storage"), HaveField("Name", "database"), HaveField("Name", "app"), HaveField("Name", "dns")))
		g.Expect(svc.Status.Promotion.Stages).To(HaveEach(And(
			HaveField("Phase", deichv1alpha1.StageReady), HaveField("StartedAt", Not(BeNil())), HaveField("ReadyAt", Not(BeNil())))))
		g.Expect(svc.Status.LastFailover).NotTo(BeNil())
		g.Expect(svc.Status.LastFailover.To).To(Equal(site.Name))
		g.Expect(svc.Status.LastFailover.CompletedAt).NotTo(BeNil())
		g.Expect(svc.Status.LastFailover.Epoch).To(BeNumerically(">=", minEpoch))
	}, time.Minute, 50*time.Millisecond).Should(Succeed(), "%s records the promotion", site.Name)
	stages := svc.Status.Promotion.Stages
	for i := 1; i < len(stages); i++ {
		g.Expect(stages[i].StartedAt.Time).To(BeTemporally(">=", stages[i-1].StartedAt.Time), "stage %s starts after %s", stages[i].Name, stages[i-1].Name)
		g.Expect(stages[i].StartedAt.Time).To(BeTemporally(">=", stages[i-1].ReadyAt.Time), "stage %s starts once %s is ready", stages[i].Name, stages[i-1].Name)
	}
	for _, s := range stages {
		handoff := ""
		if s.Handoff != "" {
			handoff = fmt.Sprintf(", handoff %q", s.Handoff)
		}
		t.Logf("%s: stage %s started %s, ready %s%s", site.Name, s.Name, rel(s.StartedAt.Time), rel(s.ReadyAt.Time), handoff)
	}
	epoch := svc.Status.LastFailover.Epoch
	g.Expect(svc.Status.Promotion.Epoch).To(Equal(epoch))
	t.Logf("%s: promotion with epoch %d completed %s, lastFailover.completedAt %s", site.Name, epoch,
		rel(svc.Status.Promotion.CompletedAt.Time), rel(svc.Status.LastFailover.CompletedAt.Time))
	for _, o := range serviceObjects {
		u, err := get(ctx, site, o.gvk, ns, o.name)
		g.Expect(err).NotTo(HaveOccurred())
		if o.sameInBothForms {
			g.Expect(u.GetAnnotations()).To(And(HaveKeyWithValue(render.AnnotationActivePatch, "{}"), Not(HaveKey(failover.EpochAnnotation))),
				"%s %s at %s serves as it is, neither switched nor stamped", o.gvk.Kind, o.name, site.Name)
			continue
		}
		g.Expect(u.GetAnnotations()).To(HaveKeyWithValue(failover.EpochAnnotation, strconv.FormatInt(epoch, 10)),
			"%s %s at %s carries the epoch it serves under", o.gvk.Kind, o.name, site.Name)
	}
	return svc
}

// status reads the SharedService at site.
func status(ctx context.Context, site *testenv.Site, ns, name string) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)
	}
}

// reported returns whether the data layer wrote what at or after since.
func (d *dataLayer) reported(what string, since time.Time) func() bool {
	return func() bool {
		_, ok := d.first(what, since)
		return ok
	}
}

var partOfBuergerkonto = map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}

// volumeReplication is the csi-addons VolumeReplication of the service's files at sh-kiel: the
// volume behind the PersistentVolumeClaim buergerkonto-files, primary here.
func volumeReplication(ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": volumeName, "namespace": ns},
		"spec": map[string]any{
			"volumeReplicationClass": "rbd-mirror",
			"replicationState":       "primary",
			"autoResync":             false,
			"dataSource":             map[string]any{"apiGroup": "", "kind": "PersistentVolumeClaim", "name": volumeName},
		},
	}}
	u.SetGroupVersionKind(volumeGVK)
	u.SetLabels(partOfBuergerkonto)
	return u
}

// filesClaim is the PersistentVolumeClaim of the service's files. No storage runs in the test's
// API servers, so it stays Pending: Deich mirrors it as an object, the volume's data is the
// VolumeReplication's.
func filesClaim(ns string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: volumeName, Labels: partOfBuergerkonto},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To("rbd"),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")}},
		},
	}
}

// dbCluster is sh-kiel's database: a CloudNativePG cluster in the distributed topology, primary
// while its spec names itself.
func dbCluster(ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": clusterName, "namespace": ns},
		"spec": map[string]any{
			"instances": int64(1),
			"replica":   map[string]any{"self": dbKiel, "primary": dbKiel, "source": dbSchwerin},
			"externalClusters": []any{
				map[string]any{"name": dbKiel, "connectionParameters": map[string]any{"host": "buergerkonto-db-rw.sh-kiel.example.de", "dbname": "app"}},
				map[string]any{"name": dbSchwerin, "connectionParameters": map[string]any{"host": "buergerkonto-db-rw.mv-schwerin.example.de", "dbname": "app"}},
			},
		},
	}}
	u.SetGroupVersionKind(clusterGVK)
	u.SetLabels(partOfBuergerkonto)
	return u
}

func webDeployment(ns string) *appsv1.Deployment {
	labels := map[string]string{"app.kubernetes.io/part-of": "buergerkonto", "app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: webName, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(webReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example.de/buergerkonto:1.4"}}},
			},
		},
	}
}

// dnsEndpoint is the record citizens resolve, pointing at sh-kiel's ingress.
func dnsEndpoint(ns string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"metadata": map[string]any{"name": dnsName, "namespace": ns},
		"spec": map[string]any{"endpoints": []any{map[string]any{
			"dnsName": hostname, "recordType": "A", "recordTTL": int64(60), "targets": []any{kielTarget},
		}}},
	}}
	u.SetGroupVersionKind(dnsGVK)
	u.SetLabels(partOfBuergerkonto)
	return u
}

// statefulService is the SharedService of docs/stateful.md: the VolumeReplication and its
// PersistentVolumeClaim, the Cluster, the Deployment and the DNSEndpoint, with the overrides
// that give each site's copy its own cluster name and target and make the standby's copies a
// secondary volume, a replica database and an empty record, and the promotion in four stages:
// the volume (whose lastSyncTime counts against the RPO), the database (handed the demotion
// token in a planned move), the application, DNS.
func statefulService(ns string, checks ...deichv1alpha1.HealthCheck) *deichv1alpha1.SharedService {
	w := testobjects.MakeSharedService("buergerkonto", ns).Objective(ns).Resources(
		deichv1alpha1.ResourceKind{Group: "replication.storage.openshift.io", Kind: "VolumeReplication"},
		deichv1alpha1.ResourceKind{Kind: "PersistentVolumeClaim"},
		deichv1alpha1.ResourceKind{Group: "postgresql.cnpg.io", Kind: "Cluster"},
		deichv1alpha1.ResourceKind{Group: "apps", Kind: "Deployment"},
		deichv1alpha1.ResourceKind{Group: "externaldns.k8s.io", Kind: "DNSEndpoint"},
	)
	for _, hc := range checks {
		w = w.HealthCheck(hc)
	}
	svc := w.Obj()
	cluster := &deichv1alpha1.PatchTarget{Group: "postgresql.cnpg.io", Kind: "Cluster", Name: clusterName}
	dns := &deichv1alpha1.PatchTarget{Group: "externaldns.k8s.io", Kind: "DNSEndpoint"}
	volume := &deichv1alpha1.PatchTarget{Group: "replication.storage.openshift.io", Kind: "VolumeReplication"}
	svc.Spec.Overrides = []deichv1alpha1.Override{
		// Each site's copy gets its own cluster name and address back, whichever site's
		// object it was rendered from.
		{Site: testenv.SiteKiel, Patches: []deichv1alpha1.Patch{{Target: cluster, Patch: `
- {op: replace, path: /spec/replica/self, value: ` + dbKiel + `}
- {op: replace, path: /spec/replica/source, value: ` + dbSchwerin + `}
- {op: replace, path: /spec/replica/primary, value: ` + dbKiel + `}
`}, {Target: dns, Patch: `
- {op: replace, path: /spec/endpoints/0/targets, value: [` + kielTarget + `]}
`}}},
		{Site: testenv.SiteSchwerin, Patches: []deichv1alpha1.Patch{{Target: cluster, Patch: `
- {op: replace, path: /spec/replica/self, value: ` + dbSchwerin + `}
- {op: replace, path: /spec/replica/source, value: ` + dbKiel + `}
- {op: replace, path: /spec/replica/primary, value: ` + dbSchwerin + `}
`}}},
		{Role: deichv1alpha1.RoleStandby, Site: testenv.SiteSchwerin, Patches: []deichv1alpha1.Patch{{Target: cluster, Patch: `
- {op: replace, path: /spec/replica/primary, value: ` + dbKiel + `}
`}}},
		{Role: deichv1alpha1.RoleStandby, Site: testenv.SiteKiel, Patches: []deichv1alpha1.Patch{{Target: cluster, Patch: `
- {op: replace, path: /spec/replica/primary, value: ` + dbSchwerin + `}
`}}},
		{Site: testenv.SiteSchwerin, Patches: []deichv1alpha1.Patch{{Target: dns, Patch: `
- {op: replace, path: /spec/endpoints/0/targets, value: [` + schwerinTarget + `]}
`}}},
		{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{{Target: dns, Patch: `
- {op: replace, path: /spec/endpoints, value: []}
`}}},
		{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{{Target: volume, Patch: `
- {op: replace, path: /spec/replicationState, value: secondary}
`}}},
	}
	svc.Spec.Promotion = &deichv1alpha1.Promotion{Stages: []deichv1alpha1.PromotionStage{
		{
			Name:           "storage",
			Target:         *volume,
			ReadyWhen:      "has(self.status.state) && self.status.state == 'Primary'",
			ReplicationLag: "timestamp(self.status.lastSyncTime)",
			Timeout:        &metav1.Duration{Duration: time.Minute},
		},
		{
			Name:   "database",
			Target: deichv1alpha1.PatchTarget{Group: "postgresql.cnpg.io", Kind: "Cluster"},
			ReadyWhen: "has(self.status.phase) && self.status.phase == 'Cluster in healthy state' && " +
				"has(self.status.currentPrimary) && self.status.currentPrimary.startsWith(self.spec.replica.self)",
			Handoff: &deichv1alpha1.StageHandoff{From: "self.status.demotionToken", To: "/spec/replica/promotionToken"},
			Timeout: &metav1.Duration{Duration: time.Minute},
		},
		{
			Name:      "app",
			Target:    deichv1alpha1.PatchTarget{Group: "apps", Kind: "Deployment"},
			ReadyWhen: "has(self.status.readyReplicas) && self.status.readyReplicas >= 1",
		},
		{
			Name:   "dns",
			Target: deichv1alpha1.PatchTarget{Group: "externaldns.k8s.io", Kind: "DNSEndpoint"},
		},
	}}
	return svc
}

// darkKiel is sh-kiel's service endpoint as mv-schwerin reaches it, across the link, and a
// way to take the whole site away at one instant: its manager stopped, every link cut.
type darkKiel struct {
	service *testenv.Proxy
	check   deichv1alpha1.HealthCheck
}

func newDarkKiel(t *testing.T, g Gomega) *darkKiel {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(srv.Close)
	p, err := testenv.NewProxy(srv.Listener.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = p.Close() })
	return &darkKiel{service: p, check: deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: "http://" + p.Addr() + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	}}
}

// lose takes sh-kiel away; the returned function brings it back (idempotent, also run at
// cleanup).
func (d *darkKiel) lose(t *testing.T, g Gomega) func() {
	t.Helper()
	g.Expect(managers.Stop(kiel)).To(Succeed())
	toKiel.Cut()
	d.service.Cut()
	back := false
	bringBack := func() {
		if back {
			return
		}
		back = true
		toKiel.Restore()
		d.service.Restore()
		g.Expect(managers.Start(kiel)).To(Succeed())
	}
	t.Cleanup(bringBack)
	return bringBack
}
