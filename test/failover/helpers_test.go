package failover

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// sourceReplicas is the replica count of the service's Deployment at the site that serves.
const sourceReplicas = 3

func newG(t testing.TB) Gomega {
	t.Helper()
	requireSites(t)
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	return g
}

// service is one SharedService under test, in its own namespace, primary at sh-kiel.
type service struct {
	ns, name string
}

func (s service) key() types.NamespacedName {
	return types.NamespacedName{Namespace: s.ns, Name: s.name}
}

// leaseRecord is where site's cluster keeps the service's copy of the lease.
func (s service) leaseRecord() client.ObjectKey {
	return lease.RecordKey(lease.PartnerLeaseNamespace, testenv.SiteKiel, testenv.SiteSchwerin, s.key())
}

// leaseEntry reads the service's copy of the lease at site: its entry in the shared record.
func (s service) leaseEntry(ctx context.Context, g Gomega, site *testenv.Site) failover.LeaseRecord {
	rec, err := lease.ReadEntry(ctx, site.Client, s.leaseRecord(), s.key())
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	g.ExpectWithOffset(1, rec.Exists()).To(BeTrue(), "the copy of the lease of %s at %s", s.key(), site.Name)
	return rec
}

// editLeaseEntry changes the service's copy of the lease at site by hand, as a write of a
// manager would: with a version of its own.
func (s service) editLeaseEntry(ctx context.Context, g Gomega, site *testenv.Site, edit func(*failover.LeaseRecord)) {
	l := &coordinationv1.Lease{}
	g.ExpectWithOffset(1, site.Client.Get(ctx, s.leaseRecord(), l)).To(Succeed())
	entries, err := failover.EntriesFromLease(l)
	g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
	rec := entries[lease.EntryKey(s.key())]
	edit(&rec)
	rec.ResourceVersion = fmt.Sprintf("edited-by-hand-%d", time.Now().UnixNano())
	entries[lease.EntryKey(s.key())] = rec
	g.ExpectWithOffset(1, failover.ApplyEntries(l, entries)).To(Succeed())
	g.ExpectWithOffset(1, site.Client.Update(ctx, l)).To(Succeed())
}

// setUp creates, at both sites, an objective named after the namespace, and at sh-kiel the
// namespace, a Deployment "web" with sourceReplicas replicas, a ConfigMap and the
// SharedService; it waits until sh-kiel serves and mv-schwerin holds the copies.
func setUp(ctx context.Context, t testing.TB, g Gomega, ns string, objective *testobjects.RecoveryObjectiveWrapper, checks ...deichv1alpha1.HealthCheck) service {
	t.Helper()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := objective.Obj()
		obj.Name = ns
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = site.Client.Delete(context.Background(), obj) })
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	labels := map[string]string{"app.kubernetes.io/part-of": "buergerkonto", "app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(sourceReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/buergerkonto:1.4"}}},
			},
		},
	}
	g.Expect(kiel.Client.Create(ctx, dep)).To(Succeed())
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: labels}, Data: map[string]string{"v": "1"}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	w := testobjects.MakeSharedService("buergerkonto", ns).Objective(ns)
	for _, hc := range checks {
		w = w.HealthCheck(hc)
	}
	svc := w.Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())

	s := service{ns: ns, name: svc.Name}
	g.Eventually(s.status(ctx, kiel)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Eventually(s.replicas(ctx, schwerin)).Should(BeEquivalentTo(0), "mv-schwerin holds a cold copy")
	g.Eventually(s.status(ctx, schwerin)).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Lease.Holder", testenv.SiteKiel)))
	g.Expect(s.replicas(ctx, kiel)()).To(BeEquivalentTo(sourceReplicas))
	return s
}

// status reads the SharedService at site.
func (s service) status(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, svc)
	}
}

// replicas reads spec.replicas of the Deployment "web" at site.
func (s service) replicas(ctx context.Context, site *testenv.Site) func() (int32, error) {
	return func() (int32, error) {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "web"}, dep); err != nil {
			return -1, err
		}
		return ptr.Deref(dep.Spec.Replicas, 1), nil
	}
}

// sourceSite reads which site the Deployment "web" at site was last mirrored from.
func (s service) sourceSite(ctx context.Context, site *testenv.Site) func() (string, error) {
	return func() (string, error) {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "web"}, dep); err != nil {
			return "", err
		}
		return dep.Labels[render.LabelSourceSite], nil
	}
}

// readyReason reads the reason of the Ready condition at site.
func (s service) readyReason(ctx context.Context, site *testenv.Site) func() (string, error) {
	return func() (string, error) {
		svc, err := s.status(ctx, site)()
		if err != nil {
			return "", err
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ConditionReady)
		if c == nil {
			return "", nil
		}
		return c.Reason, nil
	}
}

// events lists the reasons of the events recorded at site about the service.
func (s service) events(ctx context.Context, site *testenv.Site) func() ([]string, error) {
	return func() ([]string, error) {
		var list eventsv1.EventList
		if err := site.Client.List(ctx, &list, client.InNamespace(s.ns)); err != nil {
			return nil, err
		}
		var reasons []string
		for _, e := range list.Items {
			if e.Regarding.Kind == "SharedService" && e.Regarding.Name == s.name {
				reasons = append(reasons, e.Reason)
			}
		}
		return reasons, nil
	}
}

// servingSince watches site until its Deployment serves again (replicas > 0) and returns
// when that was first seen.
func (s service) servingSince(ctx context.Context, g Gomega, site *testenv.Site, timeout time.Duration) time.Time {
	var at time.Time
	g.Eventually(func() (int32, error) {
		n, err := s.replicas(ctx, site)()
		if n > 0 && at.IsZero() {
			at = time.Now()
		}
		return n, err
	}, timeout, 20*time.Millisecond).Should(BeNumerically(">", 0), "%s serves", site.Name)
	return at
}

// invariant samples both sites' Deployment every few milliseconds and remembers every instant
// at which both served. A site whose API server cannot be read counts as not serving: the
// tests stop a site's API server only together with its manager, as a lost data centre.
type invariant struct {
	s      service
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	both   []string
	probes int
}

func watchInvariant(ctx context.Context, s service) *invariant {
	inv := &invariant{s: s, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(inv.done)
		for {
			select {
			case <-inv.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			k, errK := s.replicas(ctx, kiel)()
			m, errM := s.replicas(ctx, schwerin)()
			inv.mu.Lock()
			inv.probes++
			if errK == nil && errM == nil && k > 0 && m > 0 {
				inv.both = append(inv.both, fmt.Sprintf("%s: sh-kiel %d and mv-schwerin %d replicas", time.Now().Format("15:04:05.000"), k, m))
			}
			inv.mu.Unlock()
		}
	}()
	return inv
}

// check stops sampling and fails the test if both sites ever served at once.
func (inv *invariant) check(t *testing.T) {
	t.Helper()
	close(inv.stop)
	<-inv.done
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t.Logf("invariant checker: %d samples of both sites", inv.probes)
	if inv.probes < 10 {
		t.Errorf("invariant checker took only %d samples", inv.probes)
	}
	if len(inv.both) > 0 {
		t.Errorf("both sites served at once in %d samples, first: %s", len(inv.both), inv.both[0])
	}
}
