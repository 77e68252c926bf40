// Package testenv provides a multi-site test harness for Deich on real
// Kubernetes API servers: two partner sites, and on request a witness.
//
// Each [Site] is a local control plane (etcd plus kube-apiserver) started via
// controller-runtime's envtest, using binaries built into <repo>/bin (see
// [Options.BinaryAssetsDirectory]). An [Env] groups several sites, by default
// "sh-kiel" and "mv-schwerin", so tests can exercise the mirroring between
// two clusters:
//
//	env, err := testenv.Start(testenv.Options{Scheme: scheme})
//	if err != nil { ... }
//	defer env.Stop()
//	kiel, schwerin := env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)
//	_, err = env.CreatePeerSecret(ctx, kiel, schwerin, "deich-system", "peer-mv-schwerin")
//
// [StartDeich] starts the two sites with Deich's CRDs and scheme. Fault tests
// that need a witness add a third site with [Env.StartWitness]: "hh-hamburg"
// ([SiteHamburg]), with no Deich CRDs and no manager, config/witness applied,
// and a ReplicationPeer with role Witness plus its peer Secret at each
// partner. Two-site tests do not call it and start no third API server.
//
// Fault tests can stop and restart a site's API server ([Site.StopAPIServer],
// [Site.StartAPIServer]); it comes back on the same address with the same
// certificates and service-account signing key, so existing clients,
// kubeconfigs and tokens keep working. etcd keeps running meanwhile, so
// everything the site stored (a witness's Leases, say) is still there after
// the restart; only [Env.Stop] discards it.
//
// Every two sites of an Env are joined by a [Link] ([Env.Link], [Env.Links]):
// one [Proxy] per direction, so [Link.Cut] cuts that pair off from each
// other, both ways, while both API servers keep running and every other pair
// stays connected; cutting one [Link.Proxy] cuts a single direction. A
// connection from one site's manager to another site's API server goes
// through the link's proxy when its kubeconfig comes from [Link.Kubeconfig]
// or points at [Link.Proxy] (as the witness's peer Secrets do);
// [Site.Kubeconfig] and [Env.CreatePeerSecret] reach a site directly, and a
// test may also put a [Proxy] of its own in front of an API server
// ([Site.KubeconfigFor] points a kubeconfig at it).
package testenv
