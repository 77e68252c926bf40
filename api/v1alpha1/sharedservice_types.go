package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SharedService condition types. Ready summarizes them.
const (
	// ServiceConditionSynced is True when the standby holds a current copy of every selected
	// object.
	ServiceConditionSynced = "Synced"
	// ServiceConditionHealthy is True when the health checks of the active site pass.
	ServiceConditionHealthy = "Healthy"
	// ServiceConditionObjectivesMet is True when the service meets its RecoveryObjective: the
	// standby's copy is younger than the RPO and a failover could complete within the RTO.
	ServiceConditionObjectivesMet = "ObjectivesMet"
	// ServiceConditionQuorum is True when the service's failover decides on the quorum lease
	// with a usable witness, so that losing any one site or link does not stop a healthy
	// active site (reason WitnessReady). It is False in two-site mode and while the witness
	// named in spec.witnessSite cannot be used; the reason and message say which.
	ServiceConditionQuorum = "Quorum"
)

// SharedService condition reasons.
const (
	// ServiceReasonSynced means every selected object is mirrored and current at the standby.
	ServiceReasonSynced = "Synced"
	// ServiceReasonWaitingForCaches means the manager is still listing the selected objects.
	ServiceReasonWaitingForCaches = "WaitingForCaches"
	// ServiceReasonObjectiveNotFound means the referenced RecoveryObjective does not exist.
	ServiceReasonObjectiveNotFound = "ObjectiveNotFound"
	// ServiceReasonResourceNotMirrorable means spec.resources names a kind that may not leave
	// a site, that this cluster does not serve, or that is not namespaced.
	ServiceReasonResourceNotMirrorable = "ResourceNotMirrorable"
	// ServiceReasonPeerNotConnected means there is no connection to the standby site: no
	// ReplicationPeer for it, or one that is not Ready.
	ServiceReasonPeerNotConnected = "PeerNotConnected"
	// ServiceReasonKindMissingAtPeer means the standby does not serve a mirrored kind (its CRD
	// is not installed there).
	ServiceReasonKindMissingAtPeer = "KindMissingAtPeer"
	// ServiceReasonRenderFailed means an override could not be applied; nothing was changed at
	// the standby.
	ServiceReasonRenderFailed = "RenderFailed"
	// ServiceReasonApplyFailed means the standby's API server rejected a copy or could not be
	// reached; the last good copies stay in place.
	ServiceReasonApplyFailed = "ApplyFailed"
	// ServiceReasonPeerForbidden means the standby does not let this site's identity there do
	// everything mirroring needs in the service's namespace (its administrators granted write
	// access in other namespaces only, or not for every kind): the message names the namespace,
	// the peer and what is refused. A round the standby would refuse in part is not started, so
	// the copies there stay as they were.
	ServiceReasonPeerForbidden = "PeerForbidden"
	// ServiceReasonEgressDenied means the egress policy of the standby's ReplicationPeer keeps
	// some of the selected objects (or the SharedService itself) at this site: they are not
	// sent, their copies at the standby are deleted, and the standby is not a complete copy.
	ServiceReasonEgressDenied = "EgressDenied"
	// ServiceReasonMirroredFromActive means this site is the standby and holds copies pushed by
	// the active site.
	ServiceReasonMirroredFromActive = "MirroredFromActive"
	// ServiceReasonCopyTooOld means the standby's copy is older than the RPO.
	ServiceReasonCopyTooOld = "CopyOlderThanRPO"
	// ServiceReasonPromotionInvalid means a stage of spec.promotion cannot work (its readyWhen
	// does not compile, its target is not a valid selector): a promotion would stop at that
	// stage, so the RTO cannot be met.
	ServiceReasonPromotionInvalid = "PromotionInvalid"
	// ServiceReasonRecoverySlowerThanRTO means the last promotion of the service at this site,
	// within the last hour, took longer than the RTO.
	ServiceReasonRecoverySlowerThanRTO = "RecoverySlowerThanRTO"
	// ServiceReasonPromotionStageTimedOut means a promotion stopped at a stage that did not
	// become ready within its timeout.
	ServiceReasonPromotionStageTimedOut = "PromotionStageTimedOut"
	// ServiceReasonPromoting means this site promotes itself: it mirrors to the partner once
	// its promotion completes.
	ServiceReasonPromoting = "Promoting"
	// ServiceReasonWithinRPO means the standby's copy is younger than the RPO.
	ServiceReasonWithinRPO = "WithinRPO"
	// ServiceReasonNotParticipating means this site is neither the primary nor the standby
	// site of the service; the manager leaves it alone.
	ServiceReasonNotParticipating = "NotParticipating"
	// ServiceReasonNoHealthChecks means the service declares no health checks.
	ServiceReasonNoHealthChecks = "NoHealthChecks"
	// ServiceReasonChecksPassing means every check that judges the active site passes.
	ServiceReasonChecksPassing = "ChecksPassing"
	// ServiceReasonChecksFailing means a check that judges the active site fails.
	ServiceReasonChecksFailing = "ChecksFailing"
	// ServiceReasonChecksUnknown means a check could not be evaluated and none failed.
	ServiceReasonChecksUnknown = "ChecksUnknown"
	// ServiceReasonFailoverRecommended means the active site's checks failed failureThreshold
	// times in a row and the failover mode is Manual: a Switchover should move the service.
	ServiceReasonFailoverRecommended = "FailoverRecommended"
	// ServiceReasonFenced means this site holds the lease but could not renew it in time, so
	// it stopped serving.
	ServiceReasonFenced = "Fenced"
	// ServiceReasonFailingOver means a promotion is in progress.
	ServiceReasonFailingOver = "FailingOver"
	// ServiceReasonLeaseUnknown means this site could not read the service's lease yet.
	ServiceReasonLeaseUnknown = "LeaseUnknown"
	// ServiceReasonTwoSiteMode means the service has no witnessSite: the active site serves
	// only while it holds the copy of the lease at the standby's cluster, so losing that site
	// or the link to it stops the service at the active site. Set spec.witnessSite to a third
	// site to survive that.
	ServiceReasonTwoSiteMode = "TwoSiteMode"
	// ServiceReasonWitnessNotFound means no ReplicationPeer at this site has the witnessSite
	// as its spec.site.
	ServiceReasonWitnessNotFound = "WitnessNotFound"
	// ServiceReasonNotAWitness means the ReplicationPeer for the witnessSite has role Partner;
	// a witness needs a ReplicationPeer with role Witness.
	ServiceReasonNotAWitness = "NotAWitness"
	// ServiceReasonWitnessNotReady means the ReplicationPeer for the witnessSite is not Ready:
	// the witness is unreachable or refuses this site the Leases it needs.
	ServiceReasonWitnessNotReady = "WitnessNotReady"
	// ServiceReasonWitnessReady means the ReplicationPeer for the witnessSite is a Ready
	// witness: the service's lease has a copy there, and a site serves only while it holds a
	// majority of the three copies.
	ServiceReasonWitnessReady = "WitnessReady"
)

// SharedService event reasons.
const (
	// ServiceEventSyncFailed is recorded when mirroring starts failing.
	ServiceEventSyncFailed = "SyncFailed"
	// ServiceEventSynced is recorded when mirroring succeeds again, or for the first time.
	ServiceEventSynced = "Synced"
	// ServiceEventObjectivesMissed is recorded when the standby's copy grows older than the RPO.
	ServiceEventObjectivesMissed = "RPOBreached"
	// ServiceEventObjectivesMet is recorded when the copy is within the RPO again.
	ServiceEventObjectivesMet = "RPOMet"
	// ServiceEventHealthCheckFailing is recorded when a health check stops passing.
	ServiceEventHealthCheckFailing = "HealthCheckFailing"
	// ServiceEventHealthCheckPassing is recorded when a failing health check passes again.
	ServiceEventHealthCheckPassing = "HealthCheckPassing"
	// ServiceEventCopiesDeleted is recorded when a deleted service's copies were removed from
	// the standby.
	ServiceEventCopiesDeleted = "CopiesDeleted"
	// ServiceEventCopiesRetained is recorded when a service was deleted at a site that does not
	// serve it: the objects at the partner, which serves it, are left as they are.
	ServiceEventCopiesRetained = "CopiesRetained"
	// ServiceEventPeerForbidden is recorded when the standby starts refusing this site the
	// writes mirroring needs in the service's namespace.
	ServiceEventPeerForbidden = "PeerForbidden"
	// ServiceEventEgressDenied is recorded when the egress policy of the standby's
	// ReplicationPeer starts keeping objects of the service at this site, or keeps others.
	ServiceEventEgressDenied = "EgressDenied"
	// ServiceEventEgressWithdrawn is recorded when copies at the standby were deleted because
	// the egress policy no longer lets their objects leave.
	ServiceEventEgressWithdrawn = "EgressWithdrawn"
	// ServiceEventFenced is recorded when this site switches its objects to standby form
	// because it may not serve: it could not renew the lease, handed the service over, or
	// came back after another site took the lease.
	ServiceEventFenced = "Fenced"
	// ServiceEventServing is recorded when this site, holding the lease, switches its objects
	// to their active form.
	ServiceEventServing = "Serving"
	// ServiceEventFailingOver is recorded when this site starts to promote itself.
	ServiceEventFailingOver = "FailingOver"
	// ServiceEventFailedOver is recorded when a promotion completed: this site serves.
	ServiceEventFailedOver = "FailedOver"
	// ServiceEventPromotionStageStarted is recorded when a promotion switches one of
	// spec.promotion.stages to its active form.
	ServiceEventPromotionStageStarted = "PromotionStageStarted"
	// ServiceEventPromotionStageReady is recorded when a stage of a promotion became ready.
	ServiceEventPromotionStageReady = "PromotionStageReady"
	// ServiceEventPromotionStageTimedOut is recorded (Warning) when a stage did not become
	// ready within its timeout: the promotion stops there until it does.
	ServiceEventPromotionStageTimedOut = "PromotionStageTimedOut"
	// ServiceEventRecoverySlowerThanRTO is recorded (Warning) when a promotion completed
	// later after the failure than the objective's RTO allows.
	ServiceEventRecoverySlowerThanRTO = "RecoverySlowerThanRTO"
	// ServiceEventHandedOver is recorded when the active site released the lease after
	// fencing itself, so the standby may promote without waiting for the lease to expire.
	ServiceEventHandedOver = "HandedOver"
	// ServiceEventFailoverRecommended is recorded when the failover mode is Manual and the
	// active site's checks failed failureThreshold times in a row.
	ServiceEventFailoverRecommended = "FailoverRecommended"
	// ServiceEventLeaseLost is recorded when another site took the lease this site held.
	ServiceEventLeaseLost = "LeaseLost"
	// ServiceEventFailbackStarted is recorded when the primary site, back and Ready as
	// standby for the stabilization window, creates a Switchover to move the service back.
	ServiceEventFailbackStarted = "FailbackStarted"
	// ServiceEventWitnessUnusable is recorded when the Quorum condition turns to
	// WitnessNotFound, NotAWitness or WitnessNotReady: the service named a witness that this
	// site cannot use.
	ServiceEventWitnessUnusable = "WitnessUnusable"
	// ServiceEventWitnessReady is recorded when the witness becomes usable.
	ServiceEventWitnessReady = "WitnessReady"
)

// Labels and annotations Deich puts on the SharedService it mirrors to the standby.
const (
	// AnnotationLastSyncTime on the standby's SharedService says when the active site last
	// confirmed the standby's copy complete and current (RFC 3339).
	AnnotationLastSyncTime = "resilience.deich.io/last-sync-time"
	// SharedServiceFinalizer lets the active site remove the copies from the standby before the
	// SharedService goes away.
	SharedServiceFinalizer = "resilience.deich.io/mirror-cleanup"
)

// Phase is where a SharedService stands, as one word for `kubectl get`.
// +kubebuilder:validation:Enum=Pending;Protected;Degraded;FailingOver;FailedOver;Fenced;Error
type Phase string

const (
	// PhasePending means the service has not been mirrored yet.
	PhasePending Phase = "Pending"
	// PhaseProtected means the active site serves, the standby holds a copy within the RPO, the peer
	// is reachable and the lease is held.
	PhaseProtected Phase = "Protected"
	// PhaseDegraded means the service runs but is not fully protected (peer unreachable, copy older
	// than the RPO, a health check failing).
	PhaseDegraded Phase = "Degraded"
	// PhaseFailingOver means the standby is being promoted.
	PhaseFailingOver Phase = "FailingOver"
	// PhaseFailedOver means the service serves from its standby site after a failover.
	PhaseFailedOver Phase = "FailedOver"
	// PhaseFenced means this site stopped serving the service (it lost the lease, or came back after
	// a failover) and waits as standby.
	PhaseFenced Phase = "Fenced"
	// PhaseError means the service cannot be handled as specified; the conditions say why.
	PhaseError Phase = "Error"
)

// Role is the part a site plays for one SharedService.
// +kubebuilder:validation:Enum=Active;Standby
type Role string

const (
	// RoleActive is the site that serves the service.
	RoleActive Role = "Active"
	// RoleStandby is the site that holds a mirror ready to take over.
	RoleStandby Role = "Standby"
)

// DeletionPolicy says what happens to the copies at the peer when a SharedService is deleted.
// +kubebuilder:validation:Enum=Delete;Retain
type DeletionPolicy string

const (
	// DeletionPolicyDelete removes the copies from the peer.
	DeletionPolicyDelete DeletionPolicy = "Delete"
	// DeletionPolicyRetain leaves the copies at the peer, unmanaged.
	DeletionPolicyRetain DeletionPolicy = "Retain"
)

// ObjectiveReference names a cluster-scoped RecoveryObjective.
type ObjectiveReference struct {
	// name of the RecoveryObjective.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ResourceKind names a kind of object by API group and kind, without version: the version
// the API server prefers is used.
//
// +kubebuilder:validation:XValidation:rule="!has(self.group) || !(self.group in ['rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'admissionregistration.k8s.io', 'apiregistration.k8s.io', 'certificates.k8s.io', 'authentication.k8s.io', 'authorization.k8s.io', 'coordination.k8s.io', 'resilience.deich.io'])",message="objects of this API group are cluster-local or security-sensitive and are never mirrored"
// +kubebuilder:validation:XValidation:rule="!((!has(self.group) || size(self.group) == 0) && self.kind in ['Pod', 'Event', 'Node', 'Namespace', 'PersistentVolume', 'Endpoints', 'ComponentStatus', 'Binding'])",message="this core kind is cluster-local and is never mirrored; mirror the workload that creates it instead"
type ResourceKind struct {
	// group is the API group, empty for the core group (ConfigMap, Secret, Service, …).
	// Examples: "apps", "networking.k8s.io", "postgresql.cnpg.io".
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Group string `json:"group,omitempty"`

	// kind is the object kind, for example "Deployment".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Z][A-Za-z0-9]*$`
	Kind string `json:"kind"`
}

// HTTPCheck probes a URL.
type HTTPCheck struct {
	// url to request with GET, http or https, for example
	// "https://buergerkonto.example.de/healthz".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",message="url must be an absolute http:// or https:// URL"
	URL string `json:"url"`

	// expectedStatus is the HTTP status a healthy service answers with. Defaults to 200.
	// +optional
	// +kubebuilder:default=200
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=599
	ExpectedStatus int32 `json:"expectedStatus,omitempty"`

	// timeout for one request. Defaults to 2s; between 100ms and 1m.
	// +optional
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1m')",message="timeout must be between 100ms and 1m"
	Timeout metav1.Duration `json:"timeout,omitzero"`

	// caSecretRef names a Secret in the service's namespace whose key holds PEM CA
	// certificates to verify the server with, in addition to the system roots.
	// +optional
	CASecretRef *LocalSecretKeyReference `json:"caSecretRef,omitempty"`
}

// LocalSecretKeyReference points at one key of a Secret in the same namespace.
type LocalSecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// TCPCheck opens a TCP connection.
type TCPCheck struct {
	// address to connect to, as host:port, for example "db.example.de:5432".
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=260
	// +kubebuilder:validation:Pattern=`^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$`
	Address string `json:"address"`

	// timeout for the connection. Defaults to 2s; between 100ms and 1m.
	// +optional
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('100ms') && duration(self) <= duration('1m')",message="timeout must be between 100ms and 1m"
	Timeout metav1.Duration `json:"timeout,omitzero"`
}

// WorkloadKind is a kind of workload whose ready replicas a WorkloadCheck counts.
// +kubebuilder:validation:Enum=Deployment;StatefulSet
type WorkloadKind string

// WorkloadCheck counts the ready replicas of a workload of the service at the checked site.
type WorkloadCheck struct {
	// kind of the workload: Deployment or StatefulSet.
	// +required
	Kind WorkloadKind `json:"kind"`

	// name of the workload in the service's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// minReady is how many replicas must be ready for the check to pass. Defaults to 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	MinReady int32 `json:"minReady,omitempty"`
}

// HealthCheck is one way to tell whether a site serves the service. Exactly one of http, tcp
// and workload is set.
//
// +kubebuilder:validation:XValidation:rule="[has(self.http), has(self.tcp), has(self.workload)].filter(x, x).size() == 1",message="a health check needs exactly one of http, tcp or workload"
// +kubebuilder:validation:XValidation:rule="!has(self.workload) || has(self.site)",message="a workload check needs site: it counts replicas at one site"
type HealthCheck struct {
	// name identifies the check in status, events and metrics.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// site, when set, limits the check to that site: it judges that site only while it is
	// active. Without site, the check probes the service as its users reach it (for example a
	// shared hostname) and always judges the active site.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Site string `json:"site,omitempty"`

	// http probes a URL.
	// +optional
	HTTP *HTTPCheck `json:"http,omitempty"`

	// tcp opens a TCP connection.
	// +optional
	TCP *TCPCheck `json:"tcp,omitempty"`

	// workload counts ready replicas of a Deployment or StatefulSet.
	// +optional
	Workload *WorkloadCheck `json:"workload,omitempty"`
}

// PatchTarget selects the objects a patch applies to, as a kustomize patch target does.
type PatchTarget struct {
	// group of the objects to patch.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// version of the objects to patch.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Version string `json:"version,omitempty"`

	// kind of the objects to patch.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind,omitempty"`

	// name of the object to patch; a regular expression, as in kustomize.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// labelSelector selects the objects to patch by label, for example "tier=frontend".
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	LabelSelector string `json:"labelSelector,omitempty"`

	// annotationSelector selects the objects to patch by annotation.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	AnnotationSelector string `json:"annotationSelector,omitempty"`
}

// Patch is a kustomize patch: a strategic-merge patch (a partial object, YAML or JSON) or a
// JSON 6902 patch (a list of operations, which needs a target).
//
// +kubebuilder:validation:XValidation:rule="has(self.target) || !(self.patch.startsWith('[') || self.patch.startsWith('-'))",message="a JSON 6902 patch (a list of operations) needs target"
type Patch struct {
	// patch is the patch document.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	Patch string `json:"patch"`

	// target selects the objects the patch applies to. A strategic-merge patch without target
	// applies to the object it names.
	// +optional
	Target *PatchTarget `json:"target,omitempty"`
}

// Override changes the copy of the service rendered for one site, one role, or one role at one
// site — for example a different hostname per state, or a database switched to replica mode
// while standby.
//
// +kubebuilder:validation:XValidation:rule="has(self.site) || has(self.role)",message="an override needs site, role or both"
type Override struct {
	// site the override applies to; all sites when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Site string `json:"site,omitempty"`

	// role the override applies to: Active or Standby; both when empty.
	// +optional
	Role Role `json:"role,omitempty"`

	// patches to apply, in order, after the standby form.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	Patches []Patch `json:"patches"`
}

// SharedServiceSpec declares one service shared between two sites.
//
// +kubebuilder:validation:XValidation:rule="self.primarySite != self.standbySite",message="primarySite and standbySite must be different sites",fieldPath=".standbySite"
// +kubebuilder:validation:XValidation:rule="!has(self.witnessSite) || (self.witnessSite != self.primarySite && self.witnessSite != self.standbySite)",message="witnessSite must be a third site, different from primarySite and standbySite",fieldPath=".witnessSite"
// +kubebuilder:validation:XValidation:rule="!has(self.healthChecks) || self.healthChecks.all(h, !has(h.site) || h.site == self.primarySite || h.site == self.standbySite)",message="a health check's site must be primarySite or standbySite"
// +kubebuilder:validation:XValidation:rule="!has(self.overrides) || self.overrides.all(o, !has(o.site) || o.site == self.primarySite || o.site == self.standbySite)",message="an override's site must be primarySite or standbySite"
type SharedServiceSpec struct {
	// primarySite is the site that normally serves the service. Immutable: use a Switchover to
	// move the service.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="primarySite is immutable; use a Switchover to move the service"
	PrimarySite string `json:"primarySite"`

	// standbySite is the partner site that mirrors the service and takes over when the primary
	// site fails. A ReplicationPeer for it must exist at the primary site. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="standbySite is immutable; create a new SharedService to pair other sites"
	StandbySite string `json:"standbySite"`

	// witnessSite is a third site that breaks ties for this service: it holds one copy of the
	// service's lease beside the two partners', so that a site serves only while it holds its
	// own copy and a majority of the three, and losing any one site or link never stops a
	// healthy active site. It needs a ReplicationPeer with role Witness at both partner sites.
	// Without witnessSite the service runs in two-site mode: the active site serves only while
	// it holds the copy at the standby's cluster, so losing that site, or the link to it, stops
	// the service at the active site (condition Quorum, reason TwoSiteMode). It may be added to
	// or removed from a service that is protected.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	WitnessSite string `json:"witnessSite,omitempty"`

	// recoveryObjectiveRef names the RecoveryObjective (RPO, RTO, failover policy) the service
	// must meet.
	// +required
	RecoveryObjectiveRef ObjectiveReference `json:"recoveryObjectiveRef"`

	// selector selects, by label, the objects of this namespace that make up the service.
	// +required
	Selector metav1.LabelSelector `json:"selector"`

	// resources lists the kinds of objects that are mirrored; only objects of these kinds that
	// match the selector are. Secrets are mirrored only when listed here.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +kubebuilder:validation:XValidation:rule="self.all(r, self.exists_one(s, s.kind == r.kind && (has(s.group) ? s.group : '') == (has(r.group) ? r.group : '')))",message="resources must not list a kind twice"
	Resources []ResourceKind `json:"resources"`

	// healthChecks tell whether the active site serves the service. Checks without site judge
	// whichever site is active; checks with site judge that site while it is active.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	HealthChecks []HealthCheck `json:"healthChecks,omitempty"`

	// overrides change the rendered copy per site and/or role, applied after the standby form.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Overrides []Override `json:"overrides,omitempty"`

	// deletionPolicy says what happens to the copies at the peer when this SharedService is
	// deleted: Delete (default) removes them, Retain leaves them in place, unmanaged.
	// +optional
	// +kubebuilder:default=Delete
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// promotion orders how a site that takes the service over switches its objects to their
	// active form: for example the database first, the application once the database reports
	// itself primary, DNS last. Without it every object is switched at once.
	// +optional
	Promotion *Promotion `json:"promotion,omitempty"`
}

// Promotion orders the switch of a service's objects to their active form.
type Promotion struct {
	// stages are switched to their active form in order, each once every stage before it is
	// ready; the objects in no stage are switched last. A fence switches them back to their
	// standby form in reverse order, the objects in no stage first, without waiting for any
	// readiness, so a fence takes effect as fast as it would without stages. An object belongs
	// to the first stage whose target selects it.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	Stages []PromotionStage `json:"stages"`
}

// PromotionStage is one step of a promotion.
//
// +kubebuilder:validation:XValidation:rule="has(self.target.kind) || has(self.target.name) || has(self.target.labelSelector) || has(self.target.annotationSelector)",message="a stage's target must name a kind, a name, a labelSelector or an annotationSelector: an empty target would put every object in the stage",fieldPath=".target"
type PromotionStage struct {
	// name of the stage, shown in status and events.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// target selects the stage's objects among the service's, as a kustomize patch target
	// does: group, version, kind and name (regular expressions), labelSelector and
	// annotationSelector.
	// +required
	Target PatchTarget `json:"target"`

	// readyWhen is a CEL expression over each of the stage's objects as self, for example
	// "self.status.phase == 'Cluster in healthy state'" or
	// "has(self.status.readyReplicas) && self.status.readyReplicas >= 1". The stage is ready
	// when it is true for every object of the stage; a field that is not set yet makes it
	// false. Without it the stage is ready once its objects are in their active form.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	ReadyWhen string `json:"readyWhen,omitempty"`

	// replicationLag is a CEL expression over each of the stage's objects as self, read at the
	// site that serves, that says how far the data behind the object is behind: a duration
	// ("duration(self.status.lag)"), or when the data was last replicated, a timestamp
	// ("timestamp(self.status.lastSyncTime)" for a csi-addons VolumeReplication). The service's
	// status.replicationLag, its ObjectivesMet condition and the RPO gate of an automatic
	// promotion then use the larger of the copies' age and the data's lag.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	ReplicationLag string `json:"replicationLag,omitempty"`

	// handoff carries a value from the stage's object at the site that hands the service over
	// to the same object at the site that takes it over, in a planned move (a Switchover): for
	// a CloudNativePG Cluster, the demoted primary's status.demotionToken becomes the replica's
	// spec.replica.promotionToken, so that it is promoted without a rebuild of the old
	// primary. In a failover, with nobody to hand over, the field is removed instead, and
	// status.promotion records the promotion as one without a handoff.
	// +optional
	Handoff *StageHandoff `json:"handoff,omitempty"`

	// timeout is how long the stage may take to become ready once its objects are in their
	// active form. A stage that is not ready by then stops the promotion there: later stages
	// stay in standby form, the site keeps serving what it switched, and the promotion goes on
	// once the stage becomes ready. Default 5m.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="timeout must be between 1s and 24h"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
}

// StageHandoff carries a value between the two sites' copies of an object in a planned move.
type StageHandoff struct {
	// from is a CEL expression over the object at the site that hands the service over, as
	// self, that gives the value as a string, for example "self.status.demotionToken". The
	// stage waits, within its timeout, until it gives a string that is not empty; after the
	// timeout it is promoted without the handoff.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	From string `json:"from"`

	// to is the field of the object at the site that takes the service over that receives the
	// value, as a JSON pointer, for example "/spec/replica/promotionToken".
	// +required
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^(/[^/]+)+$`
	To string `json:"to"`
}

// StagePhase is where one stage of a promotion stands.
// +kubebuilder:validation:Enum=Pending;Promoting;Ready;TimedOut
type StagePhase string

const (
	// StagePending means the stage waits for the stages before it.
	StagePending StagePhase = "Pending"
	// StagePromoting means the stage's objects are being switched, or wait to become ready.
	StagePromoting StagePhase = "Promoting"
	// StageReady means the stage's objects are in their active form and ready.
	StageReady StagePhase = "Ready"
	// StageTimedOut means the stage did not become ready within its timeout; the promotion waits
	// for it.
	StageTimedOut StagePhase = "TimedOut"
)

// PromotionStatus is the progress of this site's latest promotion through
// spec.promotion.stages.
type PromotionStatus struct {
	// epoch is the lease epoch of the claim the promotion serves on.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`

	// startedAt is when the first stage was switched.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// completedAt is when the last stage, and the objects in no stage, were in their active
	// form and ready.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// stages, in order.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	Stages []PromotionStageStatus `json:"stages,omitempty"`
}

// PromotionStageStatus is the progress of one stage.
type PromotionStageStatus struct {
	// name of the stage.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// phase: Pending, Promoting, Ready or TimedOut.
	// +optional
	Phase StagePhase `json:"phase,omitempty"`

	// objects counts the service's objects at this site that belong to the stage.
	// +optional
	Objects int32 `json:"objects,omitempty"`

	// startedAt is when the stage's objects were first seen in their active form.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// readyAt is when the stage was first seen ready.
	// +optional
	ReadyAt *metav1.Time `json:"readyAt,omitempty"`

	// handoff says, for a stage with a handoff, whether its objects received the value from
	// the site that handed the service over, or why not (a failover, or no value within the
	// timeout).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Handoff string `json:"handoff,omitempty"`

	// message says what the stage waits for, such as the readiness rule that is still false
	// and for which object.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// MirroredResource is one object mirrored to the peer.
type MirroredResource struct {
	// group of the object; empty for the core group.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// kind of the object.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`

	// name of the object.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// hash is the content hash of the rendered copy at the peer. Like lastSyncTime it is
	// stored with the status's next write: at least once in five minutes while the objectives
	// are met, so after an edit it may name the copy before it.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Hash string `json:"hash,omitempty"`
}

// MirroredResources counts and lists the mirrored objects.
type MirroredResources struct {
	// count is how many objects are mirrored.
	// +optional
	Count int32 `json:"count,omitempty"`

	// items lists the mirrored objects, sorted by kind and name; at most 256 are listed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	Items []MirroredResource `json:"items,omitempty"`

	// truncated is true when more objects are mirrored than items lists.
	// +optional
	Truncated bool `json:"truncated,omitempty"`
}

// FailoverRecord describes one move of the service from one site to another.
type FailoverRecord struct {
	// from is the site that served before.
	// +required
	// +kubebuilder:validation:MaxLength=63
	From string `json:"from"`

	// to is the site that serves after.
	// +required
	// +kubebuilder:validation:MaxLength=63
	To string `json:"to"`

	// reason says why: the failed health checks, or the Switchover that asked for it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`

	// detectedAt is when the failure was detected (or the Switchover started).
	// +optional
	DetectedAt *metav1.Time `json:"detectedAt,omitempty"`

	// completedAt is when the new site served.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// recoveryTime is how long the service was without a serving site, to compare with the
	// RTO.
	// +optional
	RecoveryTime *metav1.Duration `json:"recoveryTime,omitempty"`

	// epoch is the lease epoch the new site served with; it identifies the move in both
	// sites' histories.
	// +optional
	Epoch int64 `json:"epoch,omitempty"`

	// requestedBy is, for a move a Switchover asked for, the user who created it (its
	// status.requestedBy).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy,omitempty"`
}

// MovedAt is when the move completed, or, while it runs, when the failure (or the request) that
// started it was detected; zero when neither is recorded. Histories are ordered by it.
func (r FailoverRecord) MovedAt() time.Time {
	switch {
	case r.CompletedAt != nil:
		return r.CompletedAt.Time
	case r.DetectedAt != nil:
		return r.DetectedAt.Time
	}
	return time.Time{}
}

// LeaseStatus shows the lease that decides which site may serve, as this site last read its
// copies: entries of the shared records (coordination.k8s.io/v1 Leases) in the namespace
// deich-leases at the partners' clusters and in the witness's lease namespace at the witness.
// The fields other than storedAt and epoch describe the copy with the highest epoch.
type LeaseStatus struct {
	// holder is the site that holds the lease; empty when it was released.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Holder string `json:"holder,omitempty"`

	// storedAt lists, comma-separated, the sites whose clusters store a copy of the lease:
	// in two-site mode the standby's, with a witness both partners' and the witness's.
	// +optional
	// +kubebuilder:validation:MaxLength=191
	StoredAt string `json:"storedAt,omitempty"`

	// epoch is the fencing token of the holder's claim. It increases with every change of
	// holder and is stamped on the objects promoted under it (annotation
	// resilience.deich.io/epoch), so that a data layer can refuse a stale primary.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Epoch int64 `json:"epoch,omitempty"`

	// renewTime is when the holder last renewed the lease, by the holder's clock.
	// +optional
	RenewTime *metav1.MicroTime `json:"renewTime,omitempty"`

	// expiryTime is renewTime plus the lease duration, by the holder's clock. The holder fences
	// itself max-clock-skew before it; the standby promotes no earlier than max-clock-skew
	// after it, measured on its own clock from when it saw the renewal.
	// +optional
	ExpiryTime *metav1.MicroTime `json:"expiryTime,omitempty"`

	// transitions counts how often the holder changed.
	// +optional
	Transitions int32 `json:"transitions,omitempty"`

	// observedTime is when this site last read the lease.
	// +optional
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`

	// message says what this site decided from the lease, in a sentence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// ObjectiveSummary repeats the objective's targets in the service's status, so that
// `kubectl get sharedservices` shows them beside the measured values.
type ObjectiveSummary struct {
	// rpo of the referenced RecoveryObjective.
	// +optional
	RPO *metav1.Duration `json:"rpo,omitempty"`

	// rto of the referenced RecoveryObjective.
	// +optional
	RTO *metav1.Duration `json:"rto,omitempty"`
}

// HealthStatus is the outcome of a health check.
// +kubebuilder:validation:Enum=Healthy;Unhealthy;Unknown
type HealthStatus string

const (
	// HealthHealthy means the check passed.
	HealthHealthy HealthStatus = "Healthy"
	// HealthUnhealthy means the check ran and failed.
	HealthUnhealthy HealthStatus = "Unhealthy"
	// HealthUnknown means the check could not run (for example the checked site's API server
	// is unreachable). It never counts as healthy.
	HealthUnknown HealthStatus = "Unknown"
)

// HealthCheckStatus is the running record of one health check at this site. The checks run
// every probeInterval apart from the reconciles; this record is written when a result changes
// the status, or the count of failures up to failureThreshold, and at every resync.
type HealthCheckStatus struct {
	// name of the check in spec.healthChecks.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// status of the last probe: Healthy, Unhealthy or Unknown.
	// +required
	Status HealthStatus `json:"status"`

	// consecutiveFailures counts the probes that were not Healthy since the last Healthy one,
	// as of lastProbeTime.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// lastProbeTime is when the probe this record reports ran.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`

	// lastTransitionTime is when status last changed.
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`

	// latency of the last probe.
	// +optional
	Latency *metav1.Duration `json:"latency,omitempty"`

	// message says what the last probe found, for example "GET https://…/healthz: status 500,
	// want 200".
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// SharedServiceStatus is what this site's manager knows of the service.
type SharedServiceStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Synced, Healthy, ObjectivesMet, Quorum (whether a usable witness breaks
	// ties, or the service runs in two-site mode) and Ready, which summarizes them.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// activeSite is the site that serves the service now.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	ActiveSite string `json:"activeSite,omitempty"`

	// role is the part this site plays: Active or Standby.
	// +optional
	Role Role `json:"role,omitempty"`

	// phase is where the service stands, in one word.
	// +optional
	Phase Phase `json:"phase,omitempty"`

	// objective repeats the targets of the referenced RecoveryObjective.
	// +optional
	Objective *ObjectiveSummary `json:"objective,omitempty"`

	// lastSyncTime is when the standby last held a complete, current copy, as of the last write
	// of the status. A status in which only clocks moved is written once in five minutes while
	// ObjectivesMet is True (the condition is written as soon as it changes), and once per half
	// RPO while it is not.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// replicationLag is how far the standby's copy was behind the active site when the status
	// was last written; compare with the RPO.
	// +optional
	ReplicationLag *metav1.Duration `json:"replicationLag,omitempty"`

	// mirroredResources counts and lists the objects mirrored to the standby.
	// +optional
	MirroredResources *MirroredResources `json:"mirroredResources,omitempty"`

	// healthChecks records the checks that judge the active site, as this site runs them
	// every probeInterval.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	HealthChecks []HealthCheckStatus `json:"healthChecks,omitempty"`

	// lease is the service's lease as this site last read it.
	// +optional
	Lease *LeaseStatus `json:"lease,omitempty"`

	// quorum is how many copies of the service's lease this site holds, of how many decide who
	// serves, as "held/arbiters": with a witness "3/3" or "2/3" at the active site; in two-site
	// mode "1/1" at the active site, which holds the copy at the standby's cluster, and "0/1"
	// at the standby. The count comes from the copies as this site last read them.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:Pattern=`^[0-9]+/[0-9]+$`
	Quorum string `json:"quorum,omitempty"`

	// promotion is the progress of this site's latest promotion through
	// spec.promotion.stages; set only for a service that declares stages.
	// +optional
	Promotion *PromotionStatus `json:"promotion,omitempty"`

	// lastFailover describes the most recent move between sites. While a promotion is in
	// progress it has no completedAt.
	// +optional
	LastFailover *FailoverRecord `json:"lastFailover,omitempty"`

	// failoverHistory lists the most recent moves between sites, newest first; at most 10. Each
	// site records the moves it served after and merges the other site's, so both show the
	// whole history of the service.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	FailoverHistory []FailoverRecord `json:"failoverHistory,omitempty"`
}

// SharedService is a service one state runs for both: the objects of this namespace that make
// it up (selected by label and kind), the two sites that share it, the objective it must meet
// and how to tell it is healthy. Deich mirrors it from the active site to the standby and
// promotes the standby when the active site fails. It may be applied at either site or at both.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=shsvc,categories=deich
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="a SharedService name must be at most 63 characters: it labels the service's copies"
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.activeSite`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Synced",type=string,JSONPath=`.status.conditions[?(@.type=="Synced")].status`
// +kubebuilder:printcolumn:name="Lag",type=string,JSONPath=`.status.replicationLag`
// +kubebuilder:printcolumn:name="RPO",type=string,JSONPath=`.status.objective.rpo`
// +kubebuilder:printcolumn:name="RTO",type=string,JSONPath=`.status.objective.rto`
// +kubebuilder:printcolumn:name="Witness",type=string,JSONPath=`.spec.witnessSite`
// +kubebuilder:printcolumn:name="Quorum",type=string,JSONPath=`.status.quorum`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.status.role`,priority=1
// +kubebuilder:printcolumn:name="Objects",type=integer,JSONPath=`.status.mirroredResources.count`,priority=1
// +kubebuilder:printcolumn:name="Lease",type=string,JSONPath=`.status.lease.holder`,priority=1
// +kubebuilder:printcolumn:name="Epoch",type=integer,JSONPath=`.status.lease.epoch`,priority=1
// +kubebuilder:printcolumn:name="Quorum-Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Quorum")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SharedService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the service.
	// +required
	Spec SharedServiceSpec `json:"spec"`

	// status is what this site's manager knows of the service.
	// +optional
	Status SharedServiceStatus `json:"status,omitempty"`
}

// SharedServiceList is a list of SharedServices.
//
// +kubebuilder:object:root=true
type SharedServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SharedService `json:"items"`
}
