package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	coordinationv1 "k8s.io/api/coordination/v1"
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
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/health"
	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/probes"
	"github.com/deich-io/deich/internal/readiness"
	"github.com/deich-io/deich/internal/render"
)

// FieldManager is the server-side apply field manager Deich writes copies with.
const FieldManager = mirror.FieldManager

// Limits of the status' object list and of the resync period.
const (
	maxListedResources = 256
	minResync          = time.Second
	maxResync          = 5 * time.Minute
)

// ServiceEvents carries "something this SharedService selects changed" from the informers to
// the SharedService controller.
type ServiceEvents chan event.GenericEvent

// NewServiceEvents returns a buffered channel of service events.
func NewServiceEvents() ServiceEvents { return make(ServiceEvents, 4096) }

// Notify queues a reconcile of owner. It is an informers.Handler.
func (e ServiceEvents) Notify(owner types.NamespacedName) {
	e <- event.GenericEvent{Object: &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: owner.Name}}}
}

// TryNotify queues a reconcile of owner without blocking the caller: when the channel is
// full the event is sent from a goroutine of its own.
func (e ServiceEvents) TryNotify(owner types.NamespacedName) {
	ev := event.GenericEvent{Object: &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: owner.Name}}}
	select {
	case e <- ev:
	default:
		go func() { e <- ev }()
	}
}

// SharedServiceReconciler keeps each SharedService mirrored: at the active site it renders the
// selected objects for the standby and applies them there with server-side apply, prunes
// copies that are no longer selected and reverts edits made to copies; at the standby it
// reports what it holds.
type SharedServiceReconciler struct {
	client      client.Client
	apiReader   client.Reader
	mapper      meta.RESTMapper
	sources     *informers.Set
	registry    *peer.Registry
	recorder    events.EventRecorder
	events      ServiceEvents
	clock       clock.PassiveClock
	site        string
	namespace   string
	parallelism int
	// readiness compiles the readyWhen rules of promotion stages once each.
	readiness    readiness.Cache
	probeWorkers int
	prober       *health.Prober
	probes       *probes.Scheduler
	local        dynamic.Interface
	localMeta    metadata.Interface
	maxSkew      time.Duration

	// keeper keeps every service's lease; leaseClients are its own clients, and
	// leaseStates what the reconcile keeps per service beside it.
	keeper       *lease.Keeper
	records      *lease.Records
	leaseClients *leaseClients
	leaseMu      sync.Mutex
	leaseStates  map[types.NamespacedName]*leaseState

	// fullRounds records each active service's last full round of mirroring.
	fullRounds roundLog
	// stamps records when this process last stamped each active service's copy at the
	// standby (mirrorService), so that a round need not read the copy to know.
	stamps roundLog
	// statusWrites records when this process last wrote each service's status
	// (onlyClocksMoved).
	statusWrites roundLog
	// syncTimes holds each service's status.lastSyncTime as the last reconcile computed it,
	// whether the status was written or not (LastSyncTime).
	syncTimes roundLog
	// partnerSynced holds, per service, the latest sync time (failover.LeaseRecord.SyncedAt)
	// the active wrote in its copy of the lease at this site's cluster, as the Lease watch saw
	// it: the standby's freshest evidence of its copy's age.
	partnerSynced roundLog
	// rendered remembers, per active service, which copies at the standby are current, so
	// that a full round renders only what changed.
	rendered renderCache
	// held watches, at a standby, the copies this site holds of each service (metadata only),
	// so that their count costs no list; heldEvents tells the controller, at low priority,
	// that they changed.
	held       *informers.Set
	heldEvents ServiceEvents
	// roleEvents tells the controller, ahead of everything else it has to do, that the lease
	// keeper switched a service between serving and standing by: after a site loss the
	// statuses of the promoted services then show it while the other reconciles still queue.
	roleEvents ServiceEvents
	// confirmed holds the active services whose copy the lease keeper may confirm current
	// between rounds (confirmSync).
	confirmed confirmations
	// history remembers when this site asked its partner for moves its history lacks.
	history historyBook
}

// SharedServiceOption configures a SharedServiceReconciler.
type SharedServiceOption func(*SharedServiceReconciler)

// WithServiceClock sets the clock the reconciler measures replication lag with.
func WithServiceClock(c clock.PassiveClock) SharedServiceOption {
	return func(r *SharedServiceReconciler) { r.clock = c }
}

// WithProber sets the health prober (tests use one with a fake clock or dialer).
func WithProber(p *health.Prober) SharedServiceOption {
	return func(r *SharedServiceReconciler) { r.prober = p }
}

// WithProbeWorkers bounds how many health probes run at once over all services
// (probes.DefaultWorkers when not set).
func WithProbeWorkers(n int) SharedServiceOption {
	return func(r *SharedServiceReconciler) { r.probeWorkers = n }
}

// WithMaxClockSkew sets the manager's --max-clock-skew, which the failover decisions use.
func WithMaxClockSkew(d time.Duration) SharedServiceOption {
	return func(r *SharedServiceReconciler) { r.maxSkew = d }
}

// WithLeaseRateLimit sets the rate limit of the lease keeper's own client to each cluster
// (--lease-qps, --lease-burst).
func WithLeaseRateLimit(qps float32, burst int) SharedServiceOption {
	return func(r *SharedServiceReconciler) {
		if qps > 0 {
			r.leaseClients.qps = qps
		}
		if burst > 0 {
			r.leaseClients.burst = burst
		}
	}
}

// WithApplyParallelism sets how many copies are applied to a peer at once.
func WithApplyParallelism(n int) SharedServiceOption {
	return func(r *SharedServiceReconciler) {
		if n > 0 {
			r.parallelism = n
		}
	}
}

// NewSharedServiceReconciler returns a reconciler for the manager of site, running in
// namespace. sources watches the selected objects at this site and must notify evts, as must
// the registry's copy watches; local writes objects at this site, and localMetadata watches
// the copies a standby holds.
func NewSharedServiceReconciler(c client.Client, apiReader client.Reader, local dynamic.Interface, localMetadata metadata.Interface, mapper meta.RESTMapper, sources *informers.Set, registry *peer.Registry, recorder events.EventRecorder, evts ServiceEvents, site, namespace string, opts ...SharedServiceOption) *SharedServiceReconciler {
	r := &SharedServiceReconciler{
		client:      c,
		apiReader:   apiReader,
		local:       local,
		localMeta:   localMetadata,
		maxSkew:     2 * time.Second,
		mapper:      mapper,
		sources:     sources,
		registry:    registry,
		recorder:    recorder,
		events:      evts,
		clock:       clock.RealClock{},
		site:        site,
		namespace:   namespace,
		parallelism: 16,
		prober:      health.NewProber(),

		leaseClients: &leaseClients{qps: DefaultLeaseQPS, burst: DefaultLeaseBurst},
		leaseStates:  map[types.NamespacedName]*leaseState{},
	}
	for _, o := range opts {
		o(r)
	}
	r.heldEvents = NewServiceEvents()
	r.roleEvents = NewServiceEvents()
	r.held = informers.NewMetadata(localMetadata, r.heldEvents.TryNotify, render.AnnotationContentHash)
	tick, ok := r.clock.(clock.WithTicker)
	if !ok {
		tick = clock.RealClock{}
	}
	r.probes = probes.New(tick, probes.Options{Workers: r.probeWorkers, Notify: r.probed, Observe: r.observeProbe,
		Probed: func(shared bool) { metrics.HealthProbes.WithLabelValues(site, strconv.FormatBool(shared)).Inc() }})
	r.records = lease.NewRecords(tick, lease.RecordOptions{
		WriteTimeout: leaseCallTimeout,
		ObserveRecordWrite: func(arbiter string, err error) {
			metrics.LeaseRecordWrites.WithLabelValues(site, arbiter, leaseWriteOutcome(err)).Inc()
		},
	})
	r.keeper = lease.New(tick, lease.Options{
		CallTimeout: leaseCallTimeout,
		Notify:      r.events.TryNotify,
		NotifyRole:  r.roleEvents.TryNotify,
		Observe:     r.observeLease,
		ConfirmSync: r.confirmSync,
		ObserveWrite: func(arbiter string, took time.Duration, err error) {
			metrics.LeaseWriteDuration.WithLabelValues(site, arbiter, leaseWriteOutcome(err)).Observe(took.Seconds())
		},
	})
	return r
}

// leaseWriteOutcome is the outcome label of a lease write's metrics.
func leaseWriteOutcome(err error) string {
	switch {
	case err == nil:
		return metrics.LeaseWriteOK
	case errors.Is(err, lease.ErrConflict):
		return metrics.LeaseWriteConflict
	default:
		return metrics.LeaseWriteError
	}
}

// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=resilience.deich.io,resources=sharedservices/finalizers,verbs=update
// +kubebuilder:rbac:groups=resilience.deich.io,resources=switchovers,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;delete
// The shared lease records live in the namespace deich-leases, which the first write creates.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=create
// The kinds a SharedService mirrors by default are readable at this site, and patchable:
// fencing and promotion switch them between active and standby form. Secrets and custom
// resources must be granted explicitly (see docs/operations.md).
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets;replicasets,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts;persistentvolumeclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;patch

// SetupWithManager registers the reconciler with mgr. Call SetupIndexes first.
func (r *SharedServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.leaseClients.setLocal(mgr.GetConfig()); err != nil {
		return err
	}
	if err := mgr.Add(r.keeper); err != nil {
		return fmt.Errorf("add lease keeper: %w", err)
	}
	if err := mgr.Add(r.probes); err != nil {
		return fmt.Errorf("add probe scheduler: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.held.Stop()
		return nil
	})); err != nil {
		return fmt.Errorf("add the watches of held copies: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&deichv1alpha1.SharedService{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&deichv1alpha1.RecoveryObjective{}, handler.EnqueueRequestsFromMapFunc(r.servicesForObjective),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&deichv1alpha1.ReplicationPeer{}, handler.EnqueueRequestsFromMapFunc(r.servicesForPeer),
			builder.WithPredicates(readyChanged{})).
		Watches(&coordinationv1.Lease{}, leaseRecordHandler{site: r.site, synced: &r.partnerSynced, records: r.records, keeper: r.keeper}).
		Watches(&deichv1alpha1.Switchover{}, handler.EnqueueRequestsFromMapFunc(serviceForSwitchover)).
		WatchesRawSource(source.Channel(r.events, &handler.EnqueueRequestForObject{})).
		WatchesRawSource(source.Channel(r.heldEvents, prioritized{handler.LowPriority})).
		WatchesRawSource(source.Channel(r.roleEvents, prioritized{rolePriority})).
		// Reconciles wait for the peer's answers; a few workers keep one slow service from
		// holding up the others. Health probes run apart, in the probe scheduler.
		// The priority queue lets events (an edit, a failing check, a lease change) pass the
		// periodic rounds, which wait at low priority (see periodic), and a site that starts
		// or stops serving pass both (rolePriority).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4, UsePriorityQueue: ptr.To(true)}).
		Named("sharedservice").
		Complete(r)
}

func (r *SharedServiceReconciler) servicesForObjective(ctx context.Context, o client.Object) []reconcile.Request {
	return r.listServices(ctx, client.MatchingFields{objectiveRefIndex: o.GetName()})
}

// servicesForPeer maps a ReplicationPeer to the services that name its site as a partner or
// as their witness.
func (r *SharedServiceReconciler) servicesForPeer(ctx context.Context, o client.Object) []reconcile.Request {
	return r.listServices(ctx, client.MatchingFields{serviceSiteIndex: o.(*deichv1alpha1.ReplicationPeer).Spec.Site})
}

func (r *SharedServiceReconciler) listServices(ctx context.Context, sel client.MatchingFields) []reconcile.Request {
	var list deichv1alpha1.SharedServiceList
	if err := r.client.List(ctx, &list, sel); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List SharedServices to requeue")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, s := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
	}
	return reqs
}

// leaseRecordHandler maps a change of a shared lease record at this site to the services
// whose copy changed holder or epoch, or appeared or went: a release or a takeover written here
// is acted on at once, while a renewal, which changes neither, wakes nobody — unless it carries
// a new sync time of another site, which it notes in synced and wakes the service for, so that
// the standby reports its copy's age when the active confirms it. Every new version of a record
// goes to the lease keeper as a read (Records.Seen, Keeper.ReadSoon), so that a standby sees
// each renewal as it is written, not up to a renewal interval later.
type leaseRecordHandler struct {
	site    string
	synced  *roundLog
	records *lease.Records
	keeper  *lease.Keeper
}

func (h leaseRecordHandler) Create(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(q, nil, e.Object)
}

func (h leaseRecordHandler) Update(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(q, e.ObjectOld, e.ObjectNew)
}

func (h leaseRecordHandler) Delete(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.enqueue(q, e.Object, nil)
}

func (leaseRecordHandler) Generic(context.Context, event.GenericEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func (h leaseRecordHandler) enqueue(q workqueue.TypedRateLimitingInterface[reconcile.Request], before, after client.Object) {
	if l, ok := after.(*coordinationv1.Lease); ok && h.records != nil && h.keeper != nil {
		var owners []types.NamespacedName
		for _, entry := range h.records.Seen(h.site, l) {
			owners = appendEntry(owners, entry)
		}
		for _, owner := range owners {
			h.keeper.ReadSoon(owner, h.site)
		}
	}
	changed, synced := changedEntries(h.site, before, after)
	for _, key := range changed {
		q.Add(reconcile.Request{NamespacedName: key})
	}
	// A new sync time alone calls for no reconcile: the keeper's verdict of the checks reads
	// it from here (probed), and the next periodic round reports it in status.
	for key, at := range synced {
		if last, ok := h.synced.get(key); !ok || at.After(last.at) {
			h.synced.set(key, round{at: at})
		}
	}
}

// changedEntries lists the services whose entry differs in holder, epoch or existence between
// two versions of a shared record at this site (nil: none), and the new sync times of entries
// held by a site other than site; a record Deich cannot read counts as having no entries.
func changedEntries(site string, before, after client.Object) ([]types.NamespacedName, map[types.NamespacedName]time.Time) {
	entries := func(o client.Object) map[string]failover.LeaseRecord {
		l, ok := o.(*coordinationv1.Lease)
		if !ok || l == nil || l.Namespace != lease.PartnerLeaseNamespace || l.Labels[render.LabelManagedBy] != render.ManagedByDeich {
			return nil
		}
		e, err := failover.EntriesFromLease(l)
		if err != nil {
			return nil
		}
		return e
	}
	old, cur := entries(before), entries(after)
	var out []types.NamespacedName
	var synced map[types.NamespacedName]time.Time
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, ok := cur[k]; !ok {
			out = appendEntry(out, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		o, ok := old[k]
		n := cur[k]
		if !ok || o.Holder != n.Holder || o.Epoch != n.Epoch {
			out = appendEntry(out, k)
		}
		if n.Holder != "" && n.Holder != site && !n.SyncedAt.IsZero() && !n.SyncedAt.Equal(o.SyncedAt) {
			if key := appendEntry(nil, k); len(key) == 1 {
				if synced == nil {
					synced = map[types.NamespacedName]time.Time{}
				}
				synced[key[0]] = n.SyncedAt
			}
		}
	}
	return out, synced
}

func appendEntry(out []types.NamespacedName, key string) []types.NamespacedName {
	if ns, name, ok := strings.Cut(key, "/"); ok {
		out = append(out, types.NamespacedName{Namespace: ns, Name: name})
	}
	return out
}

// serviceForSwitchover maps a Switchover to the service it moves.
func serviceForSwitchover(_ context.Context, o client.Object) []reconcile.Request {
	sw, ok := o.(*deichv1alpha1.Switchover)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: sw.Namespace, Name: sw.Spec.SharedServiceName}}}
}

// readyChanged passes ReplicationPeer updates that change its spec (its egress policy, say)
// or the status or reason of its Ready condition, so services react to a peer coming and going
// (mirroring, and the Quorum condition of the services it is witness for) but not to every
// heartbeat. Creations and deletions pass too.
type readyChanged struct{ predicate.Funcs }

func (readyChanged) Update(e event.UpdateEvent) bool {
	oldP, ok1 := e.ObjectOld.(*deichv1alpha1.ReplicationPeer)
	newP, ok2 := e.ObjectNew.(*deichv1alpha1.ReplicationPeer)
	if !ok1 || !ok2 {
		return false
	}
	return oldP.Generation != newP.Generation ||
		changed(meta.FindStatusCondition(oldP.Status.Conditions, deichv1alpha1.ConditionReady),
			meta.FindStatusCondition(newP.Status.Conditions, deichv1alpha1.ConditionReady))
}

// mirroredKind is one entry of spec.resources, resolved.
type mirroredKind struct {
	gk       schema.GroupKind
	resource schema.GroupVersionResource // at this site
	version  string
}

// desiredCopy is one rendered copy for the peer.
type desiredCopy struct {
	kind *mirroredKind
	name string
	// obj is the rendered copy. A full round holds it encoded instead, or, past what a round
	// holds (see hold), not at all: then rerender makes it again where it is needed. All
	// three are nil when the copy at the standby is known to be current (see renderCache)
	// and nothing was rendered.
	obj      *unstructured.Unstructured
	encoded  []byte
	rerender func() (*unstructured.Unstructured, error)
	hash     string
	// key is what the copy was rendered from.
	key renderKey
	// sourceStandby is set when the source was in a standby form a promotion switches
	// (awaitsSwitch).
	sourceStandby bool
}

// rendered reports whether the copy was rendered in this round, i.e. must be checked or
// written.
func (d desiredCopy) rendered() bool { return d.obj != nil || d.encoded != nil || d.rerender != nil }

// object returns the rendered copy: decoded when it is held encoded, rendered again when it
// is not held.
func (d desiredCopy) object() (*unstructured.Unstructured, error) {
	switch {
	case d.obj != nil:
		return d.obj, nil
	case d.encoded != nil:
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(d.encoded); err != nil {
			return nil, fmt.Errorf("decode the copy of %s %s: %w", d.kind.gk.Kind, d.name, err)
		}
		return u, nil
	case d.rerender != nil:
		return d.rerender()
	}
	return nil, nil
}

// serviceScope is what one reconcile of a SharedService knows; it lives for one call.
type serviceScope struct {
	svc       *deichv1alpha1.SharedService
	before    *deichv1alpha1.SharedService
	owner     types.NamespacedName
	now       time.Time
	objective *deichv1alpha1.RecoveryObjective
	kinds     []*mirroredKind
	conn      *peer.Connection
	// egress is what may leave for the standby (nil: anything), and egressVersion the UID and
	// generation of the ReplicationPeer it is of.
	egress        *render.Egress
	egressVersion string
	// denied are the selected objects the egress policy keeps here, by the copy they would
	// have had, found by this reconcile's full round.
	denied  map[copyRef]*render.EgressDeniedError
	desired []desiredCopy
	// lease is the lease keeper's snapshot this reconcile acted on.
	lease *leaseSnapshot
	// recordedEpoch is set when this reconcile recorded a promotion complete: the epoch it
	// served on, noted in the service's leaseState once the status patch succeeded.
	recordedEpoch int64

	// quorum is the Quorum condition this reconcile arrived at: whether a usable witness
	// breaks ties for the service.
	quorum metav1.Condition
	// witness is the ReplicationPeer of the service's witness, when it names one with role
	// Witness.
	witness *deichv1alpha1.ReplicationPeer
	// sourceStandby is set when the round rendered an object of the service that is in
	// standby form at this site (see reassertForm).
	sourceStandby bool
	// data is what the replicationLag rules of the service's stages said, at the site that
	// serves.
	data dataLag
	// switchover names the Switchover that moves the service now, if any, and switchoverBy
	// the user who requested it.
	switchover, switchoverBy string
	// synced is the Synced condition this reconcile arrived at.
	synced metav1.Condition
	// terminal marks a Synced=False the user must fix; the phase becomes Error.
	terminal bool
	// changesOnly is set when this reconcile mirrored the changed objects alone: status
	// keeps what the last full round recorded of the objects.
	changesOnly bool
	// changesSince is when the watches saw the first of the changes this reconcile took.
	changesSince time.Time
	// copiesWritten counts the copies this reconcile applied at the standby.
	copiesWritten int
	// roundDone is set when this reconcile's round of mirroring succeeded.
	roundDone bool
}

func (s *serviceScope) setSynced(status metav1.ConditionStatus, reason, msg string) {
	s.synced = metav1.Condition{Type: deichv1alpha1.ServiceConditionSynced, Status: status, Reason: reason, Message: msg, ObservedGeneration: s.svc.Generation}
}

func (s *serviceScope) fail(reason, msg string, terminal bool) {
	s.setSynced(metav1.ConditionFalse, reason, msg)
	s.terminal = terminal
}

// Reconcile runs the phases of one SharedService (see phases) over a scope that lives for
// the call, and writes the status they computed with one patch, whatever phase ended it.
func (r *SharedServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	svc := &deichv1alpha1.SharedService{}
	if err := r.client.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get SharedService %s: %w", req, err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("site", r.site)
	ctx = ctrl.LoggerInto(ctx, log)

	s := &serviceScope{svc: svc, before: svc.DeepCopy(), owner: req.NamespacedName, now: r.clock.Now()}

	if !svc.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}

	defer func() {
		if err := r.report(ctx, s); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	for _, p := range r.phases() {
		res, done, err := p.run(ctx, s)
		if err != nil || done {
			if err != nil {
				err = fmt.Errorf("%s: %w", p.name, err)
			}
			return res, err
		}
	}
	return ctrl.Result{}, nil
}

// reconcilePhase is one step of a SharedService's reconcile. Each works on the scope the
// earlier ones filled in; done ends the reconcile with the phase's result.
type reconcilePhase struct {
	name string
	run  func(ctx context.Context, s *serviceScope) (result ctrl.Result, done bool, err error)
}

// phases are the steps of a reconcile, in order: whether this site takes part in the service,
// its objective and kinds, its health checks, its lease, and then, by what the lease decided,
// mirroring to the standby or reporting what this site holds as the standby.
func (r *SharedServiceReconciler) phases() []reconcilePhase {
	return []reconcilePhase{
		{name: "participation", run: r.reconcileParticipation},
		{name: "objective", run: r.reconcileObjective},
		{name: "health", run: r.reconcileHealth},
		{name: "lease", run: r.reconcileLease},
		{name: "workload", run: r.reconcileWorkload},
	}
}

// reconcileParticipation ends the reconcile when this site is not one of the service's
// partners, or the namespace is one Deich never mirrors.
func (r *SharedServiceReconciler) reconcileParticipation(_ context.Context, s *serviceScope) (ctrl.Result, bool, error) {
	if r.roleOf(s.svc) == "" {
		s.fail(deichv1alpha1.ServiceReasonNotParticipating, fmt.Sprintf("site %s is neither primarySite nor standbySite of this service", r.site), true)
		r.forget(s.owner)
		return ctrl.Result{}, true, nil
	}
	if reason := r.namespaceRefused(s.svc.Namespace); reason != "" {
		s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, reason, true)
		r.forget(s.owner)
		return ctrl.Result{}, true, nil
	}
	return ctrl.Result{}, false, nil
}

// reconcileObjective loads the witness, the objective and the kinds the service mirrors; what
// is missing is reported in a condition and waits for the object that supplies it.
func (r *SharedServiceReconciler) reconcileObjective(ctx context.Context, s *serviceScope) (ctrl.Result, bool, error) {
	s.quorum, s.witness = witnessQuorum(ctx, r.client, s.svc)
	if !s.loadObjective(ctx, r.client) || !r.resolveKinds(s) {
		return ctrl.Result{}, true, nil
	}
	return ctrl.Result{}, false, nil
}

// reconcileHealth takes the latest results of the health checks, which judge the site the
// lease names.
func (r *SharedServiceReconciler) reconcileHealth(_ context.Context, s *serviceScope) (ctrl.Result, bool, error) {
	r.adoptLeaseView(s)
	r.checkHealth(s)
	setHealthCondition(s)
	return ctrl.Result{}, false, nil
}

// reconcileLease hands the lease keeper what this reconcile learned and takes its decision.
func (r *SharedServiceReconciler) reconcileLease(ctx context.Context, s *serviceScope) (ctrl.Result, bool, error) {
	prev, _ := r.keeper.Snapshot(s.owner)
	var watched time.Time
	if last, ok := r.partnerSynced.get(s.owner); ok {
		watched = last.at
	}
	adoptSyncStamp(s.svc, r.site, prev.Observations, watched)
	snap, ok := r.keepLease(ctx, s)
	if !ok {
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, true, nil
	}
	s.lease = &snap
	r.applyLeaseView(s)
	r.completeHistory(ctx, s)
	r.failBack(ctx, s)
	return ctrl.Result{}, false, nil
}

// adoptSyncStamp takes into status.lastSyncTime the time the active last confirmed this
// site's copy of the service in sync, when that is newer: before the lease decides, so that
// the RPO gate of a promotion judges the latest evidence. The active tells it in the copies of
// the lease it writes — as this site's keeper last read them (observations), and as the Lease
// watch last saw the copy at this site's cluster (watched) — and in the annotation its
// mirroring stamps on the copy of the SharedService here.
func adoptSyncStamp(svc *deichv1alpha1.SharedService, site string, observations map[string]failover.Observation, watched time.Time) {
	latest := latestPartnerSync(site, observations, watched)
	if stamp, ok := svc.Annotations[deichv1alpha1.AnnotationLastSyncTime]; ok {
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil && t.After(latest) {
			latest = t
		}
	}
	if latest.IsZero() || svc.Status.LastSyncTime != nil && !latest.After(svc.Status.LastSyncTime.Time) {
		return
	}
	svc.Status.LastSyncTime = &metav1.Time{Time: latest}
}

// latestPartnerSync is the latest sync time the partner wrote in the copies of the lease, as
// this site's keeper last read them (observations) or its Lease watch saw them (watched).
func latestPartnerSync(site string, observations map[string]failover.Observation, watched time.Time) time.Time {
	latest := watched
	for _, obs := range observations {
		if rec := obs.Record; rec.Exists() && rec.Holder != site && rec.SyncedAt.After(latest) {
			latest = rec.SyncedAt
		}
	}
	return latest
}

// reconcileWorkload mirrors the service to the standby while this site serves (or hands
// over), and reports what it holds as the standby otherwise.
func (r *SharedServiceReconciler) reconcileWorkload(ctx context.Context, s *serviceScope) (ctrl.Result, bool, error) {
	snap := s.lease
	switch {
	case !snap.read || snap.hold:
		// Until the lease has been read, and while a manager that has just started renews
		// what its predecessor held, this site cannot tell its role; the keeper calls for a
		// reconcile when it can.
		if snap.message != "" {
			s.setSynced(metav1.ConditionUnknown, deichv1alpha1.ServiceReasonLeaseUnknown, snap.message)
		}
		if r.firstClaim(s) {
			r.warmSources(ctx, s)
		}
		return ctrl.Result{RequeueAfter: time.Second}, true, nil
	case snap.serving:
		result, err := r.reconcileActive(ctx, s)
		return result, true, err
	case snap.finalSync:
		// The last push of a hand-over must land before the keeper releases the lease: past
		// its deadline the partner may serve already (see finalSyncWindow).
		syncCtx, cancel := context.WithDeadline(ctx, snap.finalSyncUntil)
		defer cancel()
		result, err := r.reconcileActive(syncCtx, s)
		if err == nil && s.synced.Status == metav1.ConditionTrue {
			r.synced(s.owner, s.now)
		}
		return result, true, err
	default:
		result, err := r.reconcileStandby(ctx, s)
		return result, true, err
	}
}

// activeSite is the site that serves svc now.
func activeSite(svc *deichv1alpha1.SharedService) string {
	if svc.Status.ActiveSite != "" {
		return svc.Status.ActiveSite
	}
	return svc.Spec.PrimarySite
}

// peerSite is the partner of site for svc.
func peerSite(svc *deichv1alpha1.SharedService, site string) string {
	if site == svc.Spec.PrimarySite {
		return svc.Spec.StandbySite
	}
	return svc.Spec.PrimarySite
}

// roleOf is the role of this manager's site for svc, or "" when it takes no part.
func (r *SharedServiceReconciler) roleOf(svc *deichv1alpha1.SharedService) deichv1alpha1.Role {
	switch {
	case r.site != svc.Spec.PrimarySite && r.site != svc.Spec.StandbySite:
		return ""
	case r.site == activeSite(svc):
		return deichv1alpha1.RoleActive
	default:
		return deichv1alpha1.RoleStandby
	}
}

// reconcileActive pushes the service's objects to the standby.
func (r *SharedServiceReconciler) reconcileActive(ctx context.Context, s *serviceScope) (ctrl.Result, error) {
	if controllerutil.AddFinalizer(s.svc, deichv1alpha1.SharedServiceFinalizer) {
		// The patch answers with the object as stored, status included: keep the status this
		// reconcile has computed so far (a promotion just recorded, say), which report writes.
		status := s.svc.Status.DeepCopy()
		patch := client.MergeFrom(s.before)
		if err := r.client.Patch(ctx, s.svc, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		s.before = s.svc.DeepCopy()
		s.svc.Status = *status
	}
	r.held.Retain(s.owner) // this site holds no copies of a service it serves
	defer r.reassertForm(ctx, s)
	resync := resyncPeriod(s.objective)
	// No confirmation between rounds while this one runs (see confirmations).
	r.confirmed.suspend(s.owner)
	defer func() {
		if !s.roundDone {
			r.fullRounds.forget(s.owner) // the next round goes through every object
			return
		}
		if last, ok := r.fullRounds.get(s.owner); ok && last.generation == s.svc.Generation && last.objectiveGeneration == s.objective.Generation {
			r.confirmed.allow(s.owner, confirmable{standby: s.conn.Site, copies: s.conn.Copies})
		}
	}()

	// Nothing is watched or listed for a standby that cannot take copies: after a site is
	// lost, the services promoted at its partner would otherwise all start their watches at
	// once, while the other promotions still wait for the same API server.
	standby := peerSite(s.svc, r.site)
	conn, ok := r.readyPeer(ctx, standby)
	if !ok {
		msg := fmt.Sprintf("no Ready ReplicationPeer for site %s; the copies there are left as they are", standby)
		if p, err := findPeer(ctx, r.client, standby); err == nil && p != nil && p.Spec.IsWitness() {
			msg = fmt.Sprintf("site %s is a witness (ReplicationPeer %s has role Witness) and nothing is mirrored to a witness; a SharedService's sites must be partners, its witness goes in spec.witnessSite", standby, p.Name)
		}
		s.fail(deichv1alpha1.ServiceReasonPeerNotConnected, msg, false)
		// The standby learns of the first round after it is back from a stamp at once.
		r.stamps.forget(s.owner)
		return ctrl.Result{RequeueAfter: resync}, nil
	}
	s.conn = conn
	if p, err := findPeer(ctx, r.client, standby); err == nil && p != nil {
		s.egress = render.EgressOf(p.Name, p.Spec.Egress)
		s.egressVersion = fmt.Sprintf("%s/%d", p.UID, p.Generation)
	}
	var denied *render.EgressDeniedError
	if errors.As(s.egress.Check(egressSubject("SharedService", s.svc)), &denied) {
		return r.withdrawService(ctx, s, denied)
	}
	if !r.peerAccepts(ctx, s) {
		r.stamps.forget(s.owner)
		return ctrl.Result{RequeueAfter: resync}, nil
	}
	sources, ready, listErr := r.collectSources(s)
	if !ready {
		msg := "listing the selected objects"
		if listErr != nil {
			msg = fmt.Sprintf("cannot list the selected objects at %s: %v", r.site, listErr)
		}
		s.setSynced(metav1.ConditionUnknown, deichv1alpha1.ServiceReasonWaitingForCaches, msg)
		return ctrl.Result{RequeueAfter: min(resync, 5*time.Second)}, nil
	}

	if done, result := r.mirrorChanges(ctx, s, resync, standby); done {
		// Between full rounds, the keeper confirms the copy current (confirmSync).
		if snap, ok := r.keeper.Snapshot(s.owner); ok && !snap.SyncedAt.IsZero() &&
			(s.svc.Status.LastSyncTime == nil || snap.SyncedAt.After(s.svc.Status.LastSyncTime.Time)) {
			s.svc.Status.LastSyncTime = &metav1.Time{Time: snap.SyncedAt}
		}
		return result, nil
	}
	copies, copiesKnown, err := r.peerCopies(s, standby)
	if err != nil {
		s.fail(deichv1alpha1.ServiceReasonKindMissingAtPeer, err.Error(), false)
		return ctrl.Result{RequeueAfter: resync}, nil
	}
	if !r.render(s, sources, standby, copies) {
		return ctrl.Result{}, nil
	}
	if err := r.apply(ctx, s, copies); err != nil {
		r.stamps.forget(s.owner)
		return ctrl.Result{RequeueAfter: resync}, nil //nolint:nilerr // reported in the Synced condition; retried at the next resync.
	}
	if copiesKnown {
		if err := r.prune(ctx, s, copies); err != nil {
			return ctrl.Result{RequeueAfter: resync}, nil //nolint:nilerr // reported in the Synced condition; retried at the next resync.
		}
	}
	if len(s.denied) > 0 {
		// The standby lacks part of the service: not a complete copy, so its age is not
		// renewed, and every round goes through every object until the denials end.
		s.setSynced(metav1.ConditionFalse, deichv1alpha1.ServiceReasonEgressDenied, egressDeniedMessage(s.denied, len(s.desired), standby))
		for _, d := range s.denied {
			metrics.EgressDenials.WithLabelValues(d.Peer, d.Rule).Inc()
		}
	} else {
		s.setSynced(metav1.ConditionTrue, deichv1alpha1.ServiceReasonSynced, fmt.Sprintf("%d object(s) mirrored to %s", len(s.desired), standby))
		s.svc.Status.LastSyncTime = &metav1.Time{Time: s.now}
		s.roundDone = true
		// The lease's next writes at the standby's cluster tell it (see stampDue).
		r.keeper.Synced(s.owner, s.now)
	}
	if copiesKnown && s.roundDone {
		// Only a round that could prune went through every object.
		r.rendered.retain(s.owner, desiredRefs(s.desired))
		r.fullRounds.set(s.owner, round{generation: s.svc.Generation, objectiveGeneration: s.objective.Generation, egressVersion: s.egressVersion, at: s.now})
		metrics.MirrorRounds.WithLabelValues(s.svc.Namespace, s.svc.Name, metrics.RoundFull).Inc()
	}
	if !r.stampDue(s, resync) {
		return periodic(jitter(resync)), nil
	}
	if r.leaseCarriesStamps(s, resync) && r.serviceCurrentAtPeer(ctx, s) {
		// The lease tells the standby the sync time; its copy of the service is as it
		// should be, and a write would only wake its manager.
		r.stamps.set(s.owner, round{generation: s.svc.Generation, at: s.now})
		return periodic(jitter(resync)), nil
	}
	if err := r.mirrorService(ctx, s); err != nil {
		r.stamps.forget(s.owner)
		if !r.peerRefused(s, err) {
			s.fail(deichv1alpha1.ServiceReasonApplyFailed, fmt.Sprintf("apply SharedService to %s: %v", standby, err), false)
		}
		return ctrl.Result{RequeueAfter: resync}, nil
	}
	r.stamps.set(s.owner, round{generation: s.svc.Generation, at: s.now})
	return periodic(jitter(resync)), nil
}

// reassertForm asks the keeper to switch the service's objects at this site to their active
// form again when this site serves and the round rendered one of them in standby form: it was
// written so after the keeper's switch — by a write the other site sent before it was cut off
// and the network delivered late, say. The keeper trusts its last switch otherwise, so without
// this the site would go on holding the lease with a workload that does not run.
func (r *SharedServiceReconciler) reassertForm(ctx context.Context, s *serviceScope) {
	if !s.sourceStandby || s.lease == nil || !s.lease.serving {
		return
	}
	ctrl.LoggerFrom(ctx).Info("An object of the service is in standby form while this site serves; switching it back to its active form")
	r.keeper.Reassert(s.owner)
}

// namespaceRefused says why objects of namespace may never leave this site, or "".
func (r *SharedServiceReconciler) namespaceRefused(namespace string) string {
	switch namespace {
	case metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease:
		return fmt.Sprintf("namespace %s belongs to the cluster itself; its objects are never mirrored", namespace)
	case r.namespace:
		return fmt.Sprintf("namespace %s is the Deich manager's own (it holds peer credentials); its objects are never mirrored", namespace)
	}
	return ""
}

// loadObjective reads the RecoveryObjective and notes its targets in status.
func (s *serviceScope) loadObjective(ctx context.Context, c client.Reader) bool {
	obj := &deichv1alpha1.RecoveryObjective{}
	if err := c.Get(ctx, client.ObjectKey{Name: s.svc.Spec.RecoveryObjectiveRef.Name}, obj); err != nil {
		s.fail(deichv1alpha1.ServiceReasonObjectiveNotFound, fmt.Sprintf("RecoveryObjective %s: %v", s.svc.Spec.RecoveryObjectiveRef.Name, err), apierrors.IsNotFound(err))
		return false
	}
	s.objective = obj
	s.svc.Status.Objective = &deichv1alpha1.ObjectiveSummary{RPO: &obj.Spec.RPO, RTO: &obj.Spec.RTO}
	return true
}

// resolveKinds checks spec.resources and finds each kind's resource at this site.
func (r *SharedServiceReconciler) resolveKinds(s *serviceScope) bool {
	for _, res := range s.svc.Spec.Resources {
		gk := schema.GroupKind{Group: res.Group, Kind: res.Kind}
		if err := render.Mirrorable(gk); err != nil {
			s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, err.Error(), true)
			return false
		}
		mapping, err := r.mapper.RESTMapping(gk)
		if err != nil {
			s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, fmt.Sprintf("kind %s is not served at site %s: %v", gk, r.site, err), true)
			return false
		}
		if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
			s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, fmt.Sprintf("kind %s is cluster-scoped; a SharedService mirrors objects of its own namespace only", gk), true)
			return false
		}
		s.kinds = append(s.kinds, &mirroredKind{gk: gk, resource: mapping.Resource, version: mapping.GroupVersionKind.Version})
	}
	return true
}

// firstClaim reports whether this site is the primary of a service whose lease has never
// been claimed: the service is being put under protection here, and this site will serve it.
func (r *SharedServiceReconciler) firstClaim(s *serviceScope) bool {
	return r.site == s.svc.Spec.PrimarySite && (s.svc.Status.Lease == nil || s.svc.Status.Lease.Epoch == 0)
}

// warmSources starts the watches of the service's sources while the service is put under
// protection at this site (firstClaim), so that their first list runs beside the claim rather
// than after it: the first round then finds them listed. A promotion after a failure starts
// none: the watches of a thousand promoted services would all start at once, at the API
// server the promotions wait for. As in reconcileActive, nothing is watched for a standby that
// cannot take copies.
func (r *SharedServiceReconciler) warmSources(ctx context.Context, s *serviceScope) {
	if _, ok := r.readyPeer(ctx, peerSite(s.svc, r.site)); !ok {
		r.sources.Retain(s.owner)
		return
	}
	keys, err := r.sourceKeys(s)
	if err != nil {
		return // reported by the round that needs them
	}
	for _, key := range keys {
		// A list that fails is reported by the round that needs it.
		r.sources.Start(key, s.owner)
	}
	r.sources.Retain(s.owner, keys...)
}

// collectSources returns the selected objects of every kind, from watches started on demand.
func (r *SharedServiceReconciler) collectSources(s *serviceScope) (map[*mirroredKind][]*informers.Object, bool, error) {
	keys, err := r.sourceKeys(s)
	if err != nil {
		s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, fmt.Sprintf("spec.selector: %v", err), true)
		return nil, false, nil
	}
	var firstErr error
	out := make(map[*mirroredKind][]*informers.Object, len(s.kinds))
	ready := true
	for i, k := range s.kinds {
		objs, synced, err := r.sources.Ensure(keys[i], s.owner)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", k.gk, err)
		}
		ready = ready && synced
		out[k] = objs
	}
	r.sources.Retain(s.owner, keys...)
	return out, ready, firstErr
}

// sourceKeys are the keys of the watches of the service's sources, one per kind, in the order
// of s.kinds.
func (r *SharedServiceReconciler) sourceKeys(s *serviceScope) ([]informers.Key, error) {
	sel, err := metav1.LabelSelectorAsSelector(&s.svc.Spec.Selector)
	if err != nil {
		return nil, err
	}
	keys := make([]informers.Key, 0, len(s.kinds))
	for _, k := range s.kinds {
		keys = append(keys, informers.Key{Resource: k.resource, Namespace: s.svc.Namespace, Selector: sel.String()})
	}
	return keys, nil
}

// readyPeer returns the connection to site while its ReplicationPeer is Ready.
func (r *SharedServiceReconciler) readyPeer(ctx context.Context, site string) (*peer.Connection, bool) {
	conn, ok := r.registry.Get(site)
	return conn, ok && r.peerReady(ctx, site)
}

// peerReady reports whether the ReplicationPeer for site is Ready.
func (r *SharedServiceReconciler) peerReady(ctx context.Context, site string) bool {
	ok, _ := peerReadiness(ctx, r.client, site)
	return ok
}

// renderTarget is where and how the service's copies are rendered for.
func (r *SharedServiceReconciler) renderTarget(s *serviceScope, standby string) render.Target {
	return render.Target{
		SourceSite: r.site,
		Site:       standby,
		Role:       deichv1alpha1.RoleStandby,
		Standby:    s.objective.Spec.Standby,
		Service:    s.svc.Name,
		Overrides:  s.svc.Spec.Overrides,
		Egress:     s.egress,
	}
}

// isOwnedCopy reports whether obj is a copy Deich mirrored here from another site.
func isOwnedCopy(obj *unstructured.Unstructured) bool {
	return obj.GetLabels()[render.LabelManagedBy] == render.ManagedByDeich
}

type copyRef struct {
	resource schema.GroupVersionResource
	name     string
}

// peerCopies returns the copies at the peer, watched so that edits there are reverted at once.
// known is false while the watches are still listing; pruning must then wait.
func (r *SharedServiceReconciler) peerCopies(s *serviceScope, standby string) (map[copyRef]*informers.Object, bool, error) {
	mapper := s.conn.Cluster.GetRESTMapper()
	copies := map[copyRef]*informers.Object{}
	keys := make([]informers.Key, 0, len(s.kinds))
	known := true
	for _, k := range s.kinds {
		mapping, err := mapper.RESTMapping(k.gk, k.version)
		if err != nil {
			return nil, false, fmt.Errorf("kind %s is not served at %s (install its CRD there): %w", k.gk, standby, err)
		}
		if mapping.Resource != k.resource {
			return nil, false, fmt.Errorf("kind %s is served as %s at %s but as %s here", k.gk, mapping.Resource, standby, k.resource)
		}
		key := informers.Key{Resource: k.resource, Namespace: s.svc.Namespace, Selector: mirror.Selector(s.svc.Name, r.site)}
		keys = append(keys, key)
		objs, synced, _ := s.conn.Copies.Ensure(key, s.owner) // an unreachable peer fails the apply, which says why
		known = known && synced
		for _, o := range objs {
			copies[copyRef{k.resource, o.GetName()}] = o
		}
	}
	s.conn.Copies.Retain(s.owner, keys...)
	return copies, known, nil
}

// apply brings every copy at the peer up to date, in parallel. A copy is applied when it is
// missing there or differs from what was rendered (changed at the source, or edited at the
// peer). A rejected copy leaves the peer's last good copy in place.
//
// The watch of the copies keeps their metadata only. A copy whose content hash differs from
// the rendering is applied at once; one with the same hash whose content is not known to be
// current (see renderCache) is read from the peer and compared, since an edit there leaves
// the hash as it was.
func (r *SharedServiceReconciler) apply(ctx context.Context, s *serviceScope, copies map[copyRef]*informers.Object) error {
	var todo, verify []desiredCopy
	for _, d := range s.desired {
		if !d.rendered() {
			continue // known to be current at the standby: nothing was rendered
		}
		cur, ok := copies[copyRef{d.kind.resource, d.name}]
		if !ok || cur.GetAnnotations()[render.AnnotationContentHash] != d.hash {
			todo = append(todo, d)
			continue
		}
		verify = append(verify, d)
	}
	todo = append(todo, r.staleCopies(ctx, s, verify)...)
	if len(todo) == 0 {
		return nil
	}
	peerSite := s.conn.Writer()
	// A copy the watch holds there says the namespace is there; a round that holds none
	// (the first copy of the namespace, or one deleted there since) makes sure of it.
	if len(copies) == 0 {
		if err := peerSite.EnsureNamespace(ctx, s.svc.Namespace); err != nil {
			if !r.peerRefused(s, err) {
				s.fail(deichv1alpha1.ServiceReasonApplyFailed, err.Error(), false)
			}
			return err
		}
	}
	writes := make([]mirror.Copy, 0, len(todo))
	for _, d := range todo {
		writes = append(writes, mirror.Copy{Resource: d.kind.resource, Kind: d.kind.gk.Kind, Name: d.name, Namespace: s.svc.Namespace,
			JSON: d.encoded, Obj: d.obj, Render: d.rerender})
	}
	versions, failures := peerSite.ApplyAll(ctx, r.parallelism, writes)
	s.copiesWritten += len(writes) - len(failures)
	for i, v := range versions {
		if v != "" {
			d := todo[i]
			r.rendered.record(s.owner, copyRef{d.kind.resource, d.name}, d.key, d.hash, v)
		}
	}
	if len(failures) > 0 {
		msg := fmt.Sprintf("%d of %d copies not applied to %s (the last good copies stay): %s", len(failures), len(todo), s.conn.Site, failures[0])
		if len(failures) > 1 {
			msg += fmt.Sprintf("; and %d more", len(failures)-1)
		}
		if !r.peerRefused(s, failureErrors(failures)...) {
			s.fail(deichv1alpha1.ServiceReasonApplyFailed, msg, false)
		}
		return errors.New(msg)
	}
	return nil
}

// verifyListAbove is how many copies with an unknown content make staleCopies list their kind
// at the peer once rather than read each copy.
const verifyListAbove = 64

// staleCopies returns the copies of verify whose content at the peer does not cover the
// rendering, and remembers the others as current. A copy that cannot be read counts as
// stale: applying it is always safe.
func (r *SharedServiceReconciler) staleCopies(ctx context.Context, s *serviceScope, verify []desiredCopy) []desiredCopy {
	if len(verify) == 0 {
		return nil
	}
	stored := make([]*unstructured.Unstructured, len(verify))
	if len(verify) > verifyListAbove {
		// Many at once (the first full round after a start): one list per kind.
		byResource := map[schema.GroupVersionResource]map[string]*unstructured.Unstructured{}
		for _, d := range verify {
			if _, done := byResource[d.kind.resource]; done {
				continue
			}
			list, err := s.conn.Dynamic.Resource(d.kind.resource).Namespace(s.svc.Namespace).
				List(ctx, metav1.ListOptions{LabelSelector: mirror.Selector(s.svc.Name, r.site)})
			m := map[string]*unstructured.Unstructured{}
			if err == nil {
				for i := range list.Items {
					m[list.Items[i].GetName()] = &list.Items[i]
				}
			}
			byResource[d.kind.resource] = m
		}
		for i, d := range verify {
			stored[i] = byResource[d.kind.resource][d.name]
		}
	} else {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(max(r.parallelism, 1))
		for i, d := range verify {
			g.Go(func() error {
				if u, err := s.conn.Dynamic.Resource(d.kind.resource).Namespace(s.svc.Namespace).Get(gctx, d.name, metav1.GetOptions{}); err == nil {
					stored[i] = u // each goroutine writes its own index
				}
				return nil // a copy that cannot be read is applied
			})
		}
		_ = g.Wait()
	}
	var stale []desiredCopy
	for i, d := range verify {
		cur := stored[i]
		want, err := d.object()
		if cur == nil || err != nil || !render.Covers(cur.Object, want.Object) {
			stale = append(stale, d)
			continue
		}
		r.rendered.record(s.owner, copyRef{d.kind.resource, d.name}, d.key, d.hash, cur.GetResourceVersion())
	}
	return stale
}

// prune deletes copies at the peer whose source is gone or no longer selected.
func (r *SharedServiceReconciler) prune(ctx context.Context, s *serviceScope, copies map[copyRef]*informers.Object) error {
	want := desiredRefs(s.desired)
	var withdrawn []*render.EgressDeniedError
	defer func() { r.recordWithdrawal(s, withdrawn) }()
	for ref, cp := range copies {
		if _, ok := want[ref]; ok {
			continue
		}
		if err := r.pruneCopy(ctx, s, ref, cp); err != nil {
			return err
		}
		if d, ok := s.denied[ref]; ok {
			withdrawn = append(withdrawn, d)
		}
	}
	return nil
}

// pruneCopy deletes one copy at the peer, the one that was read: a copy re-created since
// is left alone.
func (r *SharedServiceReconciler) pruneCopy(ctx context.Context, s *serviceScope, ref copyRef, cp metav1.Object) error {
	if err := s.conn.Writer().Delete(ctx, ref.resource, cp); err != nil {
		if !r.peerRefused(s, err) {
			s.fail(deichv1alpha1.ServiceReasonApplyFailed, fmt.Sprintf("delete %s %s at %s: %v", ref.resource.Resource, ref.name, s.conn.Site, err), false)
		}
		return err
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Pruned copy", "resource", ref.resource.String(), "name", ref.name, "peer", s.conn.Site)
	return nil
}

// stampDue reports whether the SharedService at the standby needs writing: when its spec may
// differ, on the first round after this process started or after the standby could not be
// reached, and otherwise at most twice per resync period. That keeps the standby's view of
// the copy's age well inside the RPO without waking the standby's manager on every event.
// When the lease is renewed at least as often, its writes at the standby's cluster carry the
// time of the last round or of the keeper's last confirmation, and the SharedService there is
// only read again every serviceReapply resyncs and applied when it was deleted or differs
// (serviceCurrentAtPeer): the stamps then cost a write per shared lease record, not one per
// service.
func (r *SharedServiceReconciler) stampDue(s *serviceScope, resync time.Duration) bool {
	if s.before.Status.ObservedGeneration != s.svc.Generation {
		return true
	}
	every := resync / 2
	if r.leaseCarriesStamps(s, resync) {
		every = serviceReapply * resync
	}
	// Without a stamp of its own since this process started, or since the standby could not
	// be reached, the round stamps at once: a standby that is back, or a manager that has
	// just started, should not wait for the lease's next renewal to learn of it.
	last, ok := r.stamps.get(s.owner)
	return !ok || last.generation != s.svc.Generation || s.now.Sub(last.at) >= every
}

// leaseCarriesStamps reports whether the lease is renewed often enough, twice per resync
// period at least, to tell the standby the sync time in place of the annotation.
func (r *SharedServiceReconciler) leaseCarriesStamps(s *serviceScope, resync time.Duration) bool {
	return failover.PolicyFrom(s.objective, r.maxSkew).RenewInterval() <= resync/2
}

// serviceCurrentAtPeer reports whether the standby holds this site's copy of the SharedService
// with the spec it has here and its finalizer, as its API server answers now: on a stamp that
// only reapplies the copy, so that a copy deleted or edited there comes back without a write
// while it is as it should be. It is an existing stamp's repetition only: the first stamp of a
// generation, or after the standby was unreachable, is always written.
func (r *SharedServiceReconciler) serviceCurrentAtPeer(ctx context.Context, s *serviceScope) bool {
	last, ok := r.stamps.get(s.owner)
	if !ok || last.generation != s.svc.Generation {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	theirs := &deichv1alpha1.SharedService{}
	if err := s.conn.Cluster.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(s.svc), theirs); err != nil {
		return false
	}
	return theirs.Labels[render.LabelSourceSite] == r.site && controllerutil.ContainsFinalizer(theirs, deichv1alpha1.SharedServiceFinalizer) &&
		equality.Semantic.DeepEqual(theirs.Spec, s.svc.Spec)
}

// serviceReapply is how many resync periods may pass between two applies of the SharedService
// at the standby while the lease carries the sync time.
const serviceReapply = 6

// mirrorService applies the SharedService itself to the standby, so its manager knows the
// service, its role and objective, and stamps it with the time of this sync. The copy carries
// the finalizer the standby needs once it serves: a promotion then writes no SharedService
// but its status, and a deletion at the standby goes through its manager (reconcileDelete),
// which lets a service it does not serve go at once.
func (r *SharedServiceReconciler) mirrorService(ctx context.Context, s *serviceScope) error {
	spec, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&s.svc.Spec)
	if err != nil {
		return fmt.Errorf("convert spec: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion(deichv1alpha1.GroupVersion.String())
	u.SetKind("SharedService")
	u.SetName(s.svc.Name)
	u.SetNamespace(s.svc.Namespace)
	u.SetLabels(map[string]string{render.LabelSourceSite: r.site})
	u.SetFinalizers([]string{deichv1alpha1.SharedServiceFinalizer})
	// The stamp is the evidence of the standby's RPO gate: never later than the data behind
	// the objects was replicated, where the stages say how to read that.
	stamp := s.now
	if !s.data.syncedAt.IsZero() && s.data.syncedAt.Before(stamp) {
		stamp = s.data.syncedAt
	}
	u.SetAnnotations(map[string]string{deichv1alpha1.AnnotationLastSyncTime: stamp.UTC().Format(time.RFC3339Nano)})
	peerSite := s.conn.Writer()
	_, err = peerSite.Apply(ctx, sharedServiceResource, u)
	if apierrors.IsNotFound(err) {
		// A service that selects nothing yet may be the first of its namespace there.
		if err := peerSite.EnsureNamespace(ctx, s.svc.Namespace); err != nil {
			return err
		}
		_, err = peerSite.Apply(ctx, sharedServiceResource, u)
	}
	return err
}

// reconcileStandby reports what this site holds for a service another site serves.
func (r *SharedServiceReconciler) reconcileStandby(ctx context.Context, s *serviceScope) (ctrl.Result, error) {
	r.confirmed.suspend(s.owner)
	promoting := s.lease != nil && s.lease.promoting
	if promoting && r.firstClaim(s) {
		r.warmSources(ctx, s)
	} else {
		r.sources.Retain(s.owner)
	}
	r.rendered.forget(s.owner)
	r.stamps.forget(s.owner)
	resync := resyncPeriod(s.objective)
	if promoting {
		// Not a failure to sync: the site mirrors once its promotion completes.
		s.setSynced(metav1.ConditionUnknown, deichv1alpha1.ServiceReasonPromoting,
			fmt.Sprintf("this site promotes itself; it mirrors to %s once it serves: %s", peerSite(s.svc, r.site), s.lease.message))
		return periodic(jitter(resync)), nil
	}
	if s.lease != nil && s.lease.record.HeldBy(r.site) {
		s.setSynced(metav1.ConditionFalse, deichv1alpha1.ServiceReasonFenced, s.lease.message)
		return periodic(jitter(resync)), nil
	}

	if err := r.countHeld(s); err != nil {
		return ctrl.Result{}, err
	}
	held := 0
	if mr := s.svc.Status.MirroredResources; mr != nil {
		held = int(mr.Count)
	}

	active := activeSite(s.svc)
	switch {
	case s.svc.Status.LastSyncTime == nil:
		s.setSynced(metav1.ConditionUnknown, deichv1alpha1.ServiceReasonMirroredFromActive, fmt.Sprintf("waiting for the first copy from %s", active))
	case active != r.site && !r.peerReady(ctx, active):
		// The copies may still be current, but nothing keeps them so.
		s.setSynced(metav1.ConditionFalse, deichv1alpha1.ServiceReasonPeerNotConnected,
			fmt.Sprintf("no Ready ReplicationPeer for the active site %s; holding %d object(s) last synced %s", active, held, s.svc.Status.LastSyncTime.UTC().Format(time.RFC3339)))
	default:
		s.setSynced(metav1.ConditionTrue, deichv1alpha1.ServiceReasonMirroredFromActive,
			fmt.Sprintf("holding %d object(s) mirrored from %s", held, active))
	}
	return periodic(jitter(resync)), nil
}

// countHeld records in status the copies this standby site holds, as the watches of held
// copies show them; until they have listed, status keeps the last count.
func (r *SharedServiceReconciler) countHeld(s *serviceScope) error {
	sel := labels.SelectorFromSet(labels.Set{render.LabelSharedService: s.svc.Name, render.LabelManagedBy: render.ManagedByDeich}).String()
	keys := make([]informers.Key, 0, len(s.kinds))
	var held []deichv1alpha1.MirroredResource
	var listErr error
	complete := true
	for _, k := range s.kinds {
		key := informers.Key{Resource: k.resource, Namespace: s.svc.Namespace, Selector: sel}
		keys = append(keys, key)
		objs, synced, err := r.held.Ensure(key, s.owner)
		if !synced {
			complete = false
			if err != nil && listErr == nil {
				listErr = fmt.Errorf("list %s copies: %w", k.gk, err)
			}
			continue
		}
		for _, o := range objs {
			held = append(held, deichv1alpha1.MirroredResource{Group: k.gk.Group, Kind: k.gk.Kind, Name: o.GetName(), Hash: o.GetAnnotations()[render.AnnotationContentHash]})
		}
	}
	r.held.Retain(s.owner, keys...)
	if !complete {
		return listErr
	}
	setMirrored(s.svc, held)
	return nil
}

// rolePriority is the priority of a reconcile that reports a service's site starting or
// stopping to serve, above every event's (0) and periodic round's (handler.LowPriority).
const rolePriority = 10

// prioritized enqueues the services of generic events at its priority.
type prioritized struct{ priority int }

func (prioritized) Create(context.Context, event.CreateEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func (prioritized) Update(context.Context, event.UpdateEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func (prioritized) Delete(context.Context, event.DeleteEvent, workqueue.TypedRateLimitingInterface[reconcile.Request]) {
}

func (p prioritized) Generic(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	req := reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}
	if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
		pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(p.priority)}, req)
		return
	}
	q.Add(req)
}

// reconcileDelete removes the copies from the standby before the SharedService goes, unless
// deletionPolicy is Retain.
func (r *SharedServiceReconciler) reconcileDelete(ctx context.Context, s *serviceScope) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(s.svc, deichv1alpha1.SharedServiceFinalizer) {
		r.forget(s.owner)
		return ctrl.Result{}, nil
	}
	standby := peerSite(s.svc, r.site)
	if !r.servesForDeletion(s) {
		// The partner serves the service: what Deich manages for it there is its running
		// workload, not copies of this site's, and a deletion here must not take it down.
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventCopiesRetained, "Delete",
			"Deleted at %s, which does not serve the service: the objects at %s are left as they are", r.site, standby)
		return r.letGo(ctx, s, standby)
	}
	if s.svc.Spec.DeletionPolicy != deichv1alpha1.DeletionPolicyRetain {
		conn, ok := r.registry.Get(standby)
		if !ok && !r.peerExists(ctx, standby) {
			// Without a ReplicationPeer nothing can ever have been mirrored there.
			r.forget(s.owner)
			return r.removeFinalizer(ctx, s)
		}
		if !ok {
			r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventSyncFailed, "Delete",
				"Cannot remove the copies at %s: no connection to it; the SharedService stays until it is reachable", standby)
			return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
		}
		deleted, err := r.deleteCopies(ctx, s, conn)
		if err != nil {
			return ctrl.Result{}, err
		}
		_, witness := witnessQuorum(ctx, r.client, s.svc)
		if err := r.deleteLeases(ctx, s.svc, witness); err != nil {
			return ctrl.Result{}, err
		}
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventCopiesDeleted, "Delete",
			"Removed %d copies and the SharedService from %s", deleted, standby)
	}
	return r.letGo(ctx, s, standby)
}

// letGo forgets a deleted service, stops watching its copies at standby, and removes its
// finalizer.
func (r *SharedServiceReconciler) letGo(ctx context.Context, s *serviceScope, standby string) (ctrl.Result, error) {
	r.forget(s.owner)
	if conn, ok := r.registry.Get(standby); ok {
		conn.Copies.Retain(s.owner)
	}
	return r.removeFinalizer(ctx, s)
}

// servesForDeletion reports whether this site serves the service, or may, as far as a deletion
// needs to know: the lease keeper says it serves or holds what it served before a restart, or
// the keeper does not know the service yet and status names this site active. Only then are
// the objects Deich manages for the service at the partner copies of this site's.
func (r *SharedServiceReconciler) servesForDeletion(s *serviceScope) bool {
	if snap, ok := r.keeper.Snapshot(s.owner); ok && snap.OwnRead {
		return snap.Serving || holds(snap)
	}
	return activeSite(s.svc) == r.site
}

// removeFinalizer lets the SharedService go.
func (r *SharedServiceReconciler) removeFinalizer(ctx context.Context, s *serviceScope) (ctrl.Result, error) {
	base := s.svc.DeepCopy()
	controllerutil.RemoveFinalizer(s.svc, deichv1alpha1.SharedServiceFinalizer)
	if err := r.client.Patch(ctx, s.svc, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	return ctrl.Result{}, nil
}

// peerExists reports whether a ReplicationPeer names site.
func (r *SharedServiceReconciler) peerExists(ctx context.Context, site string) bool {
	p, err := findPeer(ctx, r.client, site)
	return err == nil && p != nil
}

// deleteCopies deletes every copy of the service at the peer, and the mirrored SharedService.
// After moves between the sites a copy may carry either site as its source (a fenced object
// names its own site), so every object Deich manages for the service there goes.
func (r *SharedServiceReconciler) deleteCopies(ctx context.Context, s *serviceScope, conn *peer.Connection) (int, error) {
	return conn.Writer().DeleteService(ctx, s.svc.Namespace, s.svc.Name, resourceKinds(s.svc), sharedServiceResource)
}

// resourceKinds are the kinds spec.resources lists.
func resourceKinds(svc *deichv1alpha1.SharedService) []schema.GroupKind {
	kinds := make([]schema.GroupKind, 0, len(svc.Spec.Resources))
	for _, res := range svc.Spec.Resources {
		kinds = append(kinds, schema.GroupKind{Group: res.Group, Kind: res.Kind})
	}
	return kinds
}

// desiredRefs are the copies of desired.
func desiredRefs(desired []desiredCopy) map[copyRef]struct{} {
	refs := make(map[copyRef]struct{}, len(desired))
	for _, d := range desired {
		refs[copyRef{d.kind.resource, d.name}] = struct{}{}
	}
	return refs
}

// forget stops the watches, lease keeper and metrics of a service this site no longer
// handles. Its objects stay in the form they have.
func (r *SharedServiceReconciler) forget(owner types.NamespacedName) {
	r.stopLease(owner)
	r.probes.Remove(owner)
	r.fullRounds.forget(owner)
	r.confirmed.suspend(owner)
	r.rendered.forget(owner)
	r.stamps.forget(owner)
	r.partnerSynced.forget(owner)
	r.statusWrites.forget(owner)
	r.syncTimes.forget(owner)
	r.history.forget(owner)
	r.held.Retain(owner)
	r.sources.Retain(owner)
	metrics.ForgetService(owner.Namespace, owner.Name)
}

// resyncPeriod is how often a service is mirrored in full even without events: a third of
// the RPO, so that a missed event can never age the copy past it.
func resyncPeriod(obj *deichv1alpha1.RecoveryObjective) time.Duration {
	return min(max(obj.Spec.RPO.Duration/3, minResync), maxResync)
}

// periodic is the result of a reconcile that found nothing to do but come back after d: it
// waits in the queue at low priority, so that the reconciles events call for (an edit, a
// failing check, a change of the lease) go first. Nothing safety-relevant waits for it: the
// lease keeper confirms copies current between rounds (confirmSync) and reads the evidence
// of the RPO gate itself.
func periodic(d time.Duration) ctrl.Result {
	return ctrl.Result{RequeueAfter: d, Priority: ptr.To(handler.LowPriority)}
}

// jitter spreads resyncs of many services over up to a tenth of the period, earlier rather
// than later so the RPO bound holds.
func jitter(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d/10)+1)) //nolint:gosec // G404: jitter needs no cryptographic randomness.
}
