package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/drills"
	"github.com/deich-io/deich/internal/metrics"
)

// Defaults of a DrillSchedule's spec, for objects stored before the API server defaulted them.
const (
	defaultDrillTimeout          = 10 * time.Minute
	defaultDrillStartingDeadline = time.Hour
	defaultDrillHistoryLimit     = 12
	// drillRecheck bounds how long a schedule waits between two looks, so that a changed
	// time zone database or a clock step is noticed.
	drillRecheck = time.Hour
)

// DrillScheduleReconciler runs a DrillSchedule's drills: at each scheduled time it creates a
// Switchover with drill: true for every selected service this site serves, towards its
// standby, and collects their verdicts into a report. It writes only the DrillSchedule's
// status; the drills' own status is the Switchover controller's.
type DrillScheduleReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	clock    clock.PassiveClock
	site     string
}

// DrillScheduleOption configures a DrillScheduleReconciler.
type DrillScheduleOption func(*DrillScheduleReconciler)

// WithDrillScheduleClock sets the clock schedules are read with.
func WithDrillScheduleClock(c clock.PassiveClock) DrillScheduleOption {
	return func(r *DrillScheduleReconciler) {
		if c != nil {
			r.clock = c
		}
	}
}

// NewDrillScheduleReconciler returns a reconciler for DrillSchedules at site.
func NewDrillScheduleReconciler(c client.Client, recorder events.EventRecorder, site string, opts ...DrillScheduleOption) *DrillScheduleReconciler {
	r := &DrillScheduleReconciler{client: c, recorder: recorder, clock: clock.RealClock{}, site: site}
	for _, o := range opts {
		o(r)
	}
	return r
}

// +kubebuilder:rbac:groups=resilience.deich.io,resources=drillschedules,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=drillschedules/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=switchovers,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=recoveryobjectives,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler with mgr.
func (r *DrillScheduleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.DrillSchedule{}).
		// A run's report follows its drills' verdicts.
		Owns(&deichv1alpha1.Switchover{}).
		Named("drillschedule").
		Complete(r)
}

// drillScope is what one reconcile of a DrillSchedule works with.
type drillScope struct {
	ds     *deichv1alpha1.DrillSchedule
	before *deichv1alpha1.DrillSchedule
	now    time.Time
}

// Reconcile completes the running run, starts or records as missed the run that is due, and
// reports when the next one is.
func (r *DrillScheduleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	ds := &deichv1alpha1.DrillSchedule{}
	if err := r.client.Get(ctx, req.NamespacedName, ds); err != nil {
		if apierrors.IsNotFound(err) {
			metrics.ForgetDrillSchedule(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get DrillSchedule %s: %w", req.NamespacedName, err)
	}
	if !ds.DeletionTimestamp.IsZero() {
		// The drills go with it (owner references); there is nothing to report on.
		return ctrl.Result{}, nil
	}
	s := &drillScope{ds: ds, before: ds.DeepCopy(), now: r.clock.Now()}
	if meta.FindStatusCondition(ds.Status.Conditions, deichv1alpha1.DrillScheduleConditionLastRunPassed) == nil {
		meta.SetStatusCondition(&ds.Status.Conditions, metav1.Condition{Type: deichv1alpha1.DrillScheduleConditionLastRunPassed,
			Status: metav1.ConditionUnknown, Reason: deichv1alpha1.DrillScheduleReasonNoRunYet, ObservedGeneration: ds.Generation,
			Message: "no run has completed yet"})
	}
	defer func() {
		ds.Status.ObservedGeneration = ds.Generation
		r.exportMetrics(ds)
		if err := patchStatus(ctx, r.client, "DrillSchedule", s.before, ds, s.before.Status, ds.Status); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	sched, err := drills.Parse(ds.Spec.Schedule, ds.Spec.TimeZone)
	if err != nil {
		msg := fmt.Sprintf("cannot read the schedule: %v; no drill runs until it is fixed", err)
		r.setReady(s, metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonInvalidSchedule, msg, corev1.EventTypeWarning, deichv1alpha1.DrillScheduleEventInvalid)
		ds.Status.NextScheduleTime = nil
		r.collectRunning(ctx, s)
		return ctrl.Result{}, reconcile.TerminalError(err)
	}

	requeue := r.collectRunning(ctx, s)
	if ds.Spec.Suspend {
		r.setReady(s, metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonSuspended,
			"spec.suspend is set: no run starts until it is cleared", "", "")
		ds.Status.NextScheduleTime = nil
		return r.finish(ctx, s, requeue)
	}

	since := ds.CreationTimestamp.Time
	if last := ds.Status.LastScheduleTime; last != nil {
		since = last.Time
	}
	plan := drills.Plan(sched, since, s.now, durationOr(ds.Spec.StartingDeadline, defaultDrillStartingDeadline))
	if plan.MissedCount > 0 {
		r.recordMissed(s, plan)
	}
	if !plan.Run.IsZero() {
		if running := runningReport(ds); running != nil {
			// The earlier run still runs: this one is missed rather than started beside it.
			r.recordMissed(s, drills.Decision{MissedFirst: plan.Run, MissedCount: 1})
		} else if err := r.startRun(ctx, s, plan.Run); err != nil {
			// What was missed before it is recorded; the run itself is tried again.
			ds.Status.LastScheduleTime = &metav1.Time{Time: plan.Run.Add(-time.Second)}
			return ctrl.Result{}, err
		} else {
			requeue = minPositive(requeue, durationOr(ds.Spec.Timeout, defaultDrillTimeout))
		}
	}
	if !plan.LastScheduled.IsZero() {
		ds.Status.LastScheduleTime = &metav1.Time{Time: plan.LastScheduled}
	}
	if !plan.Next.IsZero() {
		ds.Status.NextScheduleTime = &metav1.Time{Time: plan.Next}
		requeue = minPositive(requeue, plan.Next.Sub(s.now)+time.Second)
		r.setReady(s, metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled,
			fmt.Sprintf("the next run is due %s", plan.Next.UTC().Format(time.RFC3339)), "", "")
	} else {
		ds.Status.NextScheduleTime = nil
		r.setReady(s, metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled, "the schedule names no further time", "", "")
	}
	return r.finish(ctx, s, requeue)
}

// finish prunes the drills of runs no longer reported and returns when to look again.
func (r *DrillScheduleReconciler) finish(ctx context.Context, s *drillScope, requeue time.Duration) (ctrl.Result, error) {
	trimReports(s.ds)
	if err := r.pruneDrills(ctx, s.ds); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: minPositive(requeue, drillRecheck)}, nil
}

// startRun creates the run's drills and puts its report, Running, first in status.
func (r *DrillScheduleReconciler) startRun(ctx context.Context, s *drillScope, scheduled time.Time) error {
	ds := s.ds
	sel := labels.Everything()
	if ds.Spec.ServiceSelector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(ds.Spec.ServiceSelector); err != nil {
			// The API server validates label selectors; one that still fails is reported.
			return reconcile.TerminalError(fmt.Errorf("spec.serviceSelector: %w", err))
		}
	}
	svcs := &deichv1alpha1.SharedServiceList{}
	if err := r.client.List(ctx, svcs, client.InNamespace(ds.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return fmt.Errorf("list SharedServices of DrillSchedule %s: %w", klog.KObj(ds), err)
	}
	run := drills.RunID(scheduled)
	report := deichv1alpha1.DrillReport{
		Run: run, ScheduledTime: metav1.Time{Time: scheduled}, StartedAt: &metav1.Time{Time: s.now},
		Result: deichv1alpha1.DrillRunning, Site: r.site, Owner: ds.Spec.Owner,
	}
	var verdicts, skipped []deichv1alpha1.DrillServiceReport
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		if !svc.DeletionTimestamp.IsZero() {
			continue
		}
		if why := r.notDrilledHere(svc); why != "" {
			skipped = append(skipped, deichv1alpha1.DrillServiceReport{Name: svc.Name, Result: deichv1alpha1.DrillSkipped, FromSite: activeSite(svc), Message: why})
			continue
		}
		sw, err := r.createDrill(ctx, ds, svc, scheduled)
		if err != nil {
			return err
		}
		v := drills.Verdict(sw, r.objectiveOf(ctx, sw), false)
		v.FromSite = r.site
		if lag := svc.Status.ReplicationLag; lag != nil {
			v.DataAge = lag.DeepCopy()
		}
		verdicts = append(verdicts, v)
	}
	drills.Summarize(&report, verdicts, skipped)
	ds.Status.Reports = append([]deichv1alpha1.DrillReport{report}, ds.Status.Reports...)
	ds.Status.LastResult = report.Result
	r.recorder.Eventf(ds, nil, corev1.EventTypeNormal, deichv1alpha1.DrillScheduleEventRunStarted, "Drill",
		"Run %s (due %s) started %d drill(s) at %s; %d service(s) skipped", run, scheduled.UTC().Format(time.RFC3339), len(verdicts), r.site, len(skipped))
	if report.Result != deichv1alpha1.DrillRunning {
		r.completeRun(s, &ds.Status.Reports[0])
	}
	return nil
}

// notDrilledHere says why this site does not drill svc, or "" when it does: a site drills the
// services it serves, towards their standby.
func (r *DrillScheduleReconciler) notDrilledHere(svc *deichv1alpha1.SharedService) string {
	if r.site != svc.Spec.PrimarySite && r.site != svc.Spec.StandbySite {
		return fmt.Sprintf("%s is neither the primary nor the standby site of the service", r.site)
	}
	if active := activeSite(svc); active != r.site || !serves(svc) {
		if active == r.site {
			return fmt.Sprintf("%s does not serve the service now (phase %s); nothing to rehearse a failover from", r.site, svc.Status.Phase)
		}
		return fmt.Sprintf("%s serves the service; a DrillSchedule there drills it", active)
	}
	return ""
}

// createDrill creates (or finds, when an earlier attempt created it) the drill of svc for the
// run due at scheduled.
func (r *DrillScheduleReconciler) createDrill(ctx context.Context, ds *deichv1alpha1.DrillSchedule, svc *deichv1alpha1.SharedService, scheduled time.Time) (*deichv1alpha1.Switchover, error) {
	run := drills.RunID(scheduled)
	sw := &deichv1alpha1.Switchover{
		ObjectMeta: metav1.ObjectMeta{
			Name:      drillName(ds.Name, svc.Name, run),
			Namespace: ds.Namespace,
			Labels:    map[string]string{deichv1alpha1.LabelDrillSchedule: ds.Name, deichv1alpha1.LabelDrillRun: run},
		},
		Spec: deichv1alpha1.SwitchoverSpec{
			SharedServiceName: svc.Name,
			TargetSite:        peerSite(svc, r.site),
			Reason: truncate(fmt.Sprintf("Scheduled drill of DrillSchedule %s, run due %s, owner %s",
				ds.Name, scheduled.UTC().Format(time.RFC3339), ds.Spec.Owner), 1024),
			Drill: true,
		},
	}
	if err := controllerutil.SetControllerReference(ds, sw, r.client.Scheme()); err != nil {
		return nil, fmt.Errorf("own drill %s: %w", sw.Name, err)
	}
	err := r.client.Create(ctx, sw)
	if apierrors.IsAlreadyExists(err) {
		existing := &deichv1alpha1.Switchover{}
		if err := r.client.Get(ctx, client.ObjectKeyFromObject(sw), existing); err != nil {
			return nil, fmt.Errorf("get drill %s: %w", sw.Name, err)
		}
		if !metav1.IsControlledBy(existing, ds) {
			return nil, reconcile.TerminalError(fmt.Errorf("a Switchover %s that DrillSchedule %s did not create is in the way of its drill of %s", sw.Name, ds.Name, svc.Name))
		}
		return existing, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create drill %s of SharedService %s: %w", sw.Name, svc.Name, err)
	}
	return sw, nil
}

// drillName is a drill's Switchover name: schedule, service and run, shortened with a hash of
// what was cut when that is longer than an object name may be.
func drillName(schedule, service, run string) string {
	name := fmt.Sprintf("%s-%s-%s", schedule, service, run)
	if len(name) <= 253 {
		return name
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(schedule + "/" + service))
	return fmt.Sprintf("%s-%08x-%s", schedule[:min(len(schedule), 200)], h.Sum32(), run)
}

// collectRunning updates the running report from its drills, completes it when every drill
// finished or the run's timeout passed, and returns how long until that timeout (0 for no
// running run).
func (r *DrillScheduleReconciler) collectRunning(ctx context.Context, s *drillScope) time.Duration {
	ds := s.ds
	report := runningReport(ds)
	if report == nil {
		return 0
	}
	log := ctrl.LoggerFrom(ctx)
	list := &deichv1alpha1.SwitchoverList{}
	if err := r.client.List(ctx, list, client.InNamespace(ds.Namespace),
		client.MatchingLabels{deichv1alpha1.LabelDrillSchedule: ds.Name, deichv1alpha1.LabelDrillRun: report.Run}); err != nil {
		// Reported at the next look; the run's timeout still bounds it.
		log.Error(err, "Cannot list the drills of a run", "run", report.Run)
		return time.Minute
	}
	timeout := durationOr(ds.Spec.Timeout, defaultDrillTimeout)
	started := report.ScheduledTime.Time
	if report.StartedAt != nil {
		started = report.StartedAt.Time
	}
	timedOut := !s.now.Before(started.Add(timeout))
	var verdicts []deichv1alpha1.DrillServiceReport
	for i := range list.Items {
		sw := &list.Items[i]
		if !metav1.IsControlledBy(sw, ds) {
			continue
		}
		verdicts = append(verdicts, drills.Verdict(sw, r.objectiveOf(ctx, sw), timedOut))
	}
	if missing := int(report.Drilled) - len(verdicts); missing > 0 && !timedOut {
		// The cache does not show every drill of the run yet; their events bring it back.
		return time.Second
	}
	r.addDataAge(ctx, ds.Namespace, verdicts, report)
	var skipped []deichv1alpha1.DrillServiceReport
	for _, svc := range report.Services {
		if svc.Result == deichv1alpha1.DrillSkipped {
			skipped = append(skipped, svc)
		}
	}
	skippedCount, drilled := report.Skipped, report.Drilled
	drills.Summarize(report, verdicts, skipped)
	report.Skipped = max(report.Skipped, skippedCount)
	if missing := drilled - report.Drilled; missing > 0 && report.Result != deichv1alpha1.DrillRunning {
		// Drills deleted before they finished count as failed.
		report.Drilled, report.Failed, report.Result = drilled, report.Failed+missing, deichv1alpha1.DrillFailed
		report.Message = truncate(fmt.Sprintf("%d drill(s) of the run were deleted before they finished; %s", missing, report.Message), 1024)
	}
	ds.Status.LastResult = ds.Status.Reports[0].Result
	if report.Result == deichv1alpha1.DrillRunning {
		return max(started.Add(timeout).Sub(s.now), time.Second)
	}
	r.completeRun(s, report)
	return 0
}

// addDataAge fills in each drilled service's data age from the report it had (taken when the
// run started) or, for a service the report does not list, from its status now.
func (r *DrillScheduleReconciler) addDataAge(ctx context.Context, namespace string, verdicts []deichv1alpha1.DrillServiceReport, report *deichv1alpha1.DrillReport) {
	for i := range verdicts {
		v := &verdicts[i]
		if j := slices.IndexFunc(report.Services, func(o deichv1alpha1.DrillServiceReport) bool { return o.Name == v.Name }); j >= 0 && report.Services[j].DataAge != nil {
			v.DataAge = report.Services[j].DataAge
			continue
		}
		svc := &deichv1alpha1.SharedService{}
		if err := r.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: v.Name}, svc); err == nil && svc.Status.ReplicationLag != nil {
			v.DataAge = svc.Status.ReplicationLag.DeepCopy()
		}
	}
}

// objectiveOf is the RTO and RPO of the service a drill rehearses; nil when they cannot be
// read (the drill is then judged by its checks alone).
func (r *DrillScheduleReconciler) objectiveOf(ctx context.Context, sw *deichv1alpha1.Switchover) *drills.Objective {
	svc := &deichv1alpha1.SharedService{}
	if err := r.client.Get(ctx, client.ObjectKey{Namespace: sw.Namespace, Name: sw.Spec.SharedServiceName}, svc); err != nil {
		return nil
	}
	obj := &deichv1alpha1.RecoveryObjective{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: svc.Spec.RecoveryObjectiveRef.Name}, obj); err != nil {
		return nil
	}
	return &drills.Objective{RTO: obj.Spec.RTO.Duration, RPO: obj.Spec.RPO.Duration}
}

// completeRun records the end of a run: its time, the LastRunPassed condition, an event and
// the run counter.
func (r *DrillScheduleReconciler) completeRun(s *drillScope, report *deichv1alpha1.DrillReport) {
	ds := s.ds
	report.CompletedAt = &metav1.Time{Time: s.now}
	metrics.Drills.WithLabelValues(ds.Namespace, ds.Name, r.site, string(report.Result)).Inc()
	switch report.Result {
	case deichv1alpha1.DrillPassed:
		ds.Status.LastSuccessfulTime = &metav1.Time{Time: s.now}
		meta.SetStatusCondition(&ds.Status.Conditions, metav1.Condition{Type: deichv1alpha1.DrillScheduleConditionLastRunPassed,
			Status: metav1.ConditionTrue, Reason: deichv1alpha1.DrillScheduleReasonRunPassed, ObservedGeneration: ds.Generation,
			Message: fmt.Sprintf("run %s: %s", report.Run, report.Message)})
		r.recorder.Eventf(ds, nil, corev1.EventTypeNormal, deichv1alpha1.DrillScheduleEventRunPassed, "Drill", "Run %s: %s", report.Run, report.Message)
	case deichv1alpha1.DrillFailed:
		meta.SetStatusCondition(&ds.Status.Conditions, metav1.Condition{Type: deichv1alpha1.DrillScheduleConditionLastRunPassed,
			Status: metav1.ConditionFalse, Reason: deichv1alpha1.DrillScheduleReasonRunFailed, ObservedGeneration: ds.Generation,
			Message: truncate(fmt.Sprintf("run %s: %s; status.reports[0] lists each failed check", report.Run, report.Message), 32768)})
		r.recorder.Eventf(ds, nil, corev1.EventTypeWarning, deichv1alpha1.DrillScheduleEventRunFailed, "Drill", "Run %s: %s", report.Run, report.Message)
	default:
		// A run that drilled nothing here says nothing about the services: the condition stays.
		r.recorder.Eventf(ds, nil, corev1.EventTypeNormal, deichv1alpha1.DrillScheduleEventRunSkipped, "Drill", "Run %s: %s", report.Run, report.Message)
	}
}

// recordMissed adds a Missed report for the runs plan missed.
func (r *DrillScheduleReconciler) recordMissed(s *drillScope, plan drills.Decision) {
	ds := s.ds
	deadline := durationOr(ds.Spec.StartingDeadline, defaultDrillStartingDeadline)
	report := drills.Missed(plan.MissedFirst, plan.MissedCount, deadline, r.site, ds.Spec.Owner)
	report.CompletedAt = &metav1.Time{Time: s.now}
	ds.Status.Reports = append([]deichv1alpha1.DrillReport{report}, ds.Status.Reports...)
	if running := runningIndex(ds); running > 0 {
		// The running run stays first, where it is looked for.
		ds.Status.Reports[0], ds.Status.Reports[running] = ds.Status.Reports[running], ds.Status.Reports[0]
	}
	ds.Status.LastResult = ds.Status.Reports[0].Result
	metrics.Drills.WithLabelValues(ds.Namespace, ds.Name, r.site, string(deichv1alpha1.DrillMissed)).Inc()
	meta.SetStatusCondition(&ds.Status.Conditions, metav1.Condition{Type: deichv1alpha1.DrillScheduleConditionLastRunPassed,
		Status: metav1.ConditionFalse, Reason: deichv1alpha1.DrillScheduleReasonRunMissed, ObservedGeneration: ds.Generation, Message: report.Message})
	r.recorder.Eventf(ds, nil, corev1.EventTypeWarning, deichv1alpha1.DrillScheduleEventRunMissed, "Drill", "%s", report.Message)
}

// setReady sets the Ready condition, with an event of eventType and reason on a transition
// when eventReason is set.
func (r *DrillScheduleReconciler) setReady(s *drillScope, status metav1.ConditionStatus, reason, msg, eventType, eventReason string) {
	ds := s.ds
	old := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.DrillScheduleConditionReady)
	meta.SetStatusCondition(&ds.Status.Conditions, metav1.Condition{Type: deichv1alpha1.DrillScheduleConditionReady,
		Status: status, Reason: reason, Message: msg, ObservedGeneration: ds.Generation})
	if eventReason != "" && changed(old, meta.FindStatusCondition(ds.Status.Conditions, deichv1alpha1.DrillScheduleConditionReady)) {
		r.recorder.Eventf(ds, nil, eventType, eventReason, "Schedule", "%s", msg)
	}
}

// pruneDrills deletes the drills of runs status no longer reports.
func (r *DrillScheduleReconciler) pruneDrills(ctx context.Context, ds *deichv1alpha1.DrillSchedule) error {
	list := &deichv1alpha1.SwitchoverList{}
	if err := r.client.List(ctx, list, client.InNamespace(ds.Namespace), client.MatchingLabels{deichv1alpha1.LabelDrillSchedule: ds.Name}); err != nil {
		return fmt.Errorf("list the drills of DrillSchedule %s: %w", klog.KObj(ds), err)
	}
	kept := map[string]bool{}
	for _, rep := range ds.Status.Reports {
		kept[rep.Run] = true
	}
	for i := range list.Items {
		sw := &list.Items[i]
		if kept[sw.Labels[deichv1alpha1.LabelDrillRun]] || !metav1.IsControlledBy(sw, ds) || !sw.DeletionTimestamp.IsZero() {
			continue
		}
		if err := r.client.Delete(ctx, sw); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete drill %s of an old run: %w", klog.KObj(sw), err)
		}
	}
	return nil
}

// exportMetrics sets the schedule's gauges from its reports: failed while the newest run that
// passed, failed or was missed did not pass; the last run when the newest run that drilled
// something completed — the last success, or the schedule's creation, when no report shows
// one, so that a schedule that never runs becomes overdue too.
func (r *DrillScheduleReconciler) exportMetrics(ds *deichv1alpha1.DrillSchedule) {
	lastRun := ds.CreationTimestamp.Time
	if t := ds.Status.LastSuccessfulTime; t != nil {
		lastRun = t.Time
	}
	judged, ran := false, false
	for _, rep := range ds.Status.Reports {
		if rep.CompletedAt == nil {
			continue
		}
		switch rep.Result {
		case deichv1alpha1.DrillPassed, deichv1alpha1.DrillFailed, deichv1alpha1.DrillMissed:
			if !judged {
				judged = true
				metrics.DrillFailed.WithLabelValues(ds.Namespace, ds.Name, r.site).Set(boolGauge(rep.Result != deichv1alpha1.DrillPassed))
			}
			if !ran && rep.Result != deichv1alpha1.DrillMissed {
				ran = true
				lastRun = rep.CompletedAt.Time
			}
		}
	}
	metrics.DrillLastRun.WithLabelValues(ds.Namespace, ds.Name, r.site).Set(float64(lastRun.Unix()))
}

// trimReports keeps spec.historyLimit reports, the running one always.
func trimReports(ds *deichv1alpha1.DrillSchedule) {
	limit := int(ds.Spec.HistoryLimit)
	if limit <= 0 {
		limit = defaultDrillHistoryLimit
	}
	if len(ds.Status.Reports) > limit {
		ds.Status.Reports = ds.Status.Reports[:limit]
	}
}

// runningReport is the run in progress, kept first among the reports.
func runningReport(ds *deichv1alpha1.DrillSchedule) *deichv1alpha1.DrillReport {
	if i := runningIndex(ds); i >= 0 {
		return &ds.Status.Reports[i]
	}
	return nil
}

// runningIndex is the index of the running report, or -1.
func runningIndex(ds *deichv1alpha1.DrillSchedule) int {
	return slices.IndexFunc(ds.Status.Reports, func(r deichv1alpha1.DrillReport) bool { return r.Result == deichv1alpha1.DrillRunning })
}

// durationOr is d, or def when d is unset.
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil || d.Duration <= 0 {
		return def
	}
	return d.Duration
}

// minPositive is the smaller of a and b, ignoring a value that is not positive.
func minPositive(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
