package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deich-io/deich/internal/testobjects"
)

// Link is the network between two sites of an [Env]: one [Proxy] per direction, so that a
// fault test can cut one pair of sites off from each other while every other pair stays
// connected. A manager at one end reaches the other end's API server through [Link.Proxy] of
// its own end, with a kubeconfig from [Link.Kubeconfig] (or one written for a ServiceAccount
// with [Site.ServiceAccountKubeconfigFor]); a kubeconfig from [Site.Kubeconfig] bypasses
// every link.
//
// The proxies forward to the API servers' fixed addresses, so they keep working across
// [Site.StopAPIServer] and [Site.StartAPIServer]: a stopped site and a cut link are two
// faults that can be combined.
type Link struct {
	ends [2]*Site
	// proxies[i] carries the connections of ends[i] to the API server of ends[1-i].
	proxies [2]*Proxy
}

// newLink starts the two proxies of the link between a and b.
func newLink(a, b *Site) (*Link, error) {
	l := &Link{ends: [2]*Site{a, b}}
	for i, to := range []*Site{b, a} {
		p, err := NewProxy(to.HostPort())
		if err != nil {
			if closeErr := l.close(); closeErr != nil {
				err = errors.Join(err, closeErr)
			}
			return nil, fmt.Errorf("link %s: proxy to %s: %w", l, to.Name, err)
		}
		l.proxies[i] = p
	}
	return l, nil
}

// String names the link by its ends, "sh-kiel<->mv-schwerin".
func (l *Link) String() string {
	return l.ends[0].Name + "<->" + l.ends[1].Name
}

// Sites returns the two ends of the link, in the order the [Env] started them.
func (l *Link) Sites() (*Site, *Site) {
	return l.ends[0], l.ends[1]
}

// end is the index of site in l.ends, or -1 if it is not an end of l.
func (l *Link) end(site string) int {
	for i, s := range l.ends {
		if s.Name == site {
			return i
		}
	}
	return -1
}

// Other returns the end of the link that is not from, or nil if from is not an end.
func (l *Link) Other(from string) *Site {
	i := l.end(from)
	if i < 0 {
		return nil
	}
	return l.ends[1-i]
}

// Proxy returns the proxy that carries the connections of site from to the other end's API
// server, or nil if from is not an end of the link. Cutting only this proxy cuts the link in
// one direction: from can no longer reach the other end, while the other end still reaches
// from.
func (l *Link) Proxy(from string) *Proxy {
	i := l.end(from)
	if i < 0 {
		return nil
	}
	return l.proxies[i]
}

// Kubeconfig returns an admin kubeconfig (see [Site.KubeconfigFor]) for the other end of the
// link as site from reaches it: through [Link.Proxy] of from.
func (l *Link) Kubeconfig(from string) ([]byte, error) {
	i := l.end(from)
	if i < 0 {
		return nil, fmt.Errorf("link %s: %s is not one of its sites", l, from)
	}
	return l.ends[1-i].KubeconfigFor(l.proxies[i].URL())
}

// Cut cuts the link in both directions: open connections between the two sites are closed,
// and new ones are closed at once, until [Link.Restore]. Each site's API server keeps
// running, and every other link is untouched.
func (l *Link) Cut() {
	for _, p := range l.proxies {
		p.Cut()
	}
}

// Restore heals the link in both directions, also after a one-way cut of one [Link.Proxy].
func (l *Link) Restore() {
	for _, p := range l.proxies {
		p.Restore()
	}
}

// close closes the link's proxies.
func (l *Link) close() error {
	var errs []error
	for _, p := range l.proxies {
		if p == nil {
			continue
		}
		if err := p.Close(); err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", l, err))
		}
	}
	return errors.Join(errs...)
}

// linkKey is the key of the link between sites a and b in [Env]'s map, the same for both
// orders of a and b.
func linkKey(a, b string) [2]string {
	if strings.Compare(a, b) > 0 {
		a, b = b, a
	}
	return [2]string{a, b}
}

// Connect gives each end of the link, in namespace, a peer Secret and a ReplicationPeer
// (heartbeat as given) for the other end whose kubeconfig reaches it through the link, so that
// cutting the link cuts the two sites' managers off from each other's API servers.
func (l *Link) Connect(ctx context.Context, namespace string, heartbeat time.Duration) error {
	for _, on := range l.ends {
		other := l.Other(on.Name)
		kubeconfig, err := l.Kubeconfig(on.Name)
		if err != nil {
			return err
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
		if err := on.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create manager namespace at %s: %w", on.Name, err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "peer-" + other.Name},
			Data:       map[string][]byte{PeerSecretKey: kubeconfig},
		}
		if err := on.Client.Create(ctx, secret); err != nil {
			return fmt.Errorf("create peer Secret for %s at %s: %w", other.Name, on.Name, err)
		}
		if err := on.Client.Create(ctx, testobjects.MakeReplicationPeer(other.Name).Heartbeat(heartbeat).Obj()); err != nil {
			return fmt.Errorf("create ReplicationPeer %s at %s: %w", other.Name, on.Name, err)
		}
	}
	return nil
}
