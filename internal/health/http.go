package health

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// maxDrainedBody is how much of a response body is read before it is closed. The status alone
// decides; the body is drained so that a client from WithHTTPClientFactory that keeps
// connections alive can reuse them, and bounded so that a large or endless body costs nothing.
const maxDrainedBody = 4 << 10

// maxResponseHeaderBytes bounds the response headers the default transport accepts.
const maxResponseHeaderBytes = 64 << 10

// maxLocationLength bounds how much of a redirect's Location goes into a message.
const maxLocationLength = 256

// defaultExpectedStatus is the API server's default for an http check's expectedStatus.
const defaultExpectedStatus = http.StatusOK

// probeHTTP sends one GET to the check's URL and compares the status with expectedStatus.
func (p *Prober) probeHTTP(ctx context.Context, name string, check *deichv1alpha1.HTTPCheck, caPEM []byte) Result {
	u, err := url.Parse(check.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The API server rejects such a URL; one built in code still gets a verdict.
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("url %q is not an absolute http or https URL", check.URL)}
	}
	what := "GET " + u.Redacted()

	c, err := p.httpClient(caPEM)
	if err != nil {
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("%s: %v", what, err)}
	}

	timeout := timeoutOrDefault(check.Timeout.Duration)
	reqCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), http.NoBody)
	if err != nil {
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("%s: build request: %v", what, err)}
	}
	req.Header.Set("User-Agent", "deich-health/"+name)

	start := p.clock.Now()
	resp, err := c.Do(req)
	latency := p.clock.Since(start)
	if err != nil {
		if r, ok := interrupted(ctx, what, latency); ok {
			return r
		}
		return Result{Status: StatusUnhealthy, Message: fmt.Sprintf("%s: %s", what, describeHTTPError(err, timeout)), Latency: latency}
	}
	defer resp.Body.Close()
	// Draining is best effort: the verdict is already known, and a failed read only means the
	// connection is not reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrainedBody))

	want := int(check.ExpectedStatus)
	if want == 0 {
		want = defaultExpectedStatus
	}
	if resp.StatusCode == want {
		return Result{Status: StatusHealthy, Message: fmt.Sprintf("%s: status %d", what, resp.StatusCode), Latency: latency}
	}
	msg := fmt.Sprintf("%s: status %d, want %d", what, resp.StatusCode, want)
	if loc := resp.Header.Get("Location"); loc != "" && isRedirect(resp.StatusCode) {
		msg += fmt.Sprintf(" (redirect to %s, not followed)", truncate(loc, maxLocationLength))
	}
	return Result{Status: StatusUnhealthy, Message: msg, Latency: latency}
}

// isRedirect reports whether code is a 3xx status that carries a Location.
func isRedirect(code int) bool {
	return code >= http.StatusMultipleChoices && code < http.StatusBadRequest
}

// describeHTTPError turns a client error into the part of a message after the request: the
// url.Error wrapper is dropped (the message already names the request, and its URL would not
// be redacted), and a timeout says how long the probe waited.
func describeHTTPError(err error, timeout time.Duration) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		return fmt.Sprintf("no response within %s: %v", timeout, err)
	}
	return err.Error()
}

// doNotFollowRedirects makes a client return a redirect as the response.
func doNotFollowRedirects(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}

// httpClient returns the cached client for a CA bundle, building it on first use.
func (p *Prober) httpClient(caPEM []byte) (*http.Client, error) {
	key := sha256.Sum256(caPEM)

	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.httpClients[key]; ok {
		return c, nil
	}

	tlsConfig, err := tlsConfigFor(caPEM)
	if err != nil {
		return nil, err
	}
	c := *p.newHTTPClient(tlsConfig)
	c.CheckRedirect = doNotFollowRedirects

	if len(p.httpClients) >= maxCachedHTTPClients {
		for k, old := range p.httpClients {
			old.CloseIdleConnections()
			delete(p.httpClients, k)
			break
		}
	}
	p.httpClients[key] = &c
	return &c, nil
}

// tlsConfigFor returns a TLS configuration that verifies servers with the system roots plus
// the certificates in caPEM. It never skips verification.
func tlsConfigFor(caPEM []byte) (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		return nil, fmt.Errorf("load system root certificates: %w", err)
	}
	if len(caPEM) > 0 && !roots.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA bundle from caSecretRef holds no PEM certificate")
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// defaultHTTPClient is the HTTPClientFactory used unless WithHTTPClientFactory replaces it.
func (p *Prober) defaultHTTPClient(tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                  http.ProxyFromEnvironment,
			DialContext:            p.dialer.DialContext,
			TLSClientConfig:        tlsConfig,
			DisableKeepAlives:      true,
			MaxResponseHeaderBytes: maxResponseHeaderBytes,
		},
	}
}
