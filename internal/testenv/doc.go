// Package testenv provides a two-site test harness for Deich on real
// Kubernetes API servers.
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
// Fault tests can stop and restart a site's API server ([Site.StopAPIServer],
// [Site.StartAPIServer]); it comes back on the same address with the same
// certificates, so existing clients and kubeconfigs keep working. A [Proxy]
// can be placed in front of an API server to simulate a cut network link
// while the API server itself keeps running; [Site.KubeconfigFor] produces a
// kubeconfig that talks to the site through such a proxy.
package testenv
