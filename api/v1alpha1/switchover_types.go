package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SwitchoverPhase is where a Switchover stands.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type SwitchoverPhase string

const (
	// SwitchoverPending means accepted, not started.
	SwitchoverPending SwitchoverPhase = "Pending"
	// SwitchoverRunning means the move (or the drill) is in progress.
	SwitchoverRunning SwitchoverPhase = "Running"
	// SwitchoverSucceeded means the service serves from the target site (or the drill proved it
	// could).
	SwitchoverSucceeded SwitchoverPhase = "Succeeded"
	// SwitchoverFailed means the move was refused or did not complete; status.message says why.
	SwitchoverFailed SwitchoverPhase = "Failed"
)

// SwitchoverSpec is an SRE's request to move a SharedService. It cannot be changed once
// created; create a new Switchover instead.
type SwitchoverSpec struct {
	// sharedServiceName is the SharedService in this namespace to move.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SharedServiceName string `json:"sharedServiceName"`

	// targetSite is the site that should serve the service afterwards.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	TargetSite string `json:"targetSite"`

	// reason is recorded in the failover history and events, for example a change ticket.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`

	// drill, when true, moves nothing: Deich checks that a failover to targetSite would succeed
	// now and reports the estimated recovery time.
	// +optional
	Drill bool `json:"drill,omitempty"`

	// force moves the service even while the standby's copy is older than the RPO, accepting
	// the loss of the newer data.
	// +optional
	Force bool `json:"force,omitempty"`
}

// SwitchoverStatus reports the progress of the move.
type SwitchoverStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions of the Switchover; Ready is True once it succeeded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase is Pending, Running, Succeeded or Failed.
	// +optional
	Phase SwitchoverPhase `json:"phase,omitempty"`

	// fromSite is the site that served when the Switchover started.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	FromSite string `json:"fromSite,omitempty"`

	// startedAt is when the move started.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// completedAt is when it succeeded or failed.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// estimatedRecoveryTime is, for a drill, how long a failover to the target would take now.
	// +optional
	EstimatedRecoveryTime *metav1.Duration `json:"estimatedRecoveryTime,omitempty"`

	// message says what happened, in a sentence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Switchover is an SRE's request to move a SharedService to another site: a planned move, a
// failback after a failover, or (with drill) a rehearsal that changes nothing. Only one
// Switchover runs at a time per service.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=sw,categories=deich
// +kubebuilder:printcolumn:name="Service",type=string,JSONPath=`.spec.sharedServiceName`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetSite`
// +kubebuilder:printcolumn:name="Drill",type=boolean,JSONPath=`.spec.drill`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.message`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Switchover struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the request. It cannot be changed once created.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="a Switchover cannot be changed; create a new one"
	Spec SwitchoverSpec `json:"spec"`

	// status reports the progress of the move.
	// +optional
	Status SwitchoverStatus `json:"status,omitempty"`
}

// SwitchoverList is a list of Switchovers.
//
// +kubebuilder:object:root=true
type SwitchoverList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Switchover `json:"items"`
}
