package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// update rewrites the golden files: go test ./cmd/kubectl-deich/ -update.
var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with what the tests print")

// The contexts of the kubeconfig the tests run the plugin with. They are not named after the
// sites, so that the tests show the plugin names each site as its objects do.
const (
	ctxKiel        = "kiel-admin"
	ctxSchwerin    = "schwerin-admin"
	ctxSchwerinCut = "schwerin-through-a-cut-link"
)

// The two sites, their managers, the plugin's kubeconfig, and the link the plugin reaches
// mv-schwerin through in ctxSchwerinCut, which a test cuts.
var (
	env            *testenv.Env
	kiel, schwerin *testenv.Site
	managers       = testenv.NewManagers(operator.Options{MaxClockSkew: time.Second})
	kubeconfigPath string
	pluginLink     *testenv.Proxy
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	testenv.SetTestLogger()
	var err error
	env, err = testenv.StartDeich()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kubectl-deich-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := managers.StopAll(); err != nil {
			fmt.Fprintln(os.Stderr, "stop managers:", err)
		}
		if pluginLink != nil {
			_ = pluginLink.Close()
		}
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
		_ = os.RemoveAll(dir)
	}()
	kiel, schwerin = env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)
	if err := env.Link(kiel.Name, schwerin.Name).Connect(context.Background(), operator.DefaultNamespace, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := managers.Start(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if pluginLink, err = testenv.NewProxy(schwerin.HostPort()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfigPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// writeKubeconfig writes the plugin's kubeconfig: a context for each site's admin, and one
// that reaches mv-schwerin through pluginLink; the current context is sh-kiel's.
func writeKubeconfig(path string) error {
	out := clientcmdapi.NewConfig()
	add := func(site *testenv.Site, context, server string) error {
		raw, err := site.KubeconfigFor(server)
		if err != nil {
			return err
		}
		cfg, err := clientcmd.Load(raw)
		if err != nil {
			return fmt.Errorf("parse the kubeconfig of %s: %w", site.Name, err)
		}
		c := cfg.Contexts[cfg.CurrentContext]
		out.Clusters[context] = cfg.Clusters[c.Cluster]
		out.AuthInfos[context] = cfg.AuthInfos[c.AuthInfo]
		out.Contexts[context] = &clientcmdapi.Context{Cluster: context, AuthInfo: context}
		return nil
	}
	for _, c := range []struct {
		site    *testenv.Site
		context string
		server  string
	}{
		{kiel, ctxKiel, kiel.URL()},
		{schwerin, ctxSchwerin, schwerin.URL()},
		{schwerin, ctxSchwerinCut, pluginLink.URL()},
	} {
		if err := add(c.site, c.context, c.server); err != nil {
			return err
		}
	}
	out.CurrentContext = ctxKiel
	return clientcmd.WriteToFile(*out, path)
}

// requireSites skips a test that needs the sites under -short, which starts none, and fails
// it when they did not start otherwise.
func requireSites(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs real API servers (not run with -short)")
	}
	if env == nil {
		t.Fatal("the sites did not start")
	}
}

func newG(t *testing.T) Gomega {
	t.Helper()
	requireSites(t)
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(60 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	return g
}

// result is what one run of the plugin printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// deich runs `kubectl deich args...` in-process with the tests' kubeconfig and the real
// clock, as a user at sh-kiel would.
func deich(args ...string) result {
	var out, errOut bytes.Buffer
	o := newOptions(nil, &out, &errOut)
	cmd := newRootCommand(o)
	cmd.SetArgs(append([]string{"--kubeconfig", kubeconfigPath}, args...))
	err := cmd.ExecuteContext(context.Background())
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// service is a SharedService "buergerkonto" in its own namespace, primary at sh-kiel.
type service struct {
	ns, name string
}

// setUp creates at both sites an objective named after the namespace (leases of 6s, two
// failed probes a second apart), and at sh-kiel the namespace, a Deployment, a ConfigMap and
// the SharedService; it returns once both sites report the service Protected.
func setUp(ctx context.Context, t *testing.T, g Gomega, ns string) service {
	t.Helper()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective(ns).Failover(2, time.Second, 6*time.Second).RTO(30 * time.Second).RPO(time.Minute).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		t.Cleanup(func() { _ = site.Client.Delete(context.Background(), obj) })
	}
	g.Expect(kiel.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	labels := map[string]string{"app.kubernetes.io/part-of": "buergerkonto", "app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
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
	svc := testobjects.MakeSharedService("buergerkonto", ns).Objective(ns).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	s := service{ns: ns, name: svc.Name}
	s.waitProtected(ctx, g, testenv.SiteKiel)
	return s
}

// waitProtected waits until both sites report the service Protected with active serving.
func (s service) waitProtected(ctx context.Context, g Gomega, active string) {
	for _, site := range []*testenv.Site{kiel, schwerin} {
		role := deichv1alpha1.RoleStandby
		if site.Name == active {
			role = deichv1alpha1.RoleActive
		}
		g.Eventually(s.status(ctx, site)).Should(And(
			HaveField("Status.Phase", deichv1alpha1.PhaseProtected),
			HaveField("Status.Role", role),
			HaveField("Status.ActiveSite", active),
			HaveField("Status.Lease.Holder", active),
			HaveField("Status.Quorum", Not(BeEmpty())),
		), "%s reports %s Protected, served by %s", site.Name, s.name, active)
	}
}

// status reads the SharedService at site.
func (s service) status(ctx context.Context, site *testenv.Site) func() (*deichv1alpha1.SharedService, error) {
	return func() (*deichv1alpha1.SharedService, error) {
		svc := &deichv1alpha1.SharedService{}
		return svc, site.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.name}, svc)
	}
}
