package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Switchover condition types. Ready summarizes them: True once the move succeeded or the drill
// passed.
const (
	// SwitchoverConditionCopyWithinRPO is True when the copy the target would serve from is
	// younger than the RPO.
	SwitchoverConditionCopyWithinRPO = "CopyWithinRPO"
	// SwitchoverConditionPeerReachable is True when the other site of the service has a Ready
	// ReplicationPeer at the site the Switchover was created at. Drills only.
	SwitchoverConditionPeerReachable = "PeerReachable"
	// SwitchoverConditionPromotionAccepted is True when the target's API server accepted, in a
	// dry run, every copy of the service in the form a promotion would give it. Drills only.
	SwitchoverConditionPromotionAccepted = "PromotionAccepted"
	// SwitchoverConditionTargetChecksReachable is True when every health check naming the
	// target site could be run. Drills only.
	SwitchoverConditionTargetChecksReachable = "TargetChecksReachable"
	// SwitchoverConditionPeerInformed is True while a copy of a running move is at the other
	// site, so that Deich there takes part in it (hands the service over or takes it).
	SwitchoverConditionPeerInformed = "PeerInformed"
)

// Switchover condition reasons.
const (
	// SwitchoverReasonWaitingForService means the SharedService has not been reconciled at
	// this site yet, so the move cannot be judged; the Switchover stays Pending.
	SwitchoverReasonWaitingForService = "WaitingForService"
	// SwitchoverReasonServiceNotFound means no SharedService of that name exists in the
	// namespace at this site.
	SwitchoverReasonServiceNotFound = "ServiceNotFound"
	// SwitchoverReasonInvalidTarget means targetSite is neither primarySite nor standbySite of
	// the service.
	SwitchoverReasonInvalidTarget = "InvalidTarget"
	// SwitchoverReasonNotParticipating means the Switchover was created at a site that is
	// neither primarySite nor standbySite of the service.
	SwitchoverReasonNotParticipating = "NotParticipating"
	// SwitchoverReasonAnotherSwitchover means an earlier Switchover of the same service has not
	// finished: one Switchover at a time per service.
	SwitchoverReasonAnotherSwitchover = "AnotherSwitchoverActive"
	// SwitchoverReasonCopyTooOld means the target's copy is older than the RPO and force is
	// not set.
	SwitchoverReasonCopyTooOld = "CopyOlderThanRPO"
	// SwitchoverReasonWithinRPO means the target's copy is younger than the RPO.
	SwitchoverReasonWithinRPO = "WithinRPO"
	// SwitchoverReasonForced means the copy is older than the RPO and the move goes ahead
	// because force is set.
	SwitchoverReasonForced = "ForcedPastRPO"
	// SwitchoverReasonTargetUnreachable means the target is the other site and it cannot be
	// reached: moving now would fence the serving site with nobody to take over.
	SwitchoverReasonTargetUnreachable = "TargetUnreachable"
	// SwitchoverReasonInProgress means the move is running.
	SwitchoverReasonInProgress = "InProgress"
	// SwitchoverReasonSlowerThanRTO means the move has been running for longer than the
	// service's RTO.
	SwitchoverReasonSlowerThanRTO = "SlowerThanRTO"
	// SwitchoverReasonMoved means the target holds the lease and serves.
	SwitchoverReasonMoved = "Moved"
	// SwitchoverReasonAlreadyServed means the target already served the service; nothing was
	// changed.
	SwitchoverReasonAlreadyServed = "AlreadyServed"
	// SwitchoverReasonServiceDeleted means the SharedService was deleted while the move ran.
	SwitchoverReasonServiceDeleted = "ServiceDeleted"
	// SwitchoverReasonSuperseded means another Switchover of the same service, started
	// earlier at the other site, runs at the same time; this one gave way.
	SwitchoverReasonSuperseded = "Superseded"
	// SwitchoverReasonDrillPassed means every check of the drill passed.
	SwitchoverReasonDrillPassed = "DrillPassed"
	// SwitchoverReasonDrillFailed means a check of the drill failed; the message says which.
	SwitchoverReasonDrillFailed = "DrillFailed"
	// SwitchoverReasonPeerReady means the other site's ReplicationPeer is Ready.
	SwitchoverReasonPeerReady = "PeerReady"
	// SwitchoverReasonPeerNotReady means the other site's ReplicationPeer is missing or not
	// Ready.
	SwitchoverReasonPeerNotReady = "PeerNotReady"
	// SwitchoverReasonDryRunAccepted means the target's API server accepted every promoted
	// copy in a dry run.
	SwitchoverReasonDryRunAccepted = "DryRunAccepted"
	// SwitchoverReasonDryRunRejected means the target's API server rejected a promoted copy,
	// or the copies could not be read there.
	SwitchoverReasonDryRunRejected = "DryRunRejected"
	// SwitchoverReasonChecksReachable means every health check naming the target ran.
	SwitchoverReasonChecksReachable = "ChecksReachable"
	// SwitchoverReasonChecksUnreachable means a health check naming the target could not run.
	SwitchoverReasonChecksUnreachable = "ChecksUnreachable"
	// SwitchoverReasonCopyApplied means the copy of the running move is at the other site.
	SwitchoverReasonCopyApplied = "CopyApplied"
	// SwitchoverReasonPeerUnreachable means the copy could not be written to the other site;
	// Deich retries, and this site moves the service as far as it can on its own.
	SwitchoverReasonPeerUnreachable = "PeerUnreachable"
	// SwitchoverReasonNameTaken means the other site holds a different Switchover of the same
	// name, so the copy cannot be written there.
	SwitchoverReasonNameTaken = "NameTaken"
	// SwitchoverReasonCopyRemoved means the copy at the other site was removed after the
	// Switchover finished.
	SwitchoverReasonCopyRemoved = "CopyRemoved"
	// SwitchoverReasonCopyRemovalPending means the Switchover finished but its copy at the
	// other site could not be removed yet; Deich retries until it is gone.
	SwitchoverReasonCopyRemovalPending = "CopyRemovalPending"
)

// Switchover event reasons.
const (
	// SwitchoverEventRefused is recorded when a Switchover is refused before it changed
	// anything.
	SwitchoverEventRefused = "SwitchoverRefused"
	// SwitchoverEventStarted is recorded when a move starts.
	SwitchoverEventStarted = "SwitchoverStarted"
	// SwitchoverEventSucceeded is recorded when the target serves the service.
	SwitchoverEventSucceeded = "SwitchoverSucceeded"
	// SwitchoverEventFailed is recorded when a running move is given up.
	SwitchoverEventFailed = "SwitchoverFailed"
	// SwitchoverEventSlow is recorded when a move runs for longer than the service's RTO.
	SwitchoverEventSlow = "SwitchoverSlowerThanRTO"
	// SwitchoverEventDrillPassed is recorded when every check of a drill passed.
	SwitchoverEventDrillPassed = "DrillPassed"
	// SwitchoverEventDrillFailed is recorded when a check of a drill failed.
	SwitchoverEventDrillFailed = "DrillFailed"
	// SwitchoverEventPeerNotInformed is recorded when the copy of a running move cannot be
	// written to the other site, or cannot be removed from it after the move finished.
	SwitchoverEventPeerNotInformed = "PeerNotInformed"
)

// Labels, annotations and finalizers of Switchovers.
const (
	// SwitchoverFinalizer keeps a Switchover whose copy may still be at the other site until
	// the copy is removed: a leftover running copy would keep asking that site to act.
	SwitchoverFinalizer = "resilience.deich.io/switchover-copy-cleanup"
	// AnnotationOriginUID on a Switchover's copy at the other site holds the uid of the
	// Switchover it was copied from, so a copy left from an earlier Switchover of the same
	// name is recognised and replaced.
	AnnotationOriginUID = "resilience.deich.io/origin-uid"
	// AnnotationRequestedBy holds the user who created the Switchover, stamped by the API
	// server at admission (the MutatingAdmissionPolicy deich-switchover-requester of
	// config/admission) and kept unchanged by the ValidatingAdmissionPolicy of the same name.
	// The copy at the other site carries the original's.
	AnnotationRequestedBy = "resilience.deich.io/requested-by"
)

// SwitchoverPhase is where a Switchover stands.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type SwitchoverPhase string

const (
	// SwitchoverPending means accepted, not started: the SharedService has not been
	// reconciled at this site yet.
	SwitchoverPending SwitchoverPhase = "Pending"
	// SwitchoverRunning means the move is in progress. The SharedService controllers of both
	// sites act on a Switchover in this phase: the serving site hands the lease over, the
	// target takes it. Drills never run in this phase.
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

	// requestedBy is the user who created the Switchover, as the API server authenticated
	// them: the annotation resilience.deich.io/requested-by that the admission policies of
	// config/admission stamp. Empty when they are not installed.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RequestedBy string `json:"requestedBy,omitempty"`

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
// Switchover runs at a time per service. Create it at either of the service's sites; Deich
// there copies a running move to the other site (labelled with its source site), removes the
// copy when the move has finished, and leaves copies from other sites alone.
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
