package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

const (
	// pollTimeout bounds every "eventually" condition in these tests.
	pollTimeout = 20 * time.Second
	// pollInterval is the pause between two checks of a condition.
	pollInterval = 50 * time.Millisecond
	// requestTimeout bounds single API requests of test clients.
	requestTimeout = 5 * time.Second
	// failTimeout bounds requests that are expected to fail. client-go
	// retries GETs that hit EOF or "connection reset" (as through a cut
	// Proxy) up to 10 times, 1s apart; a short deadline keeps the tests
	// from waiting for that.
	failTimeout = time.Second
)

var widgetGVK = schema.GroupVersionKind{Group: "testenv.deich.io", Version: "v1", Kind: "WidgetList"}

// lazyEnv is an environment shared by the tests of this package that need it. It is started on
// first use, so tests that need no API server stay fast, and stopped by TestMain.
type lazyEnv struct {
	once sync.Once
	env  *Env
	err  error
	took time.Duration
}

// get starts the environment with start on first use and fails t if that failed.
func (l *lazyEnv) get(t *testing.T, start func() (*Env, error)) *Env {
	t.Helper()
	l.once.Do(func() {
		begin := time.Now()
		l.env, l.err = start()
		l.took = time.Since(begin)
	})
	if l.err != nil {
		t.Fatalf("start env: %v", l.err)
	}
	return l.env
}

// shared is the two-site environment, with the test CRD of testdata/crd.
var shared lazyEnv

func sharedEnv(t *testing.T) *Env {
	t.Helper()
	return shared.get(t, func() (*Env, error) {
		return Start(Options{
			CRDDirectoryPaths:     []string{filepath.Join("testdata", "crd")},
			ErrorIfCRDPathMissing: true,
			Scheme:                clientgoscheme.Scheme,
		})
	})
}

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime's logger; keep it quiet and
	// avoid the "SetLogger was never called" warning.
	ctrllog.SetLogger(logr.Discard())

	code := m.Run()
	for _, l := range []*lazyEnv{&shared, &witnessed} {
		if l.env == nil {
			continue
		}
		fmt.Printf("testenv: starting %d sites took %s\n", len(l.env.Sites), l.took.Round(time.Millisecond))
		var dirs []string
		for _, s := range l.env.Sites {
			dirs = append(dirs, s.certDir)
		}
		if err := l.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop env: %v\n", err)
			code = 1
		}
		for _, d := range dirs {
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(os.Stderr, "cert dir %s not removed by Stop (stat: %v)\n", d, err)
				code = 1
			}
		}
		if err := l.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "second stop: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// eventually polls cond until it returns nil or pollTimeout elapses.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(pollTimeout)
	var firstErr error
	for {
		err := cond()
		if err == nil {
			if firstErr != nil {
				t.Logf("%s: ok after %s (first attempt: %v)", what, time.Since(start).Round(time.Millisecond), firstErr)
			}
			return
		}
		if firstErr == nil {
			firstErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, pollTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// clientFromKubeconfig builds a client the way Deich builds peer clients:
// from kubeconfig bytes.
func clientFromKubeconfig(t *testing.T, kubeconfig []byte) client.Client {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatalf("rest config from kubeconfig: %v", err)
	}
	cfg.Timeout = requestTimeout
	c, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

// listNamespaces lists namespaces and checks that "default" is among them.
func listNamespaces(c client.Client) error {
	return listNamespacesWithin(c, requestTimeout)
}

// listNamespacesWithin is listNamespaces with a deadline of timeout.
func listNamespacesWithin(c client.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var list corev1.NamespaceList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	for _, ns := range list.Items {
		if ns.Name == "default" {
			return nil
		}
	}
	return errors.New("namespace default not listed")
}

// listMustFail lists namespaces with a short deadline and turns "request
// succeeded" into an error, for polling until requests fail.
func listMustFail(c client.Client) error {
	if err := listNamespacesWithin(c, failTimeout); err == nil {
		return errors.New("request unexpectedly succeeded")
	}
	return nil
}

func createNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func TestModulePath(t *testing.T) {
	for in, want := range map[string]string{
		"module github.com/deich-io/deich\n\ngo 1.26\n": ModulePath,
		"// comment\nmodule \"example.com/x\" // c\n":   "example.com/x",
		"module\texample.com/tools\n":                   "example.com/tools",
		"modulex foo\n":                                 "",
		"go 1.26\n":                                     "",
	} {
		if got := modulePath([]byte(in)); got != want {
			t.Errorf("modulePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePath(data); got != ModulePath {
		t.Fatalf("RepoRoot() = %s with module %q, want %q", root, got, ModulePath)
	}
	wd, _ := os.Getwd()
	if rel, err := filepath.Rel(root, wd); err != nil || rel != filepath.Join("internal", "testenv") {
		t.Fatalf("RepoRoot() = %s, working directory %s", root, wd)
	}
}

func TestStartRejectsBadInput(t *testing.T) {
	if _, err := Start(Options{BinaryAssetsDirectory: t.TempDir()}, "a", "a"); err == nil {
		t.Error("duplicate site names: want error")
	}
	if _, err := Start(Options{BinaryAssetsDirectory: t.TempDir()}); err == nil {
		t.Error("missing binaries: want error")
	}
}

func TestSitesAndKubeconfig(t *testing.T) {
	env := sharedEnv(t)
	if len(env.Sites) != 2 || env.Site(SiteKiel) == nil || env.Site(SiteSchwerin) == nil {
		t.Fatalf("want sites %v, got %v", DefaultSiteNames(), env.Sites)
	}
	if env.Site("nowhere") != nil {
		t.Error("Site(unknown) should be nil")
	}
	a, b := env.Site(SiteKiel), env.Site(SiteSchwerin)
	if a.URL() == b.URL() {
		t.Fatalf("sites share URL %s", a.URL())
	}

	for _, s := range []*Site{a, b} {
		u, err := url.Parse(s.URL())
		if err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Path != "" {
			t.Errorf("site %s: URL() = %q, want https://127.0.0.1:<port>", s.Name, s.URL())
		}

		kc, err := s.Kubeconfig()
		if err != nil {
			t.Fatalf("site %s: Kubeconfig: %v", s.Name, err)
		}
		raw, err := clientcmd.Load(kc)
		if err != nil {
			t.Fatalf("site %s: parse kubeconfig: %v", s.Name, err)
		}
		ctx := raw.Contexts[raw.CurrentContext]
		if ctx == nil {
			t.Fatalf("site %s: kubeconfig has no current context", s.Name)
		}
		cluster, user := raw.Clusters[ctx.Cluster], raw.AuthInfos[ctx.AuthInfo]
		switch {
		case cluster == nil || user == nil:
			t.Fatalf("site %s: kubeconfig context incomplete", s.Name)
		case cluster.Server != s.URL():
			t.Errorf("site %s: server %q, want %q", s.Name, cluster.Server, s.URL())
		case cluster.InsecureSkipTLSVerify || len(cluster.CertificateAuthorityData) == 0:
			t.Errorf("site %s: kubeconfig does not verify TLS", s.Name)
		case len(user.ClientCertificateData) == 0 || len(user.ClientKeyData) == 0:
			t.Errorf("site %s: kubeconfig lacks embedded client cert/key", s.Name)
		case user.Exec != nil || user.AuthProvider != nil || user.Token != "":
			t.Errorf("site %s: kubeconfig uses exec/auth-provider/token", s.Name)
		}

		if err := listNamespaces(clientFromKubeconfig(t, kc)); err != nil {
			t.Errorf("site %s: list namespaces via kubeconfig: %v", s.Name, err)
		}

		// The CRDs from Options.CRDDirectoryPaths are served at every site.
		var widgets unstructured.UnstructuredList
		widgets.SetGroupVersionKind(widgetGVK)
		if err := s.Client.List(context.Background(), &widgets); err != nil {
			t.Errorf("site %s: list widgets: %v", s.Name, err)
		}
	}

	// The sites are independent clusters.
	createNamespace(t, a.Client, "only-in-kiel")
	err := b.Client.Get(context.Background(), client.ObjectKey{Name: "only-in-kiel"}, &corev1.Namespace{})
	if err == nil {
		t.Error("namespace created at sh-kiel is visible at mv-schwerin")
	}

	if _, err := a.KubeconfigFor("http://127.0.0.1:1"); err == nil {
		t.Error("KubeconfigFor(http URL): want error")
	}
}

func TestProxyInFrontOfAPIServer(t *testing.T) {
	a := sharedEnv(t).Site(SiteKiel)
	u, _ := url.Parse(a.URL())
	p, err := NewProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Close(); err != nil {
			t.Errorf("close proxy: %v", err)
		}
	}()
	if p.URL() == a.URL() || p.URL() != "https://"+p.Addr() {
		t.Fatalf("proxy URL %q, addr %q, site URL %q", p.URL(), p.Addr(), a.URL())
	}

	kc, err := a.KubeconfigFor(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := clientFromKubeconfig(t, kc)
	if err := listNamespaces(c); err != nil {
		t.Fatalf("list namespaces through proxy (TLS verified): %v", err)
	}

	p.Cut()
	eventually(t, "requests fail while link is cut", func() error { return listMustFail(c) })
	// The site itself is unaffected.
	if err := listNamespaces(a.Client); err != nil {
		t.Fatalf("direct client while proxy cut: %v", err)
	}

	p.Restore()
	eventually(t, "requests work after restore", func() error { return listNamespaces(c) })
}

func TestCreatePeerSecret(t *testing.T) {
	env := sharedEnv(t)
	a, b := env.Site(SiteKiel), env.Site(SiteSchwerin)
	ctx := context.Background()
	const ns, name = "deich-system", "peer-mv-schwerin"

	want, err := b.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	s1, err := env.CreatePeerSecret(ctx, a, b, ns, name)
	if err != nil {
		t.Fatalf("first CreatePeerSecret: %v", err)
	}
	if !bytes.Equal(s1.Data[PeerSecretKey], want) {
		t.Fatal("secret does not hold the peer kubeconfig")
	}

	// Spoil the secret; a second call must repair it, not fail.
	s1.Data[PeerSecretKey] = []byte("stale")
	if err := a.Client.Update(ctx, s1); err != nil {
		t.Fatal(err)
	}
	s2, err := env.CreatePeerSecret(ctx, a, b, ns, name)
	if err != nil {
		t.Fatalf("second CreatePeerSecret: %v", err)
	}
	if s2.UID != s1.UID {
		t.Error("second call replaced the secret instead of updating it")
	}

	var got corev1.Secret
	if err := a.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data[PeerSecretKey], want) {
		t.Fatal("secret not updated to the peer kubeconfig")
	}
	// The stored kubeconfig really reaches the peer site.
	if err := listNamespaces(clientFromKubeconfig(t, got.Data[PeerSecretKey])); err != nil {
		t.Fatalf("use peer kubeconfig from secret: %v", err)
	}
	// Only site on got the secret.
	if err := b.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}); err == nil {
		t.Error("peer secret also exists at the peer site")
	}
}

func TestStopStartAPIServer(t *testing.T) {
	env := sharedEnv(t)
	a, b := env.Site(SiteKiel), env.Site(SiteSchwerin)
	ctx := context.Background()

	kc, err := a.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	c := clientFromKubeconfig(t, kc)
	createNamespace(t, c, "survives-restart")

	// A proxy handed out before the restart must work after it, too.
	u, _ := url.Parse(a.URL())
	p, err := NewProxy(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	pkc, err := a.KubeconfigFor(p.URL())
	if err != nil {
		t.Fatal(err)
	}
	pc := clientFromKubeconfig(t, pkc)
	// Warm up pc: its lazy REST mapper runs discovery on first use, and
	// discovery requests honour only the client's Timeout, not our context.
	if err := listNamespaces(pc); err != nil {
		t.Fatalf("list namespaces through proxy: %v", err)
	}

	urlBefore := a.URL()
	start := time.Now()
	if err := a.StopAPIServer(); err != nil {
		t.Fatalf("StopAPIServer: %v", err)
	}
	t.Logf("stop took %s", time.Since(start).Round(time.Millisecond))
	if err := a.StopAPIServer(); err != nil {
		t.Fatalf("second StopAPIServer: %v", err)
	}

	eventually(t, "requests fail while API server is stopped", func() error { return listMustFail(c) })
	if err := listMustFail(a.Client); err != nil {
		t.Errorf("site client: %v", err)
	}
	if err := listMustFail(pc); err != nil {
		t.Errorf("proxied client: %v", err)
	}
	if err := listNamespaces(b.Client); err != nil {
		t.Errorf("other site affected by stop: %v", err)
	}

	start = time.Now()
	if err := a.StartAPIServer(); err != nil {
		t.Fatalf("StartAPIServer: %v", err)
	}
	t.Logf("restart took %s", time.Since(start).Round(time.Millisecond))
	if a.URL() != urlBefore {
		t.Fatalf("URL changed across restart: %s -> %s", urlBefore, a.URL())
	}

	eventually(t, "same kubeconfig works after restart", func() error { return listNamespaces(c) })
	eventually(t, "site client works after restart", func() error { return listNamespaces(a.Client) })
	eventually(t, "proxied kubeconfig works after restart", func() error { return listNamespaces(pc) })

	// etcd kept running: data and CRDs survived.
	if err := c.Get(ctx, client.ObjectKey{Name: "survives-restart"}, &corev1.Namespace{}); err != nil {
		t.Errorf("namespace lost across restart: %v", err)
	}
	var widgets unstructured.UnstructuredList
	widgets.SetGroupVersionKind(widgetGVK)
	eventually(t, "CRD served after restart", func() error { return a.Client.List(ctx, &widgets) })

	if err := a.StartAPIServer(); err != nil {
		t.Fatalf("second StartAPIServer: %v", err)
	}
}
