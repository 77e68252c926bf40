package controllers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
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

// jwtExpiring returns a bearer token in JWT form whose exp claim is exp. It is unsigned: the
// manager only reads the expiry, and the test kubeconfigs authenticate with their client
// certificate, which the API server tries first.
func jwtExpiring(exp time.Time) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"sub":"system:serviceaccount:deich-system:deich-peer","exp":%d}`, exp.Unix())) + "." +
		enc.EncodeToString([]byte("unsigned"))
}

// peerCredentialsExpiry returns the value of deich_peer_credentials_expiry_timestamp_seconds
// for the named peer, or nil when the manager exports no such series.
func peerCredentialsExpiry(peerName string) *float64 {
	ch := make(chan prometheus.Metric)
	go func() {
		metrics.PeerCredentialsExpiry.Collect(ch)
		close(ch)
	}()
	var found *float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "peer" && l.GetValue() == peerName {
				found = ptr.To(d.GetGauge().GetValue())
			}
		}
	}
	return found
}

// credentialsExpiringEvents returns the CredentialsExpiring events recorded at site about
// peer, not about earlier ReplicationPeers of the same name.
func credentialsExpiringEvents(ctx context.Context, site *testenv.Site, peer *deichv1alpha1.ReplicationPeer) ([]eventsv1.Event, error) {
	var list eventsv1.EventList
	if err := site.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == peer.UID && e.Reason == deichv1alpha1.PeerEventCredentialsExpiring {
			out = append(out, e)
		}
	}
	return out, nil
}

func TestPeerReportsWhenItsCredentialsExpire(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	withToken := func(token string) []byte {
		return mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
			for _, u := range cfg.AuthInfos {
				u.Token = token
			}
		})
	}
	expiryOf := func(name string) func() *time.Time {
		return func() *time.Time {
			p, err := getPeer(ctx, kiel, name)
			if err != nil || p.Status.CredentialsExpiryTime == nil {
				return nil
			}
			return &p.Status.CredentialsExpiryTime.Time
		}
	}
	heartbeats := func(name string) int64 {
		p, err := getPeer(ctx, kiel, name)
		if err != nil || p.Status.LastHeartbeatTime == nil {
			return 0
		}
		return p.Status.LastHeartbeatTime.Unix()
	}
	events := func(peer *deichv1alpha1.ReplicationPeer) func() ([]eventsv1.Event, error) {
		return func() ([]eventsv1.Event, error) { return credentialsExpiringEvents(ctx, kiel, peer) }
	}

	// A token that expires in three days: status and metric show when, and one Warning event
	// says so.
	soon := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", withToken(jwtExpiring(soon)))
	peerObj := testobjects.MakeReplicationPeer(testenv.SiteSchwerin).Heartbeat(time.Second).Obj()
	g.Expect(kiel.Client.Create(ctx, peerObj)).To(Succeed())
	cleanup(t, kiel, peerObj)
	g.Eventually(expiryOf(peerObj.Name)).Should(HaveValue(BeTemporally("==", soon)))
	g.Expect(peerCredentialsExpiry(peerObj.Name)).To(HaveValue(Equal(float64(soon.Unix()))))
	g.Eventually(events(peerObj)).Should(HaveLen(1))
	g.Eventually(peerCondition(ctx, kiel, peerObj.Name, deichv1alpha1.ConditionReady)).
		Should(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.PeerReasonConnected))
	first, err := credentialsExpiringEvents(ctx, kiel, peerObj)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(first[0].Type).To(Equal(corev1.EventTypeWarning))
	g.Expect(first[0].Note).To(ContainSubstring("bearer token in Secret deich-system/peer-mv-schwerin expires at " + soon.UTC().Format(time.RFC3339)))

	// Later heartbeats do not repeat it: the event is neither recorded again nor counted in a
	// series.
	since := heartbeats(peerObj.Name)
	g.Eventually(func() int64 { return heartbeats(peerObj.Name) }).Should(BeNumerically(">=", since+3))
	g.Expect(credentialsExpiringEvents(ctx, kiel, peerObj)).To(And(HaveLen(1), HaveEach(HaveField("Series", BeNil()))))

	// A token that says nothing of its expiry: status and metric drop it.
	opaque := mutatedKubeconfig(t, schwerin, func(cfg *clientcmdapi.Config) {
		for _, u := range cfg.AuthInfos {
			u.Token = "an-opaque-token"
			u.ClientCertificateData, u.ClientKeyData = nil, nil
		}
	})
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", opaque)
	g.Eventually(expiryOf(peerObj.Name)).Should(BeNil())
	g.Expect(peerCredentialsExpiry(peerObj.Name)).To(BeNil())

	// Renewed for 30 days: shown, and no warning.
	later := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", withToken(jwtExpiring(later)))
	g.Eventually(expiryOf(peerObj.Name)).Should(HaveValue(BeTemporally("==", later)))
	g.Expect(peerCredentialsExpiry(peerObj.Name)).To(HaveValue(Equal(float64(later.Unix()))))

	// A new token that expires within 7 days again gets its own warning.
	again := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	putSecret(ctx, t, kiel, managerNamespace, "peer-mv-schwerin", withToken(jwtExpiring(again)))
	g.Eventually(expiryOf(peerObj.Name)).Should(HaveValue(BeTemporally("==", again)))
	g.Eventually(events(peerObj)).Should(HaveLen(2))

	// A deleted peer leaves no series behind.
	g.Expect(kiel.Client.Delete(ctx, peerObj)).To(Succeed())
	g.Eventually(func() *float64 { return peerCredentialsExpiry(peerObj.Name) }).Should(BeNil())
}
