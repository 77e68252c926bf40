package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RecoveryObjective condition types.
const (
	// ObjectiveConditionValid is True when the objective's settings can be met together, given
	// the manager's --max-clock-skew (which the API server cannot know when it validates).
	ObjectiveConditionValid = "Valid"
)

// RecoveryObjective condition reasons.
const (
	// ObjectiveReasonConsistent means the RTO leaves room for detection, lease expiry and clock skew.
	ObjectiveReasonConsistent = "Consistent"
	// ObjectiveReasonRTOTooShort means the RTO is shorter than the earliest moment the protocol may
	// promote a standby, so it could never be met.
	ObjectiveReasonRTOTooShort = "RTOTooShort"
	// ObjectiveReasonLeaderElectionTooSlow means the manager's replicas elect a leader so
	// slowly that, after the leader dies, the partner could take the lease over before a new
	// leader renews it, while the dead leader's site still runs the workloads in active form.
	ObjectiveReasonLeaderElectionTooSlow = "LeaderElectionTooSlow"
	// ObjectiveReasonInUse means the objective is valid and SharedServices refer to it.
	ObjectiveReasonInUse = "InUse"
	// ObjectiveReasonUnused means the objective is valid and no SharedService refers to it yet.
	ObjectiveReasonUnused = "Unused"
	// ObjectiveReasonInvalid means the objective's settings are inconsistent; see the Valid condition.
	ObjectiveReasonInvalid = "Invalid"
)

// RecoveryObjective event reasons.
const (
	// ObjectiveEventInvalid is recorded when an objective becomes inconsistent.
	ObjectiveEventInvalid = "ObjectiveInvalid"
	// ObjectiveEventValid is recorded when an inconsistent objective becomes consistent again.
	ObjectiveEventValid = "ObjectiveValid"
)

// FailoverMode says who decides to promote the standby.
// +kubebuilder:validation:Enum=Automatic;Manual
type FailoverMode string

const (
	// FailoverAutomatic lets the standby site promote itself when the protocol allows it.
	FailoverAutomatic FailoverMode = "Automatic"
	// FailoverManual never promotes on its own: Deich recommends a failover and an SRE
	// confirms it with a Switchover.
	FailoverManual FailoverMode = "Manual"
)

// StandbyMode says how much of a workload runs at the standby site.
// +kubebuilder:validation:Enum=Cold;Warm;Hot
type StandbyMode string

const (
	// StandbyCold keeps workloads at 0 replicas at the standby: cheapest, slowest to serve.
	StandbyCold StandbyMode = "Cold"
	// StandbyWarm keeps 1 replica running at the standby.
	StandbyWarm StandbyMode = "Warm"
	// StandbyHot runs as many replicas at the standby as at the active site.
	StandbyHot StandbyMode = "Hot"
)

// FailbackMode says whether a service returns to its primary site on its own.
// +kubebuilder:validation:Enum=Manual;Automatic
type FailbackMode string

const (
	// FailbackManual leaves the service where it failed over to until a Switchover moves it.
	FailbackManual FailbackMode = "Manual"
	// FailbackAutomatic moves the service back once the primary site has been healthy for
	// the stabilization window.
	FailbackAutomatic FailbackMode = "Automatic"
)

// FailoverPolicy says when and how a standby takes over.
//
// +kubebuilder:validation:XValidation:rule="duration(self.probeInterval) <= duration(self.leaseDuration)",message="failover.probeInterval must not be longer than failover.leaseDuration",fieldPath=".probeInterval"
type FailoverPolicy struct {
	// mode is Automatic (the standby promotes itself when the active site has failed and its
	// lease has expired) or Manual (Deich only recommends a failover; a Switchover performs it).
	// Defaults to Automatic.
	// +optional
	// +kubebuilder:default=Automatic
	Mode FailoverMode `json:"mode,omitempty"`

	// failureThreshold is how many health checks of the active site must fail in a row before
	// it counts as failed. Defaults to 3.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	FailureThreshold int32 `json:"failureThreshold,omitempty"`

	// probeInterval is how often each site runs the health checks. Defaults to 10s; between
	// 1s and 10m.
	// +optional
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="failover.probeInterval must be between 1s and 10m"
	ProbeInterval metav1.Duration `json:"probeInterval,omitzero"`

	// leaseDuration is how long the active site's claim to serve lasts without renewal. The
	// active site renews it every leaseDuration/3 and fences itself when it could not renew for
	// leaseDuration minus the maximum clock skew; the standby may promote only after it expired.
	// Defaults to 30s; between 6s and 1h.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('6s') && duration(self) <= duration('1h')",message="failover.leaseDuration must be between 6s and 1h"
	LeaseDuration metav1.Duration `json:"leaseDuration,omitzero"`
}

// RecoveryObjectiveSpec is a disaster-recovery standard: how much data a service may lose and
// how long it may be down.
//
// +kubebuilder:validation:XValidation:rule="duration(self.rto).getMilliseconds() >= duration(self.failover.leaseDuration).getMilliseconds() + self.failover.failureThreshold * duration(self.failover.probeInterval).getMilliseconds()",message="rto must be at least failover.leaseDuration + failover.failureThreshold × failover.probeInterval (the time to detect a failure and let the lease expire); raise rto or shorten the failover settings",fieldPath=".rto"
// +kubebuilder:validation:XValidation:rule="self.failback != 'Automatic' || duration(self.failbackStabilizationWindow) >= duration(self.failover.leaseDuration)",message="failbackStabilizationWindow must be at least failover.leaseDuration when failback is Automatic",fieldPath=".failbackStabilizationWindow"
type RecoveryObjectiveSpec struct {
	// rpo (recovery point objective) is the most data a failover may lose, as an age: the
	// standby's copy of a service may never be older than this. Between 1s and 24h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="rpo must be greater than zero"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('0s') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",message="rpo must be between 1s and 24h"
	RPO metav1.Duration `json:"rpo"`

	// rto (recovery time objective) is the longest a service may be down: from the active site
	// failing to the standby serving. It must leave room for detection and lease expiry
	// (leaseDuration + failureThreshold × probeInterval). Between 1s and 24h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="rto must be greater than zero"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="rto must be at most 24h"
	RTO metav1.Duration `json:"rto"`

	// failover says when and how the standby takes over.
	// +optional
	// +kubebuilder:default={mode: "Automatic", failureThreshold: 3, probeInterval: "10s", leaseDuration: "30s"}
	Failover FailoverPolicy `json:"failover,omitzero"`

	// standby is how much of each workload runs at the standby site: Cold (0 replicas), Warm
	// (1 replica) or Hot (as many as at the active site). Defaults to Cold.
	// +optional
	// +kubebuilder:default=Cold
	Standby StandbyMode `json:"standby,omitempty"`

	// failback says whether a service returns to its primary site on its own after a failover:
	// Manual (a Switchover moves it back) or Automatic (once the primary site has been healthy
	// for failbackStabilizationWindow). Defaults to Manual.
	// +optional
	// +kubebuilder:default=Manual
	Failback FailbackMode `json:"failback,omitempty"`

	// failbackStabilizationWindow is how long a returning primary site must stay healthy
	// before an automatic failback, so that a flapping site never moves the service back and
	// forth. Defaults to 5m; between 1m and 24h.
	// +optional
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('24h')",message="failbackStabilizationWindow must be between 1m and 24h"
	FailbackStabilizationWindow metav1.Duration `json:"failbackStabilizationWindow,omitzero"`
}

// RecoveryObjectiveStatus reports whether the objective can be met and who uses it.
type RecoveryObjectiveStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Valid (the settings can be met together, including the manager's maximum
	// clock skew) and Ready (valid; the reason tells whether any service uses it).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// sharedServices is how many SharedServices at this site refer to the objective.
	// +optional
	SharedServices int32 `json:"sharedServices,omitempty"`

	// minimumRTO is the shortest RTO the failover settings can meet: leaseDuration +
	// failureThreshold × probeInterval + the manager's maximum clock skew. Valid is False when
	// spec.rto is shorter.
	// +optional
	MinimumRTO *metav1.Duration `json:"minimumRTO,omitempty"`
}

// RecoveryObjective is a disaster-recovery standard the sites agreed on: how old the standby's
// copy may get (RPO), how long a service may be down (RTO), and how failover and failback
// behave. SharedServices refer to it by name. Apply the same objective at every site.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=robj,categories=deich
// +kubebuilder:printcolumn:name="RPO",type=string,JSONPath=`.spec.rpo`
// +kubebuilder:printcolumn:name="RTO",type=string,JSONPath=`.spec.rto`
// +kubebuilder:printcolumn:name="Failover",type=string,JSONPath=`.spec.failover.mode`
// +kubebuilder:printcolumn:name="Standby",type=string,JSONPath=`.spec.standby`
// +kubebuilder:printcolumn:name="Services",type=integer,JSONPath=`.status.sharedServices`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RecoveryObjective struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the standard.
	// +required
	Spec RecoveryObjectiveSpec `json:"spec"`

	// status reports whether the objective can be met and who uses it.
	// +optional
	Status RecoveryObjectiveStatus `json:"status,omitempty"`
}

// RecoveryObjectiveList is a list of RecoveryObjectives.
//
// +kubebuilder:object:root=true
type RecoveryObjectiveList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RecoveryObjective `json:"items"`
}
