package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// RecoveryObjectiveReconciler reports, for each RecoveryObjective, whether its settings can be
// met together (including the manager's --max-clock-skew, which the API server's validation
// cannot know) and how many SharedServices use it.
type RecoveryObjectiveReconciler struct {
	client       client.Client
	recorder     events.EventRecorder
	maxClockSkew time.Duration
	// electionTakeover is how long, at most, the manager's replicas go without a leader after
	// the leader dies (election lease plus two retry periods); zero without leader election.
	electionTakeover time.Duration
}

// RecoveryObjectiveOption configures a RecoveryObjectiveReconciler.
type RecoveryObjectiveOption func(*RecoveryObjectiveReconciler)

// WithLeaderElection tells the reconciler that the manager's replicas elect a leader with
// the given election lease duration and retry period, so that it can report objectives whose
// lease is too short for a new leader to take over in time.
func WithLeaderElection(leaseDuration, retryPeriod time.Duration) RecoveryObjectiveOption {
	return func(r *RecoveryObjectiveReconciler) { r.electionTakeover = leaseDuration + 2*retryPeriod }
}

// NewRecoveryObjectiveReconciler returns a reconciler for a manager started with the given
// maximum clock skew between sites.
func NewRecoveryObjectiveReconciler(c client.Client, recorder events.EventRecorder, maxClockSkew time.Duration, opts ...RecoveryObjectiveOption) *RecoveryObjectiveReconciler {
	r := &RecoveryObjectiveReconciler{client: c, recorder: recorder, maxClockSkew: maxClockSkew}
	for _, o := range opts {
		o(r)
	}
	return r
}

// +kubebuilder:rbac:groups=resilience.deich.io,resources=recoveryobjectives,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=recoveryobjectives/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices,verbs=get;list;watch

// SetupWithManager registers the reconciler with mgr: it watches RecoveryObjectives and the
// SharedServices that refer to them.
// Call SetupIndexes first.
func (r *RecoveryObjectiveReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.RecoveryObjective{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&deichv1alpha1.SharedService{}, objectiveRefHandler{}).
		Named("recoveryobjective").
		Complete(r)
}

// objectiveRefHandler enqueues the RecoveryObjectives a SharedService refers to, before and
// after an update, so both the old and the new objective recount their users.
type objectiveRefHandler struct{}

var _ handler.TypedEventHandler[client.Object, reconcile.Request] = objectiveRefHandler{}

func (objectiveRefHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueueObjectiveOf(e.Object, q)
}

// Update enqueues only when the reference changed: the count of users changes with nothing
// else, and a catalogue's services change their status all the time.
func (objectiveRefHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if objectiveRef(e.ObjectOld) == objectiveRef(e.ObjectNew) {
		return
	}
	enqueueObjectiveOf(e.ObjectOld, q)
	enqueueObjectiveOf(e.ObjectNew, q)
}

func objectiveRef(o client.Object) string {
	if svc, ok := o.(*deichv1alpha1.SharedService); ok {
		return svc.Spec.RecoveryObjectiveRef.Name
	}
	return ""
}

func (objectiveRefHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueueObjectiveOf(e.Object, q)
}

func (objectiveRefHandler) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	enqueueObjectiveOf(e.Object, q)
}

func enqueueObjectiveOf(o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if svc, ok := o.(*deichv1alpha1.SharedService); ok && svc.Spec.RecoveryObjectiveRef.Name != "" {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: svc.Spec.RecoveryObjectiveRef.Name}})
	}
}

// Reconcile evaluates one RecoveryObjective.
func (r *RecoveryObjectiveReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	obj := &deichv1alpha1.RecoveryObjective{}
	if err := r.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := obj.DeepCopy()
	defer func() {
		if err := patchStatus(ctx, r.client, "RecoveryObjective", before, obj, before.Status, obj.Status); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	var users deichv1alpha1.SharedServiceList
	// Only counted and read: the cache's objects need no copy.
	if err := r.client.List(ctx, &users, client.MatchingFields{objectiveRefIndex: obj.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return ctrl.Result{}, fmt.Errorf("list SharedServices using RecoveryObjective %s: %w", obj.Name, err)
	}

	minimum := MinimumRTO(obj.Spec, r.maxClockSkew)
	gen := obj.Generation
	obj.Status.ObservedGeneration = gen
	obj.Status.SharedServices = int32(len(users.Items)) //nolint:gosec // G115: a count of listed objects fits in int32.
	obj.Status.MinimumRTO = &metav1.Duration{Duration: minimum}

	valid := metav1.Condition{Type: deichv1alpha1.ObjectiveConditionValid, ObservedGeneration: gen}
	ready := metav1.Condition{Type: deichv1alpha1.ConditionReady, ObservedGeneration: gen}
	if reason, msg := r.invalidity(obj.Spec); reason != "" {
		valid.Status, valid.Reason, valid.Message = metav1.ConditionFalse, reason, msg
	}
	if valid.Status == metav1.ConditionFalse {
		ready.Status = metav1.ConditionFalse
		ready.Reason = deichv1alpha1.ObjectiveReasonInvalid
		ready.Message = valid.Message
	} else {
		valid.Status = metav1.ConditionTrue
		valid.Reason = deichv1alpha1.ObjectiveReasonConsistent
		valid.Message = fmt.Sprintf("rto %s leaves %s after detection and lease expiry (%s)", obj.Spec.RTO.Duration, obj.Spec.RTO.Duration-minimum, minimum)
		ready.Status = metav1.ConditionTrue
		if n := len(users.Items); n > 0 {
			ready.Reason = deichv1alpha1.ObjectiveReasonInUse
			ready.Message = fmt.Sprintf("used by %d SharedService(s)", n)
		} else {
			ready.Reason = deichv1alpha1.ObjectiveReasonUnused
			ready.Message = "no SharedService refers to this objective yet"
		}
	}
	old := meta.FindStatusCondition(before.Status.Conditions, deichv1alpha1.ObjectiveConditionValid)
	meta.SetStatusCondition(&obj.Status.Conditions, valid)
	meta.SetStatusCondition(&obj.Status.Conditions, ready)
	if changed(old, &valid) {
		switch {
		case valid.Status == metav1.ConditionFalse:
			r.recorder.Eventf(obj, nil, corev1.EventTypeWarning, deichv1alpha1.ObjectiveEventInvalid, "Validate", "%s", valid.Message)
		case old != nil:
			r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, deichv1alpha1.ObjectiveEventValid, "Validate", "%s", valid.Message)
		}
	}
	return ctrl.Result{}, nil
}

// invalidity says why an objective's settings cannot be met together with the manager's
// flags, or returns an empty reason.
func (r *RecoveryObjectiveReconciler) invalidity(spec deichv1alpha1.RecoveryObjectiveSpec) (reason, message string) {
	f := spec.Failover
	if minimum := MinimumRTO(spec, r.maxClockSkew); spec.RTO.Duration < minimum {
		return deichv1alpha1.ObjectiveReasonRTOTooShort, fmt.Sprintf(
			"rto %s is shorter than %s (leaseDuration %s + failureThreshold %d × probeInterval %s + max clock skew %s): the objective could never be met; raise rto or shorten the failover settings",
			spec.RTO.Duration, minimum, f.LeaseDuration.Duration, f.FailureThreshold, f.ProbeInterval.Duration, r.maxClockSkew)
	}
	if budget := LeaderTakeoverBudget(f.LeaseDuration.Duration); r.electionTakeover > budget {
		return deichv1alpha1.ObjectiveReasonLeaderElectionTooSlow, fmt.Sprintf(
			"a new leader of this site's manager replicas may take up to %s (--leader-elect-lease-duration + 2 × --leader-elect-retry-period) after the leader dies, longer than the %s (2/3 × leaseDuration %s) in which it must renew the lease before the partner may take it over: lengthen leaseDuration or shorten the leader election timings",
			r.electionTakeover, budget, f.LeaseDuration.Duration)
	}
	return "", ""
}

// LeaderTakeoverBudget is how long a site's manager may go without a leader, after the leader
// died, before the partner may take over the lease copies it stopped renewing: the leader
// renews every leaseDuration/3, and the partner waits leaseDuration (plus the clock skew,
// left as a margin for the new leader's start and first writes) after the last renewal it
// saw. A new leader that comes later finds the copies taken and fences, but the service's
// workloads at this site ran on meanwhile, with nobody to fence them.
func LeaderTakeoverBudget(leaseDuration time.Duration) time.Duration {
	return leaseDuration * 2 / 3
}

// MinimumRTO is the shortest RTO an objective's failover settings can meet: in the worst case
// the standby detects the failure after failureThreshold probes and may promote only after the
// lease, renewed just before the failure, has expired by more than the maximum clock skew.
// Counting detection and lease expiry one after the other, as the API's validation does, keeps
// the bound safe whichever finishes last.
func MinimumRTO(spec deichv1alpha1.RecoveryObjectiveSpec, maxClockSkew time.Duration) time.Duration {
	f := spec.Failover
	return f.LeaseDuration.Duration + time.Duration(f.FailureThreshold)*f.ProbeInterval.Duration + maxClockSkew
}
