package peer

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	requesterNamespace = "requester"
	requesterService   = "meldewesen"
	// sre is the user who requests the move, as the API server authenticates them.
	sre = "anna.petersen@sh-kiel.example"
)

// TestTheRequesterOfASwitchoverIsRecordedAtBothSites installs config/admission at both sites,
// has an SRE move a service with a Switchover, and checks that the API server stamped the SRE
// on it — whatever the SRE wrote there — that nobody can change it, and that both sites'
// failoverHistory record the move with its requester and epoch: the site that serves after
// it, and, merged from there, the site it left.
func TestTheRequesterOfASwitchoverIsRecordedAtBothSites(t *testing.T) {
	requireSites(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)

	root, err := testenv.RepoRoot()
	g.Expect(err).NotTo(HaveOccurred())
	policies, err := testenv.KustomizeBuild(filepath.Join(root, "config", "admission"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(policies).To(HaveLen(4))
	for _, site := range []*testenv.Site{kiel, schwerin} {
		for _, obj := range policies {
			obj := obj.DeepCopy()
			g.Expect(site.Client.Create(ctx, obj)).To(Succeed(), "create %s %s at %s", obj.GetKind(), obj.GetName(), site.Name)
			t.Cleanup(func() { _ = site.Client.Delete(context.Background(), obj) })
		}
	}

	// The SRE may manage Switchovers in the service's namespace at sh-kiel, nothing else.
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: requesterNamespace}})).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: requesterNamespace, Name: "sre"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{deichv1alpha1.GroupVersion.Group}, Resources: []string{"switchovers"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch"},
		}},
	})).To(Succeed())
	g.Expect(kiel.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: requesterNamespace, Name: "sre"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "sre"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: sre}},
	})).To(Succeed())
	cfg := rest.CopyConfig(kiel.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: sre, Groups: []string{"system:authenticated"}}
	asSRE, err := client.New(cfg, client.Options{Scheme: kiel.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())

	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective(requesterNamespace).Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = site.Client.Delete(context.Background(), obj) })
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: requesterNamespace, Name: "settings", Labels: map[string]string{"app.kubernetes.io/part-of": requesterService}},
		Data:       map[string]string{"v": "1"},
	})).To(Succeed())
	svc := testobjects.MakeSharedService(requesterService, requesterNamespace).Objective(requesterNamespace).
		Resources(deichv1alpha1.ResourceKind{Kind: "ConfigMap"}).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	t.Cleanup(func() { _ = kiel.Client.Delete(context.Background(), svc) })
	service := func(site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
		return func() (*deichv1alpha1.SharedService, error) {
			got := &deichv1alpha1.SharedService{}
			return got, site.Client.Get(ctx, client.ObjectKeyFromObject(svc), got)
		}
	}
	g.Eventually(service(kiel)).Should(HaveField("Status.Phase", deichv1alpha1.PhaseProtected))

	// The policies take effect within moments of their creation: until the stamp shows on a
	// dry run, the API server has not loaded them yet.
	g.Eventually(func() (string, error) {
		probe := &deichv1alpha1.Switchover{
			ObjectMeta: metav1.ObjectMeta{Namespace: requesterNamespace, Name: "probe"},
			Spec:       deichv1alpha1.SwitchoverSpec{SharedServiceName: requesterService, TargetSite: testenv.SiteSchwerin, Drill: true, Reason: "admission check"},
		}
		err := asSRE.Create(ctx, probe, client.DryRunAll)
		return probe.Annotations[deichv1alpha1.AnnotationRequestedBy], err
	}).Should(Equal(sre))

	// The SRE claims to be someone else: the API server stamps who they are.
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: requesterNamespace, Name: "to-schwerin",
			Annotations: map[string]string{deichv1alpha1.AnnotationRequestedBy: "somebody.else@sh-kiel.example"},
		},
		Spec: deichv1alpha1.SwitchoverSpec{SharedServiceName: requesterService, TargetSite: testenv.SiteSchwerin, Reason: "CHG-5150: network maintenance in Kiel"},
	}
	g.Expect(asSRE.Create(ctx, sw)).To(Succeed())
	g.Expect(sw.Annotations).To(HaveKeyWithValue(deichv1alpha1.AnnotationRequestedBy, sre))

	got := &deichv1alpha1.Switchover{}
	g.Eventually(func() (*deichv1alpha1.Switchover, error) {
		return got, kiel.Client.Get(ctx, client.ObjectKeyFromObject(sw), got)
	}).Should(And(
		HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded),
		HaveField("Status.RequestedBy", sre)))

	// Nobody rewrites the record afterwards, the SRE included. (A merge patch carries no
	// resourceVersion, so the controller's own writes cannot make it conflict instead.)
	forged := got.DeepCopy()
	forged.Annotations[deichv1alpha1.AnnotationRequestedBy] = "somebody.else@sh-kiel.example"
	err = asSRE.Patch(ctx, forged, client.MergeFrom(got))
	g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "changing the requester is refused, got %v", err)
	g.Expect(err.Error()).To(ContainSubstring("cannot be changed"))

	// The site that serves after the move records it, with the requester and the epoch.
	var moved deichv1alpha1.FailoverRecord
	g.Eventually(func(g Gomega) {
		s, err := service(schwerin)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.Status.FailoverHistory).NotTo(BeEmpty())
		moved = s.Status.FailoverHistory[0]
		g.Expect(moved).To(And(
			HaveField("From", testenv.SiteKiel), HaveField("To", testenv.SiteSchwerin),
			HaveField("RequestedBy", sre), HaveField("Epoch", BeNumerically(">", 1)),
			HaveField("Reason", ContainSubstring("to-schwerin"))))
	}).Should(Succeed())
	// The site it left learns of the move from the lease and merges the record.
	g.Eventually(func(g Gomega) {
		s, err := service(kiel)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.Status.FailoverHistory).To(ContainElement(And(
			HaveField("Epoch", moved.Epoch), HaveField("RequestedBy", sre),
			HaveField("From", testenv.SiteKiel), HaveField("To", testenv.SiteSchwerin))))
		g.Expect(s.Status.LastFailover).NotTo(BeNil())
		g.Expect(s.Status.LastFailover.Epoch).To(Equal(moved.Epoch))
	}).Should(Succeed())
}
