package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/render"
)

// Bounds of the lease keeper's API calls and retries.
const (
	// maxLeaseCallTimeout bounds one read or write of a lease. A write that times out never
	// counts (see package failover), so a hanging peer cannot stretch a renewal.
	maxLeaseCallTimeout = 5 * time.Second
	// leaseRetry is how soon a failed lease write or fence is tried again.
	leaseRetry = time.Second
	// finalSyncWait bounds how long a site that hands over waits for one last sync of its
	// copies before it releases the lease.
	finalSyncWait = 5 * time.Second
	// takeOverPoll is how often a site that should take over reads the lease while it waits.
	takeOverPoll = 500 * time.Millisecond
)

// leaseInputs is what a reconcile of the SharedService tells its lease keeper: the settings
// and the evidence the decisions need. The keeper always acts on the latest inputs.
type leaseInputs struct {
	policy failover.Policy
	// primary is set at the service's primary site; unclaimed when this site never recorded
	// a lease for the service (status.lease unset).
	primary, unclaimed bool
	// arbiter is the site whose cluster stores the lease.
	arbiter string
	// judged is the site the failure counts below are about.
	judged string
	// failures is how many times in a row this site's checks of the judged site failed;
	// peerFailures the same as the peer site's manager reports it (0 when unknown).
	failures, peerFailures int32
	// failingSince is when the current run of failures began.
	failingSince time.Time
	// takeOver and handOver are set while a Switchover moves the service to or away from
	// this site; switchover names it.
	takeOver, handOver bool
	switchover         string
	// partnerReady is set while the other site can serve: its ReplicationPeer is Ready and
	// it held a complete copy of the service within the RPO.
	partnerReady bool
	// form says which objects are the service's at this site and how they are rendered.
	form formSpec
}

// leaseSnapshot is what the keeper last found and did, for the reconcile to report.
type leaseSnapshot struct {
	// read is set once the lease was read since the keeper started.
	read bool
	// record is the lease as last read; observedAt when this site read it.
	record     failover.LeaseRecord
	observedAt time.Time
	// serving is set while this site holds the lease, renewed it in this process and its
	// objects are in their active form.
	serving bool
	// fenced is set when this site holds the lease but may not serve.
	fenced bool
	// recommend is set in Manual mode when a failover is due.
	recommend bool
	// promoting is set while this site promotes itself.
	promoting bool
	// handingOver is set while this site fences itself to release the lease.
	handingOver bool
	// returned is set when this process found its site's objects in active form while
	// another site held the lease (the site came back after a failover) and fenced them.
	returned bool
	// deadline is when a serving site must fence itself unless it renews.
	deadline time.Time
	// message says what the keeper decided, as a sentence.
	message string
	// formErr is the last failure to switch this site's objects to the decided form.
	formErr string
}

// leaseKeeper runs one goroutine per SharedService that reads and writes its lease and
// switches this site's objects between active and standby form, as package failover
// decides. It runs apart from the reconcile so that renewals and the fence deadline never
// wait for a long mirroring round; the reconcile feeds it inputs and reports its snapshot.
// Its state (the Renewal and the Observation) lives only in this process's memory, as the
// failover package requires.
type leaseKeeper struct {
	r *SharedServiceReconciler

	mu      sync.Mutex
	ctx     context.Context
	runners map[types.NamespacedName]*leaseRunner
}

func newLeaseKeeper(r *SharedServiceReconciler) *leaseKeeper {
	return &leaseKeeper{r: r, runners: map[types.NamespacedName]*leaseRunner{}}
}

// Start runs until ctx ends; the keepers of all services stop with it. It is a
// manager.Runnable that needs leader election: only the elected replica touches leases.
func (k *leaseKeeper) Start(ctx context.Context) error {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
	<-ctx.Done()
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, ru := range k.runners {
		ru.cancel()
		delete(k.runners, key)
	}
	return nil
}

// update hands in to the service's runner, starting it if needed, and returns its snapshot.
// ok is false until the keeper has started.
func (k *leaseKeeper) update(owner types.NamespacedName, in leaseInputs) (leaseSnapshot, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == nil || k.ctx.Err() != nil {
		return leaseSnapshot{}, false
	}
	ru, ok := k.runners[owner]
	if !ok {
		ctx, cancel := context.WithCancel(k.ctx)
		ru = &leaseRunner{r: k.r, owner: owner, poke: make(chan struct{}, 1), cancel: cancel, inputs: in, checkPromotion: true}
		k.runners[owner] = ru
		go ru.run(ctx)
	}
	return ru.setInputs(in), true
}

// snapshot returns the service's snapshot, if its runner runs.
func (k *leaseKeeper) snapshot(owner types.NamespacedName) (leaseSnapshot, bool) {
	k.mu.Lock()
	ru, ok := k.runners[owner]
	k.mu.Unlock()
	if !ok {
		return leaseSnapshot{}, false
	}
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.out, true
}

// synced tells the service's runner that a sync of the copies completed at at.
func (k *leaseKeeper) synced(owner types.NamespacedName, at time.Time) {
	k.mu.Lock()
	ru, ok := k.runners[owner]
	k.mu.Unlock()
	if !ok {
		return
	}
	ru.mu.Lock()
	ru.lastSync = at
	ru.mu.Unlock()
	ru.wake()
}

// stop ends the service's runner; this site's objects stay in the form they have.
func (k *leaseKeeper) stop(owner types.NamespacedName) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ru, ok := k.runners[owner]; ok {
		ru.cancel()
		delete(k.runners, owner)
	}
}

// leaseRunner keeps one service's lease at this site.
type leaseRunner struct {
	r      *SharedServiceReconciler
	owner  types.NamespacedName
	poke   chan struct{}
	cancel context.CancelFunc

	mu       sync.Mutex
	inputs   leaseInputs
	out      leaseSnapshot
	lastSync time.Time

	// Only the runner's goroutine touches these.
	renewal  failover.Renewal
	obs      failover.Observation
	returned bool   // fenced objects in active form while another site held the lease
	released string // resourceVersion of the released record this process wrote
	// checkPromotion is set while a recorded promotion may still need completing: at start
	// (a predecessor may have been killed mid-promotion) and after each takeover.
	checkPromotion bool
	fencedAt       time.Time // when this site last fenced itself to hand over

	// formMu serializes switching this site's objects between the loop and the fence
	// watchdog, and guards what follows.
	formMu   sync.Mutex
	form     formState // the form this process last put the objects in
	formSpec formSpec  // what the last switch worked on, for the watchdog
	deadline time.Time // while serving: when the site must be fenced; zero otherwise
	runCtx   context.Context
	watchdog *time.Timer // only the loop arms and disarms it
}

// formState is the form a runner last put this site's objects in.
type formState int

const (
	formUnknown formState = iota
	formActive
	formStandby
)

func (ru *leaseRunner) setInputs(in leaseInputs) leaseSnapshot {
	ru.mu.Lock()
	ru.inputs = in
	out := ru.out
	ru.mu.Unlock()
	ru.wake()
	return out
}

func (ru *leaseRunner) wake() {
	select {
	case ru.poke <- struct{}{}:
	default:
	}
}

func (ru *leaseRunner) run(ctx context.Context) {
	log := logf.FromContext(ctx).WithValues("sharedservice", ru.owner.String(), "site", ru.r.site)
	ctx = logf.IntoContext(ctx, log)
	ru.formMu.Lock()
	ru.runCtx = ctx
	ru.formMu.Unlock()
	timer := time.NewTimer(0)
	defer timer.Stop()
	defer ru.disarmWatchdog()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ru.poke:
		case <-timer.C:
		}
		next := ru.step(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
	}
}

// step decides once and acts. It returns when to decide again at the latest (0: when poked).
func (ru *leaseRunner) step(ctx context.Context) time.Duration {
	ru.mu.Lock()
	in := ru.inputs
	prevOut := ru.out
	ru.mu.Unlock()

	out, next := ru.decide(ctx, in)
	out.read = out.read || prevOut.read
	if out.serving {
		ru.armWatchdog(out.deadline)
	} else {
		ru.disarmWatchdog()
	}
	ru.mu.Lock()
	ru.out = out
	ru.mu.Unlock()
	ru.export(out)
	if snapshotChanged(prevOut, out) {
		ru.r.events.Notify(ru.owner)
	}
	return next
}

func snapshotChanged(a, b leaseSnapshot) bool {
	return a.serving != b.serving || a.fenced != b.fenced || a.recommend != b.recommend || a.returned != b.returned ||
		a.promoting != b.promoting || a.handingOver != b.handingOver || a.message != b.message ||
		a.formErr != b.formErr || a.record.Holder != b.record.Holder || a.record.ResourceVersion != b.record.ResourceVersion
}

func (ru *leaseRunner) export(out leaseSnapshot) {
	ns, name, site := ru.owner.Namespace, ru.owner.Name, ru.r.site
	remaining := 0.0
	if out.serving {
		remaining = max(out.deadline.Sub(ru.r.clock.Now()).Seconds(), 0)
	}
	metrics.LeaseRemaining.WithLabelValues(ns, name, site).Set(remaining)
	metrics.Serving.WithLabelValues(ns, name, site).Set(boolGauge(out.serving))
	metrics.Fenced.WithLabelValues(ns, name, site).Set(boolGauge(out.fenced))
}

// decide runs the rules of package failover once: read the lease, decide, write, and put
// this site's objects in the form the decision allows. Every path fences before it may
// release, and serves only after a write of this process succeeded.
func (ru *leaseRunner) decide(ctx context.Context, in leaseInputs) (leaseSnapshot, time.Duration) {
	log := logf.FromContext(ctx)
	site := ru.r.site
	p := in.policy
	callTimeout := min(max(p.RenewInterval()/2, 500*time.Millisecond), maxLeaseCallTimeout)

	now := ru.r.clock.Now()
	out := leaseSnapshot{}
	rec, readErr := ru.readLease(ctx, in.arbiter, callTimeout)
	if readErr == nil {
		ru.obs = failover.Observe(ru.obs, rec, now)
		out.read = true
	} else {
		log.V(1).Info("Cannot read the lease", "at", in.arbiter, "error", readErr.Error())
	}
	out.record, out.observedAt = ru.obs.Record, ru.obs.ObservedAt

	for range 3 { // a successful write calls for a fresh decision at once
		now = ru.r.clock.Now()
		if ru.obs.Record.HeldBy(site) {
			again, next := ru.decideActive(ctx, in, &out, now, callTimeout)
			if again {
				continue
			}
			return out, next
		}
		again, next := ru.decideStandby(ctx, in, &out, now, callTimeout, readErr)
		if again {
			continue
		}
		return out, next
	}
	return out, leaseRetry
}

// decideActive handles a lease that names this site. again asks for another decision at
// once (a write succeeded).
func (ru *leaseRunner) decideActive(ctx context.Context, in leaseInputs, out *leaseSnapshot, now time.Time, callTimeout time.Duration) (again bool, next time.Duration) {
	p, site := in.policy, ru.r.site
	failing := int32(0)
	if in.judged == site {
		failing = min(in.failures, in.peerFailures)
	}
	d := failover.DecideActive(p, failover.ActiveState{Renewal: ru.renewal, ChecksFailing: failing, HandOverRequested: in.handOver, PartnerReady: in.partnerReady}, now)
	out.message = d.Message
	switch d.Action {
	case failover.ActionServe, failover.ActionRenew:
		retry := time.Duration(0)
		if d.Action == failover.ActionRenew {
			if ru.write(ctx, in, failover.RenewedRecord(ru.obs.Record, site, p, now), callTimeout) {
				return true, 0
			}
			// The renewal failed; try again soon. The fence deadline below still holds.
			retry = leaseRetry
		}
		out.deadline = failover.FenceDeadline(p, ru.renewal)
		if err := ru.setForm(ctx, in, formActive, d.Message); err != nil {
			out.formErr = err.Error()
			return false, leaseRetry
		}
		out.serving = true
		if ru.checkPromotion {
			ru.checkPromotion = !ru.completePromotion(ctx, in)
		}
		next := until(ru.r.clock.Now(), d.NextCheck)
		if retry > 0 {
			next = min(next, retry)
		}
		return false, next

	case failover.ActionFence:
		if ru.renewal.SentAt.IsZero() && ru.currentForm() != formStandby {
			// This process has not renewed yet: try once before fencing, so that a restart
			// of the manager does not take down a service that still holds the lease. A
			// successful compare-and-swap on the record just read proves no other site
			// promoted in the meantime.
			if ru.write(ctx, in, failover.RenewedRecord(ru.obs.Record, site, p, now), callTimeout) {
				return true, 0
			}
		}
		out.fenced = true
		if err := ru.setForm(ctx, in, formStandby, d.Message); err != nil {
			out.formErr = err.Error()
			return false, leaseRetry
		}
		if ru.write(ctx, in, failover.RenewedRecord(ru.obs.Record, site, p, ru.r.clock.Now()), callTimeout) {
			return true, 0
		}
		return false, leaseRetry

	case failover.ActionHandOver:
		out.handingOver = true
		ru.renewal = failover.Renewal{}
		if err := ru.setForm(ctx, in, formStandby, d.Message); err != nil {
			out.formErr = err.Error()
			return false, leaseRetry
		}
		if ru.fencedAt.IsZero() {
			ru.fencedAt = ru.r.clock.Now()
		}
		// One last sync of the copies from the fenced objects, so the standby takes over
		// the latest state; bounded, since the peer may be what failed.
		ru.mu.Lock()
		lastSync := ru.lastSync
		ru.mu.Unlock()
		if lastSync.Before(ru.fencedAt) && ru.r.clock.Since(ru.fencedAt) < finalSyncWait {
			ru.r.events.Notify(ru.owner)
			return false, 250 * time.Millisecond
		}
		released := failover.ReleasedRecord(ru.obs.Record, ru.r.clock.Now())
		if !ru.write(ctx, in, released, callTimeout) {
			return false, leaseRetry
		}
		ru.released = ru.obs.Record.ResourceVersion
		ru.fencedAt = time.Time{}
		ru.r.recorder.Eventf(ru.service(ctx), nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventHandedOver, "HandOver",
			"Released the lease so %s can promote without waiting for it to expire", peerSiteOf(in.form.svc, site))
		return true, 0
	}
	return false, leaseRetry
}

// decideStandby handles a lease that names another site, nobody, or is missing.
func (ru *leaseRunner) decideStandby(ctx context.Context, in leaseInputs, out *leaseSnapshot, now time.Time, callTimeout time.Duration, readErr error) (again bool, next time.Duration) {
	p, site := in.policy, ru.r.site
	ru.renewal = failover.Renewal{}
	rec := ru.obs.Record
	failures := int32(0)
	if in.judged != site && ru.released != rec.ResourceVersion {
		// A site does not take back the lease it has just released for failing checks.
		failures = in.failures
	}
	takeOver := in.takeOver
	if in.primary && rec.Released() && in.switchover == "" && !ru.obs.ObservedAt.IsZero() &&
		now.Sub(ru.obs.ObservedAt) > p.LeaseDuration+p.MaxClockSkew {
		// Released, and nobody took it for a whole lease: the move that released it was
		// abandoned. The primary takes the service back rather than leave it unserved.
		takeOver = true
	}
	d := failover.DecideStandby(p, failover.StandbyState{
		Site: site, Primary: in.primary, Unclaimed: in.unclaimed, Observation: ru.obs,
		ConsecutiveFailures: failures, TakeOverRequested: takeOver,
	}, now)
	out.message = d.Message
	if readErr != nil && ru.obs.ObservedAt.IsZero() {
		out.message = fmt.Sprintf("cannot read the lease at %s: %v", in.arbiter, readErr)
	}

	// A service newly put under protection keeps running while its first lease is
	// created; every other service is fenced here.
	newlyProtected := in.unclaimed && !rec.Exists()
	if !newlyProtected {
		n, err := ru.setFormCounted(ctx, in, formStandby, notHolderReason(rec, site))
		if err != nil {
			out.formErr = err.Error()
			return false, leaseRetry
		}
		if n > 0 && rec.Holder != "" {
			ru.returned = true
		}
	}
	out.returned = ru.returned

	switch d.Action {
	case failover.StandbyRecommend:
		out.recommend = true
		return false, 0
	case failover.StandbyWait:
		next := until(now, d.NextCheck)
		if takeOver || rec.Released() {
			// A move is under way: the lease may be released at any moment, and it is not
			// always watched here.
			next = min(next, takeOverPoll)
			if next == 0 {
				next = takeOverPoll
			}
		}
		return false, next
	}

	// Promote: record the promotion before taking the lease, so a manager killed in
	// between finds it and completes it.
	if rec.Exists() {
		out.promoting = true
		if err := ru.recordPromotion(ctx, in, rec, d.Message); err != nil {
			logf.FromContext(ctx).Error(err, "Record the promotion before taking the lease")
			return false, leaseRetry
		}
	}
	if !ru.write(ctx, in, failover.AcquiredRecord(rec, site, p, now), callTimeout) {
		return false, leaseRetry
	}
	ru.checkPromotion = true
	return true, 0
}

// notHolderReason says why a site that does not hold the lease may not serve.
func notHolderReason(rec failover.LeaseRecord, site string) string {
	switch {
	case rec.Holder != "":
		return fmt.Sprintf("%s holds the lease, not %s", rec.Holder, site)
	case rec.Released():
		return "the lease was released and " + site + " has not taken it"
	}
	return "the lease does not exist or could not be read, so " + site + " may not serve"
}

// until is how long from now to t, at least a millisecond; 0 when t is zero.
func until(now, t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return max(t.Sub(now), time.Millisecond)
}

// write sends w as a compare-and-swap and folds the result into the runner's state: a
// write that succeeded gives a Renewal when it names this site and is observed as the new
// record; a write that failed or timed out never counts.
func (ru *leaseRunner) write(ctx context.Context, in leaseInputs, w failover.LeaseRecord, timeout time.Duration) bool {
	log := logf.FromContext(ctx)
	ru.renewal = ru.renewal.Sending(w)
	sentAt := ru.r.clock.Now()
	written, err := ru.writeLease(ctx, in.arbiter, w, timeout)
	if err != nil {
		log.V(1).Info("Lease write failed", "holder", w.Holder, "at", in.arbiter, "error", err.Error())
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
			// Someone else wrote first: read it again before the next decision.
			if rec, rerr := ru.readLease(ctx, in.arbiter, timeout); rerr == nil {
				ru.obs = failover.Observe(ru.obs, rec, ru.r.clock.Now())
			}
		}
		return false
	}
	if w.Holder == ru.r.site {
		ru.renewal = failover.RenewalOf(written, sentAt)
	}
	ru.obs = failover.Observe(ru.obs, written, ru.r.clock.Now())
	return true
}

// leaseResource and namespaceResource are addressed directly, without discovery: a lease
// call must never wait on a lookup that ignores its deadline.
var (
	leaseResource     = coordinationv1.SchemeGroupVersion.WithResource("leases")
	namespaceResource = corev1.SchemeGroupVersion.WithResource("namespaces")
)

// leaseClient returns a client for the cluster that stores the lease: this site's own, or
// the peer's through its connection.
func (ru *leaseRunner) leaseClient(arbiter string) (dynamic.Interface, error) {
	if arbiter == ru.r.site {
		return ru.r.local, nil
	}
	conn, ok := ru.r.registry.Get(arbiter)
	if !ok {
		return nil, fmt.Errorf("no connection to site %s (no Ready ReplicationPeer)", arbiter)
	}
	return conn.Dynamic, nil
}

// readLease reads the lease; a missing lease is the zero record.
func (ru *leaseRunner) readLease(ctx context.Context, arbiter string, timeout time.Duration) (failover.LeaseRecord, error) {
	c, err := ru.leaseClient(arbiter)
	if err != nil {
		return failover.LeaseRecord{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u, err := c.Resource(leaseResource).Namespace(ru.owner.Namespace).Get(ctx, failover.LeaseName(ru.owner.Name), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return failover.LeaseRecord{}, nil
	case err != nil:
		return failover.LeaseRecord{}, fmt.Errorf("read lease at %s: %w", arbiter, err)
	}
	return leaseRecord(u)
}

// writeLease creates or updates the lease with w, conditional on w's resourceVersion.
func (ru *leaseRunner) writeLease(ctx context.Context, arbiter string, w failover.LeaseRecord, timeout time.Duration) (failover.LeaseRecord, error) {
	c, err := ru.leaseClient(arbiter)
	if err != nil {
		return failover.LeaseRecord{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l := &coordinationv1.Lease{
		TypeMeta: metav1.TypeMeta{APIVersion: coordinationv1.SchemeGroupVersion.String(), Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ru.owner.Namespace,
			Name:      failover.LeaseName(ru.owner.Name),
			Labels:    map[string]string{render.LabelManagedBy: render.ManagedByDeich, render.LabelSharedService: ru.owner.Name},
		},
	}
	failover.ApplyRecord(l, w)
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(l)
	if err != nil {
		return failover.LeaseRecord{}, fmt.Errorf("convert lease: %w", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	ri := c.Resource(leaseResource).Namespace(l.Namespace)
	var out *unstructured.Unstructured
	if w.Exists() {
		out, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	} else {
		out, err = ri.Create(ctx, u, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) {
			// The first lease of a namespace the arbiter does not have yet.
			ns := &unstructured.Unstructured{}
			ns.SetAPIVersion("v1")
			ns.SetKind("Namespace")
			ns.SetName(l.Namespace)
			ns.SetLabels(map[string]string{render.LabelManagedBy: render.ManagedByDeich})
			if _, nsErr := c.Resource(namespaceResource).Create(ctx, ns, metav1.CreateOptions{}); nsErr != nil && !apierrors.IsAlreadyExists(nsErr) {
				return failover.LeaseRecord{}, fmt.Errorf("create namespace %s at %s for the lease: %w", l.Namespace, arbiter, nsErr)
			}
			out, err = ri.Create(ctx, u, metav1.CreateOptions{})
		}
	}
	if err != nil {
		return failover.LeaseRecord{}, fmt.Errorf("write lease at %s: %w", arbiter, err)
	}
	return leaseRecord(out)
}

// leaseRecord reads the record of a lease returned by the API server.
func leaseRecord(u *unstructured.Unstructured) (failover.LeaseRecord, error) {
	l := &coordinationv1.Lease{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, l); err != nil {
		return failover.LeaseRecord{}, fmt.Errorf("read lease %s: %w", u.GetName(), err)
	}
	return failover.RecordFromLease(l), nil
}

// service returns the SharedService for events; a bare object when it cannot be read.
func (ru *leaseRunner) service(ctx context.Context) *deichv1alpha1.SharedService {
	svc := &deichv1alpha1.SharedService{}
	if err := ru.r.client.Get(ctx, ru.owner, svc); err != nil {
		svc.Namespace, svc.Name = ru.owner.Namespace, ru.owner.Name
	}
	return svc
}

// setForm puts this site's objects in the given form, unless this process already did; why
// goes into the event.
func (ru *leaseRunner) setForm(ctx context.Context, in leaseInputs, want formState, why string) error {
	_, err := ru.setFormCounted(ctx, in, want, why)
	return err
}

// setFormCounted is setForm, returning how many objects changed.
func (ru *leaseRunner) setFormCounted(ctx context.Context, in leaseInputs, want formState, why string) (int, error) {
	ru.formMu.Lock()
	defer ru.formMu.Unlock()
	ru.formSpec = in.form
	if ru.form == want {
		return 0, nil
	}
	n, err := ru.r.switchForm(ctx, in.form, want == formActive)
	if err != nil {
		return n, err
	}
	prev := ru.form
	ru.form = want
	svc := ru.service(ctx)
	switch {
	case want == formActive:
		if n > 0 || prev == formStandby {
			ru.r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventServing, "Serve",
				"This site holds the lease and serves: %d object(s) switched to their active form", n)
		}
	case n > 0:
		ru.r.recorder.Eventf(svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFenced, "Fence",
			"%d object(s) switched to standby form: %s", n, why)
	}
	return n, nil
}

func (ru *leaseRunner) currentForm() formState {
	ru.formMu.Lock()
	defer ru.formMu.Unlock()
	return ru.form
}

// armWatchdog makes sure the site is fenced at deadline even if the loop is then stuck in a
// call that does not return in time: the fence deadline is a timer, not a hope.
func (ru *leaseRunner) armWatchdog(deadline time.Time) {
	ru.formMu.Lock()
	ru.deadline = deadline
	ru.formMu.Unlock()
	d := max(deadline.Sub(ru.r.clock.Now()), 0)
	if ru.watchdog == nil {
		ru.watchdog = time.AfterFunc(d, ru.onDeadline)
		return
	}
	ru.watchdog.Reset(d)
}

func (ru *leaseRunner) disarmWatchdog() {
	ru.formMu.Lock()
	ru.deadline = time.Time{}
	ru.formMu.Unlock()
	if ru.watchdog != nil {
		ru.watchdog.Stop()
	}
}

// onDeadline fences the site when its fence deadline passed without a renewal.
func (ru *leaseRunner) onDeadline() {
	ru.formMu.Lock()
	defer ru.formMu.Unlock()
	ctx := ru.runCtx
	if ctx == nil || ctx.Err() != nil || ru.deadline.IsZero() || ru.r.clock.Now().Before(ru.deadline) || ru.form == formStandby {
		return
	}
	n, err := ru.r.switchForm(ctx, ru.formSpec, false)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Fence at the deadline")
		time.AfterFunc(leaseRetry, ru.onDeadline)
		return
	}
	ru.form = formStandby
	ru.r.recorder.Eventf(ru.service(ctx), nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFenced, "Fence",
		"No renewal of the lease succeeded before the fence deadline: %d object(s) switched to standby form", n)
	ru.wake()
}

// recordPromotion writes, before this site takes the lease, a lastFailover without
// completedAt: the promotion in progress.
func (ru *leaseRunner) recordPromotion(ctx context.Context, in leaseInputs, rec failover.LeaseRecord, why string) error {
	return ru.patchService(ctx, func(svc *deichv1alpha1.SharedService) bool {
		lf := svc.Status.LastFailover
		if lf != nil && lf.CompletedAt == nil && lf.To == ru.r.site {
			return false // recorded by an earlier attempt
		}
		from := rec.Holder
		if from == "" {
			from = peerSiteOf(svc, ru.r.site)
		}
		reason := why
		detected := ru.r.clock.Now()
		switch {
		case in.switchover != "":
			reason = fmt.Sprintf("Switchover %s: %s", in.switchover, why)
		case !in.failingSince.IsZero():
			detected = in.failingSince
		}
		svc.Status.LastFailover = &deichv1alpha1.FailoverRecord{
			From: from, To: ru.r.site, Reason: truncate(reason, 1024), DetectedAt: &metav1.Time{Time: detected},
		}
		svc.Status.Phase = deichv1alpha1.PhaseFailingOver
		return true
	}, func(svc *deichv1alpha1.SharedService) {
		ru.r.recorder.Eventf(svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFailingOver, "Promote",
			"Promoting %s (was served by %s): %s", ru.r.site, svc.Status.LastFailover.From, why)
	})
}

// completePromotion finishes a recorded promotion once this site serves: completedAt,
// recoveryTime, history, metrics and an event. It reports whether nothing is left to do.
func (ru *leaseRunner) completePromotion(ctx context.Context, in leaseInputs) bool {
	err := ru.patchService(ctx, func(svc *deichv1alpha1.SharedService) bool {
		lf := svc.Status.LastFailover
		if lf == nil || lf.CompletedAt != nil || lf.To != ru.r.site {
			return false
		}
		now := ru.r.clock.Now()
		lf.CompletedAt = &metav1.Time{Time: now}
		if lf.DetectedAt != nil {
			lf.RecoveryTime = &metav1.Duration{Duration: now.Sub(lf.DetectedAt.Time).Round(time.Millisecond)}
		}
		svc.Status.ActiveSite = ru.r.site
		svc.Status.FailoverHistory = append([]deichv1alpha1.FailoverRecord{*lf}, svc.Status.FailoverHistory...)
		if len(svc.Status.FailoverHistory) > maxFailoverHistory {
			svc.Status.FailoverHistory = svc.Status.FailoverHistory[:maxFailoverHistory]
		}
		return true
	}, func(svc *deichv1alpha1.SharedService) {
		lf := svc.Status.LastFailover
		trigger := "failover"
		if in.switchover != "" {
			trigger = "switchover"
		}
		metrics.Failovers.WithLabelValues(svc.Namespace, svc.Name, ru.r.site, trigger).Inc()
		recovery := "unknown"
		if lf.RecoveryTime != nil {
			metrics.RecoverySeconds.WithLabelValues(svc.Namespace, svc.Name, ru.r.site).Observe(lf.RecoveryTime.Seconds())
			recovery = lf.RecoveryTime.Duration.String()
		}
		ru.r.recorder.Eventf(svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventFailedOver, "Promote",
			"%s serves the service (was %s); recovery time %s", ru.r.site, lf.From, recovery)
	})
	if err != nil {
		logf.FromContext(ctx).Error(err, "Record the completed promotion")
		return false
	}
	return true
}

// patchService applies change to a fresh copy of the SharedService and writes its status
// with an optimistic lock, retrying on conflicts; then calls done with the written object.
// change returns false when there is nothing to write.
func (ru *leaseRunner) patchService(ctx context.Context, change func(*deichv1alpha1.SharedService) bool, done func(*deichv1alpha1.SharedService)) error {
	for range 5 {
		svc := &deichv1alpha1.SharedService{}
		if err := ru.r.apiReader.Get(ctx, ru.owner, svc); err != nil {
			return fmt.Errorf("get SharedService %s: %w", ru.owner, err)
		}
		before := svc.DeepCopy()
		if !change(svc) {
			return nil
		}
		err := ru.r.client.Status().Patch(ctx, svc, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		if err == nil {
			done(svc)
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("patch status of SharedService %s: %w", ru.owner, err)
		}
	}
	return errors.New("patch status: the SharedService kept changing")
}

// maxFailoverHistory is how many moves status.failoverHistory keeps.
const maxFailoverHistory = 10

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// peerSiteOf is the partner of site for svc; "" when svc is nil.
func peerSiteOf(svc *deichv1alpha1.SharedService, site string) string {
	if svc == nil {
		return ""
	}
	return peerSite(svc, site)
}
