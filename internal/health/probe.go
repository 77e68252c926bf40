package health

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// Status is the verdict of one probe.
type Status string

const (
	// StatusHealthy means the checked site served.
	StatusHealthy Status = "Healthy"
	// StatusUnhealthy means the probe ran and the site did not serve.
	StatusUnhealthy Status = "Unhealthy"
	// StatusUnknown means the probe could not run, for example because the checked site's API
	// server cannot be read. It is never healthy.
	StatusUnknown Status = "Unknown"
)

// Result is the outcome of one probe.
type Result struct {
	// Status is the verdict.
	Status Status
	// Message is a sentence an SRE can act on, for example
	// "GET https://x/healthz: status 500, want 200" or
	// "dial tcp 10.0.0.7:5432: i/o timeout". At most 1024 bytes: it ends up in conditions and
	// events.
	Message string
	// Latency is how long the probe took by the Prober's clock: until the response headers for
	// http, until the connection was established (or failed) for tcp, and the read of the
	// workload for workload checks. Zero when the probe could not start.
	Latency time.Duration
}

// Dialer opens network connections; *net.Dialer is one. The Prober's deadline reaches it
// through ctx.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// HTTPClientFactory builds the client used for the http checks that share one CA bundle.
// tlsConfig verifies servers with the system roots plus that bundle. The Prober calls the
// factory once per distinct bundle and reuses the client; it replaces the client's
// CheckRedirect so that redirects are never followed, and bounds each request with the check's
// timeout through the request's context. It must return a non-nil client.
type HTTPClientFactory func(tlsConfig *tls.Config) *http.Client

// Option configures a Prober.
type Option func(*Prober)

// WithClock sets the clock latencies are measured with; the real clock by default.
func WithClock(c clock.PassiveClock) Option {
	return func(p *Prober) { p.clock = c }
}

// WithDialer sets the dialer tcp checks, and the default HTTP transport, connect with;
// a zero net.Dialer by default.
func WithDialer(d Dialer) Option {
	return func(p *Prober) { p.dialer = d }
}

// WithHTTPClientFactory replaces how the client for http checks is built. The default is a
// transport without keep-alives that dials with the Prober's dialer and honours the
// HTTP(S)_PROXY and NO_PROXY environment variables, as Go's default transport does.
func WithHTTPClientFactory(f HTTPClientFactory) Option {
	return func(p *Prober) { p.newHTTPClient = f }
}

// maxCachedHTTPClients bounds the per-CA-bundle client cache; CA bundles rotate, and a
// rotated bundle's client must not live forever. When full, an arbitrary entry is dropped.
const maxCachedHTTPClients = 64

// maxMessageLength bounds Result.Message: it ends up in conditions and events, and parts of it
// (a redirect's Location, an error string) come from the probed server.
const maxMessageLength = 1024

// Prober runs health checks. It is safe for concurrent use; build one per manager and share
// it, so the cached HTTP clients are shared too.
type Prober struct {
	clock         clock.PassiveClock
	dialer        Dialer
	newHTTPClient HTTPClientFactory

	mu          sync.Mutex
	httpClients map[[sha256.Size]byte]*http.Client
}

// NewProber returns a Prober with the real clock, a net.Dialer and the default HTTP transport,
// unless options replace them.
func NewProber(opts ...Option) *Prober {
	p := &Prober{
		clock:       clock.RealClock{},
		dialer:      &net.Dialer{},
		httpClients: map[[sha256.Size]byte]*http.Client{},
	}
	for _, opt := range opts {
		opt(p)
	}
	if p.newHTTPClient == nil {
		p.newHTTPClient = p.defaultHTTPClient
	}
	return p
}

// Probe runs one check against a site and returns its verdict; it never panics and never
// returns an error, because every failure is a verdict (see the package documentation).
//
// workloads reads the Deployments and StatefulSets of the checked site: the local cluster's
// client, or the peer's when the checked site is the peer. nil means the site cannot be read
// (peer unreachable), which makes a workload check Unknown. caPEM is the CA bundle from an
// http check's caSecretRef; nil means the system roots only. namespace is the service's
// namespace. The check's timeout bounds the probe; a check built in code without one gets the
// API server's default, 2s.
func (p *Prober) Probe(ctx context.Context, hc deichv1alpha1.HealthCheck, namespace string, workloads client.Reader, caPEM []byte) Result {
	var r Result
	switch {
	case hc.HTTP != nil:
		r = p.probeHTTP(ctx, hc.Name, hc.HTTP, caPEM)
	case hc.TCP != nil:
		r = p.probeTCP(ctx, hc.TCP)
	case hc.Workload != nil:
		r = p.probeWorkload(ctx, hc.Site, hc.Workload, namespace, workloads)
	default:
		// The API server rejects such a check; one built in code still gets a verdict.
		r = Result{Status: StatusUnknown, Message: "check has no probe: set one of http, tcp or workload"}
	}
	r.Message = truncate(r.Message, maxMessageLength)
	return r
}

// defaultTimeout is the API server's default for the timeout of http and tcp checks.
const defaultTimeout = 2 * time.Second

// timeoutOrDefault returns d, or defaultTimeout when d is not positive (a check built in code
// rather than read back from the API server).
func timeoutOrDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return defaultTimeout
	}
	return d
}

// interrupted returns an Unknown result when the caller's context ended: then the probe was
// cut short by this manager (shutdown, a caller's deadline), and says nothing about the site.
func interrupted(ctx context.Context, what string, latency time.Duration) (Result, bool) {
	if err := ctx.Err(); err != nil {
		return Result{
			Status:  StatusUnknown,
			Message: fmt.Sprintf("%s: probe interrupted: %v", what, context.Cause(ctx)),
			Latency: latency,
		}, true
	}
	return Result{}, false
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
