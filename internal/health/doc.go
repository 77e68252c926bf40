// Package health runs the health checks a SharedService declares (http, tcp and workload
// probes) and keeps the running tally of consecutive failures the failover decision reads.
//
// A probe answers one of three things. Healthy: the site served. Unhealthy: the probe ran and
// the site did not serve — a refused connection, a timeout, a TLS failure, a wrong HTTP status
// or too few ready replicas; a lost site answers no probe, so no answer is a failure. Unknown:
// the probe could not run — the checked site's API server cannot be read, the CA bundle holds
// no certificate, or the caller's context ended. Unknown is never healthy: Tally counts it as a
// failure like Unhealthy, and the distinction is kept for the messages SREs read.
//
// The probes hold no global state and read no hidden clock: a Prober is built with its
// dialer, HTTP client factory and clock (functional options), and Tally.Add takes now.
//
// HTTP probes do not follow redirects: a redirect is the answer, and its status is compared
// with expectedStatus like any other (set expectedStatus: 302 to accept it). Following one
// would judge a different endpoint than the check names, possibly at the other site. The
// transport disables keep-alives, so every probe dials afresh: it resolves the check's
// hostname again (a shared hostname may move between sites) and never reports a reused
// connection to a site that has since gone. The transport (its TLS configuration with the
// system roots and the check's CA bundle) is cached per CA bundle, so repeated probes do not
// rebuild it.
package health
