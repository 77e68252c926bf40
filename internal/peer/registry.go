package peer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/cluster"

	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
)

// Default client rate limits for connections to a peer. controller-runtime no longer
// rate-limits clients by default; a peer is another state's production API server, so Deich
// sets explicit limits.
const (
	DefaultQPS   float32 = 50
	DefaultBurst int     = 100
)

// ErrSiteTaken is returned when two ReplicationPeers name the same site.
var ErrSiteTaken = errors.New("another ReplicationPeer already connects to this site")

// Connection is the live connection to one peer site: a client and cache for its API server,
// built from one version of the peer's kubeconfig.
type Connection struct {
	// PeerName is the name of the ReplicationPeer the connection belongs to.
	PeerName string
	// Site is the peer's site name.
	Site string
	// Fingerprint identifies the kubeconfig the connection was built from.
	Fingerprint string
	// Cluster gives a cached client, an API reader, a REST mapper and the REST config for
	// the peer's API server. Its cache runs until the connection is closed.
	Cluster cluster.Cluster
	// HeartbeatClient is an HTTP client for short requests that must not hang: it shares the
	// connection's credentials and has a timeout.
	HeartbeatClient rest.Interface
	// Dynamic is a dynamic client for the peer, used to apply and delete mirrored copies.
	Dynamic dynamic.Interface
	// Metadata is a metadata client for the peer, for the watch of the copies and for writes
	// whose answer is needed only for its metadata. It shares Dynamic's rate limit.
	Metadata metadata.Interface
	// Copies watches the mirrored copies at the peer, so that edits made there (drift) are
	// noticed at once. It keeps their metadata only. It is stopped with the connection.
	Copies *informers.Set
	// Access tells what the peer lets this connection's identity do in a namespace, from
	// reviews of its rules there, so that a round of writes the peer would refuse in part is
	// not started. A new kubeconfig (a new identity) gets a new connection and so new reviews.
	Access *Access

	cancel context.CancelFunc
	done   chan struct{}
}

// close stops the connection's cache and waits for it to finish.
func (c *Connection) close() {
	c.cancel()
	c.Copies.Stop()
	<-c.done
}

// Registry holds one Connection per ReplicationPeer, shared by every controller that talks to
// peers. It is safe for concurrent use. Add it to the manager (it is a Runnable) so that its
// connections are closed when the manager stops.
type Registry struct {
	scheme           *runtime.Scheme
	qps              float32
	burst            int
	heartbeatTimeout time.Duration
	log              logr.Logger
	copyHandler      informers.Handler

	mu    sync.Mutex
	conns map[string]*Connection // by ReplicationPeer name
}

// RegistryOption configures a Registry.
type RegistryOption func(*Registry)

// WithRateLimit sets the QPS and burst of clients to peers.
func WithRateLimit(qps float32, burst int) RegistryOption {
	return func(r *Registry) {
		r.qps = qps
		r.burst = burst
	}
}

// WithHeartbeatTimeout bounds each heartbeat request.
func WithHeartbeatTimeout(d time.Duration) RegistryOption {
	return func(r *Registry) { r.heartbeatTimeout = d }
}

// WithCopyHandler sets who is told when a mirrored copy at a peer changed.
func WithCopyHandler(h informers.Handler) RegistryOption {
	return func(r *Registry) { r.copyHandler = h }
}

// WithLogger sets the logger of the peers' caches.
func WithLogger(log logr.Logger) RegistryOption {
	return func(r *Registry) { r.log = log }
}

// NewRegistry returns an empty Registry whose clients decode objects with scheme.
func NewRegistry(scheme *runtime.Scheme, opts ...RegistryOption) *Registry {
	r := &Registry{
		scheme:           scheme,
		qps:              DefaultQPS,
		burst:            DefaultBurst,
		heartbeatTimeout: 10 * time.Second,
		log:              logr.Discard(),
		copyHandler:      func(types.NamespacedName) {},
		conns:            map[string]*Connection{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Fingerprint returns the identity of a kubeconfig, used to notice that it changed. It is a
// hash: the kubeconfig itself is never kept or logged.
func Fingerprint(kubeconfig []byte) string {
	sum := sha256.Sum256(kubeconfig)
	return hex.EncodeToString(sum[:8])
}

// Ensure returns the connection for the named ReplicationPeer, building it when there is none
// or when the kubeconfig changed since it was built (rebuilt is then true and the old
// connection is closed). The kubeconfig is checked with RESTConfigFromKubeconfig first; a
// refused kubeconfig returns a *CredentialError and leaves any existing connection closed, so
// that refused credentials are never used.
func (r *Registry) Ensure(peerName, site string, kubeconfig []byte) (conn *Connection, rebuilt bool, err error) {
	fp := Fingerprint(kubeconfig)

	r.mu.Lock()
	defer r.mu.Unlock()

	for name, c := range r.conns {
		if name != peerName && c.Site == site {
			return nil, false, fmt.Errorf("site %s: %w (ReplicationPeer %s)", site, ErrSiteTaken, name)
		}
	}
	old, exists := r.conns[peerName]
	if exists && old.Fingerprint == fp && old.Site == site {
		return old, false, nil
	}

	cfg, err := RESTConfigFromKubeconfig(kubeconfig)
	if err != nil {
		if exists {
			old.close()
			delete(r.conns, peerName)
		}
		return nil, false, err
	}
	conn, err = r.connect(peerName, site, fp, cfg)
	if err != nil {
		return nil, false, err
	}
	if exists {
		old.close()
	}
	r.conns[peerName] = conn
	return conn, exists, nil
}

// connect builds a connection from a verified REST config and starts its cache.
func (r *Registry) connect(peerName, site, fingerprint string, cfg *rest.Config) (*Connection, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = r.qps
	cfg.Burst = r.burst
	cfg.UserAgent = rest.DefaultKubernetesUserAgent() + " deich-peer/" + site

	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build HTTP client for peer %s: %w", site, err)
	}
	cl, err := cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme = r.scheme
		o.HTTPClient = httpClient
		o.Logger = r.log.WithValues("peer", site)
	})
	if err != nil {
		return nil, fmt.Errorf("build client for peer %s: %w", site, err)
	}
	hb, err := heartbeatClient(cfg, r.heartbeatTimeout)
	if err != nil {
		return nil, fmt.Errorf("build heartbeat client for peer %s: %w", site, err)
	}
	// The dynamic and the metadata client write and watch the copies between them, and the
	// authorization client reviews what the peer allows before they write, within one budget.
	copiesCfg := rest.CopyConfig(cfg)
	copiesCfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(cfg.QPS, cfg.Burst)
	dyn, err := dynamic.NewForConfigAndClient(copiesCfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("build dynamic client for peer %s: %w", site, err)
	}
	meta, err := metadata.NewForConfigAndClient(copiesCfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("build metadata client for peer %s: %w", site, err)
	}
	authz, err := authorizationv1client.NewForConfigAndClient(copiesCfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("build authorization client for peer %s: %w", site, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	conn := &Connection{
		PeerName:        peerName,
		Site:            site,
		Fingerprint:     fingerprint,
		Cluster:         cl,
		HeartbeatClient: hb,
		Dynamic:         dyn,
		Metadata:        meta,
		Copies:          informers.NewMetadata(meta, r.copyHandler, render.AnnotationContentHash),
		Access:          NewAccess(ReviewRulesWith(authz)),
		cancel:          cancel,
		done:            make(chan struct{}),
	}
	go func() {
		defer close(conn.done)
		if err := cl.Start(ctx); err != nil {
			r.log.Error(err, "Peer cache stopped", "peer", site)
		}
	}()
	return conn, nil
}

// heartbeatClient returns a REST client for the API server's root paths (/version, /apis/…).
// It has its own connection pool, so a heartbeat does not queue behind the cache's watches,
// and a timeout, so a peer that stopped answering cannot block it.
func heartbeatClient(cfg *rest.Config, timeout time.Duration) (rest.Interface, error) {
	hc := rest.CopyConfig(cfg)
	hc.Timeout = timeout
	hc.GroupVersion = nil
	hc.APIPath = "/"
	hc.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	return rest.UnversionedRESTClientFor(hc)
}

// Get returns the connection to the given site, if one is established.
func (r *Registry) Get(site string) (*Connection, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		if c.Site == site {
			return c, true
		}
	}
	return nil, false
}

// Remove closes and forgets the connection of the named ReplicationPeer.
func (r *Registry) Remove(peerName string) {
	r.mu.Lock()
	c, ok := r.conns[peerName]
	delete(r.conns, peerName)
	r.mu.Unlock()
	if ok {
		c.close()
	}
}

// Start waits until ctx is done and then closes every connection. It lets the manager own
// the Registry's lifetime.
func (r *Registry) Start(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	conns := r.conns
	r.conns = map[string]*Connection{}
	r.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	return nil
}

// NeedLeaderElection reports false: every replica keeps its peers' connections warm, so a new
// leader can act at once.
func (r *Registry) NeedLeaderElection() bool { return false }

// Writer writes at the peer's cluster: copies, the mirrored SharedService, Switchover copies.
func (c *Connection) Writer() mirror.Site {
	return mirror.Site{Name: c.Site, Dynamic: c.Dynamic, Metadata: c.Metadata, Mapper: c.Cluster.GetRESTMapper()}
}
