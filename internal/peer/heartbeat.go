package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	v, latency, err := c.version(ctx)
	if err != nil {
		return hb, err
	}
	hb.Latency, hb.ServerVersion = latency, v

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

// version asks the peer's API server for its git version and measures the round trip.
func (c *Connection) version(ctx context.Context) (string, time.Duration, error) {
	start := time.Now()
	body, err := c.HeartbeatClient.Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", 0, fmt.Errorf("get version of peer %s: %w", c.Site, err)
	}
	latency := time.Since(start)

	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return "", 0, fmt.Errorf("decode version of peer %s: %w", c.Site, err)
	}
	return info.GitVersion, latency, nil
}

// LeaseAccess is what a witness heartbeat found out about the Leases this site keeps at the
// witness.
type LeaseAccess string

const (
	// LeaseAccessGranted means this site may list and create Leases in the lease namespace.
	LeaseAccessGranted LeaseAccess = "Granted"
	// LeaseAccessDenied means the witness refused this site's credentials the Leases of the
	// lease namespace (403).
	LeaseAccessDenied LeaseAccess = "Denied"
	// LeaseNamespaceMissing means the witness has no such namespace.
	LeaseNamespaceMissing LeaseAccess = "NamespaceMissing"
)

// WitnessHeartbeat is what one heartbeat learned about a witness.
type WitnessHeartbeat struct {
	// Latency is the round-trip time of the version request.
	Latency time.Duration
	// ServerVersion is the witness API server's git version, for example "v1.37.2".
	ServerVersion string
	// LeaseAccess says whether this site may use Leases in the lease namespace.
	LeaseAccess LeaseAccess
	// LeaseError is the witness's answer when LeaseAccess is not Granted.
	LeaseError error
}

// WitnessHeartbeat asks a witness's API server for its version (measuring the round trip) and
// checks the Lease API this site needs there, not Deich's API: it lists the Leases of
// namespace (at most one) and creates one in a server-side dry run, which nothing stores. The
// dry run needs the create right the lease keeper needs and fails when the namespace does not
// exist, which a list alone does not tell. An error means the witness did not answer as
// expected; a refused or missing namespace is reported in LeaseAccess instead.
func (c *Connection) WitnessHeartbeat(ctx context.Context, namespace string) (WitnessHeartbeat, error) {
	var hb WitnessHeartbeat
	v, latency, err := c.version(ctx)
	if err != nil {
		return hb, err
	}
	hb.Latency, hb.ServerVersion = latency, v

	leases := c.HeartbeatClient.Get().AbsPath("/apis", coordinationv1.GroupName, "v1", "namespaces", namespace, "leases").
		Param("limit", "1")
	if err := leases.Do(ctx).Error(); err != nil {
		return hb.leaseRefused(err, fmt.Errorf("list Leases in namespace %s at witness %s: %w", namespace, c.Site, err))
	}

	probe, err := json.Marshal(&coordinationv1.Lease{
		TypeMeta:   metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "deich-heartbeat-", Namespace: namespace},
	})
	if err != nil {
		return hb, fmt.Errorf("encode heartbeat Lease: %w", err)
	}
	create := c.HeartbeatClient.Post().AbsPath("/apis", coordinationv1.GroupName, "v1", "namespaces", namespace, "leases").
		Param("dryRun", metav1.DryRunAll).SetHeader("Content-Type", "application/json").Body(probe)
	if err := create.Do(ctx).Error(); err != nil {
		return hb.leaseRefused(err, fmt.Errorf("create a Lease (dry run) in namespace %s at witness %s: %w", namespace, c.Site, err))
	}
	hb.LeaseAccess = LeaseAccessGranted
	return hb, nil
}

// leaseRefused sorts a failed Lease request: a refusal or a missing namespace is an answer
// the witness gave (recorded in the heartbeat), anything else a failed heartbeat.
func (hb WitnessHeartbeat) leaseRefused(apiErr, wrapped error) (WitnessHeartbeat, error) {
	switch {
	case apierrors.IsForbidden(apiErr):
		hb.LeaseAccess, hb.LeaseError = LeaseAccessDenied, wrapped
		return hb, nil
	case isNamespaceNotFound(apiErr):
		hb.LeaseAccess, hb.LeaseError = LeaseNamespaceMissing, wrapped
		return hb, nil
	}
	return hb, wrapped
}

// isNamespaceNotFound reports whether err is the API server's answer that a namespace does not
// exist, as opposed to another object.
func isNamespaceNotFound(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "namespaces"
}
