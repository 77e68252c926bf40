package testenv

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer accepts connections and echoes every line back.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return l.Addr().String()
}

// roundTrip sends one line over c and expects it echoed back.
func roundTrip(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != msg {
		return errors.New("echo mismatch: " + line)
	}
	return nil
}

// dialRoundTrip opens a fresh connection to addr and does one round trip.
func dialRoundTrip(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, requestTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, msg)
}

func TestProxyCutRestore(t *testing.T) {
	p, err := NewProxy(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if !strings.HasPrefix(p.Addr(), "127.0.0.1:") || p.URL() != "https://"+p.Addr() {
		t.Fatalf("Addr() = %q, URL() = %q", p.Addr(), p.URL())
	}

	long, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := roundTrip(long, "hello"); err != nil {
		t.Fatalf("round trip through proxy: %v", err)
	}

	p.Cut()
	// The existing connection is closed by the proxy ...
	if err := roundTrip(long, "after cut"); err == nil {
		t.Fatal("existing connection survived Cut")
	}
	// ... and new ones are closed immediately.
	if err := dialRoundTrip(p.Addr(), "new after cut"); err == nil {
		t.Fatal("new connection forwarded while cut")
	}

	p.Restore()
	eventually(t, "forwarding after restore", func() error { return dialRoundTrip(p.Addr(), "restored") })

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := dialRoundTrip(p.Addr(), "closed"); err == nil {
		t.Fatal("proxy still forwarding after Close")
	}
}

func TestProxyUnreachableTarget(t *testing.T) {
	// Reserve a port and free it again, so nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := l.Addr().String()
	_ = l.Close()

	p, err := NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	if err := dialRoundTrip(p.Addr(), "nobody home"); err == nil {
		t.Fatal("round trip to unreachable target succeeded")
	}

	if _, err := NewProxy("no-port"); err == nil {
		t.Fatal("NewProxy with invalid target: want error")
	}
}
