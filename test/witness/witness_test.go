package witness

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/testobjects"
)

// serviceLease is the name of the witness Lease of the SharedService buergerkonto/buergerkonto:
// deich-<service-namespace>.<service-name>.
const serviceLease = "deich-buergerkonto.buergerkonto"

// TestConfigWitnessHoldsANamespaceAndLeaseAccessOnly checks what config/witness asks the
// witness's administrators to apply: one namespace, and for each of the two partner states a
// ServiceAccount, a RoleBinding to one Role that allows Leases and nothing else, and a token
// Secret. No CRD, no cluster-wide grant, no workload.
func TestConfigWitnessHoldsANamespaceAndLeaseAccessOnly(t *testing.T) {
	requireWitness(t)
	g := NewWithT(t)

	var got []string
	for _, obj := range tree {
		got = append(got, fmt.Sprintf("%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName()))
	}
	g.Expect(got).To(ConsistOf(
		"Namespace /"+leaseNamespace,
		"ServiceAccount "+leaseNamespace+"/"+partnerA,
		"ServiceAccount "+leaseNamespace+"/"+partnerB,
		"Role "+leaseNamespace+"/deich-witness-leases",
		"RoleBinding "+leaseNamespace+"/"+partnerA,
		"RoleBinding "+leaseNamespace+"/"+partnerB,
		"Secret "+leaseNamespace+"/"+partnerA+"-token",
		"Secret "+leaseNamespace+"/"+partnerB+"-token",
	))

	for _, obj := range tree {
		switch obj.GetKind() {
		case "Role":
			role := &rbacv1.Role{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, role)).To(Succeed())
			g.Expect(role.Rules).To(Equal([]rbacv1.PolicyRule{{
				APIGroups: []string{coordinationv1.GroupName},
				Resources: []string{"leases"},
				Verbs:     []string{"get", "list", "watch", "create", "update", "patch", "delete"},
			}}), "the Role allows Leases only")
		case "RoleBinding":
			binding := &rbacv1.RoleBinding{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, binding)).To(Succeed())
			g.Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "deich-witness-leases"}))
			g.Expect(binding.Subjects).To(Equal([]rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: binding.Name, Namespace: leaseNamespace}}),
				"RoleBinding %s binds its own partner only, so that one partner can be revoked alone", binding.Name)
		case "Secret":
			secret := &corev1.Secret{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, secret)).To(Succeed())
			g.Expect(secret.Type).To(Equal(corev1.SecretTypeServiceAccountToken))
			g.Expect(secret.Annotations).To(HaveKeyWithValue(corev1.ServiceAccountNameKey, strings.TrimSuffix(secret.Name, "-token")),
				"Secret %s holds the token of its partner's ServiceAccount", secret.Name)
		}
	}
}

// TestEachPartnerManagesLeasesInTheWitnessNamespace uses each partner's identity for every verb
// a partner's manager needs on its witness Leases, and lets both partners contend for one Lease
// by compare-and-swap, as the active and the standby of a service do.
func TestEachPartnerManagesLeasesInTheWitnessNamespace(t *testing.T) {
	requireWitness(t)
	ctx := context.Background()

	for _, partner := range []string{partnerA, partnerB} {
		t.Run(partner+" creates, reads, lists, watches, renews, patches and deletes a Lease", func(t *testing.T) {
			g := NewWithT(t)
			c := partnerClient(ctx, g, leaseNamespace, partner)
			name := "deich-buergerkonto." + partner

			g.Expect(c.Create(ctx, makeLease(leaseNamespace, name, "sh-kiel"))).To(Succeed(), "create")
			got := &coordinationv1.Lease{}
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: leaseNamespace, Name: name}, got)).To(Succeed(), "get")
			list := &coordinationv1.LeaseList{}
			g.Expect(c.List(ctx, list, client.InNamespace(leaseNamespace))).To(Succeed(), "list")
			g.Expect(list.Items).To(ContainElement(HaveField("Name", name)))

			w, err := c.Watch(ctx, &coordinationv1.LeaseList{}, client.InNamespace(leaseNamespace))
			g.Expect(err).NotTo(HaveOccurred(), "watch")
			g.Eventually(w.ResultChan()).WithTimeout(10*time.Second).Should(Receive(
				HaveField("Object", HaveField("ObjectMeta.Name", name))), "the watch delivers the Lease")
			w.Stop()

			got.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
			g.Expect(c.Update(ctx, got)).To(Succeed(), "update (renew)")
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"leaseTransitions":1}}`))
			g.Expect(c.Patch(ctx, got, patch)).To(Succeed(), "patch")
			g.Expect(got.Spec.LeaseTransitions).To(HaveValue(BeEquivalentTo(1)))

			g.Expect(c.Delete(ctx, got)).To(Succeed(), "delete")
			err = c.Get(ctx, client.ObjectKeyFromObject(got), &coordinationv1.Lease{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the Lease is gone, got %v", err)
		})
	}

	t.Run("the two partners contend for one Lease by compare-and-swap", func(t *testing.T) {
		g := NewWithT(t)
		kiel := partnerClient(ctx, g, leaseNamespace, partnerA)
		schwerin := partnerClient(ctx, g, leaseNamespace, partnerB)

		held := makeLease(leaseNamespace, serviceLease, "sh-kiel")
		g.Expect(kiel.Create(ctx, held)).To(Succeed())
		defer func() { g.Expect(client.IgnoreNotFound(kiel.Delete(ctx, held))).To(Succeed()) }()

		taken := &coordinationv1.Lease{}
		g.Expect(schwerin.Get(ctx, client.ObjectKeyFromObject(held), taken)).To(Succeed())
		taken.Spec.HolderIdentity = ptr.To("mv-schwerin")
		taken.Spec.LeaseTransitions = ptr.To(int32(1))
		g.Expect(schwerin.Update(ctx, taken)).To(Succeed(), "mv-schwerin takes the Lease over")

		held.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
		err := kiel.Update(ctx, held)
		g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "sh-kiel's renewal of its stale copy conflicts, got %v", err)
		g.Expect(kiel.Get(ctx, client.ObjectKeyFromObject(held), held)).To(Succeed())
		g.Expect(held.Spec.HolderIdentity).To(HaveValue(Equal("mv-schwerin")))
	})
}

// TestAPartnerIsRefusedEverythingButLeasesInItsNamespace tries, with each partner's identity,
// what a witness must never let a partner do: touch another pair's Leases or the cluster's own,
// read or mint the other partner's credentials, use Secrets or ConfigMaps, Deich's API, Pods,
// RBAC or the namespace itself. Every request must be refused as Forbidden.
func TestAPartnerIsRefusedEverythingButLeasesInItsNamespace(t *testing.T) {
	requireWitness(t)
	ctx := context.Background()
	g := NewWithT(t)

	// The other pair's Lease for a service of the same name.
	theirs := makeLease(otherPairNamespace, serviceLease, "ni-hannover")
	g.Expect(witness.Client.Create(ctx, theirs)).To(Succeed())
	t.Cleanup(func() { _ = witness.Client.Delete(ctx, theirs) }) // the test is over; a leftover harms no other test

	tries := []struct {
		what string
		do   func(ctx context.Context, c client.Client, cs kubernetes.Interface, other string) error
	}{
		{"read another pair's Lease of a service with the same name", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Get(ctx, client.ObjectKeyFromObject(theirs), &coordinationv1.Lease{})
		}},
		{"create a Lease in another pair's namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, makeLease(otherPairNamespace, "deich-buergerkonto.meldeportal", "sh-kiel"))
		}},
		{"list the Leases of every namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &coordinationv1.LeaseList{})
		}},
		{"create a leader-election Lease in kube-system", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, makeLease(metav1.NamespaceSystem, "kube-controller-manager", "sh-kiel"))
		}},
		{"read the other partner's token Secret", func(ctx context.Context, c client.Client, _ kubernetes.Interface, other string) error {
			return c.Get(ctx, client.ObjectKey{Namespace: leaseNamespace, Name: other + "-token"}, &corev1.Secret{})
		}},
		{"list the Secrets of its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &corev1.SecretList{}, client.InNamespace(leaseNamespace))
		}},
		{"create a Secret in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "stolen"}})
		}},
		{"request a token for the other partner", func(ctx context.Context, _ client.Client, cs kubernetes.Interface, other string) error {
			_, err := cs.CoreV1().ServiceAccounts(leaseNamespace).CreateToken(ctx, other, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
			return err
		}},
		{"list the ConfigMaps of its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(leaseNamespace))
		}},
		{"create a ConfigMap in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "settings"}})
		}},
		{"list SharedServices in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &deichv1alpha1.SharedServiceList{}, client.InNamespace(leaseNamespace))
		}},
		{"create a SharedService in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, testobjects.MakeSharedService("buergerkonto", leaseNamespace).Obj())
		}},
		{"list Switchovers in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &deichv1alpha1.SwitchoverList{}, client.InNamespace(leaseNamespace))
		}},
		{"list ReplicationPeers", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &deichv1alpha1.ReplicationPeerList{})
		}},
		{"create a ReplicationPeer", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, testobjects.MakeReplicationPeer("sh-kiel").Obj())
		}},
		{"list RecoveryObjectives", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.List(ctx, &deichv1alpha1.RecoveryObjectiveList{})
		}},
		{"run a Pod in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "shell"},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "shell", Image: "registry.example/shell:1"}}},
			})
		}},
		{"bind itself to cluster-admin in its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "escalate"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: partnerA, Namespace: leaseNamespace}},
			})
		}},
		{"widen the Role it is bound to", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "deich-witness-leases"}}
			return c.Patch(ctx, role, client.RawPatch(types.JSONPatchType,
				[]byte(`[{"op":"add","path":"/rules/0/resources/-","value":"secrets"}]`)))
		}},
		{"delete its namespace", func(ctx context.Context, c client.Client, _ kubernetes.Interface, _ string) error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNamespace}})
		}},
	}

	for _, pair := range []struct{ self, other string }{{partnerA, partnerB}, {partnerB, partnerA}} {
		c, cs := partnerClients(ctx, g, leaseNamespace, pair.self)
		for _, try := range tries {
			t.Run(pair.self+" may not "+try.what, func(t *testing.T) {
				err := try.do(ctx, c, cs, pair.other)
				NewWithT(t).Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
			})
		}
	}
}

// TestRevokingOnePartnerLeavesTheOtherItsLeases works in the second pair's namespace, made by
// an overlay of config/witness: both partners' identities work there, and once the witness's
// administrators delete one partner's RoleBinding that partner is refused while the other keeps
// renewing its Lease.
func TestRevokingOnePartnerLeavesTheOtherItsLeases(t *testing.T) {
	requireWitness(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(10 * time.Second)
	g.SetDefaultEventuallyPollingInterval(50 * time.Millisecond)

	hannover := partnerClient(ctx, g, otherPairNamespace, partnerA)
	bremen := partnerClient(ctx, g, otherPairNamespace, partnerB)
	g.Expect(hannover.Create(ctx, makeLease(otherPairNamespace, "deich-meldeportal.meldeportal", "ni-hannover"))).To(Succeed(),
		"the overlay's first partner may write Leases in its pair's namespace")
	lease := makeLease(otherPairNamespace, "deich-register.register", "hb-bremen")
	g.Expect(bremen.Create(ctx, lease)).To(Succeed(), "the overlay's second partner may write Leases in its pair's namespace")

	binding := &rbacv1.RoleBinding{}
	g.Expect(witness.Client.Get(ctx, client.ObjectKey{Namespace: otherPairNamespace, Name: partnerA}, binding)).To(Succeed())
	g.Expect(witness.Client.Delete(ctx, binding)).To(Succeed())
	t.Cleanup(func() {
		restored := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: binding.Namespace, Name: binding.Name, Labels: binding.Labels},
			RoleRef:    binding.RoleRef,
			Subjects:   binding.Subjects,
		}
		if err := witness.Client.Create(ctx, restored); err != nil {
			t.Errorf("restore RoleBinding %s/%s: %v", binding.Namespace, binding.Name, err)
		}
	})

	g.Eventually(func() error {
		return hannover.Get(ctx, client.ObjectKey{Namespace: otherPairNamespace, Name: "deich-meldeportal.meldeportal"}, &coordinationv1.Lease{})
	}).Should(Satisfy(apierrors.IsForbidden), "the revoked partner is refused")
	lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
	g.Expect(bremen.Update(ctx, lease)).To(Succeed(), "the other partner still renews its Lease")
}

// partnerClient is a client for the witness that authenticates as the ServiceAccount
// namespace/name, built from a kubeconfig that Deich's manager accepts as peer credentials.
func partnerClient(ctx context.Context, g Gomega, namespace, name string) client.WithWatch {
	c, _ := partnerClients(ctx, g, namespace, name)
	return c
}

// partnerClients is [partnerClient], and a clientset for the same identity for what the
// controller-runtime client does not reach (subresources such as a ServiceAccount's token).
func partnerClients(ctx context.Context, g Gomega, namespace, name string) (client.WithWatch, kubernetes.Interface) {
	kubeconfig, err := witness.ServiceAccountKubeconfig(ctx, namespace, name, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	cfg, err := peer.RESTConfigFromKubeconfig(kubeconfig)
	g.Expect(err).NotTo(HaveOccurred(), "Deich accepts the kubeconfig as peer credentials")
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: operator.NewScheme()})
	g.Expect(err).NotTo(HaveOccurred())
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	return c, cs
}

// makeLease is a witness Lease held by holder, renewed now.
func makeLease(namespace, name, holder string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To(int32(30)),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}
}
