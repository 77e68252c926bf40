package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/peer"
)

const (
	// leaseCallTimeout bounds one read or write of a lease copy. A write that times out never
	// counts (see package failover), so a hanging arbiter cannot stretch a renewal.
	leaseCallTimeout = 2 * time.Second
	// finalSyncWait bounds how long a site that hands over waits, fenced, for one last sync
	// of its copies before it releases the lease.
	finalSyncWait = 5 * time.Second
)

// DefaultLeaseQPS and DefaultLeaseBurst rate-limit the lease keeper's own client to each
// cluster, apart from mirroring's, so that a large mirroring round never delays a renewal.
// The services of a pair of sites share lease.RecordShards records at each cluster, so a
// manager sends at most about 2 × 3 × records / leaseDuration writes per second to each
// cluster that holds copies, however many services there are; the budget covers failovers,
// in which records are written again and again as their services' claims change.
const (
	DefaultLeaseQPS   float32 = 300
	DefaultLeaseBurst int     = 600
)

// leaseClients builds, per arbiter cluster, the client the lease keeper reads and writes
// copies with: uncached, with a REST mapper that needs no discovery (a lease call must never
// wait on a lookup that ignores its deadline), and with a rate limit of its own.
type leaseClients struct {
	qps   float32
	burst int

	mu    sync.Mutex
	local client.Client
	peers map[string]leaseConn
}

type leaseConn struct {
	fingerprint string
	client      client.Client
}

func leaseMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(coordinationv1.SchemeGroupVersion.WithKind("Lease"), meta.RESTScopeNamespace)
	m.Add(corev1.SchemeGroupVersion.WithKind("Namespace"), meta.RESTScopeRoot)
	return m
}

func (lc *leaseClients) build(cfg *rest.Config) (client.Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = lc.qps, lc.burst
	cfg.RateLimiter = nil
	c, err := client.New(cfg, client.Options{Mapper: leaseMapper()})
	if err != nil {
		return nil, fmt.Errorf("build the lease client: %w", err)
	}
	return c, nil
}

// setLocal builds the client to this site's own cluster.
func (lc *leaseClients) setLocal(cfg *rest.Config) error {
	c, err := lc.build(cfg)
	if err != nil {
		return err
	}
	lc.mu.Lock()
	lc.local = c
	lc.mu.Unlock()
	return nil
}

// forPeer returns the client to a peer's cluster, rebuilt when the peer's credentials change.
func (lc *leaseClients) forPeer(conn *peer.Connection) (client.Client, error) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if c, ok := lc.peers[conn.Site]; ok && c.fingerprint == conn.Fingerprint {
		return c.client, nil
	}
	c, err := lc.build(conn.Cluster.GetConfig())
	if err != nil {
		return nil, err
	}
	if lc.peers == nil {
		lc.peers = map[string]leaseConn{}
	}
	lc.peers[conn.Site] = leaseConn{fingerprint: conn.Fingerprint, client: c}
	return c, nil
}

// leaseState is what the SharedService controller keeps per service beside the keeper: when
// this site fenced itself to hand over and when its copies last synced, for the final sync
// before the release; whether this process ever served the service, and whether it found the
// service active here while another site held the lease.
type leaseState struct {
	mu         sync.Mutex
	handOver   bool
	fencedAt   time.Time
	lastSync   time.Time
	servedHere bool
	returned   bool
	// lastDataSync is when the data behind the service's objects was last known replicated
	// (see dataSyncedAt).
	lastDataSync time.Time
	// promotion is the progress of this site's latest promotion through its stages, and
	// reportedStages what of it events told already.
	promotion      *promotionProgress
	reportedStages map[string]bool
	// recordedEpoch is the epoch of the last promotion this site's status recorded complete:
	// a reconcile that still reads the status from before (the cache lags behind the patch)
	// records it, and emits its FailedOver event, no second time.
	recordedEpoch int64
	// gate is what the last reconcile knew that a verdict of the checks needs to reach the
	// keeper between reconciles (see probed).
	gate checksGate
	// failingSince is when the run of failures of the checks that judge the partner began,
	// as the probe scheduler last reported it; zero while they pass.
	failingSince time.Time
}

// checksGate is, as of the last reconcile, whether the service's checks judge the partner
// (this site stands by) and what rule Q7's RPO gate reads besides them.
type checksGate struct {
	judgesPartner bool
	lastSync      *metav1.Time
	objective     *deichv1alpha1.RecoveryObjective
	policy        failover.Policy
}

func (r *SharedServiceReconciler) leaseStateOf(owner types.NamespacedName) *leaseState {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	if r.leaseStates == nil {
		r.leaseStates = map[types.NamespacedName]*leaseState{}
	}
	st, ok := r.leaseStates[owner]
	if !ok {
		st = &leaseState{}
		r.leaseStates[owner] = st
	}
	return st
}

// serviceFencer switches one service's objects at this site between their forms for the
// keeper, recording an event whenever objects change.
type serviceFencer struct {
	r     *SharedServiceReconciler
	owner types.NamespacedName
	form  formSpec
	state *leaseState
}

// Serve takes the objects a step towards their active form, stamped with epoch: the next
// stages of the service's promotion, or all of them at once without stages.
func (f serviceFencer) Serve(ctx context.Context, epoch int64) (lease.Progress, error) {
	n, progress, err := f.promoteStep(ctx, epoch)
	f.state.mu.Lock()
	first := !f.state.servedHere && (n > 0 || err == nil)
	if n > 0 || err == nil {
		f.state.servedHere, f.state.returned, f.state.fencedAt = true, false, time.Time{}
	}
	f.state.mu.Unlock()
	if err != nil {
		return lease.Progress{}, err
	}
	staged := f.form.svc.Spec.Promotion != nil
	// A promotion from another site is told by FailingOver and FailedOver (recordPromotion);
	// Serving tells a claim of a service no other site served, and a restart that serves on.
	if (first || n > 0 && !staged) && !f.takesOver() {
		f.r.recorder.Eventf(f.form.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventServing, "Serve",
			"This site holds a majority of the lease's copies (epoch %d) and serves: %d object(s) switched to their active form", epoch, n)
	}
	return progress, nil
}

// takesOver reports whether the service was last reported served by another site: the
// switch is a promotion.
func (f serviceFencer) takesOver() bool {
	st := f.form.svc.Status
	if st.Lease != nil && st.Lease.Holder != "" {
		return st.Lease.Holder != f.r.site
	}
	return st.ActiveSite != "" && st.ActiveSite != f.r.site
}

// Fence switches the objects to their standby form. While the service is handed over it
// reports the fence as taken effect only after one more sync of the copies from the fenced
// objects, or finalSyncWait: the keeper releases the lease only then, so the standby takes
// over the latest state.
func (f serviceFencer) Fence(ctx context.Context) (bool, error) {
	n, err := f.r.fenceStages(ctx, f.form)
	if err != nil {
		return false, err
	}
	now := f.r.clock.Now()
	f.state.mu.Lock()
	if n > 0 && !f.state.servedHere {
		f.state.returned = true
	}
	if f.state.fencedAt.IsZero() {
		f.state.fencedAt = now
	}
	fencedAt, lastSync, handOver := f.state.fencedAt, f.state.lastSync, f.state.handOver
	f.state.mu.Unlock()
	if n > 0 {
		f.r.recorder.Eventf(f.form.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventFenced, "Fence",
			"%d object(s) switched to standby form: this site does not hold a majority of the lease's copies", n)
	}
	if handOver && lastSync.Before(fencedAt) && now.Sub(fencedAt) < finalSyncWait {
		f.r.events.TryNotify(f.owner) // the reconcile pushes the fenced objects once more
		return false, nil
	}
	return true, nil
}

// leaseSnapshot is the keeper's last decision for a service, as the reconcile reports it.
type leaseSnapshot struct {
	// read is set once this site's own copy of the lease was read (or failed to be).
	read bool
	// record is the copy that shows who holds the lease (the one with the highest epoch);
	// observedAt is when this site read it.
	record     failover.LeaseRecord
	observedAt time.Time
	// storedAt lists the arbiters that store a copy.
	storedAt []string
	// serving is set while this site holds a majority and its objects are in active form;
	// hold while a manager that has just started leaves an active copy as it is.
	serving, hold bool
	// epoch is this site's claim's epoch, zero without a claim.
	epoch int64
	// fenced is set while this site had a claim it can no longer serve on.
	fenced bool
	// recommend is set when a failover is due but may not run by itself.
	recommend bool
	// promoting is set while this site promotes itself.
	promoting bool
	// handingOver is set while this site fences itself to release the lease.
	handingOver bool
	// finalSync is set while this site, handing over, may push its fenced objects to the
	// partner one last time; finalSyncUntil is when that push must be done by.
	finalSync      bool
	finalSyncUntil time.Time
	// returned is set when this process found its site's objects in active form while
	// another site held the lease (the site came back after a failover) and fenced them.
	returned bool
	// held is how many of the target's arbiters this site holds, of targetSize.
	held, targetSize int
	// deadline is, while serving, when this site must be fenced unless it renews.
	deadline time.Time
	// servedAt is, while serving, when the switch to the active form completed.
	servedAt time.Time
	// message says what the keeper decided.
	message string
	// formErr is the last failure to switch this site's objects to the decided form.
	formErr string
}

// holds reports whether a manager that has just started leaves what its predecessor served
// as it is, until it has read its own cluster's copy of the lease.
func holds(snap lease.Snapshot) bool {
	return snap.Plan.Hold && !snap.Fenced
}

// snapshotOf reads the keeper's Snapshot for the reconcile.
func snapshotOf(site string, snap lease.Snapshot, st *leaseState, now time.Time) leaseSnapshot {
	out := leaseSnapshot{
		read: snap.OwnRead, serving: snap.Serving && snap.Promoted, hold: holds(snap),
		epoch: snap.Claim.Epoch, recommend: snap.Plan.Recommend,
		// A promotion through stages goes on after the keeper's claim serves, until the last
		// stage is ready.
		promoting:   snap.Plan.Reason == failover.PlanPromoting || snap.Serving && !snap.Promoted,
		handingOver: snap.Claim.Releasing || snap.Plan.Reason == failover.PlanHandingOver,
		fenced:      snap.Plan.Reason == failover.PlanFenceDeadline,
		held:        snap.Plan.Held, targetSize: len(snap.Target), deadline: snap.ServeUntil, servedAt: snap.ServedAt,
		message: snap.Plan.Message,
	}
	for _, k := range []string{"serve", "fence"} {
		if e := snap.Errors[k]; e != "" {
			out.formErr = e
		}
	}
	if st != nil {
		st.mu.Lock()
		out.returned = st.returned
		// A claim given up for the partner's is a fence only where the site served on it; a
		// standby whose promotion the partner's claim overtook simply stays standby.
		out.fenced = out.fenced || snap.Plan.Reason == failover.PlanGivingUp && st.servedHere
		if st.handOver {
			out.finalSyncUntil, out.finalSync = finalSyncWindow(site, snap, st.fencedAt, now)
		}
		st.mu.Unlock()
	}
	// The copy that shows the holder: the one of the highest epoch, this site's own on a tie.
	best := ""
	for _, a := range slices.Sorted(maps.Keys(snap.Observations)) {
		o := snap.Observations[a]
		if !o.Record.Exists() {
			continue
		}
		out.storedAt = append(out.storedAt, a)
		if b, ok := snap.Observations[best]; best == "" || !ok || o.Record.Epoch > b.Record.Epoch || o.Record.Epoch == b.Record.Epoch && a == site {
			best = a
		}
	}
	if best != "" {
		out.record, out.observedAt = snap.Observations[best].Record, snap.Observations[best].ObservedAt
	}
	if out.serving {
		out.record.Holder = site
	}
	return out
}

// leaseTarget is the configuration of arbiters this site's spec asks for, and the witness's
// ReplicationPeer when it has one: with a witness whose peer has role Witness, a copy at each
// partner and one at the witness; otherwise the single copy at the partner's cluster, the
// standby's while this site serves.
func leaseTarget(site string, svc *deichv1alpha1.SharedService, witness *deichv1alpha1.ReplicationPeer) failover.Config {
	partner := peerSite(svc, site)
	if witness != nil {
		return failover.QuorumConfig(svc.Spec.PrimarySite, svc.Spec.StandbySite, witness.Spec.Site)
	}
	return failover.TwoSiteConfig(partner)
}

// leaseStores are the copies of svc's lease this site can reach, by arbiter: each an entry
// of a shared record (lease.RecordKey), in PartnerLeaseNamespace at a partner's cluster and in
// the witness's lease namespace at a witness.
func (r *SharedServiceReconciler) leaseStores(ctx context.Context, svc *deichv1alpha1.SharedService, witness *deichv1alpha1.ReplicationPeer, arbiters []string) map[string]*lease.EntryStore {
	owner := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	entry := lease.EntryKey(owner)
	partnerKey := lease.RecordKey(lease.PartnerLeaseNamespace, svc.Spec.PrimarySite, svc.Spec.StandbySite, owner)
	stores := map[string]*lease.EntryStore{}
	for _, a := range arbiters {
		if a == r.site {
			r.leaseClients.mu.Lock()
			c := r.leaseClients.local
			r.leaseClients.mu.Unlock()
			if c != nil {
				stores[a] = r.records.Entry(lease.RecordRef{Arbiter: a, Client: c, Key: partnerKey, CreateNamespace: true}, entry)
			}
			continue
		}
		conn, ok := r.registry.Get(a)
		if !ok {
			continue
		}
		c, err := r.leaseClients.forPeer(conn)
		if err != nil {
			continue
		}
		if a == svc.Spec.PrimarySite || a == svc.Spec.StandbySite {
			stores[a] = r.records.Entry(lease.RecordRef{Arbiter: a, Client: c, Key: partnerKey, CreateNamespace: true}, entry)
			continue
		}
		// A witness: the service's own, or one its claim still needs while the witness is
		// removed (joint configuration), found by its ReplicationPeer.
		w := witness
		if w == nil || w.Spec.Site != a {
			if p, err := findPeer(ctx, r.client, a); err == nil && p != nil && p.Spec.IsWitness() {
				w = p
			} else {
				continue
			}
		}
		key := lease.RecordKey(w.Spec.WitnessLeaseNamespace(), svc.Spec.PrimarySite, svc.Spec.StandbySite, owner)
		stores[a] = r.records.Entry(lease.RecordRef{Arbiter: a, Client: c, Key: key}, entry)
	}
	return stores
}

func asStores(entries map[string]*lease.EntryStore) map[string]lease.Store {
	out := make(map[string]lease.Store, len(entries))
	for a, e := range entries {
		out[a] = e
	}
	return out
}

// keepLease hands the lease keeper what this reconcile learned and returns its snapshot.
func (r *SharedServiceReconciler) keepLease(ctx context.Context, s *serviceScope) (leaseSnapshot, bool) {
	svc := s.svc
	sel, err := metav1.LabelSelectorAsSelector(&svc.Spec.Selector)
	if err != nil {
		s.fail(deichv1alpha1.ServiceReasonResourceNotMirrorable, fmt.Sprintf("spec.selector: %v", err), true)
		return leaseSnapshot{}, false
	}
	policy := failover.PolicyFrom(s.objective, r.maxSkew)
	partner := peerSite(svc, r.site)
	state := failover.ServiceState{
		Site: r.site, Partner: partner, Primary: r.site == svc.Spec.PrimarySite,
		Target: leaseTarget(r.site, svc, s.witness),
		// A service whose lease never served a claim is put under protection at its primary.
		Unclaimed: svc.Status.Lease == nil || svc.Status.Lease.Epoch == 0,
		// The keeper starts from objects it must fence when it may not serve: it never assumes
		// a standby form it has not put in place itself.
		Fenced:        false,
		CopyWithinRPO: true,
	}
	judged := activeSite(svc)
	var failures int32
	for _, hc := range svc.Status.HealthChecks {
		failures = max(failures, hc.ConsecutiveFailures)
	}
	checksAt := s.now
	switch {
	case judged == r.site && failures > 0:
		// A site hands the service over only when its partner agrees it is failing, so a site
		// whose own probes are cut off does not give away a service its partner sees as
		// healthy.
		state.ChecksFailing = min(failures, r.peerFailures(ctx, svc))
		state.PartnerReady = r.partnerReady(ctx, svc, s.objective)
	case judged != r.site:
		state.PeerChecksFailing = failures
		state.CopyWithinRPO, state.CopyAge = copyWithinRPOWhenLastHealthy(svc.Status.LastSyncTime, statusRuns(svc.Status.HealthChecks), s.objective, policy, s.now)
		// The checks' fields stand for the scheduler's rounds up to the latest in status.
		checksAt = time.Time{}
		for _, hc := range svc.Status.HealthChecks {
			if hc.LastProbeTime != nil && hc.LastProbeTime.After(checksAt) {
				checksAt = hc.LastProbeTime.Time
			}
		}
	}
	ls := r.leaseStateOf(s.owner)
	prev, hadPrev := r.keeper.Snapshot(s.owner)
	if sw := r.runningSwitchover(ctx, svc); sw != nil {
		s.switchover = sw.Name
		s.switchoverBy = requesterOf(sw)
		state.TakeOverRequested = sw.Spec.TargetSite == r.site
		state.HandOverRequested = sw.Spec.TargetSite != r.site
	} else if hadPrev && state.Primary && abandoned(policy, prev, r.clock.Now()) {
		// Every copy was released and nobody took one for a whole lease: the move that
		// released them was abandoned. The primary takes the service back rather than leave
		// it unserved.
		state.TakeOverRequested = true
	}
	ls.mu.Lock()
	if hadPrev && prev.Claim.Epoch == 0 && !prev.Serving {
		ls.servedHere = false // the claim it served on has ended
	}
	ls.handOver = state.HandOverRequested
	ls.gate = checksGate{judgesPartner: judged != r.site, lastSync: svc.Status.LastSyncTime.DeepCopy(), objective: s.objective, policy: policy}
	if !state.HandOverRequested {
		ls.fencedAt = time.Time{}
	}
	ls.mu.Unlock()

	arbiters := slices.Clone(state.Target)
	arbiters = append(arbiters, r.site)
	if hadPrev {
		for _, c := range prev.Claim.Configs {
			arbiters = append(arbiters, c...)
		}
		for a := range prev.Observations {
			arbiters = append(arbiters, a)
		}
	}
	slices.Sort(arbiters)
	arbiters = slices.Compact(arbiters)
	form := formSpec{svc: svc.DeepCopy(), kinds: s.kinds, selector: sel, standby: s.objective.Spec.Standby,
		planned: state.TakeOverRequested && s.switchover != ""}
	if hadPrev && prev.Serving {
		s.data = r.dataLagOf(ctx, form, s.now)
		s.data.syncedAt = ls.dataSyncedAt(s.data, s.now)
	}
	dataSyncedAt := s.data.syncedAt
	r.keeper.Update(s.owner, lease.Inputs{
		Policy:       policy,
		State:        state,
		ChecksAt:     checksAt,
		DataSyncedAt: dataSyncedAt,
		Stores:       asStores(r.leaseStores(ctx, svc, s.witness, arbiters)),
		Fencer:       serviceFencer{r: r, owner: s.owner, state: ls, form: form},
	})
	snap, ok := r.keeper.Snapshot(s.owner)
	if !ok {
		return leaseSnapshot{}, true
	}
	return snapshotOf(r.site, snap, ls, s.now), true
}

// finalSyncWindow decides whether a site that hands the service over to a Switchover may
// still push its fenced objects to the partner, and until when. The push is the last sync of
// the hand-over (see serviceFencer.Fence): it runs only after this site's own fence took
// effect (fencedAt), before the keeper reports the fence done and releases the lease, within
// finalSyncWait, and while no copy of the lease shows a claim newer than this site's.
// Outside that window the partner may already serve, and a copy written there would
// overwrite the objects it serves with this site's older, standby-form ones: a site that
// gives up a claim it lost (it was cut off and the partner promoted) or a promotion of its
// own never pushes anything.
func finalSyncWindow(site string, snap lease.Snapshot, fencedAt, now time.Time) (time.Time, bool) {
	handingOver := snap.Claim.Releasing || snap.Plan.Reason == failover.PlanHandingOver
	if !handingOver || snap.Fenced || snap.Claim.Epoch == 0 || fencedAt.IsZero() {
		return time.Time{}, false
	}
	for _, o := range snap.Observations {
		if o.Record.Epoch > snap.Claim.Epoch || o.Record.Epoch == snap.Claim.Epoch && o.Record.Holder != "" && o.Record.Holder != site {
			return time.Time{}, false
		}
	}
	until := fencedAt.Add(finalSyncWait)
	return until, now.Before(until)
}

// abandoned reports whether every copy the keeper read was released, none has changed for
// more than a lease plus the clock skew, and this site has no claim.
func abandoned(p failover.Policy, snap lease.Snapshot, now time.Time) bool {
	if snap.Claim.Epoch != 0 || len(snap.Observations) == 0 {
		return false
	}
	for _, o := range snap.Observations {
		if !o.Record.Released() || o.ObservedAt.IsZero() || now.Sub(o.ObservedAt) <= p.LeaseDuration+p.MaxClockSkew {
			return false
		}
	}
	return true
}

// synced tells the service's lease state that a sync of its copies completed at at.
func (r *SharedServiceReconciler) synced(owner types.NamespacedName, at time.Time) {
	ls := r.leaseStateOf(owner)
	ls.mu.Lock()
	ls.lastSync = at
	ls.mu.Unlock()
}

// stopLease stops the keeper's loop for a service; its objects stay in the form they have.
func (r *SharedServiceReconciler) stopLease(owner types.NamespacedName) {
	r.keeper.Remove(owner)
	r.leaseMu.Lock()
	delete(r.leaseStates, owner)
	r.leaseMu.Unlock()
}

// observeLease exports the keeper's decision as metrics after every step.
func (r *SharedServiceReconciler) observeLease(owner types.NamespacedName, snap lease.Snapshot) {
	remaining := 0.0
	if snap.Serving {
		remaining = max(snap.ServeUntil.Sub(r.clock.Now()).Seconds(), 0)
	}
	metrics.LeaseRemaining.WithLabelValues(owner.Namespace, owner.Name, r.site).Set(remaining)
	metrics.Serving.WithLabelValues(owner.Namespace, owner.Name, r.site).Set(boolGauge(snap.Serving))
	// Fenced is a claim this site established and can no longer serve on, not a standby.
	metrics.Fenced.WithLabelValues(owner.Namespace, owner.Name, r.site).Set(boolGauge(snap.Plan.Reason == failover.PlanFenceDeadline))
}

// deleteLeases removes every copy of the service's lease this site can reach, once its
// copies are gone: nothing is left to protect.
func (r *SharedServiceReconciler) deleteLeases(ctx context.Context, svc *deichv1alpha1.SharedService, witness *deichv1alpha1.ReplicationPeer) error {
	owner := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	r.stopLease(owner)
	arbiters := []string{svc.Spec.PrimarySite, svc.Spec.StandbySite}
	if witness != nil {
		arbiters = append(arbiters, witness.Spec.Site)
	}
	var errs []string
	for a, st := range r.leaseStores(ctx, svc, witness, arbiters) {
		if err := st.Delete(ctx); err != nil {
			errs = append(errs, fmt.Sprintf("at %s: %v", a, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("delete the copies of the lease of %s/%s: %s", svc.Namespace, svc.Name, strings.Join(errs, "; "))
	}
	logf.FromContext(ctx).V(1).Info("Deleted the lease's copies", "arbiters", arbiters)
	return nil
}

// checkRun is how often in a row one check failed, as of its latest probe.
type checkRun struct {
	failures  int32
	lastProbe time.Time
}

// statusRuns are the runs of the checks status records.
func statusRuns(checks []deichv1alpha1.HealthCheckStatus) []checkRun {
	runs := make([]checkRun, 0, len(checks))
	for _, hc := range checks {
		if hc.LastProbeTime != nil {
			runs = append(runs, checkRun{failures: hc.ConsecutiveFailures, lastProbe: hc.LastProbeTime.Time})
		}
	}
	return runs
}

// probed is the probe scheduler's Notify: a round changed what the failover decision reads.
// It calls for a reconcile, which records the checks in status, and, while this site stands
// by, hands the verdict to the lease keeper at once: a promotion waits for no reconcile, so
// that after a site loss every service's standby promotes when its own checks say so, not
// when a reconcile worker gets to it.
func (r *SharedServiceReconciler) probed(key types.NamespacedName) {
	r.events.TryNotify(key)
	r.leaseMu.Lock()
	ls := r.leaseStates[key]
	r.leaseMu.Unlock()
	if ls == nil {
		return
	}
	ls.mu.Lock()
	gate := ls.gate
	ls.mu.Unlock()
	if !gate.judgesPartner {
		return
	}
	c := lease.Checks{CopyWithinRPO: true}
	runs := make([]checkRun, 0, 2)
	var since time.Time
	for _, o := range r.probes.Observations(key) {
		c.PeerFailing = max(c.PeerFailing, o.ConsecutiveFailures)
		if o.LastProbe.After(c.At) {
			c.At = o.LastProbe
		}
		runs = append(runs, checkRun{failures: o.ConsecutiveFailures, lastProbe: o.LastProbe})
		if o.ConsecutiveFailures > 0 && (since.IsZero() || o.LastTransition.Before(since)) {
			since = o.LastTransition
		}
	}
	if c.At.IsZero() {
		return
	}
	// The copy's age from the freshest evidence: the last reconcile's status, or a sync time
	// the active wrote into the lease since, which needs no reconcile here to count.
	lastSync := gate.lastSync
	var watched time.Time
	if last, ok := r.partnerSynced.get(key); ok {
		watched = last.at
	}
	snap, _ := r.keeper.Snapshot(key)
	if t := latestPartnerSync(r.site, snap.Observations, watched); !t.IsZero() && (lastSync == nil || t.After(lastSync.Time)) {
		lastSync = &metav1.Time{Time: t}
	}
	c.CopyWithinRPO, c.CopyAge = copyWithinRPOWhenLastHealthy(lastSync, runs, gate.objective, gate.policy, r.clock.Now())
	ls.mu.Lock()
	ls.failingSince = since
	ls.mu.Unlock()
	r.keeper.PeerChecks(key, c)
}

// copyWithinRPOWhenLastHealthy reports whether this site's copy was within the RPO when the
// active site was last seen healthy: the gate of an automatic promotion (a Switchover with
// force promotes a copy that was not). The copy's age is taken from status.lastSyncTime, which
// the active stamps by its clock, hence the clock-skew margin; the active was last seen
// healthy one probe interval before the first of the failures its checks count now. A copy
// never synced is never within the RPO. Without an objective there is no RPO to keep. It
// returns the age too, zero when the copy was never synced.
func copyWithinRPOWhenLastHealthy(lastSync *metav1.Time, runs []checkRun, objective *deichv1alpha1.RecoveryObjective, p failover.Policy, now time.Time) (within bool, age time.Duration) {
	if lastSync == nil {
		return objective == nil, 0
	}
	healthy := now
	for _, run := range runs {
		if run.failures == 0 {
			continue
		}
		at := run.lastProbe.Add(-time.Duration(run.failures) * p.ProbeInterval)
		if at.Before(healthy) {
			healthy = at
		}
	}
	age = max(healthy.Sub(lastSync.Time), 0)
	if objective == nil {
		return true, age
	}
	return age <= objective.Spec.RPO.Duration+p.MaxClockSkew, age
}
