// Package peer manages connections to partner sites (peers): it turns the
// kubeconfig held in a Secret into a verified, rate-limited client, keeps one
// cached connection per peer, and rebuilds it when the Secret changes. Each
// connection also tells what the peer lets its identity do in a namespace
// (Access), so that writes the peer would refuse in part are not started.
package peer
