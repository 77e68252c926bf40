package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DrillSchedule condition types.
const (
	// DrillScheduleConditionReady is True while the schedule is valid and drills run on it;
	// False for a schedule or time zone that cannot be parsed, or a suspended schedule.
	DrillScheduleConditionReady = "Ready"
	// DrillScheduleConditionLastRunPassed is True when the last completed run passed, False
	// when it failed or was missed, Unknown before the first run.
	DrillScheduleConditionLastRunPassed = "LastRunPassed"
)

// DrillSchedule condition reasons.
const (
	// DrillScheduleReasonScheduled means the schedule is valid; the message names the next run.
	DrillScheduleReasonScheduled = "Scheduled"
	// DrillScheduleReasonInvalidSchedule means spec.schedule or spec.timeZone cannot be parsed.
	DrillScheduleReasonInvalidSchedule = "InvalidSchedule"
	// DrillScheduleReasonSuspended means spec.suspend is set: no run starts.
	DrillScheduleReasonSuspended = "Suspended"
	// DrillScheduleReasonNoRunYet means no run has completed yet.
	DrillScheduleReasonNoRunYet = "NoRunYet"
	// DrillScheduleReasonRunPassed means every drill of the last run passed.
	DrillScheduleReasonRunPassed = "RunPassed"
	// DrillScheduleReasonRunFailed means a drill of the last run failed; the report says which
	// check.
	DrillScheduleReasonRunFailed = "RunFailed"
	// DrillScheduleReasonRunMissed means a scheduled run did not start within its starting
	// deadline (the manager was not running, say).
	DrillScheduleReasonRunMissed = "RunMissed"
)

// DrillSchedule event reasons.
const (
	// DrillScheduleEventRunStarted is recorded when a run creates its drills.
	DrillScheduleEventRunStarted = "DrillRunStarted"
	// DrillScheduleEventRunPassed is recorded when every drill of a run passed.
	DrillScheduleEventRunPassed = "DrillRunPassed"
	// DrillScheduleEventRunFailed is recorded when a drill of a run failed or did not finish.
	DrillScheduleEventRunFailed = "DrillRunFailed"
	// DrillScheduleEventRunSkipped is recorded when a run found no selected service this site
	// serves, so it drilled none.
	DrillScheduleEventRunSkipped = "DrillRunSkipped"
	// DrillScheduleEventRunMissed is recorded when a scheduled run was missed.
	DrillScheduleEventRunMissed = "DrillRunMissed"
	// DrillScheduleEventInvalid is recorded when the schedule or time zone cannot be parsed.
	DrillScheduleEventInvalid = "InvalidSchedule"
)

// Labels of the drills a DrillSchedule creates.
const (
	// LabelDrillSchedule on a Switchover names the DrillSchedule that created it.
	LabelDrillSchedule = "resilience.deich.io/drill-schedule"
	// LabelDrillRun on a Switchover is the run it belongs to: the scheduled time in Unix
	// seconds.
	LabelDrillRun = "resilience.deich.io/drill-run"
)

// DrillResult is the verdict of a run or of one service's drill in it.
// +kubebuilder:validation:Enum=Running;Passed;Failed;Missed;Skipped
type DrillResult string

const (
	// DrillRunning means the drill has not finished.
	DrillRunning DrillResult = "Running"
	// DrillPassed means every check passed and the estimates meet the objective.
	DrillPassed DrillResult = "Passed"
	// DrillFailed means a check failed, the estimate missed the objective, or the drill did not
	// finish within spec.timeout.
	DrillFailed DrillResult = "Failed"
	// DrillMissed means the run did not start within spec.startingDeadline of its time.
	DrillMissed DrillResult = "Missed"
	// DrillSkipped means the service was not drilled by this site: the other site serves it and
	// runs its drills there, or nobody serves it.
	DrillSkipped DrillResult = "Skipped"
)

// DrillScheduleSpec says when to rehearse which services' failover, and who answers for it.
// +kubebuilder:validation:XValidation:rule="!has(self.startingDeadline) || duration(self.startingDeadline) >= duration('10s')",message="startingDeadline must be at least 10s"
// +kubebuilder:validation:XValidation:rule="!has(self.timeout) || (duration(self.timeout) >= duration('30s') && duration(self.timeout) <= duration('24h'))",message="timeout must be between 30s and 24h"
type DrillScheduleSpec struct {
	// schedule is when drills run, in cron format: five fields (minute hour day-of-month month
	// day-of-week, e.g. "0 3 1 * *" for 03:00 on the first of every month) or a descriptor
	// (@yearly, @monthly, @weekly, @daily, @hourly, or @every <duration> such as @every 24h).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Schedule string `json:"schedule"`

	// timeZone is the IANA time zone the schedule is read in, e.g. Europe/Berlin. Defaults to
	// UTC.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`

	// owner is who answers for these drills — a team, a role or a mailbox. Every report and
	// every drill's reason carries it, for the auditor who asks who is responsible.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Owner string `json:"owner"`

	// serviceSelector selects the SharedServices of this namespace to drill, by label. Unset
	// selects every SharedService of the namespace. Each site drills the services it serves,
	// towards their standby: apply the same DrillSchedule at both sites and every service is
	// drilled once per run, wherever it is served.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`

	// suspend stops new runs while true; a running run completes.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// timeout is how long a run may take: drills not finished by then count as failed.
	// Defaults to 10m.
	// +optional
	// +kubebuilder:default="10m"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// startingDeadline is how late a run may still start after its scheduled time (the manager
	// was not running, say). A run later than that is recorded as Missed and not started.
	// Defaults to 1h.
	// +optional
	// +kubebuilder:default="1h"
	StartingDeadline *metav1.Duration `json:"startingDeadline,omitempty"`

	// historyLimit is how many reports status keeps, newest first; the drills (Switchovers)
	// of older runs are deleted. Defaults to 12.
	// +optional
	// +kubebuilder:default=12
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	HistoryLimit int32 `json:"historyLimit,omitempty"`
}

// DrillServiceReport is one service's drill in a run.
type DrillServiceReport struct {
	// name is the SharedService.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// result is Running, Passed, Failed or Skipped.
	// +required
	Result DrillResult `json:"result"`

	// fromSite is the site that served the service when the drill started.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	FromSite string `json:"fromSite,omitempty"`

	// targetSite is the site the drill rehearsed a failover to.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	TargetSite string `json:"targetSite,omitempty"`

	// switchover is the drill: the Switchover with drill: true this run created, which holds
	// every check's condition.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Switchover string `json:"switchover,omitempty"`

	// estimatedRecoveryTime is how long a failover to targetSite would have taken, by the
	// drill's estimate.
	// +optional
	EstimatedRecoveryTime *metav1.Duration `json:"estimatedRecoveryTime,omitempty"`

	// rto is the service's recovery time objective at the time of the drill.
	// +optional
	RTO *metav1.Duration `json:"rto,omitempty"`

	// dataAge is how old the standby's copy was when the drill started (status.replicationLag
	// of the service at the serving site).
	// +optional
	DataAge *metav1.Duration `json:"dataAge,omitempty"`

	// rpo is the service's recovery point objective at the time of the drill.
	// +optional
	RPO *metav1.Duration `json:"rpo,omitempty"`

	// failedChecks names the checks that failed, each with what it found.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MaxLength=512
	FailedChecks []string `json:"failedChecks,omitempty"`

	// message says why the service was skipped or how its drill ended.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Message string `json:"message,omitempty"`
}

// DrillReport is one run of a DrillSchedule: the evidence of a continuity test.
type DrillReport struct {
	// run identifies the run: its scheduled time in Unix seconds, also the value of the label
	// resilience.deich.io/drill-run on its drills.
	// +required
	// +kubebuilder:validation:MaxLength=20
	Run string `json:"run"`

	// scheduledTime is when the run was due.
	// +required
	ScheduledTime metav1.Time `json:"scheduledTime"`

	// startedAt is when the run created its drills; unset for a missed run.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// completedAt is when every drill had finished or the run timed out.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// result is Running, Passed (every drilled service passed), Failed or Missed.
	// +required
	Result DrillResult `json:"result"`

	// site is the site that ran the drills.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Site string `json:"site,omitempty"`

	// owner is spec.owner when the run started.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Owner string `json:"owner,omitempty"`

	// drilled counts the services this site drilled in the run.
	// +optional
	Drilled int32 `json:"drilled,omitempty"`

	// passed counts the services whose drill passed.
	// +optional
	Passed int32 `json:"passed,omitempty"`

	// failed counts the services whose drill failed or did not finish.
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// skipped counts the selected services this site did not drill.
	// +optional
	Skipped int32 `json:"skipped,omitempty"`

	// services are the services of the run, failed ones first, at most 20; truncated says
	// whether there were more.
	// +optional
	// +kubebuilder:validation:MaxItems=20
	Services []DrillServiceReport `json:"services,omitempty"`

	// truncated is true when services does not list every service of the run.
	// +optional
	Truncated bool `json:"truncated,omitempty"`

	// message summarises the run in a sentence.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// DrillScheduleStatus reports the schedule's runs.
type DrillScheduleStatus struct {
	// observedGeneration is the metadata.generation this status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the schedule is valid and not suspended) and LastRunPassed.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// lastScheduleTime is the scheduled time of the last run started or missed.
	// +optional
	LastScheduleTime *metav1.Time `json:"lastScheduleTime,omitempty"`

	// lastSuccessfulTime is when the last run that passed completed.
	// +optional
	LastSuccessfulTime *metav1.Time `json:"lastSuccessfulTime,omitempty"`

	// nextScheduleTime is when the next run is due.
	// +optional
	NextScheduleTime *metav1.Time `json:"nextScheduleTime,omitempty"`

	// lastResult is the result of the newest report.
	// +optional
	LastResult DrillResult `json:"lastResult,omitempty"`

	// reports are the runs, newest first, at most spec.historyLimit.
	// +optional
	// +kubebuilder:validation:MaxItems=50
	Reports []DrillReport `json:"reports,omitempty"`
}

// DrillSchedule runs DR drills on a schedule and keeps their reports: Switchovers with
// drill: true for the selected services, created by the site that serves each of them, whose
// verdicts — checks passed or failed, estimated recovery time against the RTO, data age
// against the RPO — are collected into a bounded history of reports, the evidence of
// continuity tests an auditor asks for (BSI C5 BCM-04). A failed run raises a Warning event,
// sets LastRunPassed to False and the metric deich_drill_failed.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=drills,categories=deich
// +kubebuilder:printcolumn:name="Schedule",type=string,JSONPath=`.spec.schedule`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Last",type=string,JSONPath=`.status.lastResult`
// +kubebuilder:printcolumn:name="Last Run",type=date,JSONPath=`.status.lastScheduleTime`
// +kubebuilder:printcolumn:name="Next Run",type=string,JSONPath=`.status.nextScheduleTime`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DrillSchedule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says when to drill which services.
	// +required
	Spec DrillScheduleSpec `json:"spec"`

	// status reports the runs.
	// +optional
	Status DrillScheduleStatus `json:"status,omitempty"`
}

// DrillScheduleList is a list of DrillSchedules.
//
// +kubebuilder:object:root=true
type DrillScheduleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DrillSchedule `json:"items"`
}
