package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReplicationPeer condition types.
const (
	// PeerConditionReachable is True while the peer's API server answers heartbeats.
	PeerConditionReachable = "Reachable"
)

// ReplicationPeer condition reasons. Each is a CamelCase word an alert or a runbook can match.
const (
	// PeerReasonHeartbeatSucceeded means the last heartbeat reached the peer's API server.
	PeerReasonHeartbeatSucceeded = "HeartbeatSucceeded"
	// PeerReasonHeartbeatFailed means the last heartbeat did not reach the peer's API server.
	PeerReasonHeartbeatFailed = "HeartbeatFailed"
	// PeerReasonUnauthorized means the peer's API server refused the credentials (401/403).
	PeerReasonUnauthorized = "Unauthorized"
	// PeerReasonSecretNotFound means the Secret named by kubeconfigSecretRef does not exist.
	PeerReasonSecretNotFound = "SecretNotFound"
	// PeerReasonSecretKeyNotFound means the Secret exists but has no data under the given key.
	PeerReasonSecretKeyNotFound = "SecretKeyNotFound"
	// PeerReasonSecretNamespaceNotAllowed means the Secret lives outside the manager's namespace,
	// where the manager is not allowed to read credentials.
	PeerReasonSecretNamespaceNotAllowed = "SecretNamespaceNotAllowed"
	// PeerReasonCredentialsRefused means the kubeconfig asks for something the manager refuses for
	// safety (exec or auth-provider plugins, skipped TLS verification, file references, …).
	// The condition message says which.
	PeerReasonCredentialsRefused = "CredentialsRefused"
	// PeerReasonAPINotInstalled means the peer answers but does not serve resilience.deich.io, so
	// nothing can be mirrored to it until Deich's CRDs are installed there.
	PeerReasonAPINotInstalled = "DeichAPINotInstalled"
	// PeerReasonConnected means the peer is reachable and serves Deich's API.
	PeerReasonConnected = "Connected"
	// PeerReasonWitnessConnected means the witness is reachable and this site may list and
	// create Leases in its leaseNamespace, which is all a witness is used for.
	PeerReasonWitnessConnected = "WitnessConnected"
	// PeerReasonLeaseAccessDenied means the witness answers but refuses this site's credentials
	// the Leases of its leaseNamespace (403). Its administrators grant them with config/witness;
	// the condition message names the namespace.
	PeerReasonLeaseAccessDenied = "LeaseAccessDenied"
	// PeerReasonLeaseNamespaceNotFound means the witness has no namespace named leaseNamespace.
	PeerReasonLeaseNamespaceNotFound = "LeaseNamespaceNotFound"
	// PeerReasonDuplicateSite means another ReplicationPeer already connects to the same site.
	PeerReasonDuplicateSite = "DuplicateSite"
	// PeerReasonSiteIsLocal means spec.site names the manager's own site; a site cannot be its own peer.
	PeerReasonSiteIsLocal = "SiteIsLocal"
)

// ReplicationPeer event reasons.
const (
	// PeerEventReachable is recorded when a peer becomes reachable.
	PeerEventReachable = "PeerReachable"
	// PeerEventUnreachable is recorded when a peer stops answering.
	PeerEventUnreachable = "PeerUnreachable"
	// PeerEventNotReady is recorded when the peer cannot be used for another reason
	// (credentials, missing API).
	PeerEventNotReady = "PeerNotReady"
	// PeerEventReady is recorded when the peer becomes usable for mirroring.
	PeerEventReady = "PeerReady"
	// PeerEventConnectionRebuilt is recorded when changed credentials replaced the connection.
	PeerEventConnectionRebuilt = "ConnectionRebuilt"
	// PeerEventInventoryChanged is recorded when what the peer holds of this site's objects
	// changed between two inventories (status.egress): objects arrived or were withdrawn.
	PeerEventInventoryChanged = "EgressInventoryChanged"
	// PeerEventCredentialsExpiring is recorded (as a Warning) when the credentials in the
	// peer's kubeconfig Secret expire within 7 days, or have expired: once for each expiry
	// time, so a renewed credential that again comes close is reported again.
	PeerEventCredentialsExpiring = "CredentialsExpiring"
)

// DefaultKubeconfigKey is the Secret key read when kubeconfigSecretRef.key is not set.
const DefaultKubeconfigKey = "kubeconfig"

// DefaultWitnessLeaseNamespace is the namespace at a witness that holds the Leases when
// leaseNamespace is not set. It is the namespace config/witness creates.
const DefaultWitnessLeaseNamespace = "deich-witness"

// PeerRole is what a peer site is used for.
// +kubebuilder:validation:Enum=Partner;Witness
type PeerRole string

const (
	// PeerRolePartner is a site that shares services with this one: services are mirrored to
	// it and it may serve them.
	PeerRolePartner PeerRole = "Partner"
	// PeerRoleWitness is a third site that only stores Leases, so that the two partners of a
	// service can tell a dead partner from a cut link. Nothing is mirrored to a witness and it
	// runs no Deich manager and no Deich CRDs.
	PeerRoleWitness PeerRole = "Witness"
)

// SecretKeyReference points at one key of a Secret.
type SecretKeyReference struct {
	// namespace of the Secret. It must be the namespace the Deich manager runs in (its
	// --namespace flag); the manager refuses to read credentials anywhere else.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key in the Secret's data that holds the kubeconfig. Defaults to "kubeconfig".
	// +optional
	// +kubebuilder:default=kubeconfig
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// ReplicationPeerSpec says which site the peer is, what it is used for and how to reach it.
//
// +kubebuilder:validation:XValidation:rule="!has(self.egress) || !has(self.role) || self.role == 'Partner'",message="egress is only for a peer with role Partner: nothing but Leases is written to a witness",fieldPath=".egress"
// +kubebuilder:validation:XValidation:rule="!has(self.leaseNamespace) || (has(self.role) && self.role == 'Witness')",message="leaseNamespace is only for a peer with role Witness: a partner keeps its Leases in the services' own namespaces",fieldPath=".leaseNamespace"
// +kubebuilder:validation:XValidation:rule="(has(self.leaseNamespace) ? self.leaseNamespace : 'deich-witness') == (has(oldSelf.leaseNamespace) ? oldSelf.leaseNamespace : 'deich-witness')",message="leaseNamespace is immutable: the partners' Leases at the witness live there; to move them, delete this ReplicationPeer and create a new one",fieldPath=".leaseNamespace"
type ReplicationPeerSpec struct {
	// site is the peer's site name, as its own Deich manager was started with --site
	// (for example "mv-schwerin"). SharedServices name sites by this value. Immutable.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="site is immutable; create a new ReplicationPeer for another site"
	Site string `json:"site"`

	// role is what the peer site is used for. Partner (the default) is a site that shares
	// services with this one: a SharedService's primarySite or standbySite. Witness is a third
	// site that only stores Leases, so that a service's two partners can tell a dead partner
	// from a cut link (a SharedService names it in witnessSite). A witness needs no Deich CRDs
	// and no manager, only a namespace and the right to manage Leases in it; its heartbeat
	// checks that right instead of Deich's API, and nothing is mirrored to it. Immutable.
	// +optional
	// +kubebuilder:default=Partner
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="role is immutable; create a new ReplicationPeer to use the site in another role"
	Role PeerRole `json:"role,omitempty"`

	// leaseNamespace is, for a Witness, the namespace at the witness's cluster that holds the
	// Leases of the services it is witness for; "deich-witness" (the namespace config/witness
	// creates) when unset. The witness
	// site's administrators give each pair of partner states its own namespace (Lease names
	// could collide between pairs) and tell both partners its name: both partners'
	// ReplicationPeers for the witness must name the same namespace. Allowed only with role
	// Witness. Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	LeaseNamespace string `json:"leaseNamespace,omitempty"`

	// kubeconfigSecretRef names the Secret holding a kubeconfig for the peer's API server.
	// The kubeconfig must carry its credentials inline (token or client certificate) and verify
	// TLS: exec and auth-provider plugins, insecure-skip-tls-verify and file paths are refused.
	// For a witness it is the kubeconfig of the ServiceAccount config/witness creates for this
	// site, which may manage Leases in leaseNamespace and nothing else.
	// +required
	KubeconfigSecretRef SecretKeyReference `json:"kubeconfigSecretRef"`

	// heartbeatInterval is how often the manager checks that the peer answers. Defaults to 5s;
	// between 1s and 5m.
	// +optional
	// +kubebuilder:default="5s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('5m')",message="heartbeatInterval must be between 1s and 5m"
	HeartbeatInterval metav1.Duration `json:"heartbeatInterval,omitzero"`

	// egress says what of this site may be sent to the peer: the objects of SharedServices
	// (mirroring, and the copies a Switchover writes), the SharedServices themselves and
	// Switchovers. It is this site's policy, set by its platform team; no SharedService can
	// widen it, and an object it denies is never sent, and its copy at the peer is deleted.
	// Unset, every object a SharedService selects may be sent. Only for role Partner.
	// +optional
	Egress *EgressPolicy `json:"egress,omitempty"`
}

// SecretsEgress says whether Secrets may be sent to a peer.
// +kubebuilder:validation:Enum=Allow;Deny
type SecretsEgress string

const (
	// SecretsAllow lets Secrets be sent where a SharedService lists kind Secret.
	SecretsAllow SecretsEgress = "Allow"
	// SecretsDeny sends no Secret to the peer, whatever a SharedService lists.
	SecretsDeny SecretsEgress = "Deny"
)

// LabelClassification is the label whose value classifies an object, e.g. "vs-nfd"; a
// ReplicationPeer's egress.deniedClassifications names values that never leave the site.
const LabelClassification = "resilience.deich.io/classification"

// EgressPolicy is what may leave this site for one peer. Every rule that is set must allow an
// object for it to be sent; a rule that is unset allows everything.
type EgressPolicy struct {
	// namespaces is the allow-list of namespaces whose objects may be sent; unset, any.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespaces []string `json:"namespaces,omitempty"`

	// kinds is the allow-list of the kinds of objects that may be sent; unset, any kind a
	// SharedService may list. Deich's own SharedServices and Switchovers are governed by
	// namespaces and deniedClassifications only: they need not be listed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Kinds []ResourceKind `json:"kinds,omitempty"`

	// secrets is Deny to send no Secret to the peer, whatever a SharedService lists; Allow
	// (the default) sends Secrets where a SharedService lists kind Secret.
	// +optional
	// +kubebuilder:default=Allow
	Secrets SecretsEgress `json:"secrets,omitempty"`

	// deniedClassifications are values of the label resilience.deich.io/classification that
	// never leave the site, for example "vs-nfd": an object labelled with one of them is not
	// sent, whichever service selects it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`
	DeniedClassifications []string `json:"deniedClassifications,omitempty"`
}

// WitnessLeaseNamespace is the namespace at a witness that holds the Leases: leaseNamespace,
// or DefaultWitnessLeaseNamespace when it is not set.
func (s *ReplicationPeerSpec) WitnessLeaseNamespace() string {
	if s.LeaseNamespace != "" {
		return s.LeaseNamespace
	}
	return DefaultWitnessLeaseNamespace
}

// IsWitness reports whether the peer is a witness, which only stores Leases.
func (s *ReplicationPeerSpec) IsWitness() bool { return s.Role == PeerRoleWitness }

// ReplicationPeerStatus is what the manager last observed of the peer.
type ReplicationPeerStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Reachable (the peer's API server answers heartbeats) and Ready. A Partner is
	// Ready when it is reachable, accepts the credentials and serves Deich's API, so services
	// can be mirrored to it; a Witness when it is reachable and this site may list and create
	// Leases in its leaseNamespace.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastHeartbeatTime is when the peer last answered a heartbeat.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`

	// latency is the round-trip time of the last successful heartbeat.
	// +optional
	Latency *metav1.Duration `json:"latency,omitempty"`

	// serverVersion is the Kubernetes version the peer's API server reports (for example
	// "v1.37.2").
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ServerVersion string `json:"serverVersion,omitempty"`

	// consecutiveFailures counts the heartbeats that failed since the last success.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// credentialsExpiryTime is when the credentials in the kubeconfig Secret expire: the exp
	// claim of the user's bearer token when it is a JWT (a token from the TokenRequest API,
	// kubectl create token), else the notAfter of its client certificate. After it the peer
	// refuses them and Reachable turns False with reason Unauthorized; put renewed credentials
	// into the Secret before then (the connection is rebuilt without a restart). Unset when
	// the credentials carry no expiry (a long-lived service account token) or the kubeconfig
	// is refused. A CredentialsExpiring event warns 7 days ahead.
	// +optional
	CredentialsExpiryTime *metav1.Time `json:"credentialsExpiryTime,omitempty"`

	// egress is the inventory of what a partner holds of this site's objects, as its API
	// server lists them: the objects labelled resilience.deich.io/source-site with this
	// site's name (copies this site wrote there, including copies promoted there after a
	// failover), counted per namespace and kind, the Secrets named. It is bounded; the label
	// query in labelSelector lists every object at the peer.
	// +optional
	Egress *EgressInventory `json:"egress,omitempty"`
}

// Bounds of an EgressInventory.
const (
	// MaxEgressInventoryKinds is how many namespace and kind entries status.egress.kinds keeps.
	MaxEgressInventoryKinds = 128
	// MaxEgressInventorySecrets is how many Secrets status.egress.secretNames names.
	MaxEgressInventorySecrets = 128
)

// EgressInventory is what a partner site holds of this site's objects, as its API server
// listed them at observedTime.
type EgressInventory struct {
	// observedTime is when the peer's API server was last listed.
	// +optional
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`

	// lastChangeTime is when the last inventory found a change: an object arrived at the
	// peer or left it.
	// +optional
	LastChangeTime *metav1.Time `json:"lastChangeTime,omitempty"`

	// policyGeneration is this ReplicationPeer's metadata.generation, and so the version of
	// spec.egress, in force when the peer was listed.
	// +optional
	PolicyGeneration int64 `json:"policyGeneration,omitempty"`

	// labelSelector selects, at the peer, every object counted here; for example
	// kubectl --context <peer> get configmaps,secrets -A -l <labelSelector>.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	LabelSelector string `json:"labelSelector,omitempty"`

	// objects is how many objects the peer holds of this site's; secrets how many of them
	// are Secrets.
	// +optional
	Objects int32 `json:"objects,omitempty"`
	// +optional
	Secrets int32 `json:"secrets,omitempty"`

	// kinds counts the objects per namespace and kind, sorted by namespace, group and kind.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	Kinds []EgressInventoryEntry `json:"kinds,omitempty"`

	// secretNames names the Secrets the peer holds of this site's, sorted by namespace and
	// name.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=128
	SecretNames []EgressInventorySecret `json:"secretNames,omitempty"`

	// truncated is true when kinds or secretNames had more entries than they keep; the
	// counts above are complete, and the label query lists every object.
	// +optional
	Truncated bool `json:"truncated,omitempty"`

	// message says what could not be listed at the peer, if anything; the counts then cover
	// only what could.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// EgressInventoryEntry counts the objects of one kind in one namespace at the peer.
type EgressInventoryEntry struct {
	// namespace of the objects.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// group of the kind; empty for the core group.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`
	// kind of the objects.
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// count of the objects.
	Count int32 `json:"count"`
	// since is when the oldest of them was created at the peer.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// EgressInventorySecret names one Secret the peer holds of this site's.
type EgressInventorySecret struct {
	// namespace of the Secret.
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace"`
	// name of the Secret.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// since is when the copy was created at the peer.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// ReplicationPeer is another site and how to reach it: a partner, another state's cluster that
// mirrors this site's shared services and whose services this site mirrors, or a witness, a
// third state's cluster that only stores Leases. Create one at each partner site for the other
// partner, and one at each partner site for the witness.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rpeer,categories=deich
// +kubebuilder:printcolumn:name="Site",type=string,JSONPath=`.spec.site`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Reachable",type=string,JSONPath=`.status.conditions[?(@.type=="Reachable")].status`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Latency",type=string,JSONPath=`.status.latency`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.serverVersion`,priority=1
// +kubebuilder:printcolumn:name="Held",type=integer,JSONPath=`.status.egress.objects`,priority=1
// +kubebuilder:printcolumn:name="Secrets",type=integer,JSONPath=`.status.egress.secrets`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ReplicationPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which site the peer is and how to reach it.
	// +required
	Spec ReplicationPeerSpec `json:"spec"`

	// status is what the manager last observed of the peer.
	// +optional
	Status ReplicationPeerStatus `json:"status,omitempty"`
}

// ReplicationPeerList is a list of ReplicationPeers.
//
// +kubebuilder:object:root=true
type ReplicationPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ReplicationPeer `json:"items"`
}
