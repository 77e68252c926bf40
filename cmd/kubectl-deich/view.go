package main

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The structure `-o json` and `-o yaml` print. It is the plugin's own, not the API objects,
// so that scripts can rely on it across API changes: fields are only ever added. Times are
// RFC 3339, durations Go durations ("4.1s", "2m0s"). docs/handbook describes every field.

// viewAPIVersion versions the structure of the JSON and YAML output.
const viewAPIVersion = "kubectl-deich.resilience.deich.io/v1"

// SiteView is one site the plugin read, or tried to.
type SiteView struct {
	// Name is the site's name, as its objects name it.
	Name string `json:"name"`
	// NameFrom says how the name was learned: ConfigMap (the manager's site ConfigMap),
	// ReplicationPeer (the spec.site of the ReplicationPeer it was reached through),
	// SharedServiceStatus, ReplicationPeers or Context (the kubeconfig context's name).
	NameFrom string `json:"nameFrom"`
	// Via says how the plugin reached it.
	Via string `json:"via"`
	// Reachable is false when the site could not be read; Error says why.
	Reachable bool `json:"reachable"`
	// Error says why the site could not be read.
	Error string `json:"error,omitempty"`
}

// StatusView is the output of `status`.
type StatusView struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Sites are the sites read, the first one being the current context's.
	Sites []SiteView `json:"sites"`
	// Services are the SharedServices found, by namespace and name.
	Services []ServiceView `json:"services"`
}

// ServiceView is one SharedService at each of its sites.
type ServiceView struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// PrimarySite and StandbySite are spec.primarySite and spec.standbySite.
	PrimarySite string `json:"primarySite"`
	StandbySite string `json:"standbySite"`
	// WitnessSite is spec.witnessSite, empty in two-site mode.
	WitnessSite string `json:"witnessSite,omitempty"`
	// Sites are the service at its primary and its standby site, in that order.
	Sites []ServiceAtSite `json:"sites"`
}

// ServiceAtSite is what one site's manager reports of a service.
type ServiceAtSite struct {
	// Site is the site's name.
	Site string `json:"site"`
	// Reachable is false when the site could not be read; Error says why.
	Reachable bool `json:"reachable"`
	// Error says why the site could not be read.
	Error string `json:"error,omitempty"`
	// Found is false when the site has no SharedService of this name.
	Found bool `json:"found"`
	// Role is status.role: Active or Standby.
	Role string `json:"role,omitempty"`
	// Phase is status.phase.
	Phase string `json:"phase,omitempty"`
	// Serving is true when this site reports that it serves the service: role Active, and a
	// phase other than Pending, FailingOver or Fenced.
	Serving bool `json:"serving"`
	// ActiveSite is status.activeSite, the site this one believes serves.
	ActiveSite string `json:"activeSite,omitempty"`
	// Lease is the service's lease as this site last read it.
	Lease *LeaseView `json:"lease,omitempty"`
	// Quorum is status.quorum, "held/arbiters".
	Quorum string `json:"quorum,omitempty"`
	// QuorumReason is the reason of the Quorum condition (TwoSiteMode, WitnessReady, ...).
	QuorumReason string `json:"quorumReason,omitempty"`
	// LastSyncTime is status.lastSyncTime: when the standby last held a complete, current copy.
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// DataAge is how old the standby's copy is: status.replicationLag while ObjectivesMet is
	// True; otherwise the time since lastSyncTime, or replicationLag (which counts a data
	// layer's lag) where that is larger.
	DataAge *metav1.Duration `json:"dataAge,omitempty"`
	// RPO and RTO are the RecoveryObjective's, as status.objective repeats them.
	RPO *metav1.Duration `json:"rpo,omitempty"`
	RTO *metav1.Duration `json:"rto,omitempty"`
	// WithinRPO says whether DataAge is within the RPO; unset when either is unknown.
	WithinRPO *bool `json:"withinRPO,omitempty"`
	// LastFailover is status.lastFailover.
	LastFailover *MoveView `json:"lastFailover,omitempty"`
	// Ready is the Ready condition.
	Ready *ConditionView `json:"ready,omitempty"`
	// Why is a one-line reason the service is not Protected at this site; empty when it is.
	Why string `json:"why,omitempty"`
}

// LeaseView is status.lease.
type LeaseView struct {
	// Holder is the site that holds the lease; empty when it was released.
	Holder string `json:"holder,omitempty"`
	// Epoch is the fencing token of the holder's claim.
	Epoch int64 `json:"epoch"`
	// RenewTime and ExpiryTime are by the holder's clock.
	RenewTime  *metav1.Time `json:"renewTime,omitempty"`
	ExpiryTime *metav1.Time `json:"expiryTime,omitempty"`
	// ObservedTime is when this site last read the lease.
	ObservedTime *metav1.Time `json:"observedTime,omitempty"`
	// ExpiresIn is how long the lease had left when this site last read it (ExpiryTime minus
	// ObservedTime); negative when it had expired.
	ExpiresIn *metav1.Duration `json:"expiresIn,omitempty"`
	// StoredAt lists the sites whose clusters store a copy.
	StoredAt string `json:"storedAt,omitempty"`
	// Message says what this site decided from the lease.
	Message string `json:"message,omitempty"`
}

// ConditionView is a condition without its bookkeeping.
type ConditionView struct {
	Type               string       `json:"type"`
	Status             string       `json:"status"`
	Reason             string       `json:"reason,omitempty"`
	Message            string       `json:"message,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// MoveView is one move of a service between sites: a failover or a Switchover.
type MoveView struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Epoch is the lease epoch the new site served with.
	Epoch int64 `json:"epoch,omitempty"`
	// Trigger is "switchover" for a move a Switchover asked for, else "failover".
	Trigger string `json:"trigger"`
	// InProgress is true while the promotion runs (no completedAt yet).
	InProgress bool `json:"inProgress,omitempty"`
	// DetectedAt is when the failure was detected or the Switchover was taken up.
	DetectedAt *metav1.Time `json:"detectedAt,omitempty"`
	// CompletedAt is when the new site served.
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// RecoveryTime is how long the service was without a serving site.
	RecoveryTime *metav1.Duration `json:"recoveryTime,omitempty"`
	// RTO is the objective's RTO as the service's status repeats it now.
	RTO *metav1.Duration `json:"rto,omitempty"`
	// WithinRTO says whether RecoveryTime was within the RTO; unset when either is unknown.
	WithinRTO *bool `json:"withinRTO,omitempty"`
	// RequestedBy is the user who created the Switchover.
	RequestedBy string `json:"requestedBy,omitempty"`
	// Reason is the record's reason: the failed checks, or the Switchover.
	Reason string `json:"reason,omitempty"`
	// RecordedAt lists the sites whose status records the move (history only).
	RecordedAt []string `json:"recordedAt,omitempty"`
}

// HistoryView is the output of `history`.
type HistoryView struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Namespace  string     `json:"namespace"`
	Service    string     `json:"service"`
	Sites      []SiteView `json:"sites"`
	// Moves are both sites' failoverHistory (and a running promotion) merged, newest first.
	Moves []MoveView `json:"moves"`
}

// SwitchoverView is the output of `switchover`: the Switchover as the site it was created at
// reports it.
type SwitchoverView struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	// Site is where the Switchover was created; its manager drives it.
	Site       string `json:"site"`
	Service    string `json:"service"`
	TargetSite string `json:"targetSite"`
	Drill      bool   `json:"drill"`
	Force      bool   `json:"force"`
	Reason     string `json:"reason"`
	// Phase is Pending, Running, Succeeded or Failed; empty until the manager took it up.
	Phase       string       `json:"phase,omitempty"`
	Message     string       `json:"message,omitempty"`
	FromSite    string       `json:"fromSite,omitempty"`
	RequestedBy string       `json:"requestedBy,omitempty"`
	StartedAt   *metav1.Time `json:"startedAt,omitempty"`
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// EstimatedRecoveryTime is a drill's estimate of how long a failover would take.
	EstimatedRecoveryTime *metav1.Duration `json:"estimatedRecoveryTime,omitempty"`
	Conditions            []ConditionView  `json:"conditions,omitempty"`
}

// DrillsView is the output of `drills`.
type DrillsView struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Sites      []SiteView `json:"sites"`
	// Schedules are the DrillSchedules found, one entry per schedule and site.
	Schedules []DrillScheduleView `json:"schedules"`
}

// DrillScheduleView is one DrillSchedule at one site.
type DrillScheduleView struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Site      string `json:"site"`
	Schedule  string `json:"schedule"`
	TimeZone  string `json:"timeZone,omitempty"`
	Owner     string `json:"owner"`
	Suspended bool   `json:"suspended,omitempty"`
	// Ready is the Ready condition: whether the schedule is valid and runs.
	Ready            *ConditionView `json:"ready,omitempty"`
	LastScheduleTime *metav1.Time   `json:"lastScheduleTime,omitempty"`
	// LastSuccessfulTime is when the last run that passed completed.
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`
	NextScheduleTime   *metav1.Time `json:"nextScheduleTime,omitempty"`
	LastResult         string       `json:"lastResult,omitempty"`
	// Reports are status.reports, newest first.
	Reports []DrillReportView `json:"reports,omitempty"`
}

// DrillReportView is one run of a DrillSchedule.
type DrillReportView struct {
	Run           string       `json:"run"`
	Site          string       `json:"site,omitempty"`
	Result        string       `json:"result"`
	ScheduledTime *metav1.Time `json:"scheduledTime,omitempty"`
	StartedAt     *metav1.Time `json:"startedAt,omitempty"`
	CompletedAt   *metav1.Time `json:"completedAt,omitempty"`
	Owner         string       `json:"owner,omitempty"`
	// Drilled counts the services this site drilled; Passed, Failed and Skipped split them
	// (Skipped are the selected services it did not drill).
	Drilled int32  `json:"drilled"`
	Passed  int32  `json:"passed"`
	Failed  int32  `json:"failed"`
	Skipped int32  `json:"skipped"`
	Message string `json:"message,omitempty"`
	// Services are the services of the run, failed ones first; Truncated says the site
	// listed only some.
	Services  []DrillServiceView `json:"services,omitempty"`
	Truncated bool               `json:"truncated,omitempty"`
}

// DrillServiceView is one service's drill in a run.
type DrillServiceView struct {
	Name                  string           `json:"name"`
	Result                string           `json:"result"`
	FromSite              string           `json:"fromSite,omitempty"`
	TargetSite            string           `json:"targetSite,omitempty"`
	Switchover            string           `json:"switchover,omitempty"`
	EstimatedRecoveryTime *metav1.Duration `json:"estimatedRecoveryTime,omitempty"`
	RTO                   *metav1.Duration `json:"rto,omitempty"`
	DataAge               *metav1.Duration `json:"dataAge,omitempty"`
	RPO                   *metav1.Duration `json:"rpo,omitempty"`
	FailedChecks          []string         `json:"failedChecks,omitempty"`
	Message               string           `json:"message,omitempty"`
}
