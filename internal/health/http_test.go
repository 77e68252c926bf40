package health

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// ignoreLatency compares results against real servers, whose latency varies.
var ignoreLatency = cmpopts.IgnoreFields(Result{}, "Latency")

// httpCheck returns an http health check named "web".
func httpCheck(url string, expectedStatus int32, timeout time.Duration) deichv1alpha1.HealthCheck {
	return deichv1alpha1.HealthCheck{
		Name: "web",
		HTTP: &deichv1alpha1.HTTPCheck{URL: url, ExpectedStatus: expectedStatus, Timeout: metav1.Duration{Duration: timeout}},
	}
}

// caPEMOf returns the PEM-encoded certificate a TLS test server presents, which is its own CA.
func caPEMOf(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// closedAddress returns a loopback address nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// hangingHandler answers only when the client gives up, so that a probe against it times out.
func hangingHandler(w http.ResponseWriter, r *http.Request) {
	<-r.Context().Done()
}

func statusHandler(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func TestProbeHTTP(t *testing.T) {
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", statusHandler(http.StatusOK))
	mux.HandleFunc("/broken", statusHandler(http.StatusInternalServerError))
	mux.HandleFunc("/empty", statusHandler(http.StatusNoContent))
	mux.HandleFunc("/hang", hangingHandler)
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/healthz-elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/healthz-elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	plain := httptest.NewServer(mux)
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(mux)
	t.Cleanup(secure.Close)
	refused := "http://" + closedAddress(t) + "/healthz"

	cases := []struct {
		name  string
		check deichv1alpha1.HealthCheck
		caPEM []byte
		// want is compared without Latency; when wantInMessage is set, want.Message is not
		// compared (it holds operating-system text) and must contain wantInMessage instead.
		want          Result
		wantInMessage string
	}{{
		name:  "a server answering the expected status is healthy",
		check: httpCheck(plain.URL+"/healthz", 200, time.Second),
		want:  Result{Status: StatusHealthy, Message: "GET " + plain.URL + "/healthz: status 200"},
	}, {
		name:  "a server answering another status is unhealthy and the message says which was wanted",
		check: httpCheck(plain.URL+"/broken", 200, time.Second),
		want:  Result{Status: StatusUnhealthy, Message: "GET " + plain.URL + "/broken: status 500, want 200"},
	}, {
		name:  "an expected status other than 200 is what counts as healthy",
		check: httpCheck(plain.URL+"/empty", 204, time.Second),
		want:  Result{Status: StatusHealthy, Message: "GET " + plain.URL + "/empty: status 204"},
	}, {
		name:  "a check built without expectedStatus or timeout expects 200",
		check: httpCheck(plain.URL+"/empty", 0, 0),
		want:  Result{Status: StatusUnhealthy, Message: "GET " + plain.URL + "/empty: status 204, want 200"},
	}, {
		name:  "a redirect is not followed and its status is compared with expectedStatus",
		check: httpCheck(plain.URL+"/moved", 200, time.Second),
		want:  Result{Status: StatusUnhealthy, Message: "GET " + plain.URL + "/moved: status 302, want 200 (redirect to /healthz-elsewhere, not followed)"},
	}, {
		name:  "a redirect is healthy when expectedStatus names it",
		check: httpCheck(plain.URL+"/moved", 302, time.Second),
		want:  Result{Status: StatusHealthy, Message: "GET " + plain.URL + "/moved: status 302"},
	}, {
		name:  "a TLS server is verified with the CA passed as caPEM",
		check: httpCheck(secure.URL+"/healthz", 200, time.Second),
		caPEM: caPEMOf(secure),
		want:  Result{Status: StatusHealthy, Message: "GET " + secure.URL + "/healthz: status 200"},
	}, {
		name:          "a TLS server whose CA is not passed fails verification and is unhealthy",
		check:         httpCheck(secure.URL+"/healthz", 200, time.Second),
		want:          Result{Status: StatusUnhealthy},
		wantInMessage: "GET " + secure.URL + "/healthz: tls: failed to verify certificate: x509: ",
	}, {
		name:          "a server that does not answer within the timeout is unhealthy",
		check:         httpCheck(plain.URL+"/hang", 200, 100*time.Millisecond),
		want:          Result{Status: StatusUnhealthy},
		wantInMessage: "GET " + plain.URL + "/hang: no response within 100ms: ",
	}, {
		name:          "a refused connection is unhealthy",
		check:         httpCheck(refused, 200, time.Second),
		want:          Result{Status: StatusUnhealthy},
		wantInMessage: "GET " + refused + ": dial tcp " + strings.TrimPrefix(strings.TrimSuffix(refused, "/healthz"), "http://") + ": connect: connection refused",
	}, {
		name:  "a CA bundle without a certificate makes the check unknown rather than falling back to the system roots",
		check: httpCheck(secure.URL+"/healthz", 200, time.Second),
		caPEM: []byte("not a certificate"),
		want:  Result{Status: StatusUnknown, Message: "GET " + secure.URL + "/healthz: the CA bundle from caSecretRef holds no PEM certificate"},
	}, {
		name:  "a password in the URL is not repeated in the message",
		check: httpCheck(strings.Replace(plain.URL, "http://", "http://probe:s3cret@", 1)+"/broken", 200, time.Second),
		want:  Result{Status: StatusUnhealthy, Message: "GET " + strings.Replace(plain.URL, "http://", "http://probe:xxxxx@", 1) + "/broken: status 500, want 200"},
	}, {
		name:  "a URL that is not http or https is unknown",
		check: httpCheck("ftp://buergerkonto.example.de/healthz", 200, time.Second),
		want:  Result{Status: StatusUnknown, Message: `url "ftp://buergerkonto.example.de/healthz" is not an absolute http or https URL`},
	}}
	p := NewProber()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Probe(t.Context(), tc.check, "buergerkonto", nil, tc.caPEM)
			want := tc.want
			if tc.wantInMessage != "" {
				if !strings.Contains(got.Message, tc.wantInMessage) {
					t.Errorf("Probe() message = %q, want it to contain %q", got.Message, tc.wantInMessage)
				}
				want.Message = got.Message
			}
			if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
				t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect target was requested %d times, want 0: redirects must not be followed", n)
	}
}

func TestProbeHTTPTimesOutWithinTheCheckTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(hangingHandler))
	t.Cleanup(srv.Close)

	got := NewProber().Probe(t.Context(), httpCheck(srv.URL, 200, 100*time.Millisecond), "buergerkonto", nil, nil)
	if got.Status != StatusUnhealthy {
		t.Errorf("Probe() status = %s, want %s", got.Status, StatusUnhealthy)
	}
	// The latency is measured by the real clock here; it must reflect the timeout, not the
	// server (which never answers) or the test's deadline.
	if got.Latency < 100*time.Millisecond || got.Latency > 10*time.Second {
		t.Errorf("Probe() latency = %s, want about the 100ms timeout", got.Latency)
	}
}

func TestProbeHTTPNamesTheCheckAndClosesTheConnection(t *testing.T) {
	type seen struct {
		userAgent string
		close     bool
	}
	var (
		mu       sync.Mutex
		requests []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, seen{userAgent: r.UserAgent(), close: r.Close})
		mu.Unlock()
		_, _ = io.WriteString(w, strings.Repeat("ok\n", 10000))
	}))
	t.Cleanup(srv.Close)

	p := NewProber()
	for range 2 {
		if got := p.Probe(t.Context(), httpCheck(srv.URL, 200, time.Second), "buergerkonto", nil, nil); got.Status != StatusHealthy {
			t.Fatalf("Probe() = %+v, want healthy", got)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	want := []seen{{userAgent: "deich-health/web", close: true}, {userAgent: "deich-health/web", close: true}}
	if diff := cmp.Diff(want, requests, cmp.AllowUnexported(seen{})); diff != "" {
		t.Errorf("requests the server saw (-want +got):\n%s", diff)
	}
}

func TestProbeHTTPReusesOneClientPerCABundle(t *testing.T) {
	plain := httptest.NewServer(statusHandler(http.StatusOK))
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(statusHandler(http.StatusOK))
	t.Cleanup(secure.Close)

	var (
		mu      sync.Mutex
		configs []*tls.Config
		p       *Prober
	)
	p = NewProber(WithHTTPClientFactory(func(cfg *tls.Config) *http.Client {
		mu.Lock()
		configs = append(configs, cfg)
		mu.Unlock()
		return p.defaultHTTPClient(cfg)
	}))

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := p.Probe(t.Context(), httpCheck(plain.URL, 200, time.Second), "buergerkonto", nil, nil); got.Status != StatusHealthy {
				t.Errorf("Probe() of the plain server = %+v, want healthy", got)
			}
		})
		wg.Go(func() {
			if got := p.Probe(t.Context(), httpCheck(secure.URL, 200, time.Second), "buergerkonto", nil, caPEMOf(secure)); got.Status != StatusHealthy {
				t.Errorf("Probe() of the TLS server = %+v, want healthy", got)
			}
		})
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(configs) != 2 {
		t.Fatalf("the client factory was called %d times, want 2 (one per CA bundle)", len(configs))
	}
	for _, cfg := range configs {
		if cfg.InsecureSkipVerify || cfg.RootCAs == nil {
			t.Errorf("TLS config has InsecureSkipVerify %v and RootCAs %v, want verification against roots", cfg.InsecureSkipVerify, cfg.RootCAs)
		}
	}
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody is a response body that records whether it was closed.
type trackedBody struct {
	io.Reader
	closed atomic.Bool
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return nil
}

func TestProbeHTTPMeasuresLatencyWithTheProbersClockAndClosesTheBody(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	body := &trackedBody{Reader: strings.NewReader("ok")}
	p := NewProber(WithClock(clk), WithHTTPClientFactory(func(*tls.Config) *http.Client {
		return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			clk.Step(150 * time.Millisecond)
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: body, Request: r}, nil
		})}
	}))

	got := p.Probe(t.Context(), httpCheck("https://buergerkonto.example.de/healthz", 200, time.Second), "buergerkonto", nil, nil)

	want := Result{Status: StatusHealthy, Message: "GET https://buergerkonto.example.de/healthz: status 200", Latency: 150 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
	if !body.closed.Load() {
		t.Error("the response body was not closed")
	}
}

func TestProbeHTTPIsUnknownWhenTheCallerCancels(t *testing.T) {
	srv := httptest.NewServer(statusHandler(http.StatusOK))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	got := NewProber().Probe(ctx, httpCheck(srv.URL, 200, time.Second), "buergerkonto", nil, nil)

	want := Result{Status: StatusUnknown, Message: "GET " + srv.URL + ": probe interrupted: context canceled"}
	if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
}
