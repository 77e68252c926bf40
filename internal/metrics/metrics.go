// Package metrics defines Deich's Prometheus metrics. They are registered with
// controller-runtime's registry, so the manager serves them on its metrics endpoint next to
// controller-runtime's own. Names follow deich_<noun>_<unit>; labels are bounded (site,
// namespace, service names), never object UIDs.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	// PeerReachable is 1 while a peer's API server answers heartbeats and 0 otherwise.
	PeerReachable = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_peer_reachable",
		Help: "Whether the peer site's API server answered the last heartbeat (1) or not (0).",
	}, []string{"peer", "site"})

	// PeerReady is 1 while a peer can be used for mirroring (reachable, credentials accepted,
	// Deich's API served).
	PeerReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_peer_ready",
		Help: "Whether the peer site can be used for mirroring (1) or not (0).",
	}, []string{"peer", "site"})

	// PeerHeartbeatLatency observes the round-trip time of successful heartbeats.
	PeerHeartbeatLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deich_peer_heartbeat_latency_seconds",
		Help:    "Round-trip time of successful heartbeats to the peer site's API server.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
	}, []string{"peer", "site"})

	// PeerHeartbeatFailures counts heartbeats that did not reach the peer.
	PeerHeartbeatFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_peer_heartbeat_failures_total",
		Help: "Heartbeats to the peer site's API server that failed.",
	}, []string{"peer", "site"})
)

var (
	// PeerCredentialsExpiry is when the credentials of a peer's kubeconfig expire, as Unix
	// seconds: the expiry of its bearer token when that is a JWT, else of its client
	// certificate. Absent when neither says.
	PeerCredentialsExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_peer_credentials_expiry_timestamp_seconds",
		Help: "When the credentials in the peer's kubeconfig Secret expire (Unix seconds): the bearer token's exp claim when it is a JWT, else the client certificate's notAfter.",
	}, []string{"peer", "site"})
)

var (
	// DrillFailed is 1 while the last run of a DrillSchedule failed and 0 once one passed.
	DrillFailed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_drill_failed",
		Help: "Whether the last run of a DrillSchedule failed (1) or passed (0).",
	}, []string{"namespace", "schedule", "site"})

	// DrillLastRun is when a DrillSchedule's last run completed, as Unix seconds; its creation
	// until a run completed.
	DrillLastRun = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_drill_last_run_timestamp_seconds",
		Help: "When the last run of a DrillSchedule completed, or the schedule was created if none has (Unix seconds).",
	}, []string{"namespace", "schedule", "site"})

	// Drills counts the runs of each DrillSchedule by result, missed and skipped ones included.
	Drills = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_drills_total",
		Help: "Runs of a DrillSchedule by result: Passed, Failed, Missed (not started within its starting deadline) or Skipped (this site served none of its services).",
	}, []string{"namespace", "schedule", "site", "result"})
)

var (
	// ReplicationLag is the age of the standby's copy of a service: how long ago it was last
	// confirmed complete and current. Compare it with the service's RPO.
	ReplicationLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_replication_lag_seconds",
		Help: "Age of the standby's copy of a SharedService (time since it was last confirmed complete and current).",
	}, []string{"namespace", "service", "site"})

	// MirroredObjects is how many objects of a service are mirrored to its standby.
	MirroredObjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_mirrored_objects",
		Help: "Objects of a SharedService mirrored to (or, at the standby, held for) the standby site.",
	}, []string{"namespace", "service", "site"})

	// EgressDenials counts the objects an egress policy kept at this site, once per round
	// that would have sent them, by peer and by the rule that denied them.
	EgressDenials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_egress_denials_total",
		Help: "Objects not sent to a peer because its ReplicationPeer's egress policy denies them, counted per round that would have sent them, by rule.",
	}, []string{"peer", "rule"})

	// EgressWithdrawals counts the copies deleted at a peer because the egress policy no
	// longer lets their objects leave, by peer and rule.
	EgressWithdrawals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_egress_withdrawals_total",
		Help: "Copies deleted at a peer because its ReplicationPeer's egress policy no longer lets their objects leave, by rule.",
	}, []string{"peer", "rule"})

	// EgressHeldObjects is what a partner holds of this site's objects at the last
	// inventory (ReplicationPeer status.egress), by peer and kind.
	EgressHeldObjects = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_egress_held_objects",
		Help: "Objects a partner site holds of this site's at its last inventory (objects labelled with this site as their source), by kind.",
	}, []string{"peer", "kind"})

	// SyncErrors counts failed synchronisations of a service, by reason.
	SyncErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_sync_errors_total",
		Help: "Synchronisations of a SharedService to its standby that failed, by reason.",
	}, []string{"namespace", "service", "reason"})
)

// HealthCheckUp is 1 while a health check passes at the checking site, 0 while it fails or
// cannot be evaluated.
var HealthCheckUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "deich_health_check_up",
	Help: "Whether a SharedService's health check passed (1) or failed or could not be evaluated (0) at the checking site.",
}, []string{"namespace", "service", "check", "site"})

// HealthProbes counts the probes a site's manager ran; a probe of a check that services
// share counts once, however many services took its result.
var HealthProbes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "deich_health_probes_total",
	Help: "Health probes this site's manager ran; shared is true for a probe whose result answered every service with the same check.",
}, []string{"site", "shared"})

// Failover metrics.
var (
	// LeaseRemaining is, at the site that holds a service's lease and serves, how long until
	// it must fence itself unless a renewal succeeds; 0 elsewhere.
	LeaseRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_lease_remaining_seconds",
		Help: "Time until the serving site must fence itself unless it renews the lease (0 when this site does not serve).",
	}, []string{"namespace", "service", "site"})
	// Serving is 1 while this site serves a service (holds the lease and its objects are in
	// active form) and 0 otherwise.
	Serving = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_serving",
		Help: "Whether this site serves the SharedService (1) or not (0).",
	}, []string{"namespace", "service", "site"})
	// Fenced is 1 while this site has a claim on the lease it served on but can no longer
	// show the copies it needs to serve: it stays fenced until it renews them.
	Fenced = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "deich_fenced",
		Help: "Whether this site served the SharedService on its claim of the lease but is fenced because it cannot renew the copies it needs (1) or not (0).",
	}, []string{"namespace", "service", "site"})
	// Failovers counts completed promotions at this site, by kind (failover, handover,
	// switchover).
	Failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_failovers_total",
		Help: "Promotions of a SharedService completed at this site.",
	}, []string{"namespace", "service", "site", "trigger"})
	// RecoverySlowerThanRTO counts completed promotions whose recovery time exceeded the
	// objective's RTO.
	RecoverySlowerThanRTO = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "deich_recovery_slower_than_rto_total",
		Help: "Promotions of a SharedService completed at this site later after the failure (or the Switchover's start) than the RecoveryObjective's RTO.",
	}, []string{"namespace", "service", "site"})
	// RecoverySeconds observes the recovery time of completed promotions.
	RecoverySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "deich_recovery_seconds",
		Help:    "Time from the detected failure (or the Switchover's start) to this site serving.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600},
	}, []string{"namespace", "service", "site"})
)

// Scopes of a round of mirroring, the values of MirrorRounds' label scope.
const (
	// RoundFull goes through every object of the service.
	RoundFull = "full"
	// RoundChanges mirrors the objects whose watch events arrived since the last round.
	RoundChanges = "changes"
)

// MirrorRounds counts the successful rounds of mirroring at the active site, by scope.
var MirrorRounds = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "deich_mirror_rounds_total",
	Help: "Successful rounds of mirroring a SharedService at the active site: full (every object) or changes (the objects whose watch events arrived).",
}, []string{"namespace", "service", "scope"})

// CopiesRendered counts the copies the active site rendered for the standby. A full round
// renders only the copies whose source, service, objective or copy at the standby changed
// since the copy was last seen current there, so at steady state it stays flat.
var CopiesRendered = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "deich_copies_rendered_total",
	Help: "Copies of a SharedService's objects the active site rendered for the standby; a full round of an unchanged service renders none.",
}, []string{"namespace", "service"})

// ChangePropagation is how long a round of changed objects took from the watch that reported
// the first of its changes to its copies written or pruned at the standby: Deich's part of an
// edit's way to the standby, without the watch's delivery from the source's API server.
var ChangePropagation = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "deich_change_propagation_seconds",
	Help:    "Time from a watch reporting a change of a selected object or of a copy to the copies written or pruned at the standby (peer), for rounds of changed objects.",
	Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
}, []string{"peer", "site"})

// Outcomes of a lease write, the values of LeaseWriteDuration's label outcome.
const (
	// LeaseWriteOK is a write that the arbiter committed.
	LeaseWriteOK = "ok"
	// LeaseWriteConflict is a compare-and-swap that failed: the copy had changed.
	LeaseWriteConflict = "conflict"
	// LeaseWriteError is a write whose outcome is unknown: it failed or timed out.
	LeaseWriteError = "error"
)

// LeaseWriteDuration is how long the lease keeper's writes of a service's copies take, from
// the decision to send until the answer: the time a renewal takes, batching included.
var LeaseWriteDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "deich_lease_write_duration_seconds",
	Help:    "Time from sending a write of a copy of a service's lease until its answer, by arbiter and outcome (ok, conflict, error).",
	Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
}, []string{"site", "arbiter", "outcome"})

// LeaseRecordWrites counts the writes of shared lease records this site sent to an arbiter's
// API server: what the services' writes of their copies (LeaseWriteDuration) cost the API
// server once batched.
var LeaseRecordWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "deich_lease_record_writes_total",
	Help: "Writes (create, update, delete) of shared lease records sent to an arbiter's API server, by outcome (ok, conflict, error).",
}, []string{"site", "arbiter", "outcome"})

func init() {
	ctrlmetrics.Registry.MustRegister(
		ChangePropagation,
		LeaseWriteDuration,
		LeaseRecordWrites,
		LeaseRemaining,
		Serving,
		Fenced,
		Failovers,
		RecoverySeconds,
		RecoverySlowerThanRTO,
		PeerReachable,
		PeerReady,
		PeerHeartbeatLatency,
		PeerHeartbeatFailures,
		ReplicationLag,
		MirroredObjects,
		SyncErrors,
		EgressDenials,
		EgressWithdrawals,
		EgressHeldObjects,
		HealthCheckUp,
		HealthProbes,
		MirrorRounds,
		CopiesRendered,
		PeerCredentialsExpiry,
		DrillFailed,
		DrillLastRun,
		Drills,
	)
}

// ForgetDrillSchedule removes the series of a deleted DrillSchedule.
func ForgetDrillSchedule(namespace, schedule string) {
	labels := prometheus.Labels{"namespace": namespace, "schedule": schedule}
	DrillFailed.DeletePartialMatch(labels)
	DrillLastRun.DeletePartialMatch(labels)
	Drills.DeletePartialMatch(labels)
}

// ForgetService removes the series of a deleted SharedService.
func ForgetService(namespace, service string) {
	labels := prometheus.Labels{"namespace": namespace, "service": service}
	ReplicationLag.DeletePartialMatch(labels)
	MirroredObjects.DeletePartialMatch(labels)
	SyncErrors.DeletePartialMatch(labels)
	HealthCheckUp.DeletePartialMatch(labels)
	MirrorRounds.DeletePartialMatch(labels)
	CopiesRendered.DeletePartialMatch(labels)
	LeaseRemaining.DeletePartialMatch(labels)
	Serving.DeletePartialMatch(labels)
	Fenced.DeletePartialMatch(labels)
	RecoverySeconds.DeletePartialMatch(labels)
	RecoverySlowerThanRTO.DeletePartialMatch(labels)
}

// ForgetPeer removes the series of a deleted peer, so dashboards do not show stale values.
func ForgetPeer(peer string) {
	labels := prometheus.Labels{"peer": peer}
	PeerReachable.DeletePartialMatch(labels)
	PeerReady.DeletePartialMatch(labels)
	PeerHeartbeatLatency.DeletePartialMatch(labels)
	PeerHeartbeatFailures.DeletePartialMatch(labels)
	EgressHeldObjects.DeletePartialMatch(labels)
	PeerCredentialsExpiry.DeletePartialMatch(labels)
	ChangePropagation.DeletePartialMatch(labels)
}
