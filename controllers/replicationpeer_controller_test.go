package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// getPeer reads a ReplicationPeer from site.
func getPeer(ctx context.Context, site *testenv.Site, name string) (*deichv1alpha1.ReplicationPeer, error) {
	p := &deichv1alpha1.ReplicationPeer{}
	return p, site.Client.Get(ctx, client.ObjectKey{Name: name}, p)
}

// peerCondition returns the condition of type t of the named peer at site, or nil.
func peerCondition(ctx context.Context, site *testenv.Site, name, t string) func() *metav1.Condition {
	return func() *metav1.Condition {
		p, err := getPeer(ctx, site, name)
		if err != nil {
			return nil
		}
		return meta.FindStatusCondition(p.Status.Conditions, t)
	}
}

// haveStatusReason matches a condition with the given status and reason.
func haveStatusReason(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(Not(BeNil()),
		WithTransform(func(c *metav1.Condition) metav1.ConditionStatus { return c.Status }, Equal(status)),
		WithTransform(func(c *metav1.Condition) string { return c.Reason }, Equal(reason)))
}

// putSecret creates or updates a Secret at site holding kubeconfig under key "kubeconfig".
func putSecret(ctx context.Context, t *testing.T, site *testenv.Site, namespace, name string, kubeconfig []byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	_, err := ctrlCreateOrUpdate(ctx, site.Client, s, func() {
		s.Data = map[string][]byte{deichv1alpha1.DefaultKubeconfigKey: kubeconfig}
	})
	if err != nil {
		t.Fatalf("put Secret %s/%s at %s: %v", namespace, name, site.Name, err)
	}
	cleanup(t, site, s)
}

// ctrlCreateOrUpdate creates obj or updates it with mutate applied.
func ctrlCreateOrUpdate(ctx context.Context, c client.Client, obj client.Object, mutate func()) (bool, error) {
	key := client.ObjectKeyFromObject(obj)
	if err := c.Get(ctx, key, obj); err != nil {
		mutate()
		return true, c.Create(ctx, obj)
	}
	mutate()
	return false, c.Update(ctx, obj)
}

// mutatedKubeconfig returns site's admin kubeconfig changed by mutate.
func mutatedKubeconfig(t *testing.T, site *testenv.Site, mutate func(cfg *clientcmdapi.Config)) []byte {
	t.Helper()
	raw, err := site.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		t.Fatal(err)
	}
	mutate(cfg)
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPeerBecomesReachableAndReadyWithinTwoHeartbeats(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	const interval = 2 * time.Second

	kubeconfig, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", kubeconfig)
	peerObj := testobjects.MakeReplicationPeer(testenv.SiteSchwerin).Heartbeat(interval).Obj()
	g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
	cleanup(t, kiel, peerObj)
	created := peerObj.CreationTimestamp.Time

	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.PeerConditionReachable), 2*interval+time.Second).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonHeartbeatSucceeded))
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))

	got, err := getPeer(ctx, kiel, peerObj.Name)
	g.Expect(err).NotTo(HaveOccurred())
	reachable := meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.PeerConditionReachable)
	// Timestamps have second precision; two heartbeats plus one second of rounding.
	g.Expect(reachable.LastTransitionTime.Sub(created)).To(BeNumerically("<=", 2*interval+time.Second),
		"the peer became reachable later than two heartbeats after it was created")
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	g.Expect(got.Status.ServerVersion).To(HavePrefix("v1."))
	g.Expect(got.Status.Latency).NotTo(BeNil())
	g.Expect(got.Status.LastHeartbeatTime).NotTo(BeNil())

	// Heartbeats keep coming: lastHeartbeatTime moves on.
	first := got.Status.LastHeartbeatTime.Time
	g.Eventually(func() time.Time {
		p, _ := getPeer(ctx, kiel, peerObj.Name)
		if p.Status.LastHeartbeatTime == nil {
			return time.Time{}
		}
		return p.Status.LastHeartbeatTime.Time
	}).Should(BeTemporally(">", first))

	g.Expect(testutil.ToFloat64(metrics.PeerReachable.WithLabelValues(peerObj.Name, testenv.SiteSchwerin))).To(Equal(1.0))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "ReplicationPeer", peerObj.Name)
	}).Should(ContainElements(deichv1alpha1.PeerEventReachable, deichv1alpha1.PeerEventReady))
}

func TestPeerTurnsUnreachableWhenItsAPIServerStopsAndRecoversWhenItStarts(t *testing.T) {
	ctx := context.Background()
	g := newG(t)

	kubeconfig, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", kubeconfig)
	peerObj := testobjects.MakeReplicationPeer(testenv.SiteSchwerin).Heartbeat(time.Second).Obj()
	g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
	cleanup(t, kiel, peerObj)
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))

	g.Expect(schwerin.StopAPIServer()).To(Succeed())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = schwerin.StartAPIServer()
		}
	})

	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.PeerConditionReachable)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed))
	cond := peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.PeerConditionReachable)()
	g.Expect(cond.Message).To(ContainSubstring("peer mv-schwerin unreachable"))
	g.Expect(cond.Message).To(ContainSubstring("connection refused"))
	g.Expect(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)()).
		To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed))
	g.Expect(testutil.ToFloat64(metrics.PeerReachable.WithLabelValues(peerObj.Name, testenv.SiteSchwerin))).To(Equal(0.0))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "ReplicationPeer", peerObj.Name)
	}).Should(ContainElement(deichv1alpha1.PeerEventUnreachable))
	p, err := getPeer(ctx, kiel, peerObj.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Status.ConsecutiveFailures).To(BeNumerically(">=", 1))

	g.Expect(schwerin.StartAPIServer()).To(Succeed())
	restarted = true
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))
	p, err = getPeer(ctx, kiel, peerObj.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Status.ConsecutiveFailures).To(BeZero())
}

func TestPeerWithDangerousCredentialsIsRefused(t *testing.T) {
	requireSites(t)
	ctx := context.Background()

	exec := mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
		for _, u := range cfg.AuthInfos {
			u.Exec = &clientcmdapi.ExecConfig{APIVersion: "client.authentication.k8s.io/v1", Command: "/bin/sh", Args: []string{"-c", "id"}}
		}
	})
	insecure := mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
		for _, c := range cfg.Clusters {
			c.InsecureSkipTLSVerify = true
			c.CertificateAuthorityData = nil
		}
	})
	authProvider := mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
		for _, u := range cfg.AuthInfos {
			u.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "oidc"}
		}
	})
	valid, err := schwerin.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		secretNS   string
		secretKey  string
		kubeconfig []byte // nil: no Secret at all
		wantReason string
		wantInMsg  string
	}{
		{"refuses a kubeconfig with an exec plugin", managerNamespace, "kubeconfig", exec, deichv1alpha1.PeerReasonCredentialsRefused, "ExecPluginNotAllowed"},
		{"refuses a kubeconfig that skips TLS verification", managerNamespace, "kubeconfig", insecure, deichv1alpha1.PeerReasonCredentialsRefused, "InsecureTLSNotAllowed"},
		{"refuses a kubeconfig with an auth-provider", managerNamespace, "kubeconfig", authProvider, deichv1alpha1.PeerReasonCredentialsRefused, "AuthProviderNotAllowed"},
		{"refuses a Secret outside the manager's namespace", "default", "kubeconfig", valid, deichv1alpha1.PeerReasonSecretNamespaceNotAllowed, `outside the manager's namespace "deich-system"`},
		{"reports a missing Secret", managerNamespace, "kubeconfig", nil, deichv1alpha1.PeerReasonSecretNotFound, "not found"},
		{"reports a missing key in the Secret", managerNamespace, "other-key", valid, deichv1alpha1.PeerReasonSecretKeyNotFound, `has no key "other-key"`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newG(t)
			site := "refused-" + string(rune('a'+i))
			secretName := "peer-" + site
			if tc.kubeconfig != nil {
				putSecret(ctx, t, kiel, tc.secretNS, secretName, tc.kubeconfig)
			}
			peerObj := testobjects.MakeReplicationPeer(site).Secret(tc.secretNS, secretName).Key(tc.secretKey).Obj()
			g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
			cleanup(t, kiel, peerObj)

			g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
				Should(haveStatusReason(metav1.ConditionFalse, tc.wantReason))
			ready := peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)()
			g.Expect(ready.Message).To(ContainSubstring(tc.wantInMsg))
			g.Expect(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.PeerConditionReachable)()).
				To(haveStatusReason(metav1.ConditionUnknown, tc.wantReason))
			g.Eventually(func() ([]string, error) {
				return eventReasons(ctx, kiel, "ReplicationPeer", peerObj.Name)
			}).Should(ContainElement(deichv1alpha1.PeerEventNotReady))
			p, err := getPeer(ctx, kiel, peerObj.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Status.LastHeartbeatTime).To(BeNil(), "no heartbeat may be sent with refused credentials")
		})
	}
}

func TestPeerReconnectsWhenItsSecretChanges(t *testing.T) {
	ctx := context.Background()
	g := newG(t)

	// The first kubeconfig points at a link that is cut: the peer is unreachable.
	proxy, err := testenv.NewProxy(strings.TrimPrefix(schwerin.URL(), "https://"))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = proxy.Close() })
	proxy.Cut()
	viaProxy, err := schwerin.KubeconfigFor(proxy.URL())
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", viaProxy)
	peerObj := testobjects.MakeReplicationPeer(testenv.SiteSchwerin).Heartbeat(time.Second).Obj()
	g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
	cleanup(t, kiel, peerObj)
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.PeerConditionReachable)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonHeartbeatFailed))

	// Rotating the Secret to a working kubeconfig reconnects without touching the peer object.
	direct, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", direct)
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))
	g.Eventually(func() ([]string, error) {
		return eventReasons(ctx, kiel, "ReplicationPeer", peerObj.Name)
	}).Should(ContainElement(deichv1alpha1.PeerEventConnectionRebuilt))
}

func TestPeerNamingTheLocalSiteIsRefused(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	kubeconfig, err := kiel.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	putSecret(ctx, t, kiel, managerNamespace, "peer-sh-kiel", kubeconfig)
	peerObj := testobjects.MakeReplicationPeer(testenv.SiteKiel).Obj()
	g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
	cleanup(t, kiel, peerObj)
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.PeerReasonSiteIsLocal))
}
