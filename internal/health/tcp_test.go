package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func tcpCheck(address string, timeout time.Duration) deichv1alpha1.HealthCheck {
	return deichv1alpha1.HealthCheck{
		Name: "db",
		TCP:  &deichv1alpha1.TCPCheck{Address: address, Timeout: metav1.Duration{Duration: timeout}},
	}
}

// dialFunc is a Dialer made of a function.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}

func TestProbeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	open := l.Addr().String()
	closed := closedAddress(t)

	cases := []struct {
		name          string
		address       string
		want          Result
		wantInMessage string
	}{{
		name:    "an open port is healthy",
		address: open,
		want:    Result{Status: StatusHealthy, Message: "dial tcp " + open + ": connected"},
	}, {
		name:          "a closed port is unhealthy with the dial error",
		address:       closed,
		want:          Result{Status: StatusUnhealthy},
		wantInMessage: "dial tcp " + closed + ": connect: connection refused",
	}}
	p := NewProber()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Probe(t.Context(), tcpCheck(tc.address, time.Second), "buergerkonto", nil, nil)
			want := tc.want
			if tc.wantInMessage != "" {
				if got.Message != tc.wantInMessage {
					t.Errorf("Probe() message = %q, want %q", got.Message, tc.wantInMessage)
				}
				want.Message = got.Message
			}
			if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
				t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeTCPGivesUpAfterTheCheckTimeout(t *testing.T) {
	// The dialer answers only when the probe's deadline passes, as a dial to a silent host does.
	p := NewProber(WithDialer(dialFunc(func(ctx context.Context, _, address string) (net.Conn, error) {
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("dial without a deadline")
		}
		<-ctx.Done()
		return nil, fmt.Errorf("dial tcp %s: %w", address, ctx.Err())
	})))

	got := p.Probe(t.Context(), tcpCheck("10.0.0.7:5432", 100*time.Millisecond), "buergerkonto", nil, nil)

	want := Result{Status: StatusUnhealthy, Message: "dial tcp 10.0.0.7:5432: context deadline exceeded"}
	if diff := cmp.Diff(want, got, ignoreLatency); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
}

func TestProbeTCPMeasuresLatencyWithTheProbersClockAndClosesTheConnection(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))
	server, probeEnd := net.Pipe()
	t.Cleanup(func() { server.Close() })
	p := NewProber(WithClock(clk), WithDialer(dialFunc(func(context.Context, string, string) (net.Conn, error) {
		clk.Step(40 * time.Millisecond)
		return probeEnd, nil
	})))

	got := p.Probe(t.Context(), tcpCheck("db.buergerkonto.example.de:5432", time.Second), "buergerkonto", nil, nil)

	want := Result{Status: StatusHealthy, Message: "dial tcp db.buergerkonto.example.de:5432: connected", Latency: 40 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
	if _, err := server.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("reading the server end of the connection = %v, want io.EOF: the probe must close its connection", err)
	}
}

func TestProbeTCPIsUnknownWhenTheCallerCancels(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	got := NewProber().Probe(ctx, tcpCheck(closedAddress(t), time.Second), "buergerkonto", nil, nil)

	if got.Status != StatusUnknown {
		t.Errorf("Probe() = %+v, want status %s", got, StatusUnknown)
	}
}
