package controllers_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// webReplicas is the replica count of the Deployment "web" at the site that serves.
const webReplicas = 3

// fastManualObjective fails over within seconds, and only when a Switchover asks: these tests
// move services on purpose.
func fastManualObjective() *testobjects.RecoveryObjectiveWrapper {
	return testobjects.MakeRecoveryObjective("").Failover(2, time.Second, 6*time.Second).RTO(time.Minute).
		Mode(deichv1alpha1.FailoverManual)
}

// movable is a SharedService for Switchover tests, in a namespace of its own.
type movable struct{ ns, name string }

// setUpMovable connects the sites and creates a movable service (see createMovable).
func setUpMovable(ctx context.Context, t *testing.T, g Gomega, ns string, objective *testobjects.RecoveryObjectiveWrapper, mutate ...func(*deichv1alpha1.SharedService)) movable {
	t.Helper()
	connectSites(ctx, t, g)
	return createMovable(ctx, t, g, ns, objective, mutate...)
}

// createMovable creates, at both sites, the objective (named after ns), and at sh-kiel the
// namespace, a Deployment "web" with webReplicas replicas, a ConfigMap and the SharedService,
// changed by mutate. It returns once sh-kiel serves and holds the lease and mv-schwerin holds
// the cold copies.
func createMovable(ctx context.Context, t *testing.T, g Gomega, ns string, objective *testobjects.RecoveryObjectiveWrapper, mutate ...func(*deichv1alpha1.SharedService)) movable {
	t.Helper()
	var mode deichv1alpha1.StandbyMode
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := objective.Obj()
		obj.Name = ns
		mode = obj.Spec.Standby
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		cleanup(t, site, obj)
	}
	createNamespace(ctx, t, g, kiel, ns)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: partOfBuergerkonto},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](webReplicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example.de/buergerkonto:1.4"}}},
			},
		},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, dep)).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Objective(ns).Obj()
	for _, m := range mutate {
		m(svc)
	}
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	// After a move the service is active at mv-schwerin: delete it at both sites.
	cleanup(t, schwerin, svc.DeepCopy())
	cleanup(t, kiel, svc.DeepCopy())

	m := movable{ns: ns, name: svc.Name}
	g.Eventually(m.status(ctx, kiel)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Eventually(m.replicas(ctx, schwerin)).Should(BeEquivalentTo(standbyReplicas(mode)), "mv-schwerin holds a copy in %s standby form", mode)
	g.Eventually(m.status(ctx, schwerin)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))
	return m
}

// standbyReplicas is how many replicas of the Deployment web a standby runs in mode.
func standbyReplicas(mode deichv1alpha1.StandbyMode) int32 {
	switch mode {
	case deichv1alpha1.StandbyWarm:
		return 1
	case deichv1alpha1.StandbyHot:
		return webReplicas
	}
	return 0
}

// annotations reads the annotations of the Deployment web at site.
func (m movable) annotations(ctx context.Context, site *testenv.Site) func() (map[string]string, error) {
	return func() (map[string]string, error) {
		dep := &appsv1.Deployment{}
		err := site.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "web"}, dep)
		return dep.Annotations, err
	}
}

func (m movable) status(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return serviceStatus(ctx, site, m.ns, m.name)
}

// replicas reads spec.replicas of the Deployment "web" at site.
func (m movable) replicas(ctx context.Context, site *testenv.Site) func() (int32, error) {
	return func() (int32, error) {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "web"}, dep); err != nil {
			return -1, err
		}
		return ptr.Deref(dep.Spec.Replicas, 1), nil
	}
}

// objectivesMet reads the ObjectivesMet condition of the SharedService at site.
func (m movable) objectivesMet(ctx context.Context, site *testenv.Site) func() *metav1.Condition {
	return func() *metav1.Condition {
		s, err := m.status(ctx, site)()
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	}
}

// switchover returns a Switchover of the service to target.
// breakPromotionAtSchwerin gives the service an Active override for mv-schwerin that its API
// server rejects — the standby copy is fine, but its promotion would fail — and returns once
// mv-schwerin's copy carries it.
func (m movable) breakPromotionAtSchwerin(ctx context.Context, g Gomega) {
	updateService(ctx, g, kiel, client.ObjectKey{Namespace: m.ns, Name: m.name}, func(svc *deichv1alpha1.SharedService) {
		svc.Spec.Overrides = append(svc.Spec.Overrides, deichv1alpha1.Override{
			Site: testenv.SiteSchwerin, Role: deichv1alpha1.RoleActive,
			Patches: []deichv1alpha1.Patch{{
				Target: &deichv1alpha1.PatchTarget{Kind: "Deployment"},
				Patch:  `[{"op": "replace", "path": "/spec/replicas", "value": -1}]`,
			}},
		})
	})
	g.Eventually(func() string {
		dep := &appsv1.Deployment{}
		_ = schwerin.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "web"}, dep)
		return dep.Annotations[render.AnnotationActivePatch]
	}).Should(ContainSubstring(`"replicas":-1`))
}

func (m movable) switchover(name, target, reason string) *deichv1alpha1.Switchover {
	return &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.ns, Name: name},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: m.name, TargetSite: target, Reason: reason},
	}
}

// create creates sw at site for the rest of the test.
func (m movable) create(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, sw *deichv1alpha1.Switchover) {
	t.Helper()
	g.Expect(site.Client.Create(ctx, sw)).To(Succeed())
	cleanup(t, site, sw.DeepCopy())
}

// getSwitchover reads the Switchover named like sw at site.
func getSwitchover(ctx context.Context, site *testenv.Site, sw *deichv1alpha1.Switchover) func() (*deichv1alpha1.Switchover, error) {
	return func() (*deichv1alpha1.Switchover, error) {
		got := &deichv1alpha1.Switchover{}
		return got, site.Client.Get(ctx, client.ObjectKeyFromObject(sw), got)
	}
}

// switchoverGone reports whether the Switchover named like sw is gone from site.
func switchoverGone(ctx context.Context, site *testenv.Site, sw *deichv1alpha1.Switchover) func() bool {
	return func() bool {
		return apierrors.IsNotFound(site.Client.Get(ctx, client.ObjectKeyFromObject(sw), &deichv1alpha1.Switchover{}))
	}
}

// finished waits until sw at site reached phase and returns it.
func finished(ctx context.Context, g Gomega, site *testenv.Site, sw *deichv1alpha1.Switchover, phase deichv1alpha1.SwitchoverPhase, timeout time.Duration) *deichv1alpha1.Switchover {
	g.Eventually(getSwitchover(ctx, site, sw), timeout).Should(HaveField("Status.Phase", phase))
	got, err := getSwitchover(ctx, site, sw)()
	g.Expect(err).NotTo(HaveOccurred())
	return got
}

func condition(sw *deichv1alpha1.Switchover, t string) *metav1.Condition {
	return meta.FindStatusCondition(sw.Status.Conditions, t)
}

// versionWatch checks every version of one SharedService at a site.
type versionWatch struct {
	stopWatch func()
	mu        sync.Mutex
	seen      int
	wrong     []string
}

// watchVersions watches the SharedService ns/name at site (testenv.WatchSharedServices) and
// hands each version to check, which returns "" for a version it does not judge, "ok", or what
// is wrong with it.
func watchVersions(ctx context.Context, t *testing.T, site *testenv.Site, ns, name string, check func(*deichv1alpha1.SharedService) string) *versionWatch {
	t.Helper()
	w := &versionWatch{}
	stop, err := testenv.WatchSharedServices(ctx, site, func(_ watch.EventType, svc *deichv1alpha1.SharedService) {
		verdict := check(svc)
		if verdict == "" {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		w.seen++
		if verdict != "ok" {
			w.wrong = append(w.wrong, verdict)
		}
	}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	w.stopWatch = stop
	return w
}

// stop ends the watch and returns how many versions check judged and what was wrong.
func (w *versionWatch) stop() (int, []string) {
	w.stopWatch()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen, w.wrong
}

// overlapWatch samples the Deployment "web" at both sites every 20ms and counts the samples in
// which both run replicas: the split-brain a move must never cause.
type overlapWatch struct {
	stop              chan struct{}
	done              sync.WaitGroup
	samples, overlaps atomic.Int64
	first             atomic.Value // string: the first overlap seen

	mu      sync.Mutex
	changes []string // when each site's replicas changed, for the failure message
}

func watchOverlap(ctx context.Context, m movable) *overlapWatch {
	w := &overlapWatch{stop: make(chan struct{})}
	w.done.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			// sh-kiel is read before and after mv-schwerin: a site switches at most once
			// within a sample, so sh-kiel running in both reads means it ran while
			// mv-schwerin was read.
			k1, err1 := m.replicas(ctx, kiel)()
			s, err2 := m.replicas(ctx, schwerin)()
			k2, err3 := m.replicas(ctx, kiel)()
			if err1 != nil || err2 != nil || err3 != nil {
				continue
			}
			w.samples.Add(1)
			w.note(k2, s)
			if k1 > 0 && k2 > 0 && s > 0 {
				if w.overlaps.Add(1) == 1 {
					w.first.Store(fmt.Sprintf("at %s sh-kiel ran %d and mv-schwerin %d replicas", time.Now().Format(time.RFC3339Nano), k2, s))
				}
			}
		}
	})
	return w
}

// note records a sample that differs from the previous one.
func (w *overlapWatch) note(kielReplicas, schwerinReplicas int32) {
	line := fmt.Sprintf("sh-kiel %d, mv-schwerin %d", kielReplicas, schwerinReplicas)
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.changes); n == 0 || !strings.HasSuffix(w.changes[n-1], line) {
		w.changes = append(w.changes, time.Now().Format("15:04:05.000")+" "+line)
	}
}

// check stops the watch and fails the test if both sites ever served at once.
func (w *overlapWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.done.Wait()
	switch {
	case w.overlaps.Load() > 0:
		w.mu.Lock()
		t.Errorf("both sites served at once in %d of %d samples; first %v; replicas over time:\n%s",
			w.overlaps.Load(), w.samples.Load(), w.first.Load(), strings.Join(w.changes, "\n"))
		w.mu.Unlock()
	case w.samples.Load() < 10:
		t.Errorf("only %d samples taken: the watch proves nothing", w.samples.Load())
	default:
		t.Logf("no overlap in %d samples", w.samples.Load())
	}
}

// links routes each site's connection to the other through a proxy that can be cut.
type links struct{ proxies []*testenv.Proxy }

// proxyLinks connects the sites through proxies: it replaces the peer kubeconfigs at both
// sites with ones through proxies and returns once both connections go through them. The
// links are restored and the proxies closed when the test ends.
func proxyLinks(ctx context.Context, t *testing.T, g Gomega) *links {
	t.Helper()
	connectSites(ctx, t, g)
	l := &links{}
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		on, other := pair[0], pair[1]
		p, err := testenv.NewProxy(strings.TrimPrefix(other.URL(), "https://"))
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() { _ = p.Close() })
		kubeconfig, err := other.KubeconfigFor(p.URL())
		g.Expect(err).NotTo(HaveOccurred())
		putSecret(ctx, t, on, managerNamespace, "peer-"+other.Name, kubeconfig)
		l.proxies = append(l.proxies, p)
	}
	t.Cleanup(l.restore)
	l.cut(ctx, g)
	l.restore()
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		g.Eventually(peerCondition(ctx, pair[0], pair[1].Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))
	}
	return l
}

// cut cuts both links and waits until each site's ReplicationPeer sees the other unreachable,
// which also proves the connections go through the proxies.
func (l *links) cut(ctx context.Context, g Gomega) {
	for _, p := range l.proxies {
		p.Cut()
	}
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		g.Eventually(peerCondition(ctx, pair[0], pair[1].Name, deichv1alpha1.PeerConditionReachable)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed))
	}
}

func (l *links) restore() {
	for _, p := range l.proxies {
		p.Restore()
	}
}

func TestSwitchoverMovesTheServiceAndBackWithoutOverlap(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-move", fastManualObjective())
	inv := watchOverlap(ctx, m)
	// Every version of the SharedService at mv-schwerin that names it active says, in the
	// same write, that the lease now lives at sh-kiel's cluster.
	quorum := watchVersions(ctx, t, schwerin, m.ns, m.name, func(svc *deichv1alpha1.SharedService) string {
		q := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionQuorum)
		if svc.Status.ActiveSite != testenv.SiteSchwerin || q == nil {
			return ""
		}
		if want := "standby's cluster (" + testenv.SiteKiel + ")"; !strings.Contains(q.Message, want) {
			return fmt.Sprintf("resourceVersion %s: active %s, Quorum %q does not say %q", svc.ResourceVersion, svc.Status.ActiveSite, q.Message, want)
		}
		return "ok"
	})

	sw := m.switchover("move-to-schwerin", testenv.SiteSchwerin, "CHG-4711: maintenance of the Kiel data centre")
	m.create(ctx, t, g, kiel, sw)
	got := finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Expect(got.Status.FromSite).To(Equal(testenv.SiteKiel))
	g.Expect(got.Status.StartedAt).NotTo(BeNil())
	g.Expect(got.Status.CompletedAt).NotTo(BeNil())
	g.Expect(got.Status.Message).To(ContainSubstring("mv-schwerin serves SharedService buergerkonto: moved from sh-kiel in"))
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	t.Logf("%s: %s", sw.Name, got.Status.Message)
	g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonMoved))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionCopyWithinRPO)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonWithinRPO))

	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(webReplicas), "the source's replica count is restored at the target")
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(0), "the source is fenced")
	g.Eventually(m.status(ctx, schwerin)).Should(And(
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Role", deichv1alpha1.RoleActive),
		HaveField("Status.LastFailover.From", testenv.SiteKiel),
		HaveField("Status.LastFailover.To", testenv.SiteSchwerin),
		HaveField("Status.LastFailover.Reason", ContainSubstring("move-to-schwerin")),
		HaveField("Status.LastFailover.CompletedAt", Not(BeNil())),
		HaveField("Status.FailoverHistory", HaveLen(1))))
	seen, wrong := quorum.stop()
	g.Expect(wrong).To(BeEmpty(), "the promotion's status write names the new standby in Quorum")
	g.Expect(seen).To(BeNumerically(">", 0), "versions of mv-schwerin's SharedService that name it active were seen")
	g.Eventually(m.status(ctx, kiel)).Should(And(
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
		HaveField("Status.ActiveSite", testenv.SiteSchwerin),
		HaveField("Status.Role", deichv1alpha1.RoleStandby)))
	g.Eventually(switchoverGone(ctx, schwerin, sw)).Should(BeTrue(), "the copy at mv-schwerin is removed once the move finished")
	g.Eventually(getSwitchover(ctx, kiel, sw)).Should(HaveField("Finalizers", BeEmpty()))
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "Switchover", sw.Name) }).Should(
		ContainElements(deichv1alpha1.SwitchoverEventStarted, deichv1alpha1.SwitchoverEventSucceeded))
	// Each site's inventory of the other says what the other's API server holds after the
	// move: mv-schwerin serves what sh-kiel wrote there, and sh-kiel holds mv-schwerin's copies.
	expectInventoryMatches(ctx, g, kiel, schwerin, m.ns)
	expectInventoryMatches(ctx, g, schwerin, kiel, m.ns)
	g.Expect(testenv.InventoryOf(ctx, kiel, testenv.SiteSchwerin, m.ns)).To(ContainSubstring("Deployment=1"), "mv-schwerin serves the Deployment sh-kiel wrote there")
	g.Expect(testenv.InventoryOf(ctx, schwerin, testenv.SiteKiel, m.ns)).To(And(ContainSubstring("Deployment=1"), ContainSubstring("SharedService=1")),
		"mv-schwerin mirrors the service back to sh-kiel")

	t.Run("a failback created at the target moves the service back", func(t *testing.T) {
		g := newG(t)
		// sh-kiel now holds a copy from mv-schwerin; it must be current before the move.
		g.Eventually(m.objectivesMet(ctx, kiel)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWithinRPO))
		back := m.switchover("back-to-kiel", testenv.SiteKiel, "CHG-4712: maintenance done")
		m.create(ctx, t, g, kiel, back)
		got := finished(ctx, g, kiel, back, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
		g.Expect(got.Status.FromSite).To(Equal(testenv.SiteSchwerin))

		g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))
		g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))
		g.Eventually(m.status(ctx, kiel)).Should(And(
			HaveField("Status.Lease.Holder", testenv.SiteKiel),
			HaveField("Status.ActiveSite", testenv.SiteKiel),
			HaveField("Status.Role", deichv1alpha1.RoleActive),
			HaveField("Status.LastFailover.From", testenv.SiteSchwerin),
			HaveField("Status.LastFailover.To", testenv.SiteKiel),
			HaveField("Status.LastFailover.Reason", ContainSubstring("back-to-kiel")),
			HaveField("Status.FailoverHistory", Not(BeEmpty()))))
		g.Eventually(m.status(ctx, schwerin)).Should(HaveField("Status.Role", deichv1alpha1.RoleStandby))
		g.Eventually(switchoverGone(ctx, schwerin, back)).Should(BeTrue())
	})
	inv.check(t)
}

// TestTheServingSiteSwitchesBackAnObjectALateWritePutInStandbyForm writes, at the serving
// site, its Deployment in standby form as the other site's mirroring would — a write that
// site sent before it was cut off and that the network delivered late — and checks that the
// serving site puts it back into its active form instead of holding the lease with a
// workload that does not run.
func TestTheServingSiteSwitchesBackAnObjectALateWritePutInStandbyForm(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "late-standby-write", fastManualObjective())
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))

	late := &unstructured.Unstructured{}
	late.SetAPIVersion("apps/v1")
	late.SetKind("Deployment")
	late.SetNamespace(m.ns)
	late.SetName("web")
	late.SetLabels(map[string]string{render.LabelSourceSite: testenv.SiteSchwerin, render.LabelManagedBy: render.ManagedByDeich, render.LabelSharedService: m.name})
	late.SetAnnotations(map[string]string{
		render.AnnotationSourceReplicas: strconv.Itoa(webReplicas),
		render.AnnotationActivePatch:    fmt.Sprintf(`{"metadata":{"annotations":{%q:null}},"spec":{"replicas":%d}}`, render.AnnotationSourceReplicas, webReplicas),
	})
	g.Expect(unstructured.SetNestedField(late.Object, int64(0), "spec", "replicas")).To(Succeed())
	g.Expect(kiel.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(late), client.FieldOwner(mirror.FieldManager), client.ForceOwnership)).To(Succeed())

	g.Eventually(m.replicas(ctx, kiel)).Should(BeEquivalentTo(webReplicas), "sh-kiel serves again")
	g.Eventually(func() (map[string]string, error) {
		dep := &appsv1.Deployment{}
		err := kiel.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "web"}, dep)
		return dep.Annotations, err
	}).ShouldNot(HaveKey(render.AnnotationActivePatch), "the Deployment is in its active form")
	g.Expect(m.status(ctx, kiel)()).To(HaveField("Status.Lease.Holder", testenv.SiteKiel))
}

// TestWarmAndHotStandbysRunTheirCopiesWithoutServing moves a service with a Warm and with a Hot
// standby and back: the standby runs one replica (Warm) or as many as the source (Hot), in
// standby form — its objects carry the active form to restore and no claim's epoch, and the
// standby overrides apply — and a move promotes the copy to the source's replica count and
// fences the old active to the standby's.
func TestWarmAndHotStandbysRunTheirCopiesWithoutServing(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []deichv1alpha1.StandbyMode{deichv1alpha1.StandbyWarm, deichv1alpha1.StandbyHot} {
		t.Run(string(mode), func(t *testing.T) {
			g := newG(t)
			readOnly := func(svc *deichv1alpha1.SharedService) {
				svc.Spec.Overrides = []deichv1alpha1.Override{{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{{
					Patch: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels:\n    buergerkonto.example.de/mode: read-only\n",
				}}}}
			}
			m := setUpMovable(ctx, t, g, "standby-"+strings.ToLower(string(mode)), fastManualObjective().Standby(mode), readOnly)
			standbyForm := And(HaveKey(render.AnnotationActivePatch), Not(HaveKey(failover.EpochAnnotation)))
			g.Eventually(m.annotations(ctx, schwerin)).Should(standbyForm, "the running standby's copy is in standby form")
			g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(standbyReplicas(mode)))
			labelsAt := func(site *testenv.Site) func() (map[string]string, error) {
				return func() (map[string]string, error) {
					dep := &appsv1.Deployment{}
					err := site.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "web"}, dep)
					return dep.Labels, err
				}
			}
			g.Expect(labelsAt(schwerin)()).To(HaveKeyWithValue("buergerkonto.example.de/mode", "read-only"), "the standby override applies")
			g.Expect(labelsAt(kiel)()).NotTo(HaveKey("buergerkonto.example.de/mode"))

			sw := m.switchover("move-to-schwerin", testenv.SiteSchwerin, "CHG-6060: maintenance in Kiel")
			m.create(ctx, t, g, kiel, sw)
			finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
			g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(webReplicas), "the promoted copy runs the source's replica count")
			g.Expect(m.annotations(ctx, schwerin)()).To(And(Not(HaveKey(render.AnnotationActivePatch)), HaveKey(failover.EpochAnnotation)))
			g.Expect(labelsAt(schwerin)()).NotTo(HaveKey("buergerkonto.example.de/mode"), "promotion undoes the standby override")
			g.Eventually(m.replicas(ctx, kiel)).Should(BeEquivalentTo(standbyReplicas(mode)), "the old active runs the standby's replica count")
			g.Eventually(m.annotations(ctx, kiel)).Should(HaveKey(render.AnnotationActivePatch), "the old active is in standby form")
			g.Eventually(labelsAt(kiel)).Should(HaveKeyWithValue("buergerkonto.example.de/mode", "read-only"))
			g.Eventually(switchoverGone(ctx, schwerin, sw)).Should(BeTrue())
		})
	}
}

func TestSwitchoverDrillChangesNothingAndEstimatesTheRecoveryTime(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-drill", fastManualObjective(), func(svc *deichv1alpha1.SharedService) {
		// mv-schwerin's copy runs no pods while it is a cold standby: the check fails there,
		// and the drill only needs it to run.
		svc.Spec.HealthChecks = append(svc.Spec.HealthChecks, deichv1alpha1.HealthCheck{
			Name: "schwerin-web", Site: testenv.SiteSchwerin,
			Workload: &deichv1alpha1.WorkloadCheck{Kind: "Deployment", Name: "web", MinReady: 1},
		})
	})
	inv := watchOverlap(ctx, m)

	drill := m.switchover("drill-2026-q3", testenv.SiteSchwerin, "quarterly DR drill")
	drill.Spec.Drill = true
	m.create(ctx, t, g, kiel, drill)
	got := finished(ctx, g, kiel, drill, deichv1alpha1.SwitchoverSucceeded, 30*time.Second)
	// max(failureThreshold 2 × probeInterval 1s, leaseDuration 6s + max clock skew 2s), plus
	// the dry run.
	g.Expect(got.Status.EstimatedRecoveryTime).NotTo(BeNil())
	g.Expect(got.Status.EstimatedRecoveryTime.Duration).To(And(BeNumerically(">=", 8*time.Second), BeNumerically("<", 13*time.Second)))
	g.Expect(got.Status.StartedAt).NotTo(BeNil())
	g.Expect(got.Status.CompletedAt).NotTo(BeNil())
	t.Logf("%s: %s", drill.Name, got.Status.Message)
	g.Expect(got.Status.Message).To(And(
		ContainSubstring("drill passed: a failover to mv-schwerin would succeed now"),
		ContainSubstring("ReplicationPeer mv-schwerin is Ready"),
		ContainSubstring("within the RPO"),
		ContainSubstring("accepts the 2 copies in their promoted form"),
		ContainSubstring("schwerin-web Unhealthy, as expected of a Cold standby")))
	g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonDrillPassed))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionPeerReachable)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonPeerReady))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionCopyWithinRPO)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonWithinRPO))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionPromotionAccepted)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonDryRunAccepted))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionTargetChecksReachable)).To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonChecksReachable))
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "Switchover", drill.Name) }).Should(ContainElement(deichv1alpha1.SwitchoverEventDrillPassed))

	// Nothing moved, and nothing asked mv-schwerin to act.
	g.Expect(switchoverGone(ctx, schwerin, drill)()).To(BeTrue(), "a drill is not copied to the other site")
	g.Consistently(func(g Gomega) {
		g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))
		g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))
		for _, site := range []*testenv.Site{kiel, schwerin} {
			g.Expect(m.status(ctx, site)()).To(HaveField("Status.Lease.Holder", testenv.SiteKiel))
		}
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
	inv.check(t)

	t.Run("a drill whose promoted copy the target would reject fails and says why", func(t *testing.T) {
		g := newG(t)
		m.breakPromotionAtSchwerin(ctx, g)

		broken := m.switchover("drill-broken-override", testenv.SiteSchwerin, "drill after an override change")
		broken.Spec.Drill = true
		m.create(ctx, t, g, kiel, broken)
		got := finished(ctx, g, kiel, broken, deichv1alpha1.SwitchoverFailed, 30*time.Second)
		t.Logf("%s: %s", broken.Name, got.Status.Message)
		g.Expect(got.Status.Message).To(And(
			ContainSubstring("drill failed: a failover to mv-schwerin would not succeed now"),
			ContainSubstring("Deployment web"),
			ContainSubstring("spec.replicas")))
		g.Expect(got.Status.EstimatedRecoveryTime).NotTo(BeNil())
		g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDrillFailed))
		g.Expect(condition(got, deichv1alpha1.SwitchoverConditionPromotionAccepted)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDryRunRejected))
		g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "Switchover", broken.Name) }).Should(ContainElement(deichv1alpha1.SwitchoverEventDrillFailed))
		g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))
		g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))
	})
}

func TestSwitchoverSecondRequestForTheSameServiceIsRefused(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-one-at-a-time", fastManualObjective())

	first := m.switchover("first-move", testenv.SiteSchwerin, "CHG-1")
	second := m.switchover("second-move", testenv.SiteSchwerin, "CHG-2")
	m.create(ctx, t, g, kiel, first)
	m.create(ctx, t, g, kiel, second)

	got := finished(ctx, g, kiel, second, deichv1alpha1.SwitchoverFailed, 30*time.Second)
	g.Expect(got.Status.Message).To(And(
		ContainSubstring("Switchover first-move for SharedService buergerkonto is"),
		ContainSubstring("one Switchover at a time per service")))
	g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonAnotherSwitchover))
	g.Expect(got.Status.StartedAt).To(BeNil(), "a refused Switchover never started")
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "Switchover", second.Name) }).Should(ContainElement(deichv1alpha1.SwitchoverEventRefused))

	finished(ctx, g, kiel, first, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Expect(getSwitchover(ctx, kiel, second)()).To(HaveField("Status.Phase", deichv1alpha1.SwitchoverFailed), "a refused Switchover is never retried")
}

func TestSwitchoverThatCannotApplyIsRefused(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-invalid", fastManualObjective())

	for _, tc := range []struct {
		name, switchover, service, target, wantReason, wantMessage string
	}{
		{"a Switchover of a service that does not exist is refused", "unknown-service", "unknown", testenv.SiteSchwerin,
			deichv1alpha1.SwitchoverReasonServiceNotFound, "SharedService unknown does not exist in namespace switchover-invalid at site sh-kiel"},
		{"a target that is not one of the service's sites is refused", "unknown-site", m.name, "by-berlin",
			deichv1alpha1.SwitchoverReasonInvalidTarget, "targetSite by-berlin is neither primarySite sh-kiel nor standbySite mv-schwerin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newG(t)
			sw := m.switchover(tc.switchover, tc.target, "test")
			sw.Spec.SharedServiceName = tc.service
			m.create(ctx, t, g, kiel, sw)
			got := finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverFailed, 10*time.Second)
			g.Expect(got.Status.Message).To(ContainSubstring(tc.wantMessage))
			g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionFalse, tc.wantReason))
			g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "Switchover", sw.Name) }).Should(ContainElement(deichv1alpha1.SwitchoverEventRefused))
		})
	}
}

func TestSwitchoverWhileTheCopyIsOlderThanTheRPOIsRefusedUnlessForced(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-stale-copy", fastManualObjective().RPO(2*time.Second))

	// mv-schwerin's API server starts rejecting one of the copies (a ConfigMap key it does not
	// allow): nothing new reaches the standby, and its copy ages past the RPO while both
	// sites stay up.
	svc, err := m.status(ctx, kiel)()
	g.Expect(err).NotTo(HaveOccurred())
	updateService(ctx, g, kiel, client.ObjectKeyFromObject(svc), func(svc *deichv1alpha1.SharedService) {
		svc.Spec.Overrides = append(svc.Spec.Overrides, deichv1alpha1.Override{
			Site: testenv.SiteSchwerin,
			Patches: []deichv1alpha1.Patch{{
				Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
				Patch:  `[{"op": "add", "path": "/data/not a valid key", "value": "x"}]`,
			}},
		})
	})
	g.Eventually(m.objectivesMet(ctx, kiel)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonCopyTooOld))

	unforced := m.switchover("move-stale", testenv.SiteSchwerin, "CHG-5")
	m.create(ctx, t, g, kiel, unforced)
	got := finished(ctx, g, kiel, unforced, deichv1alpha1.SwitchoverFailed, 30*time.Second)
	g.Expect(got.Status.Message).To(And(ContainSubstring("older than the RPO"), ContainSubstring("force: true")))
	g.Expect(condition(got, deichv1alpha1.ConditionReady)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyTooOld))
	g.Expect(condition(got, deichv1alpha1.SwitchoverConditionCopyWithinRPO)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyTooOld))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas), "a refused move changes nothing")
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))
	g.Expect(switchoverGone(ctx, schwerin, unforced)()).To(BeTrue())

	t.Run("with force the service moves, on the copy the target has", func(t *testing.T) {
		g := newG(t)
		inv := watchOverlap(ctx, m)
		forced := m.switchover("move-stale-forced", testenv.SiteSchwerin, "CHG-6: Kiel must go down now")
		forced.Spec.Force = true
		m.create(ctx, t, g, kiel, forced)
		got := finished(ctx, g, kiel, forced, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
		g.Expect(condition(got, deichv1alpha1.SwitchoverConditionCopyWithinRPO)).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonForced))
		g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(webReplicas))
		g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(0))
		g.Eventually(m.status(ctx, schwerin)).Should(And(
			HaveField("Status.Lease.Holder", testenv.SiteSchwerin),
			HaveField("Status.LastFailover.Reason", ContainSubstring("move-stale-forced"))))
		inv.check(t)
	})
}

func TestSwitchoverToTheStandbyWorksWhileTheActiveSiteIsCutOff(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	// The service is created after the sites connect through the proxies, so that its lease
	// and copies are written through connections that have been in use before the cut.
	l := proxyLinks(ctx, t, g)
	m := createMovable(ctx, t, g, "switchover-cut-off", fastManualObjective())
	inv := watchOverlap(ctx, m)

	// sh-kiel loses its link to mv-schwerin; both sites live on. In Manual mode the standby
	// does not promote on its own: an SRE at mv-schwerin asks for the service there.
	l.cut(ctx, g)
	sw := m.switchover("take-over-in-schwerin", testenv.SiteSchwerin, "INC-0815: Kiel unreachable")
	m.create(ctx, t, g, schwerin, sw)
	g.Eventually(func() *metav1.Condition {
		got, err := getSwitchover(ctx, schwerin, sw)()
		if err != nil {
			return nil
		}
		return condition(got, deichv1alpha1.SwitchoverConditionPeerInformed)
	}).Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonPeerUnreachable), "sh-kiel cannot be told of the move")

	// mv-schwerin takes the lease once it has expired; sh-kiel fenced itself before that.
	got := finished(ctx, g, schwerin, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	t.Logf("%s: %s", sw.Name, got.Status.Message)
	g.Expect(got.Status.FromSite).To(Equal(testenv.SiteKiel))
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(webReplicas))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(0))
	g.Eventually(func(g Gomega) {
		got, err := getSwitchover(ctx, schwerin, sw)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(condition(got, deichv1alpha1.SwitchoverConditionPeerInformed)).To(
			haveStatusReason(metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyRemovalPending))
		g.Expect(got.Finalizers).To(ContainElement(deichv1alpha1.SwitchoverFinalizer), "the cleanup at sh-kiel is still due")
	}).Should(Succeed())
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, schwerin, "Switchover", sw.Name) }).Should(
		ContainElements(deichv1alpha1.SwitchoverEventStarted, deichv1alpha1.SwitchoverEventPeerNotInformed, deichv1alpha1.SwitchoverEventSucceeded))

	// Back online, sh-kiel stays standby and the cleanup finishes.
	l.restore()
	g.Eventually(getSwitchover(ctx, schwerin, sw), time.Minute).Should(HaveField("Finalizers", BeEmpty()))
	g.Expect(switchoverGone(ctx, kiel, sw)()).To(BeTrue())
	g.Eventually(m.status(ctx, kiel)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteSchwerin)))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(0))
	inv.check(t)
}

// After a move, the former active still carries the finalizer it added while it served.
// Deleting the SharedService there must not take down what now serves at the partner.
func TestDeletingTheServiceAtTheFormerActiveLeavesThePartnerServing(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "delete-former-active", fastManualObjective())
	sw := m.switchover("move-to-schwerin", testenv.SiteSchwerin, "CHG-4712: Kiel leaves the service")
	m.create(ctx, t, g, kiel, sw)
	finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Eventually(m.status(ctx, kiel)).Should(HaveField("Status.ActiveSite", testenv.SiteSchwerin))
	former := &deichv1alpha1.SharedService{}
	g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: m.name}, former)).To(Succeed())
	g.Expect(former.Finalizers).To(ContainElement(deichv1alpha1.SharedServiceFinalizer), "the former active still carries the finalizer")

	g.Expect(kiel.Client.Delete(ctx, former)).To(Succeed())
	// mv-schwerin, which serves, mirrors its SharedService to sh-kiel again: what must go is
	// the object sh-kiel had.
	g.Eventually(func() (string, error) {
		now := &deichv1alpha1.SharedService{}
		err := kiel.Client.Get(ctx, client.ObjectKeyFromObject(former), now)
		switch {
		case apierrors.IsNotFound(err):
			return "gone", nil
		case err != nil:
			return "", err
		case now.UID != former.UID:
			return "gone", nil
		}
		return fmt.Sprintf("still there: deletionTimestamp %v, finalizers %v", now.DeletionTimestamp, now.Finalizers), nil
	}).Should(Equal("gone"), "the SharedService goes at sh-kiel")
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "SharedService", m.name) }).
		Should(ContainElement(deichv1alpha1.ServiceEventCopiesRetained))
	g.Consistently(m.replicas(ctx, schwerin), 3*time.Second).Should(BeEquivalentTo(webReplicas), "mv-schwerin's Deployment keeps serving")
	g.Expect(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(former), &deichv1alpha1.SharedService{})).To(Succeed(), "mv-schwerin's SharedService stays")
	g.Expect(schwerin.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: "settings"}, &corev1.ConfigMap{})).To(Succeed(), "mv-schwerin's ConfigMap stays")
}
