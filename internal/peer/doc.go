// Package peer manages connections to partner sites (peers): it turns the
// kubeconfig held in a Secret into a verified, rate-limited client, keeps one
// cached connection per peer, and rebuilds it when the Secret changes.
package peer
