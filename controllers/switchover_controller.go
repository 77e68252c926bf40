package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/health"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/render"
)

// Timing and bounds of the Switchover controller.
const (
	// switchoverPoll is how often a running move checks whether the target serves. Part of
	// what it waits for (the peer's status) is not watched from here.
	switchoverPoll = time.Second
	// switchoverPeerRetry is how soon a copy that could not be removed from the other site is
	// tried again; a ReplicationPeer turning Ready retries at once.
	switchoverPeerRetry = 5 * time.Second
	// switchoverPeerTimeout bounds each call to the other site's API server, so an
	// unreachable peer never holds up a reconcile for long.
	switchoverPeerTimeout = 3 * time.Second
	// switchoverConflictRetry is how soon a reconcile that decided on an outdated Switchover
	// (its status write conflicted) decides again.
	switchoverConflictRetry = 100 * time.Millisecond
	// maxSwitchoverMessage is the API's bound on status.message.
	maxSwitchoverMessage = 1024
)

// The resources Deich reads and writes at a peer with the dynamic client, which needs no
// discovery: a call to an unreachable peer then ends with its context.
var (
	switchoverResource    = deichv1alpha1.GroupVersion.WithResource("switchovers")
	sharedServiceResource = deichv1alpha1.GroupVersion.WithResource("sharedservices")
)

// SwitchoverReconciler carries out the Switchovers created at its site: it refuses those that
// cannot be done, rehearses drills without changing anything, and for a planned move marks
// the Switchover Running, copies it to the service's other site and waits until the target
// serves. The SharedService controllers at both sites do the move itself: they act on a
// Running Switchover by handing the lease over (the site that serves) and taking it (the
// target). Copies of Switchovers that another site created are left to that site.
type SwitchoverReconciler struct {
	client    client.Client
	apiReader client.Reader
	local     dynamic.Interface
	mapper    meta.RESTMapper
	registry  *peer.Registry
	recorder  events.EventRecorder
	clock     clock.PassiveClock
	prober    *health.Prober
	site      string
	maxSkew   time.Duration
	// syncTimes, if set, says when a service's copy was last confirmed current, as this
	// site's SharedService reconciler knows it now.
	syncTimes func(types.NamespacedName) (time.Time, bool)
}

// SwitchoverOption configures a SwitchoverReconciler.
type SwitchoverOption func(*SwitchoverReconciler)

// WithSwitchoverClock sets the clock start and completion times and ages are read from.
func WithSwitchoverClock(c clock.PassiveClock) SwitchoverOption {
	return func(r *SwitchoverReconciler) { r.clock = c }
}

// WithSwitchoverProber sets the prober drills run the target's health checks with.
func WithSwitchoverProber(p *health.Prober) SwitchoverOption {
	return func(r *SwitchoverReconciler) { r.prober = p }
}

// WithSwitchoverSyncTimes sets where the reconciler learns when a service's copy was last
// confirmed current (SharedServiceReconciler.LastSyncTime): status.lastSyncTime as stored may
// be up to five minutes older while the objectives are met.
func WithSwitchoverSyncTimes(f func(types.NamespacedName) (time.Time, bool)) SwitchoverOption {
	return func(r *SwitchoverReconciler) { r.syncTimes = f }
}

// WithSwitchoverMaxClockSkew sets the manager's --max-clock-skew, which a drill's estimated
// recovery time includes.
func WithSwitchoverMaxClockSkew(d time.Duration) SwitchoverOption {
	return func(r *SwitchoverReconciler) { r.maxSkew = d }
}

// NewSwitchoverReconciler returns a reconciler for the manager of site. local and mapper reach
// this site's API server for the drill's dry runs; registry holds the connections to peers.
func NewSwitchoverReconciler(c client.Client, apiReader client.Reader, local dynamic.Interface, mapper meta.RESTMapper, registry *peer.Registry, recorder events.EventRecorder, site string, opts ...SwitchoverOption) *SwitchoverReconciler {
	r := &SwitchoverReconciler{
		client:    c,
		apiReader: apiReader,
		local:     local,
		mapper:    mapper,
		registry:  registry,
		recorder:  recorder,
		clock:     clock.RealClock{},
		prober:    health.NewProber(),
		site:      site,
		maxSkew:   2 * time.Second,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// +kubebuilder:rbac:groups=resilience.deich.io,resources=switchovers,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=switchovers/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=switchovers/finalizers,verbs=update
// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=recoveryobjectives,verbs=get;list;watch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=replicationpeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the reconciler with mgr. Call SetupIndexes first.
func (r *SwitchoverReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.Switchover{}).
		// A running move finishes when the service's status says the target serves.
		Watches(&deichv1alpha1.SharedService{}, handler.EnqueueRequestsFromMapFunc(r.switchoversForService)).
		// A copy that could not be written to or removed from a peer is retried as soon as
		// the peer is Ready again.
		Watches(&deichv1alpha1.ReplicationPeer{}, handler.EnqueueRequestsFromMapFunc(r.switchoversAwaitingPeer),
			builder.WithPredicates(readyChanged{})).
		// A drill waits for probes and dry runs; a second worker keeps it from holding up a
		// running move.
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Named("switchover").
		Complete(r)
}

// switchoversForService maps a SharedService to the unfinished Switchovers created here
// that move it.
func (r *SwitchoverReconciler) switchoversForService(ctx context.Context, o client.Object) []reconcile.Request {
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{switchoverServiceIndex: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Switchovers to requeue", "sharedService", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		sw := &list.Items[i]
		if !r.isCopy(sw) && (unfinished(sw) || controllerutil.ContainsFinalizer(sw, deichv1alpha1.SwitchoverFinalizer)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sw)})
		}
	}
	return reqs
}

// switchoversAwaitingPeer maps a ReplicationPeer to the Switchovers created here that may
// have to write or remove a copy at a peer.
func (r *SwitchoverReconciler) switchoversAwaitingPeer(ctx context.Context, _ client.Object) []reconcile.Request {
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List Switchovers to requeue")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		sw := &list.Items[i]
		if !r.isCopy(sw) && (sw.Status.Phase == deichv1alpha1.SwitchoverRunning || controllerutil.ContainsFinalizer(sw, deichv1alpha1.SwitchoverFinalizer)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(sw)})
		}
	}
	return reqs
}

// isCopy reports whether sw is a copy that another site's manager mirrored here. That site
// drives it; here only the SharedService controller reads it.
func (r *SwitchoverReconciler) isCopy(sw *deichv1alpha1.Switchover) bool {
	src, ok := sw.Labels[render.LabelSourceSite]
	return ok && src != r.site
}

// unfinished reports whether sw may still change something: it was not refused, has not
// failed and has not succeeded.
func unfinished(sw *deichv1alpha1.Switchover) bool {
	switch sw.Status.Phase {
	case "", deichv1alpha1.SwitchoverPending, deichv1alpha1.SwitchoverRunning:
		return true
	}
	return false
}

// switchoverScope is what one reconcile of a Switchover knows; it lives for one call.
type switchoverScope struct {
	sw     *deichv1alpha1.Switchover
	before *deichv1alpha1.Switchover
	now    time.Time
	// event is the event of the phase change this reconcile made; it is recorded once the
	// status is written.
	event *switchoverEvent
}

type switchoverEvent struct {
	eventType, reason, action, note string
}

func (s *switchoverScope) setCondition(t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.sw.Status.Conditions, metav1.Condition{
		Type: t, Status: status, Reason: reason, Message: truncate(msg, 32768), ObservedGeneration: s.sw.Generation,
	})
}

// setPhase moves the Switchover to phase with message and the Ready condition, and notes the
// event to record if the phase changed.
func (s *switchoverScope) setPhase(phase deichv1alpha1.SwitchoverPhase, ready metav1.ConditionStatus, reason, msg string, ev *switchoverEvent) {
	st := &s.sw.Status
	if phase == deichv1alpha1.SwitchoverSucceeded || phase == deichv1alpha1.SwitchoverFailed {
		st.CompletedAt = &metav1.Time{Time: s.now}
	}
	st.Phase = phase
	st.Message = truncate(msg, maxSwitchoverMessage)
	s.setCondition(deichv1alpha1.ConditionReady, ready, reason, msg)
	if ev != nil && s.before.Status.Phase != phase {
		ev.note = truncate(msg, maxSwitchoverMessage)
		s.event = ev
	}
}

// refuse fails a Switchover that has not changed anything.
func (s *switchoverScope) refuse(reason, msg string) {
	s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, reason, msg,
		&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventRefused, action: "Validate"})
}

// Reconcile carries out one Switchover.
func (r *SwitchoverReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	sw := &deichv1alpha1.Switchover{}
	if err := r.client.Get(ctx, req.NamespacedName, sw); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get Switchover %s: %w", req, err)
	}
	if r.isCopy(sw) {
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("site", r.site, "sharedService", sw.Spec.SharedServiceName, "targetSite", sw.Spec.TargetSite)
	ctx = ctrl.LoggerInto(ctx, log)

	s := &switchoverScope{sw: sw, before: sw.DeepCopy(), now: r.clock.Now()}
	if !sw.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	sw.Status.RequestedBy = requesterOf(sw)
	defer func() {
		outdated, err := r.report(ctx, s)
		switch {
		case err != nil:
			retErr = errors.Join(retErr, err)
		case outdated && retErr == nil:
			// This reconcile decided on an outdated object (the cache lagged behind a write):
			// nothing was written; decide again on the current one.
			result = ctrl.Result{RequeueAfter: switchoverConflictRetry}
		}
	}()

	switch sw.Status.Phase {
	case "", deichv1alpha1.SwitchoverPending:
		return r.reconcileNew(ctx, s)
	case deichv1alpha1.SwitchoverRunning:
		return r.reconcileRunning(ctx, s)
	default:
		return r.reconcileFinished(ctx, s)
	}
}

// reconcileFinished removes the copy of a finished move from the other site and then the
// finalizer. Until then the finalizer records that the cleanup is due, also across restarts.
func (r *SwitchoverReconciler) reconcileFinished(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	if !controllerutil.ContainsFinalizer(sw, deichv1alpha1.SwitchoverFinalizer) {
		return ctrl.Result{}, nil
	}
	site := r.copySite(sw)
	done, err := r.removeCopy(ctx, sw, site)
	if !done {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyRemovalPending,
			fmt.Sprintf("the copy of this Switchover at %s could not be removed yet (%v); until it is, Deich there may still act on it; retrying", site, err))
		return ctrl.Result{RequeueAfter: switchoverPeerRetry}, nil
	}
	if site != "" {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyRemoved,
			fmt.Sprintf("the Switchover has finished; no copy of it is left at %s", site))
	}
	return ctrl.Result{}, r.patchMeta(ctx, s, func(o *deichv1alpha1.Switchover) bool {
		return controllerutil.RemoveFinalizer(o, deichv1alpha1.SwitchoverFinalizer)
	})
}

// reconcileDelete removes the copy from the other site before the Switchover goes. Deleting a
// running Switchover therefore stops the move at both sites.
func (r *SwitchoverReconciler) reconcileDelete(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	if !controllerutil.ContainsFinalizer(sw, deichv1alpha1.SwitchoverFinalizer) {
		return ctrl.Result{}, nil
	}
	site := r.copySite(sw)
	if done, err := r.removeCopy(ctx, sw, site); !done {
		ctrl.LoggerFrom(ctx).Info("Cannot remove the copy of the deleted Switchover yet; retrying", "peer", site, "error", fmt.Sprint(err))
		return ctrl.Result{RequeueAfter: switchoverPeerRetry}, nil
	}
	base := sw.DeepCopy()
	controllerutil.RemoveFinalizer(sw, deichv1alpha1.SwitchoverFinalizer)
	if err := r.client.Patch(ctx, sw, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// patchMeta writes the metadata change mutate makes (a finalizer), with an optimistic lock,
// and keeps the status this reconcile computed for the deferred status patch.
func (r *SwitchoverReconciler) patchMeta(ctx context.Context, s *switchoverScope, mutate func(*deichv1alpha1.Switchover) bool) error {
	base := s.sw.DeepCopy()
	if !mutate(s.sw) {
		return nil
	}
	status := *s.sw.Status.DeepCopy()
	if err := r.client.Patch(ctx, s.sw, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch finalizers of Switchover %s/%s: %w", s.sw.Namespace, s.sw.Name, err)
	}
	// The patch returned the object as stored: that is the base of the status patch now.
	s.before = s.sw.DeepCopy()
	s.sw.Status = status
	return nil
}

// report writes the status in one patch and records the events of what changed. The patch
// is conditional on the resourceVersion the reconcile decided on: a decision taken on an
// outdated object (say, Running when it has just succeeded) is dropped, and outdated is true.
func (r *SwitchoverReconciler) report(ctx context.Context, s *switchoverScope) (outdated bool, err error) {
	sw := s.sw
	sw.Status.ObservedGeneration = sw.Generation
	if equality.Semantic.DeepEqual(s.before.Status, sw.Status) {
		return false, nil
	}
	err = r.client.Status().Patch(ctx, sw, client.MergeFromWithOptions(s.before, client.MergeFromWithOptimisticLock{}))
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsConflict(err):
		ctrl.LoggerFrom(ctx).V(1).Info("Switchover changed while it was reconciled; deciding again")
		return true, nil
	case err != nil:
		return false, fmt.Errorf("patch status of Switchover %s/%s: %w", sw.Namespace, sw.Name, err)
	}
	if ev := s.event; ev != nil {
		r.recorder.Eventf(sw, nil, ev.eventType, ev.reason, ev.action, "%s", ev.note)
		ctrl.LoggerFrom(ctx).Info("Switchover phase changed", "phase", sw.Status.Phase, "reason", ev.reason)
	}
	oldInformed := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.SwitchoverConditionPeerInformed)
	informed := meta.FindStatusCondition(sw.Status.Conditions, deichv1alpha1.SwitchoverConditionPeerInformed)
	if changed(oldInformed, informed) && informed.Status == metav1.ConditionFalse && informed.Reason != deichv1alpha1.SwitchoverReasonCopyRemoved {
		r.recorder.Eventf(sw, nil, corev1.EventTypeWarning, deichv1alpha1.SwitchoverEventPeerNotInformed, "Mirror", "%s", truncate(informed.Message, maxSwitchoverMessage))
	}
	oldReady := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.ConditionReady)
	ready := meta.FindStatusCondition(sw.Status.Conditions, deichv1alpha1.ConditionReady)
	if changed(oldReady, ready) && ready.Reason == deichv1alpha1.SwitchoverReasonSlowerThanRTO {
		r.recorder.Eventf(sw, nil, corev1.EventTypeWarning, deichv1alpha1.SwitchoverEventSlow, "Move", "%s", truncate(ready.Message, maxSwitchoverMessage))
	}
	return false, nil
}
