package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// In these tests mv-schwerin's API server also plays the witness: a witness needs nothing but
// a namespace and Leases, which every API server has, and the peer for it has a site name of
// its own.

// witnessLeaseVerbs are the rights config/witness grants each partner on the Leases of the
// lease namespace.
var witnessLeaseVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete"}

// witnessIdentity creates, at site, the ServiceAccount namespace/name with a Role granting verbs
// on Leases in namespace (none when verbs is empty), as a witness's administrators do with
// config/witness, and returns a kubeconfig for it with a token valid for an hour.
func witnessIdentity(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site, namespace, name string, verbs ...string) []byte {
	t.Helper()
	createNamespace(ctx, t, g, site, namespace)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	g.Expect(site.Client.Create(ctx, sa)).To(Succeed())
	cleanup(t, site, sa)
	if len(verbs) > 0 {
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{coordinationv1.GroupName}, Resources: []string{"leases"}, Verbs: verbs}},
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}},
		}
		for _, o := range []client.Object{role, binding} {
			g.Expect(site.Client.Create(ctx, o)).To(Succeed())
			cleanup(t, site, o)
		}
	}

	kubeconfig, err := site.ServiceAccountKubeconfig(ctx, namespace, name, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	return kubeconfig
}

// createWitnessPeer creates, at kiel, a witness peer for site whose Secret holds kubeconfig
// (no Secret when kubeconfig is nil) and whose Leases live in leaseNamespace.
func createWitnessPeer(ctx context.Context, t *testing.T, g Gomega, site, leaseNamespace string, kubeconfig []byte) *deichv1alpha1.ReplicationPeer {
	t.Helper()
	if kubeconfig != nil {
		putSecret(ctx, t, kiel, managerNamespace, "peer-"+site, kubeconfig)
	}
	p := testobjects.MakeReplicationPeer(site).Witness(leaseNamespace).Obj()
	g.Expect(kiel.Client.Create(ctx, p)).To(Succeed())
	cleanup(t, kiel, p)
	return p
}

func TestWitnessPeerHeartbeatChecksTheLeaseAPI(t *testing.T) {
	requireSites(t)
	ctx := context.Background()

	t.Run("a witness whose identity may manage Leases in the lease namespace is Ready", func(t *testing.T) {
		g := newG(t)
		const ns = "witness-granted"
		kubeconfig := witnessIdentity(ctx, t, g, schwerin, ns, "sh-kiel", witnessLeaseVerbs...)
		p := createWitnessPeer(ctx, t, g, "witness-granted", ns, kubeconfig)

		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected))
		ready := peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)()
		g.Expect(ready.Message).To(ContainSubstring("may keep Leases in its namespace " + ns))
		g.Expect(peerCondition(ctx, kiel, p.Name, deichv1alpha1.PeerConditionReachable)()).
			To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded))
		got, err := getPeer(ctx, kiel, p.Name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Status.ServerVersion).To(HavePrefix("v1."))
		g.Expect(got.Status.LastHeartbeatTime).NotTo(BeNil())

		// The check creates its Lease in a dry run only: nothing is left at the witness.
		var leases coordinationv1.LeaseList
		g.Expect(schwerin.Client.List(ctx, &leases, client.InNamespace(ns))).To(Succeed())
		g.Expect(leases.Items).To(BeEmpty())
		g.Eventually(func() ([]string, error) {
			return eventReasons(ctx, kiel, "ReplicationPeer", p.Name)
		}).Should(ContainElement(deichv1alpha1.PeerEventReady))
	})

	t.Run("a witness identity without rights on Leases is refused with the namespace named", func(t *testing.T) {
		g := newG(t)
		const ns = "witness-denied"
		kubeconfig := witnessIdentity(ctx, t, g, schwerin, ns, "sh-kiel")
		p := createWitnessPeer(ctx, t, g, "witness-denied", ns, kubeconfig)

		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseAccessDenied))
		ready := peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)()
		g.Expect(ready.Message).To(And(ContainSubstring("Leases in namespace "+ns), ContainSubstring("forbidden")))
		// The witness answered: it is reachable, only its Leases are out of bounds.
		g.Expect(peerCondition(ctx, kiel, p.Name, deichv1alpha1.PeerConditionReachable)()).
			To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded))
		g.Eventually(func() ([]string, error) {
			return eventReasons(ctx, kiel, "ReplicationPeer", p.Name)
		}).Should(ContainElement(deichv1alpha1.PeerEventNotReady))
	})

	t.Run("a witness identity that may read Leases but not create them is refused", func(t *testing.T) {
		g := newG(t)
		const ns = "witness-readonly"
		kubeconfig := witnessIdentity(ctx, t, g, schwerin, ns, "sh-kiel", "get", "list", "watch")
		p := createWitnessPeer(ctx, t, g, "witness-readonly", ns, kubeconfig)

		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseAccessDenied))
		g.Expect(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)().Message).
			To(ContainSubstring("create a Lease (dry run) in namespace " + ns))
	})

	t.Run("a lease namespace missing at the witness is reported as such", func(t *testing.T) {
		g := newG(t)
		kubeconfig, err := schwerin.Kubeconfig()
		g.Expect(err).NotTo(HaveOccurred())
		p := createWitnessPeer(ctx, t, g, "witness-nonamespace", "witness-never-created", kubeconfig)

		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseNamespaceNotFound))
		g.Expect(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)().Message).
			To(ContainSubstring("has no namespace witness-never-created"))
	})

	t.Run("a witness without leaseNamespace uses deich-witness", func(t *testing.T) {
		g := newG(t)
		kubeconfig, err := schwerin.Kubeconfig()
		g.Expect(err).NotTo(HaveOccurred())
		err = schwerin.Client.Get(ctx, client.ObjectKey{Name: deichv1alpha1.DefaultWitnessLeaseNamespace}, &corev1.Namespace{})
		g.Expect(client.IgnoreNotFound(err)).To(Succeed())
		if err == nil {
			t.Fatalf("namespace %s exists at %s before the test; it must start missing", deichv1alpha1.DefaultWitnessLeaseNamespace, schwerin.Name)
		}
		p := createWitnessPeer(ctx, t, g, "witness-default", "", kubeconfig)
		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonLeaseNamespaceNotFound))
		g.Expect(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)().Message).
			To(ContainSubstring("has no namespace " + deichv1alpha1.DefaultWitnessLeaseNamespace))

		// Once the witness's administrators create it, the next heartbeat finds it.
		createNamespace(ctx, t, g, schwerin, deichv1alpha1.DefaultWitnessLeaseNamespace)
		g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected))
	})
}

func TestSharedServiceIsNeverMirroredToAWitness(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-to-witness"
	const witness = "witness-as-standby"
	kubeconfig, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	createNamespace(ctx, t, g, schwerin, ns)
	p := createWitnessPeer(ctx, t, g, witness, ns, kubeconfig)
	g.Eventually(peerCondition(ctx, kiel, p.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected))

	createNamespace(ctx, t, g, kiel, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Standby(witness).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	g.Eventually(syncedCondition(ctx, kiel, ns, svc.Name)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonPeerNotConnected))
	g.Expect(syncedCondition(ctx, kiel, ns, svc.Name)().Message).
		To(ContainSubstring("site " + witness + " is a witness"))
	g.Consistently(func() ([]corev1.ConfigMap, error) {
		var list corev1.ConfigMapList
		err := schwerin.Client.List(ctx, &list, client.InNamespace(ns), client.HasLabels{"resilience.deich.io/shared-service"})
		return list.Items, err
	}, 2*time.Second).Should(BeEmpty(), "nothing may be mirrored to a witness")
}

func TestSharedServiceQuorumConditionFollowsItsWitness(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "quorum"
	const witness = "hh-hamburg"
	createNamespace(ctx, t, g, kiel, ns)
	svc := testobjects.MakeSharedService("buergerkonto", ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	key := client.ObjectKeyFromObject(svc)
	events := func() ([]string, error) { return eventReasons(ctx, kiel, "SharedService", svc.Name) }
	// quorum returns the service's Quorum condition at site, or nil.
	quorum := func(site *testenv.Site) func() *metav1.Condition {
		return func() *metav1.Condition {
			s, err := serviceStatus(ctx, site, ns, svc.Name)()
			if err != nil {
				return nil
			}
			return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionQuorum)
		}
	}

	t.Run("without a witness the service says plainly what it cannot survive", func(t *testing.T) {
		g := newG(t)
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonTwoSiteMode))
		msg := quorum(kiel)().Message
		g.Expect(msg).To(And(
			ContainSubstring("no witness"),
			ContainSubstring("lease lives at the standby's cluster ("+testenv.SiteSchwerin+")"),
			ContainSubstring("losing that site, or the link to it, stops the service at the active site"),
			ContainSubstring("spec.witnessSite"),
		))
		// The lease holder holds the one arbiter there is; the other site none.
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Quorum", Equal("1/1")))
		g.Eventually(serviceStatus(ctx, schwerin, ns, svc.Name)).Should(HaveField("Status.Quorum", Equal("0/1")))
		g.Eventually(quorum(schwerin)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonTwoSiteMode))
	})

	t.Run("a witness without a ReplicationPeer is not found", func(t *testing.T) {
		g := newG(t)
		updateService(ctx, g, kiel, key, func(s *deichv1alpha1.SharedService) { s.Spec.WitnessSite = witness })
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonWitnessNotFound))
		g.Expect(quorum(kiel)().Message).To(ContainSubstring("no ReplicationPeer at this site has spec.site " + witness))
		g.Eventually(events).Should(ContainElement(deichv1alpha1.ServiceEventWitnessUnusable))
	})

	kubeconfig, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-"+witness, kubeconfig)

	t.Run("a partner named as witness is not a witness", func(t *testing.T) {
		g := newG(t)
		partner := testobjects.MakeReplicationPeer(witness).Obj()
		g.Expect(kiel.Client.Create(ctx, partner)).To(Succeed())
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonNotAWitness))
		g.Expect(quorum(kiel)().Message).To(ContainSubstring("has role Partner"))
		// The role is immutable: replacing the peer is how a site becomes a witness.
		g.Expect(kiel.Client.Delete(ctx, partner)).To(Succeed())
		g.Eventually(func() error { return kiel.Client.Get(ctx, client.ObjectKeyFromObject(partner), partner) }).
			Should(MatchError(ContainSubstring("not found")))
	})

	parent := t // the witness peer outlives the subtest that creates it
	t.Run("a witness that is not Ready is reported with its reason", func(t *testing.T) {
		g := newG(t)
		p := testobjects.MakeReplicationPeer(witness).Witness("quorum-witness").Obj()
		g.Expect(kiel.Client.Create(ctx, p)).To(Succeed())
		cleanup(parent, kiel, p)
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonWitnessNotReady))
		g.Eventually(func() string { return quorum(kiel)().Message }).
			Should(ContainSubstring(deichv1alpha1.PeerReasonLeaseNamespaceNotFound))
	})

	t.Run("a Ready witness makes the condition True, and its loss turns it False again", func(t *testing.T) {
		g := newG(t)
		createNamespace(ctx, t, g, schwerin, "quorum-witness")
		g.Eventually(peerCondition(ctx, kiel, witness, deichv1alpha1.ConditionReady)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonWitnessConnected))
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.ServiceReasonWitnessReady))
		g.Expect(quorum(kiel)().Message).To(And(ContainSubstring("witness "+witness), ContainSubstring("majority")))
		g.Eventually(events).Should(ContainElement(deichv1alpha1.ServiceEventWitnessReady))
		// sh-kiel moves its claim to the three arbiters and holds all of them, the witness's
		// copy in the namespace the witness gave.
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
			HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
			HaveField("Status.Quorum", Equal("3/3"))))
		owner := client.ObjectKeyFromObject(svc)
		rec, err := lease.ReadEntry(ctx, schwerin.Client, lease.RecordKey("quorum-witness", svc.Spec.PrimarySite, svc.Spec.StandbySite, owner), owner)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rec.HeldBy(testenv.SiteKiel)).To(BeTrue(), "the witness's copy: %+v", rec)

		// Each site judges its own peers: mv-schwerin has none for the witness.
		g.Eventually(quorum(schwerin)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonWitnessNotFound))

		// The witness's credentials stop working: the condition follows the peer's Ready.
		putSecret(ctx, t, kiel, managerNamespace, "peer-"+witness, mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
			for _, u := range cfg.AuthInfos {
				u.ClientCertificateData, u.ClientKeyData, u.Token = nil, nil, "not-a-valid-token"
			}
		}))
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonWitnessNotReady))
		g.Expect(quorum(kiel)().Message).To(ContainSubstring(deichv1alpha1.PeerReasonUnauthorized))
		// Without the witness sh-kiel still holds both partners' copies, a majority.
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.Quorum", Equal("2/3")))
		g.Consistently(serviceStatus(ctx, kiel, ns, svc.Name), 3*time.Second).
			Should(HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)))
	})

	t.Run("removing the witness returns the service to two-site mode", func(t *testing.T) {
		g := newG(t)
		updateService(ctx, g, kiel, key, func(s *deichv1alpha1.SharedService) { s.Spec.WitnessSite = "" })
		g.Eventually(quorum(kiel)).
			Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonTwoSiteMode))
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
			HaveField("Status.Quorum", Equal("1/1")),
			HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected))))
	})
}
