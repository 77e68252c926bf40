package peer

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	// scopedIdentity is the ServiceAccount config/peer/namespaced creates for this test, beside
	// config/peer's deich-peer, which the other tests use.
	scopedIdentity = "scoped-deich-peer"
	// grantedNamespace is granted to scopedIdentity from the start, refusedNamespace only
	// later.
	grantedNamespace = "scoped-granted"
	refusedNamespace = "scoped-refused"
	scopedObjective  = "scoped"
	scopedService    = "register"
)

// TestANamespacedPeerIdentityRefusesOtherNamespaces has sh-kiel reach mv-schwerin as the
// identity config/peer/namespaced creates there, granted one namespace. A service in that
// namespace is mirrored; one in another namespace is refused: Synced=False with reason
// PeerForbidden naming the namespace and the peer, a Warning event, and nothing of it at
// mv-schwerin. Granting the namespace without Secrets still refuses the service, which
// mirrors a Secret, as a whole: its ConfigMap, which would be accepted, is not written either.
// Granting Secrets too, the service is mirrored.
func TestANamespacedPeerIdentityRefusesOtherNamespaces(t *testing.T) {
	requireSites(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	g.SetDefaultConsistentlyDuration(3 * time.Second)
	g.SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)

	// Refusals in the other namespace are the point of this test; in the granted namespace,
	// nothing may be refused.
	forbiddenLog.expect(refusedNamespace, scopedIdentity)
	forbidden := watchForbidden(ctx, grantedNamespace)
	defer forbidden.check(t)
	defer func() {
		for _, line := range forbiddenLog.expectedRefusals() {
			if strings.Contains(line, grantedNamespace) {
				t.Errorf("a request into the granted namespace was forbidden: %s", line)
			}
		}
	}()

	setUpScoped(ctx, t, g)
	grant := &scopedGrant{}
	t.Cleanup(func() { grant.revoke(t) }) // after the services are deleted, and sh-kiel's identity restored
	t.Log("mv-schwerin grants sh-kiel's identity only namespace " + grantedNamespace + ", without Secrets")
	grant.apply(ctx, t, g, false, grantedNamespace)
	usePeerIdentity(ctx, t, g, scopedIdentity)

	for _, ns := range []string{grantedNamespace, refusedNamespace} {
		svc := testobjects.MakeSharedService(scopedService, ns).Objective(scopedObjective).Resources(
			deichv1alpha1.ResourceKind{Kind: "ConfigMap"},
		).Obj()
		if ns == refusedNamespace {
			svc.Spec.Resources = append(svc.Spec.Resources, deichv1alpha1.ResourceKind{Kind: "Secret"})
		}
		g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
		t.Cleanup(func() { deleteScopedService(t, ns) })
	}

	t.Log("the service in the granted namespace is mirrored")
	g.Eventually(scopedSynced(ctx, grantedNamespace)).Should(HaveField("Status", metav1.ConditionTrue))
	g.Eventually(heldAt(ctx, schwerin, grantedNamespace)).Should(ConsistOf("ConfigMap/settings", "SharedService/"+scopedService))

	t.Log("the service in the other namespace is refused, and nothing of it is written")
	g.Eventually(scopedSynced(ctx, refusedNamespace)).Should(And(
		HaveField("Status", metav1.ConditionFalse),
		HaveField("Reason", deichv1alpha1.ServiceReasonPeerForbidden),
		HaveField("Message", And(
			ContainSubstring("peer "+testenv.SiteSchwerin),
			ContainSubstring("namespace "+refusedNamespace),
			ContainSubstring("configmaps"),
			ContainSubstring("sharedservices.resilience.deich.io"),
			ContainSubstring("config/peer/namespaced"))),
	))
	g.Eventually(scopedEvents(ctx, refusedNamespace)).Should(ContainElement(eventsv1.Event{
		Type: corev1.EventTypeWarning, Reason: deichv1alpha1.ServiceEventPeerForbidden,
	}))
	g.Consistently(heldAt(ctx, schwerin, refusedNamespace)).Should(BeEmpty(), "mv-schwerin holds nothing of the refused service")

	t.Log("mv-schwerin grants the other namespace too, still without Secrets: the service, which mirrors a Secret, stays refused as a whole")
	grant.apply(ctx, t, g, false, grantedNamespace, refusedNamespace)
	g.Eventually(scopedSynced(ctx, refusedNamespace)).Should(And(
		HaveField("Reason", deichv1alpha1.ServiceReasonPeerForbidden),
		HaveField("Message", And(ContainSubstring("secrets"), Not(ContainSubstring("configmaps")))),
	))
	g.Consistently(heldAt(ctx, schwerin, refusedNamespace)).Should(BeEmpty(), "the ConfigMap, which mv-schwerin would accept, is not written either")

	t.Log("mv-schwerin accepts Secrets: the service is mirrored")
	grant.apply(ctx, t, g, true, grantedNamespace, refusedNamespace)
	g.Eventually(scopedSynced(ctx, refusedNamespace)).Should(HaveField("Status", metav1.ConditionTrue))
	g.Eventually(heldAt(ctx, schwerin, refusedNamespace)).Should(ConsistOf("ConfigMap/settings", "Secret/credentials", "SharedService/"+scopedService))
	g.Expect(scopedSynced(ctx, grantedNamespace)()).To(HaveField("Status", metav1.ConditionTrue), "the first service stayed in sync")
}

// setUpScoped creates the objective at both sites, both namespaces at both sites (mv-schwerin's
// administrators create the namespaces they grant), and at sh-kiel a ConfigMap "settings" in
// each namespace and a Secret "credentials" in the refused one.
func setUpScoped(ctx context.Context, t *testing.T, g Gomega) {
	t.Helper()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective(scopedObjective).RPO(6*time.Second).Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = site.Client.Delete(context.Background(), obj) })
		for _, ns := range []string{grantedNamespace, refusedNamespace} {
			g.Expect(site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
	}
	labels := map[string]string{"app.kubernetes.io/part-of": scopedService}
	for _, ns := range []string{grantedNamespace, refusedNamespace} {
		g.Expect(kiel.Client.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: labels},
			Data:       map[string]string{"v": "1"},
		})).To(Succeed())
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: refusedNamespace, Name: "credentials", Labels: labels},
		StringData: map[string]string{"password": "geheim"},
	})).To(Succeed())
}

// scopedGrant is what config/peer/namespaced created at mv-schwerin for scopedIdentity.
type scopedGrant struct {
	objs map[string]*unstructured.Unstructured
}

// apply has mv-schwerin's administrators apply config/peer/namespaced for scopedIdentity, with
// the namespaces listed and Secrets accepted or not, as they would: a copy of the tree with the
// list edited, built with the pinned kustomize and helm, and applied.
func (sg *scopedGrant) apply(ctx context.Context, t *testing.T, g Gomega, acceptSecrets bool, namespaces ...string) {
	t.Helper()
	root, err := testenv.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	dir := filepath.Join(t.TempDir(), "namespaced")
	g.Expect(copyTree(filepath.Join(root, "config", "peer", "namespaced"), dir)).To(Succeed())
	g.Expect(editPeerAccess(filepath.Join(dir, "kustomization.yaml"), map[string]any{
		"serviceAccountName": scopedIdentity,
		"namespaces":         namespaces,
		"acceptSecrets":      acceptSecrets,
	})).To(Succeed())
	objs, err := testenv.KustomizeBuildWithHelm(dir)
	g.Expect(err).NotTo(HaveOccurred())

	if sg.objs == nil {
		sg.objs = map[string]*unstructured.Unstructured{}
	}
	var bound []string
	for _, obj := range objs {
		if obj.GetKind() == "RoleBinding" && obj.GetName() == scopedIdentity {
			bound = append(bound, obj.GetNamespace())
		}
		if obj.GetKind() == "ClusterRoleBinding" {
			g.Expect(obj.GetName()).To(Equal(scopedIdentity+"-namespaces"), "the only cluster-wide grant is to read namespaces")
		}
		g.Expect(schwerin.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj),
			client.FieldOwner("platform-team"), client.ForceOwnership)).To(Succeed(), "apply %s %s", obj.GetKind(), obj.GetName())
		sg.objs[obj.GetKind()+"/"+obj.GetNamespace()+"/"+obj.GetName()] = objectOf(obj)
	}
	g.Expect(bound).To(ConsistOf(namespaces), "one RoleBinding of the rules per namespace listed")
}

// revoke deletes what apply created, but for namespaces: no namespace controller runs here to
// finish deleting one.
func (sg *scopedGrant) revoke(t *testing.T) {
	for key, obj := range sg.objs {
		if obj.GetKind() == "Namespace" {
			continue
		}
		if err := schwerin.Client.Delete(context.Background(), obj); client.IgnoreNotFound(err) != nil {
			t.Errorf("delete %s at mv-schwerin: %v", key, err)
		}
	}
}

// objectOf is obj without its content, enough to delete it.
func objectOf(obj *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{}
	out.SetGroupVersionKind(obj.GroupVersionKind())
	out.SetNamespace(obj.GetNamespace())
	out.SetName(obj.GetName())
	return out
}

// copyTree copies the files under src to dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o600)
	})
}

// editPeerAccess sets values of peerAccess in the valuesInline of the kustomization's chart,
// where a platform team edits the list of namespaces.
func editPeerAccess(path string, values map[string]any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	charts, _ := k["helmCharts"].([]any)
	if len(charts) != 1 {
		return fmt.Errorf("%s renders %d charts, want 1", path, len(charts))
	}
	chart, _ := charts[0].(map[string]any)
	access, found, err := unstructured.NestedMap(chart, "valuesInline", "peerAccess")
	if err != nil {
		return fmt.Errorf("read helmCharts[0].valuesInline.peerAccess of %s: %w", path, err)
	}
	if !found {
		return fmt.Errorf("%s has no helmCharts[0].valuesInline.peerAccess", path)
	}
	for key, v := range values {
		access[key] = v
	}
	chart["valuesInline"].(map[string]any)["peerAccess"] = access
	out, err := yaml.Marshal(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// usePeerIdentity makes sh-kiel reach mv-schwerin as the ServiceAccount name there, and back
// as deich-peer when the test ends (see switchPeerKubeconfig).
func usePeerIdentity(ctx context.Context, t *testing.T, g Gomega, name string) {
	t.Helper()
	key := client.ObjectKey{Namespace: managerNamespace, Name: "peer-" + schwerin.Name}
	secret := &corev1.Secret{}
	g.Expect(kiel.Client.Get(ctx, key, secret)).To(Succeed())
	original := secret.Data[testenv.PeerSecretKey]
	t.Cleanup(func() {
		t.Log("sh-kiel reaches mv-schwerin as " + peerServiceAccount + " again")
		switchPeerKubeconfig(context.Background(), NewWithT(t), original)
	})
	kubeconfig, err := schwerin.ServiceAccountKubeconfig(ctx, managerNamespace, name, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	switchPeerKubeconfig(ctx, g, kubeconfig)
}

// switchPeerKubeconfig puts kubeconfig into sh-kiel's Secret for mv-schwerin and waits until
// its manager uses it. The Secret loses its key first, until the ReplicationPeer says so: then
// the next Ready ReplicationPeer can only be one whose connection the new kubeconfig built, and
// no service is mirrored in between.
func switchPeerKubeconfig(ctx context.Context, g Gomega, kubeconfig []byte) {
	key := client.ObjectKey{Namespace: managerNamespace, Name: "peer-" + schwerin.Name}
	setData := func(data map[string][]byte) {
		g.Eventually(func() error {
			secret := &corev1.Secret{}
			if err := kiel.Client.Get(ctx, key, secret); err != nil {
				return err
			}
			secret.Data = data
			return kiel.Client.Update(ctx, secret)
		}).Should(Succeed())
	}
	readyReason := func() (string, error) {
		p := &deichv1alpha1.ReplicationPeer{}
		if err := kiel.Client.Get(ctx, client.ObjectKey{Name: schwerin.Name}, p); err != nil {
			return "", err
		}
		c := meta.FindStatusCondition(p.Status.Conditions, deichv1alpha1.ConditionReady)
		if c == nil {
			return "", nil
		}
		return string(c.Status) + "/" + c.Reason, nil
	}
	setData(map[string][]byte{})
	g.Eventually(readyReason).Should(Equal("False/" + deichv1alpha1.PeerReasonSecretKeyNotFound))
	setData(map[string][]byte{testenv.PeerSecretKey: kubeconfig})
	g.Eventually(readyReason).Should(Equal("True/" + deichv1alpha1.PeerReasonConnected))
}

// deleteScopedService deletes the service in ns at sh-kiel and waits until it is gone, which
// its finalizer lets happen once its copies at mv-schwerin are deleted.
func deleteScopedService(t *testing.T, ns string) {
	ctx := context.Background()
	g := NewWithT(t)
	svc := &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: scopedService}}
	g.Expect(client.IgnoreNotFound(kiel.Client.Delete(ctx, svc))).To(Succeed())
	g.Eventually(func() (bool, error) {
		err := kiel.Client.Get(ctx, client.ObjectKeyFromObject(svc), &deichv1alpha1.SharedService{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}, 30*time.Second, 50*time.Millisecond).Should(BeTrue(), "SharedService %s/%s is gone at sh-kiel", ns, scopedService)
}

// scopedSynced reads the Synced condition of the service in ns at sh-kiel.
func scopedSynced(ctx context.Context, ns string) func() (metav1.Condition, error) {
	return func() (metav1.Condition, error) {
		svc := &deichv1alpha1.SharedService{}
		if err := kiel.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: scopedService}, svc); err != nil {
			return metav1.Condition{}, err
		}
		if c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionSynced); c != nil {
			return *c, nil
		}
		return metav1.Condition{}, nil
	}
}

// scopedEvents lists the type and reason of the events recorded at sh-kiel about the service
// in ns.
func scopedEvents(ctx context.Context, ns string) func() ([]eventsv1.Event, error) {
	return func() ([]eventsv1.Event, error) {
		var list eventsv1.EventList
		if err := kiel.Client.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var out []eventsv1.Event
		for _, e := range list.Items {
			if e.Regarding.Kind == "SharedService" && e.Regarding.Name == scopedService {
				out = append(out, eventsv1.Event{Type: e.Type, Reason: e.Reason})
			}
		}
		return out, nil
	}
}

// heldAt lists, as kind/name, the ConfigMaps, Secrets and SharedServices in ns at site, as its
// API server answers an administrator.
func heldAt(ctx context.Context, site *testenv.Site, ns string) func() ([]string, error) {
	return func() ([]string, error) {
		var held []string
		for _, kind := range []struct {
			name string
			list client.ObjectList
		}{
			{"ConfigMap", &corev1.ConfigMapList{}},
			{"Secret", &corev1.SecretList{}},
			{"SharedService", &deichv1alpha1.SharedServiceList{}},
		} {
			if err := site.Client.List(ctx, kind.list, client.InNamespace(ns)); err != nil {
				return nil, err
			}
			items, err := meta.ExtractList(kind.list)
			if err != nil {
				return nil, err
			}
			for _, it := range items {
				if obj, ok := it.(client.Object); ok {
					held = append(held, kind.name+"/"+obj.GetName())
				}
			}
		}
		return held, nil
	}
}
