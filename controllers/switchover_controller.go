package controllers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	"github.com/deich-io/deich/internal/failover"
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

// reconcileNew validates a new Switchover and then rehearses it (drill) or starts the move.
func (r *SwitchoverReconciler) reconcileNew(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	svc, err := r.service(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	target := sw.Spec.TargetSite
	switch {
	case svc == nil:
		s.refuse(deichv1alpha1.SwitchoverReasonServiceNotFound,
			fmt.Sprintf("SharedService %s does not exist in namespace %s at site %s", sw.Spec.SharedServiceName, sw.Namespace, r.site))
		return ctrl.Result{}, nil
	case target != svc.Spec.PrimarySite && target != svc.Spec.StandbySite:
		s.refuse(deichv1alpha1.SwitchoverReasonInvalidTarget,
			fmt.Sprintf("targetSite %s is neither primarySite %s nor standbySite %s of SharedService %s", target, svc.Spec.PrimarySite, svc.Spec.StandbySite, svc.Name))
		return ctrl.Result{}, nil
	case r.site != svc.Spec.PrimarySite && r.site != svc.Spec.StandbySite:
		s.refuse(deichv1alpha1.SwitchoverReasonNotParticipating,
			fmt.Sprintf("site %s takes no part in SharedService %s; create the Switchover at %s or %s", r.site, svc.Name, svc.Spec.PrimarySite, svc.Spec.StandbySite))
		return ctrl.Result{}, nil
	}

	other, err := r.earlierUnfinished(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if other != nil {
		phase := other.Status.Phase
		if phase == "" {
			phase = "new"
		}
		where := ""
		if src := other.Labels[render.LabelSourceSite]; src != "" && src != r.site {
			where = fmt.Sprintf(" (created at %s)", src)
		}
		s.refuse(deichv1alpha1.SwitchoverReasonAnotherSwitchover,
			fmt.Sprintf("Switchover %s%s for SharedService %s is %s; one Switchover at a time per service: create this one again once %s has finished",
				other.Name, where, svc.Name, strings.ToLower(string(phase)), other.Name))
		return ctrl.Result{}, nil
	}

	if !serviceReported(svc) {
		s.setPhase(deichv1alpha1.SwitchoverPending, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonWaitingForService,
			fmt.Sprintf("waiting for SharedService %s to be reconciled at %s", svc.Name, r.site), nil)
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}
	if sw.Spec.Drill {
		return r.drill(ctx, s, svc)
	}
	return r.begin(ctx, s, svc)
}

// service returns the SharedService the Switchover moves; nil when it does not exist here or
// is being deleted. A service missing from the cache is looked up at the API server too: one
// applied together with the Switchover may not have reached the cache yet.
func (r *SwitchoverReconciler) service(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.SharedService, error) {
	key := types.NamespacedName{Namespace: sw.Namespace, Name: sw.Spec.SharedServiceName}
	svc := &deichv1alpha1.SharedService{}
	err := r.client.Get(ctx, key, svc)
	if apierrors.IsNotFound(err) {
		err = r.apiReader.Get(ctx, key, svc)
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get SharedService %s: %w", key, err)
	}
	if !svc.DeletionTimestamp.IsZero() {
		return nil, nil
	}
	return svc, nil
}

// serviceReported reports whether the SharedService controller at this site has written the
// service's status, which the checks below read.
func serviceReported(svc *deichv1alpha1.SharedService) bool {
	return svc.Status.ObservedGeneration > 0 &&
		meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet) != nil
}

// earlierUnfinished returns another Switchover of the same service at this site (created
// here or copied from the other site) that blocks sw: one that runs, or one that is not
// finished and was created earlier (on a tie, the lower name goes first).
func (r *SwitchoverReconciler) earlierUnfinished(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.Switchover, error) {
	list, err := r.switchoversOf(ctx, sw)
	if err != nil {
		return nil, err
	}
	for i := range list {
		o := &list[i]
		if o.Name == sw.Name || !unfinished(o) {
			continue
		}
		if o.Status.Phase != deichv1alpha1.SwitchoverRunning && !createdBefore(o, sw) {
			continue
		}
		// The cache may still hold a Switchover that has just finished or was removed (the
		// copy of one created at the other site): refuse only on what the API server says.
		cur := &deichv1alpha1.Switchover{}
		switch err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(o), cur); {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("read Switchover %s/%s: %w", o.Namespace, o.Name, err)
		case !unfinished(cur) || cur.Status.Phase != deichv1alpha1.SwitchoverRunning && !createdBefore(cur, sw):
			continue
		}
		return cur, nil
	}
	return nil, nil
}

// runningEarlier returns another running move of the same service that started before sw.
// Two moves run at once only when they were created at both sites at nearly the same time;
// both sites then hold both and agree, by start time and then name, which one goes on.
func (r *SwitchoverReconciler) runningEarlier(ctx context.Context, sw *deichv1alpha1.Switchover) (*deichv1alpha1.Switchover, error) {
	list, err := r.switchoversOf(ctx, sw)
	if err != nil {
		return nil, err
	}
	for i := range list {
		o := &list[i]
		if o.Name != sw.Name && o.Status.Phase == deichv1alpha1.SwitchoverRunning && !o.Spec.Drill && startedBefore(o, sw) {
			return o, nil
		}
	}
	return nil, nil
}

// switchoversOf lists the Switchovers at this site that move sw's service, sorted by name.
func (r *SwitchoverReconciler) switchoversOf(ctx context.Context, sw *deichv1alpha1.Switchover) ([]deichv1alpha1.Switchover, error) {
	var list deichv1alpha1.SwitchoverList
	if err := r.client.List(ctx, &list, client.InNamespace(sw.Namespace), client.MatchingFields{switchoverServiceIndex: sw.Spec.SharedServiceName}); err != nil {
		return nil, fmt.Errorf("list Switchovers of SharedService %s/%s: %w", sw.Namespace, sw.Spec.SharedServiceName, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

func createdBefore(a, b *deichv1alpha1.Switchover) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

func startedBefore(a, b *deichv1alpha1.Switchover) bool {
	switch {
	case a.Status.StartedAt == nil:
		return false
	case b.Status.StartedAt == nil:
		return true
	case !a.Status.StartedAt.Equal(b.Status.StartedAt):
		return a.Status.StartedAt.Before(b.Status.StartedAt)
	}
	return a.Name < b.Name
}

// begin checks a planned move and starts it. The status is written Running before the copy
// goes to the other site, so a manager that restarts in between carries on with the move.
func (r *SwitchoverReconciler) begin(ctx context.Context, s *switchoverScope, svc *deichv1alpha1.SharedService) (ctrl.Result, error) {
	sw := s.sw
	target := sw.Spec.TargetSite
	if r.servedHere(svc, target) {
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonAlreadyServed,
			fmt.Sprintf("SharedService %s is already served by %s; nothing was changed", svc.Name, target),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventSucceeded, action: "Validate"})
		return ctrl.Result{}, nil
	}

	within, age := r.copyWithinRPO(svc, s.now)
	forced := ""
	switch {
	case within:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonWithinRPO, age)
	case sw.Spec.Force:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonForced, age+"; moving anyway because force is set")
		forced = "; forced although the copy is older than the RPO: changes since the last sync are lost"
	default:
		s.setCondition(deichv1alpha1.SwitchoverConditionCopyWithinRPO, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonCopyTooOld, age)
		s.refuse(deichv1alpha1.SwitchoverReasonCopyTooOld,
			fmt.Sprintf("%s: moving now would lose the changes since the last sync. Wait until the copy is current (condition ObjectivesMet of SharedService %s), or create a Switchover with force: true to accept the loss", age, svc.Name))
		return ctrl.Result{}, nil
	}

	if target != r.site {
		if ok, why := peerReadiness(ctx, r.client, target); !ok {
			s.refuse(deichv1alpha1.SwitchoverReasonTargetUnreachable,
				fmt.Sprintf("target site %s cannot be reached from %s (%s): moving now would fence %s with nobody to take over. If %s runs on its own, create the Switchover there",
					target, r.site, why, activeSite(svc), target))
			return ctrl.Result{}, nil
		}
	}

	from := activeSite(svc)
	sw.Status.FromSite = from
	sw.Status.StartedAt = &metav1.Time{Time: s.now}
	s.setPhase(deichv1alpha1.SwitchoverRunning, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonInProgress,
		fmt.Sprintf("moving SharedService %s from %s to %s: %s fences itself and releases the lease, then %s takes it%s", svc.Name, from, target, from, target, forced),
		&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventStarted, action: "Start"})
	return ctrl.Result{RequeueAfter: switchoverPoll}, nil
}

// servedHere reports whether, as this site sees it, target holds the service's lease and
// serves it. When target is this site, its own status must also say it serves.
func (r *SwitchoverReconciler) servedHere(svc *deichv1alpha1.SharedService, target string) bool {
	st := svc.Status
	if st.Lease == nil || st.Lease.Holder != target || st.ActiveSite != target {
		return false
	}
	return target != r.site || serves(svc)
}

// serves reports whether a SharedService's status, written by its own site, says that site
// serves it.
func serves(svc *deichv1alpha1.SharedService) bool {
	if svc.Status.Role != deichv1alpha1.RoleActive {
		return false
	}
	switch svc.Status.Phase {
	case "", deichv1alpha1.PhasePending, deichv1alpha1.PhaseFenced, deichv1alpha1.PhaseFailingOver:
		return false
	}
	return true
}

// copyWithinRPO reports whether the standby's copy is younger than the RPO, as this site's
// SharedService status says (condition ObjectivesMet, and status.lastSyncTime in case the
// condition was computed a while ago), with a sentence saying how old it is.
func (r *SwitchoverReconciler) copyWithinRPO(svc *deichv1alpha1.SharedService, now time.Time) (bool, string) {
	c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
	switch {
	case c == nil:
		return false, "the age of the copy is not known yet"
	case c.Status != metav1.ConditionTrue:
		return false, c.Message
	}
	if obj := svc.Status.Objective; obj != nil && obj.RPO != nil && svc.Status.LastSyncTime != nil {
		// lastSyncTime may come from the other site's clock: allow for the skew.
		if age := now.Sub(svc.Status.LastSyncTime.Time); age > obj.RPO.Duration+r.maxSkew {
			return false, fmt.Sprintf("the copy was last confirmed current %s ago, longer than the RPO of %s", age.Round(time.Second), obj.RPO.Duration)
		}
	}
	return true, c.Message
}

// connection returns the connection to site when its ReplicationPeer is Ready, and otherwise
// nil and why. Calls to a peer that is known to be unreachable would only wait for their
// timeout.
func (r *SwitchoverReconciler) connection(ctx context.Context, site string) (*peer.Connection, string) {
	if ok, why := peerReadiness(ctx, r.client, site); !ok {
		return nil, why
	}
	conn, ok := r.registry.Get(site)
	if !ok {
		return nil, fmt.Sprintf("no connection to %s yet", site)
	}
	return conn, ""
}

// reconcileRunning keeps the other site informed of a running move and finishes it once the
// target serves.
func (r *SwitchoverReconciler) reconcileRunning(ctx context.Context, s *switchoverScope) (ctrl.Result, error) {
	sw := s.sw
	svc, err := r.service(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if svc == nil {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonServiceDeleted,
			fmt.Sprintf("SharedService %s was deleted at %s while the Switchover ran", sw.Spec.SharedServiceName, r.site),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventFailed, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}
	other, err := r.runningEarlier(ctx, sw)
	if err != nil {
		return ctrl.Result{}, err
	}
	if other != nil {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonSuperseded,
			fmt.Sprintf("Switchover %s of SharedService %s started earlier and runs at the same time; this one gave way to it", other.Name, svc.Name),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventFailed, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}

	// The finalizer goes on before the copy, so the copy never outlives the Switchover.
	if err := r.patchMeta(ctx, s, func(o *deichv1alpha1.Switchover) bool {
		return controllerutil.AddFinalizer(o, deichv1alpha1.SwitchoverFinalizer)
	}); err != nil {
		return ctrl.Result{}, err
	}
	r.informPeer(ctx, s, svc.Name, peerSite(svc, r.site))

	target := sw.Spec.TargetSite
	done, waiting := r.moveDone(ctx, svc, target)
	if done {
		// The copy at the other site goes first, so that a Switchover created there right
		// after this one succeeded is not refused because of it. When the other site cannot
		// be reached, the cleanup of the finished Switchover retries.
		if _, err := r.removeCopy(ctx, sw, r.copySite(sw)); err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("The copy of the Switchover is left for later", "error", err.Error())
		}
		took := "an unknown time"
		if sw.Status.StartedAt != nil {
			took = s.now.Sub(sw.Status.StartedAt.Time).Round(100 * time.Millisecond).String()
		}
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonMoved,
			fmt.Sprintf("%s serves SharedService %s: moved from %s in %s", target, svc.Name, sw.Status.FromSite, took),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventSucceeded, action: "Move"})
		return ctrl.Result{RequeueAfter: switchoverPoll}, nil
	}

	msg := fmt.Sprintf("moving SharedService %s from %s to %s: %s", svc.Name, sw.Status.FromSite, target, waiting)
	if c := meta.FindStatusCondition(sw.Status.Conditions, deichv1alpha1.SwitchoverConditionPeerInformed); c != nil && c.Status != metav1.ConditionTrue {
		msg += "; " + c.Message
	}
	reason := deichv1alpha1.SwitchoverReasonInProgress
	if obj := svc.Status.Objective; obj != nil && obj.RTO != nil && sw.Status.StartedAt != nil && s.now.Sub(sw.Status.StartedAt.Time) > obj.RTO.Duration {
		reason = deichv1alpha1.SwitchoverReasonSlowerThanRTO
		msg = fmt.Sprintf("running for longer than the RTO of %s; %s", obj.RTO.Duration, msg)
	}
	s.setPhase(deichv1alpha1.SwitchoverRunning, metav1.ConditionFalse, reason, msg, nil)
	return ctrl.Result{RequeueAfter: switchoverPoll}, nil
}

// moveDone reports whether target holds the lease and serves, and if not, what the move
// waits for. This site's status must name target as holder and active site; when target is
// the other site, that site's own status must say so too, and that it serves.
func (r *SwitchoverReconciler) moveDone(ctx context.Context, svc *deichv1alpha1.SharedService, target string) (bool, string) {
	if svc.Status.Lease == nil || svc.Status.Lease.Holder != target || svc.Status.ActiveSite != target {
		return false, fmt.Sprintf("waiting for %s to take the lease (%s, as %s last read it)", target, describeHolder(svc), r.site)
	}
	theirs := svc
	if target != r.site {
		conn, why := r.connection(ctx, target)
		if conn == nil {
			return false, fmt.Sprintf("%s holds the lease; cannot reach it to confirm it serves (%s)", target, why)
		}
		var err error
		if theirs, err = peerService(ctx, conn, svc); err != nil {
			return false, fmt.Sprintf("%s holds the lease; cannot read SharedService %s there to confirm it serves: %v", target, svc.Name, err)
		}
		if theirs.Status.Lease == nil || theirs.Status.Lease.Holder != target || theirs.Status.ActiveSite != target {
			return false, fmt.Sprintf("%s holds the lease; waiting for %s to report it", target, target)
		}
	}
	if !serves(theirs) {
		phase := string(theirs.Status.Phase)
		if phase == "" {
			phase = "not reported"
		}
		return false, fmt.Sprintf("%s holds the lease; waiting for it to serve (role %s, phase %s)", target, theirs.Status.Role, phase)
	}
	return true, ""
}

// peerService reads the SharedService like svc at the peer.
func peerService(ctx context.Context, conn *peer.Connection, svc *deichv1alpha1.SharedService) (*deichv1alpha1.SharedService, error) {
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	u, err := conn.Dynamic.Resource(sharedServiceResource).Namespace(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	theirs := &deichv1alpha1.SharedService{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, theirs); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return theirs, nil
}

func describeHolder(svc *deichv1alpha1.SharedService) string {
	switch {
	case svc.Status.Lease == nil:
		return "lease not read yet"
	case svc.Status.Lease.Holder == "":
		return "lease released"
	}
	return "held by " + svc.Status.Lease.Holder
}

// informPeer writes the copy of a running move to the other site, so its SharedService
// controller takes part. An unreachable peer is reported and retried: this site's own
// SharedService controller acts on the Switchover meanwhile.
func (r *SwitchoverReconciler) informPeer(ctx context.Context, s *switchoverScope, service, peerSite string) {
	conn, why := r.connection(ctx, peerSite)
	if conn == nil {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonPeerUnreachable,
			fmt.Sprintf("cannot reach %s (%s): Deich there does not know of this move yet; retrying", peerSite, why))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	reason, msg, err := r.writeCopy(ctx, s.sw, service, conn)
	if err != nil {
		s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionFalse, reason,
			fmt.Sprintf("cannot write the copy of this Switchover at %s: %v; Deich there does not know of this move yet; retrying", peerSite, err))
		return
	}
	s.setCondition(deichv1alpha1.SwitchoverConditionPeerInformed, metav1.ConditionTrue, reason, msg)
}

// writeCopy makes the other site hold a Running copy of sw, and no other copy of this site's
// Switchovers of the service: a copy left from an earlier Switchover, whose removal could not
// finish yet, would ask that site to act against this move. It returns the PeerInformed
// reason and message.
func (r *SwitchoverReconciler) writeCopy(ctx context.Context, sw *deichv1alpha1.Switchover, service string, conn *peer.Connection) (string, string, error) {
	ri := conn.Dynamic.Resource(switchoverResource).Namespace(sw.Namespace)
	list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: copySelector(service, r.site)})
	if err != nil {
		return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("list copies: %w", err)
	}
	var current *unstructured.Unstructured
	for i := range list.Items {
		it := &list.Items[i]
		if it.GetName() == sw.Name && it.GetAnnotations()[deichv1alpha1.AnnotationOriginUID] == string(sw.UID) {
			current = it
			continue
		}
		if err := deleteCopy(ctx, ri, it); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("remove the copy of an earlier Switchover %s: %w", it.GetName(), err)
		}
	}

	if current == nil {
		existing, err := ri.Get(ctx, sw.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("get Switchover %s: %w", sw.Name, err)
		case existing.GetLabels()[render.LabelSourceSite] == r.site:
			// A copy of an earlier Switchover of this name (for another service): replace it.
			if err := deleteCopy(ctx, ri, existing); err != nil {
				return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", fmt.Errorf("remove the copy of an earlier Switchover %s: %w", sw.Name, err)
			}
		default:
			return sameRequest(sw, existing, conn.Site)
		}
	}

	if current == nil || !equality.Semantic.DeepEqual(current.GetLabels(), copyLabels(service, r.site)) {
		if err := r.applyCopy(ctx, ri, sw, service); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", err
		}
	}
	if phase, _, _ := unstructured.NestedString(objOrEmpty(current), "status", "phase"); phase != string(deichv1alpha1.SwitchoverRunning) {
		if err := r.applyCopyStatus(ctx, ri, sw); err != nil {
			return deichv1alpha1.SwitchoverReasonPeerUnreachable, "", err
		}
	}
	return deichv1alpha1.SwitchoverReasonCopyApplied,
		fmt.Sprintf("a copy of this Switchover at %s lets Deich there take part in the move", conn.Site), nil
}

// sameRequest judges a Switchover of sw's name at the other site that is not sw's copy. A
// GitOps tool may have applied the same manifest at both sites; then each site runs its own
// and both take part in the move. Anything else keeps the other site from learning of sw.
func sameRequest(sw *deichv1alpha1.Switchover, existing *unstructured.Unstructured, site string) (string, string, error) {
	theirs := &deichv1alpha1.Switchover{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(existing.Object, theirs); err != nil {
		return deichv1alpha1.SwitchoverReasonNameTaken, "", fmt.Errorf("read Switchover %s: %w", sw.Name, err)
	}
	if equality.Semantic.DeepEqual(theirs.Spec, sw.Spec) && unfinished(theirs) {
		return deichv1alpha1.SwitchoverReasonCopyApplied,
			fmt.Sprintf("the same Switchover was created at %s too; Deich there runs it and takes part in the move", site), nil
	}
	phase := string(theirs.Status.Phase)
	if phase == "" {
		phase = "new"
	}
	return deichv1alpha1.SwitchoverReasonNameTaken, "", fmt.Errorf("another Switchover named %s exists there (phase %s, targetSite %s); delete it there, or delete this one and create the move under another name",
		sw.Name, phase, theirs.Spec.TargetSite)
}

func objOrEmpty(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return nil
	}
	return u.Object
}

// copyLabels are the labels of a Switchover's copy at the other site.
func copyLabels(service, site string) map[string]string {
	return map[string]string{
		render.LabelSourceSite:    site,
		render.LabelManagedBy:     render.ManagedByDeich,
		render.LabelSharedService: service,
	}
}

// applyCopy applies sw's metadata and spec to the other site.
func (r *SwitchoverReconciler) applyCopy(ctx context.Context, ri dynamic.ResourceInterface, sw *deichv1alpha1.Switchover, service string) error {
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&sw.Spec)
	if err != nil {
		return fmt.Errorf("convert spec: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind("Switchover")
	u.SetNamespace(sw.Namespace)
	u.SetName(sw.Name)
	u.SetLabels(copyLabels(service, r.site))
	u.SetAnnotations(map[string]string{deichv1alpha1.AnnotationOriginUID: string(sw.UID)})
	if _, err := ri.Apply(ctx, sw.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply Switchover %s: %w", sw.Name, err)
	}
	return nil
}

// applyCopyStatus marks the copy Running, which is what the other site's SharedService
// controller acts on.
func (r *SwitchoverReconciler) applyCopyStatus(ctx context.Context, ri dynamic.ResourceInterface, sw *deichv1alpha1.Switchover) error {
	st := map[string]any{
		"phase":    string(deichv1alpha1.SwitchoverRunning),
		"fromSite": sw.Status.FromSite,
		"message": truncate(fmt.Sprintf("copy of Switchover %s at %s, which drives the move and removes this copy when it has finished",
			sw.Name, r.site), maxSwitchoverMessage),
	}
	if sw.Status.StartedAt != nil {
		st["startedAt"] = sw.Status.StartedAt.UTC().Format(time.RFC3339)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind("Switchover")
	u.SetNamespace(sw.Namespace)
	u.SetName(sw.Name)
	if _, err := ri.ApplyStatus(ctx, sw.Name, u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("mark the copy of Switchover %s Running: %w", sw.Name, err)
	}
	return nil
}

// deleteCopy deletes the copy cp, unless it was replaced in the meantime.
func deleteCopy(ctx context.Context, ri dynamic.ResourceInterface, cp *unstructured.Unstructured) error {
	uid := cp.GetUID()
	err := ri.Delete(ctx, cp.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// copySite is the site that may hold sw's copy: the one of fromSite and targetSite that is
// not this site; "" when sw never ran.
func (r *SwitchoverReconciler) copySite(sw *deichv1alpha1.Switchover) string {
	for _, site := range []string{sw.Spec.TargetSite, sw.Status.FromSite} {
		if site != "" && site != r.site {
			return site
		}
	}
	return ""
}

// removeCopy deletes sw's copy at site. done is false while the copy may still be there.
func (r *SwitchoverReconciler) removeCopy(ctx context.Context, sw *deichv1alpha1.Switchover, site string) (bool, error) {
	if site == "" {
		return true, nil
	}
	p, err := findPeer(ctx, r.client, site)
	if err != nil {
		return false, err
	}
	if p == nil {
		// Without a ReplicationPeer the site cannot be reached from here at all.
		r.recorder.Eventf(sw, nil, corev1.EventTypeWarning, deichv1alpha1.SwitchoverEventPeerNotInformed, "Cleanup",
			"There is no ReplicationPeer for %s any more: delete the copy of this Switchover there by hand, if it is left", site)
		return true, nil
	}
	conn, why := r.connection(ctx, site)
	if conn == nil {
		return false, errors.New(why)
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	ri := conn.Dynamic.Resource(switchoverResource).Namespace(sw.Namespace)
	cp, err := ri.Get(ctx, sw.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("get the copy at %s: %w", site, err)
	case cp.GetLabels()[render.LabelSourceSite] != r.site || cp.GetAnnotations()[deichv1alpha1.AnnotationOriginUID] != string(sw.UID):
		return true, nil // not this Switchover's copy
	}
	if err := deleteCopy(ctx, ri, cp); err != nil {
		return false, fmt.Errorf("delete the copy at %s: %w", site, err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Removed the copy of the Switchover", "peer", site)
	return true, nil
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

// drill checks, without changing anything, that a failover to the target would succeed now,
// and estimates how long it would take.
func (r *SwitchoverReconciler) drill(ctx context.Context, s *switchoverScope, svc *deichv1alpha1.SharedService) (ctrl.Result, error) {
	sw := s.sw
	target := sw.Spec.TargetSite
	sw.Status.StartedAt = &metav1.Time{Time: s.now}
	sw.Status.FromSite = activeSite(svc)
	if r.servedHere(svc, target) {
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonAlreadyServed,
			fmt.Sprintf("drill: target already serves: %s holds the lease of SharedService %s and serves it; nothing to rehearse", target, svc.Name),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventDrillPassed, action: "Drill"})
		return ctrl.Result{}, nil
	}

	var failed, passed []string
	record := func(condType string, ok bool, okReason, failReason, msg string) {
		if ok {
			s.setCondition(condType, metav1.ConditionTrue, okReason, msg)
			passed = append(passed, msg)
			return
		}
		s.setCondition(condType, metav1.ConditionFalse, failReason, msg)
		failed = append(failed, msg)
	}

	other := peerSite(svc, r.site)
	ok, why := peerReadiness(ctx, r.client, other)
	record(deichv1alpha1.SwitchoverConditionPeerReachable, ok, deichv1alpha1.SwitchoverReasonPeerReady, deichv1alpha1.SwitchoverReasonPeerNotReady,
		fmt.Sprintf("peer %s: %s", other, why))

	ok, age := r.copyWithinRPO(svc, s.now)
	record(deichv1alpha1.SwitchoverConditionCopyWithinRPO, ok, deichv1alpha1.SwitchoverReasonWithinRPO, deichv1alpha1.SwitchoverReasonCopyTooOld, age)

	started := r.clock.Now()
	n, err := r.dryRunPromotion(ctx, svc, target)
	took := r.clock.Since(started)
	if err != nil {
		record(deichv1alpha1.SwitchoverConditionPromotionAccepted, false, "", deichv1alpha1.SwitchoverReasonDryRunRejected,
			fmt.Sprintf("promotion at %s would fail: %v", target, err))
	} else {
		record(deichv1alpha1.SwitchoverConditionPromotionAccepted, true, deichv1alpha1.SwitchoverReasonDryRunAccepted, "",
			fmt.Sprintf("%s's API server accepts the %d copies in their promoted form (dry run, %s)", target, n, took.Round(time.Millisecond)))
	}

	standby := deichv1alpha1.StandbyCold
	objective := r.objective(ctx, svc)
	if objective != nil && objective.Spec.Standby != "" {
		standby = objective.Spec.Standby
	}
	ok, checks := r.probeTargetChecks(ctx, svc, target, standby)
	record(deichv1alpha1.SwitchoverConditionTargetChecksReachable, ok, deichv1alpha1.SwitchoverReasonChecksReachable, deichv1alpha1.SwitchoverReasonChecksUnreachable, checks)

	// Detection and lease expiry run side by side; the promotion then applies the copies.
	p := failover.PolicyFrom(objective, r.maxSkew)
	estimate := max(time.Duration(p.FailureThreshold)*p.ProbeInterval, p.LeaseDuration+p.MaxClockSkew) + took
	sw.Status.EstimatedRecoveryTime = &metav1.Duration{Duration: estimate.Round(time.Millisecond)}
	rto := ""
	if objective != nil {
		rto = fmt.Sprintf(" (RTO %s)", objective.Spec.RTO.Duration)
	}

	if len(failed) > 0 {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDrillFailed,
			fmt.Sprintf("drill failed: a failover to %s would not succeed now: %s. Passed: %s. Estimated recovery time %s%s",
				target, strings.Join(failed, "; "), strings.Join(passed, "; "), sw.Status.EstimatedRecoveryTime.Duration, rto),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventDrillFailed, action: "Drill"})
		return ctrl.Result{}, nil
	}
	s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonDrillPassed,
		fmt.Sprintf("drill passed: a failover to %s would succeed now, estimated recovery time %s%s; nothing was changed. %s",
			target, sw.Status.EstimatedRecoveryTime.Duration, rto, strings.Join(passed, "; ")),
		&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventDrillPassed, action: "Drill"})
	return ctrl.Result{}, nil
}

// objective returns the service's RecoveryObjective; nil when it cannot be read, and the
// failover policy's defaults apply.
func (r *SwitchoverReconciler) objective(ctx context.Context, svc *deichv1alpha1.SharedService) *deichv1alpha1.RecoveryObjective {
	obj := &deichv1alpha1.RecoveryObjective{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: svc.Spec.RecoveryObjectiveRef.Name}, obj); err != nil {
		return nil
	}
	return obj
}

// dryRunPromotion sends every copy of the service at target, in the form a promotion would
// apply, to target's API server as a server-side apply dry run, and returns how many were
// accepted. A copy the server rejects, or none at all, is an error.
func (r *SwitchoverReconciler) dryRunPromotion(ctx context.Context, svc *deichv1alpha1.SharedService, target string) (int, error) {
	dyn, mapper := r.local, r.mapper
	if target != r.site {
		conn, why := r.connection(ctx, target)
		if conn == nil {
			return 0, fmt.Errorf("cannot reach %s: %s", target, why)
		}
		dyn, mapper = conn.Dynamic, conn.Cluster.GetRESTMapper()
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	sel := labels.SelectorFromSet(labels.Set{render.LabelSharedService: svc.Name, render.LabelManagedBy: render.ManagedByDeich}).String()
	accepted := 0
	var rejected []string
	for _, res := range svc.Spec.Resources {
		gk := schema.GroupKind{Group: res.Group, Kind: res.Kind}
		mapping, err := mapper.RESTMapping(gk)
		if err != nil {
			return accepted, fmt.Errorf("kind %s is not served at %s: %w", gk, target, err)
		}
		ri := dyn.Resource(mapping.Resource).Namespace(svc.Namespace)
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return accepted, fmt.Errorf("list %s copies at %s: %w", gk, target, err)
		}
		for i := range list.Items {
			live := &list.Items[i]
			want, err := render.ActiveForm(live)
			if err == nil {
				_, err = ri.Apply(ctx, live.GetName(), want, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			}
			if err != nil {
				rejected = append(rejected, fmt.Sprintf("%s %s: %v", gk.Kind, live.GetName(), err))
				continue
			}
			accepted++
		}
	}
	switch {
	case len(rejected) > 0:
		sort.Strings(rejected)
		return accepted, fmt.Errorf("%d of %d copies rejected: %s", len(rejected), len(rejected)+accepted, strings.Join(rejected, "; "))
	case accepted == 0:
		return 0, fmt.Errorf("there are no copies of SharedService %s at %s to promote", svc.Name, target)
	}
	return accepted, nil
}

// probeTargetChecks runs the health checks that name target once. A check that cannot run
// (Unknown) fails the drill; a failing one does not, since a standby does not serve before
// it is promoted, and is reported.
func (r *SwitchoverReconciler) probeTargetChecks(ctx context.Context, svc *deichv1alpha1.SharedService, target string, standby deichv1alpha1.StandbyMode) (bool, string) {
	var checks []deichv1alpha1.HealthCheck
	for _, hc := range svc.Spec.HealthChecks {
		if hc.Site == target {
			checks = append(checks, hc)
		}
	}
	if len(checks) == 0 {
		return true, fmt.Sprintf("no health check names %s", target)
	}
	// Without a reader a workload check is Unknown: the target cannot be reached.
	var workloads client.Reader
	if target == r.site {
		workloads = r.apiReader
	} else if conn, _ := r.connection(ctx, target); conn != nil {
		workloads = conn.Cluster.GetAPIReader()
	}
	results := make([]health.Result, len(checks))
	var wg sync.WaitGroup
	for i, hc := range checks {
		wg.Go(func() {
			results[i] = r.prober.Probe(ctx, hc, svc.Namespace, workloads, caBundle(ctx, r.apiReader, svc.Namespace, hc))
		})
	}
	wg.Wait()

	var unreachable, reached []string
	for i, hc := range checks {
		res := results[i]
		switch res.Status {
		case health.StatusHealthy:
			reached = append(reached, fmt.Sprintf("%s Healthy", hc.Name))
		case health.StatusUnhealthy:
			reached = append(reached, fmt.Sprintf("%s Unhealthy, as expected of a %s standby (%s)", hc.Name, standby, res.Message))
		default:
			unreachable = append(unreachable, fmt.Sprintf("%s (%s)", hc.Name, res.Message))
		}
	}
	if len(unreachable) > 0 {
		return false, fmt.Sprintf("health checks of %s cannot run: %s", target, strings.Join(unreachable, "; "))
	}
	return true, fmt.Sprintf("health checks of %s reachable: %s", target, strings.Join(reached, "; "))
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
