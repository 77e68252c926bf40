package peer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	serviceNamespace = "peer-identity"
	serviceName      = "buergerkonto"
	sourceReplicas   = 3
)

// TestThePeerIdentityCarriesAServiceThroughSwitchoversAndDeletion runs a service's life through
// the identity config/peer grants: mirroring a Deployment, a ConfigMap and a Secret, the lease
// at the standby, a planned Switchover each way, and the removal of the copies with the service.
// No condition at either site may report a forbidden request.
func TestThePeerIdentityCarriesAServiceThroughSwitchoversAndDeletion(t *testing.T) {
	requireSites(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)

	assertRestricted(ctx, t, g)
	forbidden := watchForbidden(ctx, serviceNamespace)
	defer forbidden.check(t)

	setUp(ctx, g)
	g.Eventually(sharedService(ctx, kiel)).Should(And(
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
		HaveField("Status.Lease.Holder", testenv.SiteKiel),
		WithTransform(conditionStatus(deichv1alpha1.ServiceConditionSynced), Equal(metav1.ConditionTrue))))
	g.Eventually(replicas(ctx, schwerin)).Should(BeEquivalentTo(0), "mv-schwerin holds a cold copy of the Deployment")
	g.Eventually(exists(ctx, schwerin, &corev1.ConfigMap{}, "settings")).Should(BeTrue(), "mv-schwerin holds the ConfigMap")
	g.Eventually(exists(ctx, schwerin, &corev1.Secret{}, "credentials")).Should(BeTrue(), "mv-schwerin holds the Secret")

	t.Log("planned Switchover to mv-schwerin, created at sh-kiel")
	switchTo(ctx, g, kiel, schwerin, testenv.SiteSchwerin)
	g.Eventually(replicas(ctx, schwerin)).Should(BeEquivalentTo(sourceReplicas), "mv-schwerin serves")
	g.Eventually(replicas(ctx, kiel)).Should(BeEquivalentTo(0), "sh-kiel stands by")

	t.Log("planned Switchover back to sh-kiel, created at mv-schwerin")
	switchTo(ctx, g, schwerin, kiel, testenv.SiteKiel)
	g.Eventually(replicas(ctx, kiel)).Should(BeEquivalentTo(sourceReplicas), "sh-kiel serves again")
	g.Eventually(replicas(ctx, schwerin)).Should(BeEquivalentTo(0), "mv-schwerin stands by again")

	t.Log("delete the SharedService at sh-kiel")
	g.Expect(kiel.Client.Delete(ctx, &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: serviceNamespace, Name: serviceName}})).To(Succeed())
	g.Eventually(exists(ctx, schwerin, &appsv1.Deployment{}, "web")).Should(BeFalse(), "the Deployment copy is gone at mv-schwerin")
	g.Eventually(exists(ctx, schwerin, &corev1.ConfigMap{}, "settings")).Should(BeFalse(), "the ConfigMap copy is gone at mv-schwerin")
	g.Eventually(exists(ctx, schwerin, &corev1.Secret{}, "credentials")).Should(BeFalse(), "the Secret copy is gone at mv-schwerin")
	g.Eventually(exists(ctx, kiel, &deichv1alpha1.SharedService{}, serviceName)).Should(BeFalse(), "the SharedService is gone at sh-kiel")
}

// assertRestricted makes sure the managers really reach their peer as deich-peer and not as an
// administrator, or the test would prove nothing: the identity may not read ClusterRoles.
func assertRestricted(ctx context.Context, t *testing.T, g Gomega) {
	t.Helper()
	for _, link := range []struct{ on, peer *testenv.Site }{{kiel, schwerin}, {schwerin, kiel}} {
		secret := &corev1.Secret{}
		g.Expect(link.on.Client.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "peer-" + link.peer.Name}, secret)).To(Succeed())
		cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data[testenv.PeerSecretKey])
		g.Expect(err).NotTo(HaveOccurred())
		c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
		g.Expect(err).NotTo(HaveOccurred())
		err = c.List(ctx, &rbacv1.ClusterRoleList{})
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "%s's identity at %s is restricted, got %v", link.on.Name, link.peer.Name, err)
	}
}

// setUp creates the objective at both sites, and at sh-kiel the namespace, a Deployment "web",
// a ConfigMap "settings", a Secret "credentials" and the SharedService selecting all three.
func setUp(ctx context.Context, g Gomega) {
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective(serviceNamespace).Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: serviceNamespace}})).To(Succeed())
	labels := map[string]string{"app.kubernetes.io/part-of": serviceName, "app": "web"}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: serviceNamespace, Name: name, Labels: labels}
	}
	g.Expect(kiel.Client.Create(ctx, &appsv1.Deployment{
		ObjectMeta: meta("web"),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(sourceReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/buergerkonto:1.4"}}},
			},
		},
	})).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: meta("settings"), Data: map[string]string{"v": "1"}})).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, &corev1.Secret{ObjectMeta: meta("credentials"), StringData: map[string]string{"password": "geheim"}})).To(Succeed())
	svc := testobjects.MakeSharedService(serviceName, serviceNamespace).Objective(serviceNamespace).Resources(
		deichv1alpha1.ResourceKind{Group: "apps", Kind: "Deployment"},
		deichv1alpha1.ResourceKind{Kind: "ConfigMap"},
		deichv1alpha1.ResourceKind{Kind: "Secret"},
	).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
}

// switchTo creates a planned Switchover to target at site, waits until it succeeded and until
// its copy at the other site is removed: until then the other site counts the move as running
// and refuses the next one.
func switchTo(ctx context.Context, g Gomega, site, other *testenv.Site, target string) {
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{Namespace: serviceNamespace, Name: "to-" + target},
		Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: serviceName, TargetSite: target, Reason: "CHG-4711: planned move to " + target},
	}
	g.Expect(site.Client.Create(ctx, sw)).To(Succeed())
	g.Eventually(func() (*deichv1alpha1.Switchover, error) {
		got := &deichv1alpha1.Switchover{}
		err := site.Client.Get(ctx, client.ObjectKeyFromObject(sw), got)
		if got.Status.Phase == deichv1alpha1.SwitchoverFailed {
			StopTrying(fmt.Sprintf("Switchover to %s failed: %+v", target, got.Status.Conditions)).Now()
		}
		return got, err
	}).Should(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded), "Switchover to %s created at %s", target, site.Name)
	g.Eventually(exists(ctx, other, &deichv1alpha1.Switchover{}, sw.Name)).Should(BeFalse(), "the copy of the Switchover is removed from %s", other.Name)
}

// sharedService reads the SharedService at site.
func sharedService(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: serviceNamespace, Name: serviceName}, svc)
	}
}

// conditionStatus reads the status of a SharedService's condition.
func conditionStatus(condition string) func(*deichv1alpha1.SharedService) metav1.ConditionStatus {
	return func(svc *deichv1alpha1.SharedService) metav1.ConditionStatus {
		if c := meta.FindStatusCondition(svc.Status.Conditions, condition); c != nil {
			return c.Status
		}
		return metav1.ConditionUnknown
	}
}

// replicas reads spec.replicas of the Deployment "web" at site.
func replicas(ctx context.Context, site *testenv.Site) func() (int32, error) {
	return func() (int32, error) {
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: serviceNamespace, Name: "web"}, dep); err != nil {
			return -1, err
		}
		return ptr.Deref(dep.Spec.Replicas, 1), nil
	}
}

// exists tells whether the object name exists in the service's namespace at site.
func exists(ctx context.Context, site *testenv.Site, obj client.Object, name string) func() (bool, error) {
	return func() (bool, error) {
		err := site.Client.Get(ctx, client.ObjectKey{Namespace: serviceNamespace, Name: name}, obj)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
}

// forbiddenWatch samples the conditions of the SharedServices and Switchovers in a namespace,
// and of the ReplicationPeers, at both sites, and remembers every message that reports a
// forbidden request: a permission config/peer lacks. Its check also fails for every such
// request the managers logged.
type forbiddenWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	seen       map[string]bool
	samples    int
}

func watchForbidden(ctx context.Context, ns string) *forbiddenWatch {
	w := &forbiddenWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(w.done)
		for {
			w.sample(ctx, ns)
			select {
			case <-w.stop:
				w.sample(ctx, ns) // the last word
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *forbiddenWatch) sample(ctx context.Context, ns string) {
	var found []string
	note := func(site, kind, name string, conds []metav1.Condition) {
		for _, c := range conds {
			if strings.Contains(strings.ToLower(c.Message), "forbidden") {
				found = append(found, fmt.Sprintf("%s: %s %s condition %s: %s", site, kind, name, c.Type, c.Message))
			}
		}
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		var services deichv1alpha1.SharedServiceList
		if err := site.Client.List(ctx, &services, client.InNamespace(ns)); err == nil {
			for _, it := range services.Items {
				note(site.Name, "SharedService", it.Name, it.Status.Conditions)
			}
		}
		var switchovers deichv1alpha1.SwitchoverList
		if err := site.Client.List(ctx, &switchovers, client.InNamespace(ns)); err == nil {
			for _, it := range switchovers.Items {
				note(site.Name, "Switchover", it.Name, it.Status.Conditions)
			}
		}
		var peers deichv1alpha1.ReplicationPeerList
		if err := site.Client.List(ctx, &peers); err == nil {
			for _, it := range peers.Items {
				note(site.Name, "ReplicationPeer", it.Name, it.Status.Conditions)
			}
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	for _, f := range found {
		w.seen[f] = true
	}
}

// check stops sampling and fails the test for every forbidden request seen.
func (w *forbiddenWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("forbidden watch: %d samples of both sites", w.samples)
	for f := range w.seen {
		t.Errorf("a peer request was forbidden: %s", f)
	}
	for _, line := range forbiddenLog.forbidden() {
		t.Errorf("a manager logged a forbidden request: %s", line)
	}
}
