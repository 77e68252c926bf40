package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// proxyDialTimeout bounds connecting to the proxy's target.
const proxyDialTimeout = 5 * time.Second

// acceptRetryDelay is the back-off after a failed Accept.
const acceptRetryDelay = 10 * time.Millisecond

// Proxy is a raw TCP forwarder on 127.0.0.1 used to simulate network faults
// between sites: put it in front of an API server (see [Site.KubeconfigFor]),
// then [Proxy.Cut] and [Proxy.Restore] the link. Because it forwards bytes
// without terminating TLS, clients still verify the API server's
// certificate end to end.
type Proxy struct {
	target   string
	listener net.Listener

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{} // client and upstream connections

	wg sync.WaitGroup // accept loop and connection handlers
}

// NewProxy starts a proxy listening on 127.0.0.1 on a free port and
// forwarding every connection to target (host:port). Call [Proxy.Close]
// when done.
func NewProxy(target string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("proxy: invalid target %q: %w", target, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy: listen: %w", err)
	}
	p := &Proxy{
		target:   target,
		listener: l,
		conns:    make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listen address, 127.0.0.1:<port>.
func (p *Proxy) Addr() string {
	return p.listener.Addr().String()
}

// URL returns https://127.0.0.1:<port>, the URL to use in a kubeconfig when
// the target is an API server.
func (p *Proxy) URL() string {
	return "https://" + p.Addr()
}

// Cut cuts the link: all current connections are closed, and new ones are
// accepted but closed immediately, until [Proxy.Restore] is called.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.closeConnsLocked()
}

// Restore undoes [Proxy.Cut]: new connections are forwarded again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops listening, closes all connections and waits for the proxy's
// goroutines to finish. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.listener.Close()
	p.closeConnsLocked()
	p.mu.Unlock()

	p.wg.Wait()
	if err != nil {
		return fmt.Errorf("proxy: close listener: %w", err)
	}
	return nil
}

// closeConnsLocked closes and forgets all tracked connections. p.mu must be
// held.
func (p *Proxy) closeConnsLocked() {
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// track registers c so that Cut and Close can close it. If the link is cut
// or the proxy closed, c is closed instead and track reports false.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// untrack forgets c after it has been closed.
func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary accept errors (e.g. EMFILE): back off, keep serving.
			time.Sleep(acceptRetryDelay)
			continue
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle forwards between the client connection c and a new connection to
// the target until either side closes or the link is cut.
func (p *Proxy) handle(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	defer c.Close()

	upstream, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		return
	}
	if !p.track(upstream) {
		return
	}
	defer p.untrack(upstream)
	defer upstream.Close()

	// When either direction ends, close both connections so the other copy
	// returns too.
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(upstream, c)
	go pipe(c, upstream)
	<-done
	<-done
}
