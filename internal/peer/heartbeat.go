package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/version"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// Heartbeat is what one heartbeat learned about a peer.
type Heartbeat struct {
	// Latency is the round-trip time of the version request.
	Latency time.Duration
	// ServerVersion is the peer API server's git version, for example "v1.37.2".
	ServerVersion string
	// DeichAPIServed is true when the peer serves resilience.deich.io/v1alpha1, that is when
	// Deich's CRDs are installed there.
	DeichAPIServed bool
}

// Heartbeat asks the peer's API server for its version (measuring the round trip) and whether
// it serves Deich's API. An error means the peer did not answer as expected; use
// apierrors.IsUnauthorized and IsForbidden to tell refused credentials from a lost link.
func (c *Connection) Heartbeat(ctx context.Context) (Heartbeat, error) {
	var hb Heartbeat

	start := time.Now()
	body, err := c.HeartbeatClient.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return hb, fmt.Errorf("get version of peer %s: %w", c.Site, err)
	}
	hb.Latency = time.Since(start)

	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return hb, fmt.Errorf("decode version of peer %s: %w", c.Site, err)
	}
	hb.ServerVersion = info.GitVersion

	err = c.HeartbeatClient.Get().AbsPath("/apis", deichv1alpha1.GroupVersion.Group, deichv1alpha1.GroupVersion.Version).Do(ctx).Error()
	switch {
	case err == nil:
		hb.DeichAPIServed = true
	case apierrors.IsNotFound(err):
		hb.DeichAPIServed = false
	default:
		return hb, fmt.Errorf("discover %s at peer %s: %w", deichv1alpha1.GroupVersion, c.Site, err)
	}
	return hb, nil
}
