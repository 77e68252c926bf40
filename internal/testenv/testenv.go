package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Well-known site names used by Deich tests.
const (
	// SiteKiel is the name of the first default site.
	SiteKiel = "sh-kiel"
	// SiteSchwerin is the name of the second default site.
	SiteSchwerin = "mv-schwerin"
	// SiteHamburg is the name of the witness site [Env.StartWitness] adds: a third cluster
	// that only stores the partners' Leases.
	SiteHamburg = "hh-hamburg"
)

// PeerSecretKey is the key in a peer Secret (see [Env.CreatePeerSecret])
// that holds the peer site's kubeconfig.
const PeerSecretKey = "kubeconfig"

const (
	// defaultStartTimeout bounds the start of each control-plane process.
	// It is generous because several API servers may start concurrently on
	// a small machine.
	defaultStartTimeout = 60 * time.Second
	// apiServerKillAfter is how long a stopping kube-apiserver (and etcd) may shut down
	// gracefully before it is killed.
	apiServerKillAfter = 3 * time.Second
	// readyPollInterval is how often /readyz is polled after a start.
	readyPollInterval = 100 * time.Millisecond
)

// DefaultSiteNames returns the site names [Start] uses when none are given:
// [SiteKiel] and [SiteSchwerin].
func DefaultSiteNames() []string {
	return []string{SiteKiel, SiteSchwerin}
}

// Options configures [Start].
type Options struct {
	// CRDDirectoryPaths are directories (or files) with CustomResourceDefinition
	// manifests, e.g. <repo>/config/crd/bases. They are installed at every
	// site. Missing paths are ignored unless ErrorIfCRDPathMissing is set.
	CRDDirectoryPaths []string

	// ErrorIfCRDPathMissing makes Start fail if one of CRDDirectoryPaths
	// does not exist.
	ErrorIfCRDPathMissing bool

	// Scheme is used by every Site's Client. Defaults to client-go's
	// kubernetes scheme (built-in types only).
	Scheme *runtime.Scheme

	// BinaryAssetsDirectory holds the etcd and kube-apiserver binaries.
	// Defaults to <repo root>/bin (see [RepoRoot]). The binaries are always
	// taken from this directory; KUBEBUILDER_ASSETS and TEST_ASSET_* are
	// ignored and nothing is downloaded.
	BinaryAssetsDirectory string

	// StartTimeout bounds the start of each etcd and kube-apiserver process
	// (including restarts via [Site.StartAPIServer]). Defaults to 60s.
	StartTimeout time.Duration

	// ControlPlaneOutput, if non-nil, receives stdout and stderr of all etcd
	// and kube-apiserver processes. Useful for debugging start failures.
	ControlPlaneOutput io.Writer
}

// Site is one local control plane (etcd + kube-apiserver via
// controller-runtime envtest).
type Site struct {
	// Name is the site name, e.g. "sh-kiel".
	Name string
	// Config is an admin (system:masters) REST config for the site's API
	// server. It stays valid across [Site.StopAPIServer] and
	// [Site.StartAPIServer].
	Config *rest.Config
	// Client is a controller-runtime client for Config using the scheme
	// passed in [Options].
	Client client.Client

	env          *envtest.Environment
	certDir      string
	url          string
	startTimeout time.Duration

	// mu serialises StopAPIServer, StartAPIServer and stop.
	mu         sync.Mutex
	apiStopped bool
	stopped    bool
}

// URL returns the API server's URL, https://127.0.0.1:<port>. It does not
// change when the API server is restarted.
func (s *Site) URL() string {
	return s.url
}

// HostPort is the API server's address, 127.0.0.1:<port>.
func (s *Site) HostPort() string {
	return strings.TrimPrefix(s.url, "https://")
}

// Kubeconfig returns a kubeconfig (clientcmd v1 YAML) for the site's admin
// user pointing at [Site.URL]. CA data and the client certificate and key
// are embedded; no exec or auth-provider plugins are used and TLS is
// verified.
func (s *Site) Kubeconfig() ([]byte, error) {
	return s.KubeconfigFor(s.url)
}

// KubeconfigFor is like [Site.Kubeconfig] but points at server, e.g. a
// [Proxy] in front of this site's API server. TLS is still verified against
// the site's serving CA, whose certificate covers 127.0.0.1 and localhost, so
// any https://127.0.0.1:<port> or https://localhost:<port> forwarding to the
// API server works.
func (s *Site) KubeconfigFor(server string) ([]byte, error) {
	if err := s.checkServer(server); err != nil {
		return nil, err
	}
	if len(s.Config.CAData) == 0 || len(s.Config.CertData) == 0 || len(s.Config.KeyData) == 0 {
		return nil, fmt.Errorf("site %s: admin config lacks CA or client certificate data", s.Name)
	}

	user := s.Name + "-admin"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[s.Name] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: s.Config.CAData,
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificateData: s.Config.CertData,
		ClientKeyData:         s.Config.KeyData,
	}
	cfg.Contexts[s.Name] = &clientcmdapi.Context{
		Cluster:  s.Name,
		AuthInfo: user,
	}
	cfg.CurrentContext = s.Name

	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("site %s: serialize kubeconfig: %w", s.Name, err)
	}
	return out, nil
}

// checkServer checks that server is a URL a kubeconfig for the site can
// point at: https, with a host.
func (s *Site) checkServer(server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("site %s: parse server URL %q: %w", s.Name, server, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("site %s: server URL %q must be an https URL with a host", s.Name, server)
	}
	return nil
}

// StopAPIServer stops the site's kube-apiserver process and waits for it to
// exit; etcd keeps running, so no data is lost. Requests to the site fail
// until [Site.StartAPIServer] is called. Stopping a stopped API server is a
// no-op.
func (s *Site) StopAPIServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("site %s: environment already stopped", s.Name)
	}
	if s.apiStopped {
		return nil
	}
	if err := s.env.ControlPlane.GetAPIServer().Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		return fmt.Errorf("site %s: stop kube-apiserver: %w", s.Name, err)
	}
	// After a kill the process may take a moment to release its port.
	if err := waitPortClosed(s.HostPort(), 10*time.Second); err != nil {
		return fmt.Errorf("site %s: stop kube-apiserver: %w", s.Name, err)
	}
	s.apiStopped = true
	return nil
}

// waitPortClosed waits until nothing accepts connections on addr.
func waitPortClosed(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return nil
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still accepts connections after %s", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartAPIServer starts the site's kube-apiserver again after
// [Site.StopAPIServer], on the same address and port and with the same
// serving and client certificates, so [Site.Config], [Site.Client] and
// kubeconfigs handed out earlier keep working. It returns once the API
// server reports ready (/readyz). Starting a running API server is a no-op.
//
// The port is free while the API server is stopped; in the unlikely case
// that another process binds it meanwhile, the start fails.
func (s *Site) StartAPIServer() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return fmt.Errorf("site %s: environment already stopped", s.Name)
	}
	if !s.apiStopped {
		return nil
	}
	api := s.env.ControlPlane.GetAPIServer()
	if err := api.Start(); err != nil {
		return fmt.Errorf("site %s: restart kube-apiserver: %w", s.Name, err)
	}
	s.apiStopped = false
	if got := "https://" + api.SecureServing.HostPort(); got != s.url {
		return fmt.Errorf("site %s: kube-apiserver restarted on %s instead of %s", s.Name, got, s.url)
	}
	if err := waitReady(s.Config, s.startTimeout); err != nil {
		return fmt.Errorf("site %s: wait for restarted kube-apiserver: %w", s.Name, err)
	}
	return nil
}

// stop stops the whole control plane of the site and removes its
// certificate directory. It is idempotent.
func (s *Site) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	var errs []error
	if err := s.env.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("site %s: stop control plane: %w", s.Name, err))
	}
	if err := os.RemoveAll(s.certDir); err != nil {
		errs = append(errs, fmt.Errorf("site %s: remove cert dir: %w", s.Name, err))
	}
	return errors.Join(errs...)
}

// Env is a set of running sites started by [Start], and a [Link] between every two of them.
type Env struct {
	// Sites maps site names to sites, including the witness once [Env.StartWitness] has
	// started it. Do not modify it.
	Sites map[string]*Site

	// opts are the options the sites were started with, defaults filled in; the witness is
	// started with them too.
	opts Options
	// names are the sites in the order they were started.
	names []string
	// links holds the link between every two sites, by [linkKey]; linkOrder the same links
	// in the order they were made.
	links     map[[2]string]*Link
	linkOrder []*Link
	// witness is set by StartWitness.
	witness *Witness
}

// Start starts one control plane per site name (default
// [DefaultSiteNames]), concurrently, installs opts.CRDDirectoryPaths at each,
// puts a [Link] between every two sites and returns once all API servers are
// ready. On error, everything already started is stopped again. Call
// [Env.Stop] when done.
func Start(opts Options, siteNames ...string) (*Env, error) {
	if len(siteNames) == 0 {
		siteNames = DefaultSiteNames()
	}
	seen := make(map[string]bool, len(siteNames))
	for _, n := range siteNames {
		if n == "" {
			return nil, errors.New("testenv: empty site name")
		}
		if seen[n] {
			return nil, fmt.Errorf("testenv: duplicate site name %q", n)
		}
		seen[n] = true
	}

	if opts.BinaryAssetsDirectory == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, fmt.Errorf("testenv: default binary assets directory: %w", err)
		}
		opts.BinaryAssetsDirectory = filepath.Join(root, "bin")
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		p := filepath.Join(opts.BinaryAssetsDirectory, bin)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("testenv: control-plane binary %s: %w", bin, err)
		}
	}
	if opts.Scheme == nil {
		opts.Scheme = clientgoscheme.Scheme
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}

	sites := make([]*Site, len(siteNames))
	errs := make([]error, len(siteNames))
	var wg sync.WaitGroup
	for i, name := range siteNames {
		wg.Go(func() {
			sites[i], errs[i] = startSite(opts, name)
		})
	}
	wg.Wait()

	env := &Env{
		Sites: make(map[string]*Site, len(siteNames)),
		opts:  opts,
		names: siteNames,
		links: make(map[[2]string]*Link),
	}
	for _, s := range sites {
		if s != nil {
			env.Sites[s.Name] = s
		}
	}
	if err := errors.Join(errs...); err == nil {
		for i, a := range sites {
			for _, b := range sites[i+1:] {
				if err := env.addLink(a, b); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup after failed start: %w", stopErr))
		}
		return nil, fmt.Errorf("testenv: start sites: %w", err)
	}
	return env, nil
}

// startSite starts a single control plane named name.
func startSite(opts Options, name string) (*Site, error) {
	// A cert dir we own (rather than one envtest allocates) is neither
	// cleaned nor reset when the API server stops, which is what makes
	// restarts with the same certificates possible.
	certDir, err := os.MkdirTemp("", "deich-testenv-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("site %s: create cert dir: %w", name, err)
	}

	te := &envtest.Environment{
		Scheme:                   opts.Scheme,
		CRDDirectoryPaths:        opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing:    opts.ErrorIfCRDPathMissing,
		BinaryAssetsDirectory:    opts.BinaryAssetsDirectory,
		ControlPlaneStartTimeout: opts.StartTimeout,
		// A stopped site goes dark quickly: kube-apiserver's graceful shutdown waits for open
		// watches, so after apiServerKillAfter it is killed. envtest gives every process of
		// the control plane this timeout, from the first start on.
		ControlPlaneStopTimeout: apiServerKillAfter,
	}
	api := te.ControlPlane.GetAPIServer()
	api.CertDir = certDir
	// Explicit paths so that KUBEBUILDER_ASSETS / TEST_ASSET_* from the
	// environment cannot redirect us to other binaries.
	api.Path = filepath.Join(opts.BinaryAssetsDirectory, "kube-apiserver")
	te.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(opts.BinaryAssetsDirectory, "etcd")}
	if w := opts.ControlPlaneOutput; w != nil {
		api.Out, api.Err = w, w
		te.ControlPlane.Etcd.Out, te.ControlPlane.Etcd.Err = w, w
	}

	s := &Site{Name: name, env: te, certDir: certDir, startTimeout: opts.StartTimeout}
	fail := func(err error) (*Site, error) {
		if stopErr := s.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}

	cfg, err := te.Start()
	if err != nil {
		return fail(fmt.Errorf("site %s: start control plane: %w", name, err))
	}
	s.Config = cfg
	s.url = "https://" + api.SecureServing.HostPort()

	s.Client, err = client.New(cfg, client.Options{Scheme: opts.Scheme})
	if err != nil {
		return fail(fmt.Errorf("site %s: create client: %w", name, err))
	}
	if err := waitReady(cfg, opts.StartTimeout); err != nil {
		return fail(fmt.Errorf("site %s: wait for kube-apiserver: %w", name, err))
	}
	return s, nil
}

// waitReady polls the API server's /readyz endpoint until it answers 200 OK
// or timeout elapses.
func waitReady(cfg *rest.Config, timeout time.Duration) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("build HTTP client: %w", err)
	}
	defer httpClient.CloseIdleConnections()
	readyz, err := url.JoinPath(cfg.Host, "readyz")
	if err != nil {
		return fmt.Errorf("build /readyz URL from %q: %w", cfg.Host, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		lastErr = probe(ctx, httpClient, readyz)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s: %w", timeout, lastErr)
		case <-ticker.C:
		}
	}
}

// probe performs one GET of u and reports whether it returned 200 OK.
func probe(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// Site returns the site with the given name, or nil if there is none.
func (e *Env) Site(name string) *Site {
	return e.Sites[name]
}

// addLink puts a new [Link] between sites a and b.
func (e *Env) addLink(a, b *Site) error {
	l, err := newLink(a, b)
	if err != nil {
		return fmt.Errorf("testenv: %w", err)
	}
	e.links[linkKey(a.Name, b.Name)] = l
	e.linkOrder = append(e.linkOrder, l)
	return nil
}

// Link returns the link between sites a and b (in either order), or nil if
// there is none, as for an unknown site or a equal to b.
func (e *Env) Link(a, b string) *Link {
	return e.links[linkKey(a, b)]
}

// Links returns every link of the environment: first those between the
// sites [Start] started, in the order their names were given, then those to the
// witness.
func (e *Env) Links() []*Link {
	return append([]*Link(nil), e.linkOrder...)
}

// Stop closes every link and stops all sites' control planes and removes
// their temporary directories. It is safe to call more than once.
func (e *Env) Stop() error {
	errs := make([]error, 0, len(e.Sites)+len(e.linkOrder))
	for _, l := range e.linkOrder {
		if err := l.close(); err != nil {
			errs = append(errs, err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range e.Sites {
		wg.Go(func() {
			if err := s.stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testenv: stop: %w", err)
	}
	return nil
}

// CreatePeerSecret creates, at site on, a Secret namespace/name whose key
// [PeerSecretKey] ("kubeconfig") holds peer's [Site.Kubeconfig]. The
// namespace is created if it does not exist. It is idempotent: an existing
// Secret is updated to hold the current kubeconfig. It returns the Secret as
// stored at site on.
//
// The kubeconfig reaches peer directly, not through the [Link] between the
// two sites; [Env.StartWitness] writes the witness's peer Secrets through
// the links.
func (e *Env) CreatePeerSecret(ctx context.Context, on, peer *Site, namespace, name string) (*corev1.Secret, error) {
	if on == nil || peer == nil {
		return nil, errors.New("testenv: create peer secret: nil site")
	}
	kubeconfig, err := peer.Kubeconfig()
	if err != nil {
		return nil, fmt.Errorf("testenv: create peer secret: %w", err)
	}
	return putPeerSecret(ctx, on, namespace, name, kubeconfig)
}

// putPeerSecret creates or updates, at site on, the Secret namespace/name so
// that its key [PeerSecretKey] holds kubeconfig, creating the namespace if
// needed, and returns the Secret as stored.
func putPeerSecret(ctx context.Context, on *Site, namespace, name string, kubeconfig []byte) (*corev1.Secret, error) {
	if err := ensureNamespace(ctx, on.Client, namespace); err != nil {
		return nil, fmt.Errorf("testenv: create peer secret at %s: %w", on.Name, err)
	}

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{PeerSecretKey: kubeconfig},
	}
	err := on.Client.Create(ctx, secret)
	if err == nil {
		return secret, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("testenv: create secret %s/%s at %s: %w", namespace, name, on.Name, err)
	}

	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := on.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret); err != nil {
			return err
		}
		if secret.Data == nil {
			secret.Data = map[string][]byte{}
		}
		secret.Data[PeerSecretKey] = kubeconfig
		return on.Client.Update(ctx, secret)
	})
	if err != nil {
		return nil, fmt.Errorf("testenv: update secret %s/%s at %s: %w", namespace, name, on.Name, err)
	}
	return secret, nil
}

// ensureNamespace creates namespace ns unless it already exists.
func ensureNamespace(ctx context.Context, c client.Client, ns string) error {
	err := c.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get namespace %s: %w", ns, err)
	}
	err = c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return nil
}
