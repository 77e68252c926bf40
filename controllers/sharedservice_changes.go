package controllers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
)

// A service in sync is mirrored in one of two ways. A full round renders every selected
// object, compares each with its copy at the standby, applies what differs and prunes what
// is no longer selected: on every change of the service or its objective, after anything
// failed, and at every resync. Between full rounds, a watch event for one source object, or
// for one copy at the standby, starts a round for that object alone: it is rendered and
// applied, or its copy pruned when it left the selection, and nothing else is touched. So an
// edit reaches the standby in time proportional to the objects it touches, not to the
// objects the service holds.

// round records one round that succeeded: for which generations of the service and its
// objective, and when.
type round struct {
	generation, objectiveGeneration int64
	// egressVersion is the serviceScope's: a new egress policy needs a full round.
	egressVersion string
	at            time.Time
	// status is, for statusWrites, the digest of the status written (statusSum).
	status [sha256.Size]byte
}

// roundLog records, per service, when a round of some kind last succeeded.
type roundLog struct {
	mu     sync.Mutex
	rounds map[types.NamespacedName]round
}

func (f *roundLog) get(owner types.NamespacedName) (round, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.rounds[owner]
	return r, ok
}

func (f *roundLog) set(owner types.NamespacedName, r round) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rounds == nil {
		f.rounds = map[types.NamespacedName]round{}
	}
	f.rounds[owner] = r
}

func (f *roundLog) forget(owner types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.rounds, owner)
}

// confirmations says which active services' copies at the standby may be confirmed current
// between rounds. A service is in it from the end of a round that succeeded, for the service's
// current generations, until the next round starts: a round that starts takes it out before
// it takes the changes the watches saw, and puts it back only when it succeeds. Confirm holds
// the same lock while it checks that the watches saw nothing since, so it never confirms a
// copy while a round is writing it or after one failed.
type confirmations struct {
	mu      sync.Mutex
	current map[types.NamespacedName]confirmable
}

// confirmable is what a confirmation of one service checks besides its watches.
type confirmable struct {
	standby string
	copies  *informers.Set
}

func (c *confirmations) allow(owner types.NamespacedName, e confirmable) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current == nil {
		c.current = map[types.NamespacedName]confirmable{}
	}
	c.current[owner] = e
}

func (c *confirmations) suspend(owner types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.current, owner)
}

// confirm reports whether owner's copy at the standby is current now: its last round
// succeeded, and neither the watches of its sources here nor those of its copies at the
// standby saw a change since, or lost their watch.
func (c *confirmations) confirm(owner types.NamespacedName, sources *informers.Set) (standby string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, allowed := c.current[owner]
	if !allowed {
		return "", false
	}
	return e.standby, sources.Current(owner) && e.copies.Current(owner)
}

// confirmSync is the lease keeper's Options.ConfirmSync: between rounds, a service whose
// copy the watches show current, at a standby whose ReplicationPeer is Ready, is confirmed
// in sync at the keeper's decision, as a full round in which nothing changed would confirm it.
// So the evidence of the standby's RPO gate does not wait for a reconcile.
func (r *SharedServiceReconciler) confirmSync(owner types.NamespacedName) bool {
	standby, ok := r.confirmed.confirm(owner, r.sources)
	return ok && r.peerReady(context.Background(), standby)
}

// objectRef is one source object of a service, or its copy.
type objectRef struct {
	kind *mirroredKind
	name string
}

// changedObjects takes what the watches saw change for the service since its previous round,
// at this site and among its copies at the standby; none when nothing changed. ok is false
// when a full round is needed instead: no full round succeeded for this generation of the
// service and its objective, or one is due, or the changes are not known one by one.
func (r *SharedServiceReconciler) changedObjects(s *serviceScope, resync time.Duration) (refs []objectRef, ok bool) {
	sourceChanges, sourcesSince, sourcesComplete := r.sources.TakeChanges(s.owner)
	copyChanges, copiesSince, copiesComplete := s.conn.Copies.TakeChanges(s.owner)
	s.changesSince = earliest(sourcesSince, copiesSince)
	last, had := r.fullRounds.get(s.owner)
	switch {
	case !had || !sourcesComplete || !copiesComplete:
		return nil, false
	case last.generation != s.svc.Generation || last.objectiveGeneration != s.objective.Generation || last.egressVersion != s.egressVersion:
		return nil, false
	case s.now.Sub(last.at) >= resync-resync/10 || !meta.IsStatusConditionTrue(s.before.Status.Conditions, deichv1alpha1.ServiceConditionSynced):
		// Due, or due within the jitter of the periodic requeue that brought this reconcile.
		return nil, false
	}
	byResource := make(map[schema.GroupVersionResource]*mirroredKind, len(s.kinds))
	for _, k := range s.kinds {
		byResource[k.resource] = k
	}
	seen := map[objectRef]bool{}
	for _, c := range append(sourceChanges, copyChanges...) {
		k, known := byResource[c.Key.Resource]
		if !known || c.Key.Namespace != s.svc.Namespace {
			return nil, false // a watch the service no longer uses: let a full round sort it out
		}
		ref := objectRef{kind: k, name: c.Name}
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	return refs, true
}

// syncChanged mirrors the changed objects alone, and reports whether it could: false means
// a full round must follow at once (an object could not be read from the caches).
func (r *SharedServiceReconciler) syncChanged(ctx context.Context, s *serviceScope, refs []objectRef, standby string) (bool, error) {
	sel, err := metav1.LabelSelectorAsSelector(&s.svc.Spec.Selector)
	if err != nil {
		return false, nil
	}
	copySel := mirror.Selector(s.svc.Name, r.site)
	target := r.renderTarget(s, standby)
	copies := map[copyRef]*informers.Object{}
	var gone []copyRef
	for _, ref := range refs {
		cref := copyRef{ref.kind.resource, ref.name}
		if cp, ok := s.conn.Copies.Get(informers.Key{Resource: ref.kind.resource, Namespace: s.svc.Namespace, Selector: copySel}, ref.name); ok {
			copies[cref] = cp
		}
		src, ok := r.sources.Get(informers.Key{Resource: ref.kind.resource, Namespace: s.svc.Namespace, Selector: sel.String()}, ref.name)
		if ok {
			// The copy's own event after this manager wrote it: nothing to render or read.
			key := keyOf(src, s, standby)
			if hash, current := r.rendered.current(s.owner, cref, key, copies[cref]); current {
				s.desired = append(s.desired, desiredCopy{kind: ref.kind, name: ref.name, hash: hash, key: key})
				continue
			}
			d, keep, err := renderSource(src, target, ref.kind, s.svc.Name)
			var denied *render.EgressDeniedError
			if errors.As(err, &denied) {
				return false, nil // a full round reports the denial and withdraws the copy
			}
			if err != nil {
				s.fail(deichv1alpha1.ServiceReasonRenderFailed, fmt.Sprintf("render %s %s for %s: %v; nothing was changed at the standby", ref.kind.gk.Kind, src.GetName(), standby, err), true)
				return true, err
			}
			if keep {
				metrics.CopiesRendered.WithLabelValues(s.svc.Namespace, s.svc.Name).Inc()
				s.sourceStandby = s.sourceStandby || d.sourceStandby
				d.key = key
				s.desired = append(s.desired, d)
				continue
			}
		}
		if _, held := copies[cref]; held {
			gone = append(gone, cref)
		}
	}
	if err := r.apply(ctx, s, copies); err != nil {
		return true, err
	}
	for _, ref := range gone {
		if err := r.pruneCopy(ctx, s, ref, copies[ref]); err != nil {
			return true, err
		}
	}
	if (s.copiesWritten > 0 || len(gone) > 0) && !s.changesSince.IsZero() {
		metrics.ChangePropagation.WithLabelValues(standby, r.site).Observe(time.Since(s.changesSince).Seconds())
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Mirrored changed objects", "objects", len(refs), "applied", len(s.desired), "pruned", len(gone), "peer", standby)
	return true, nil
}

// mirrorChanges runs the round for the changed objects when one suffices, and reports
// whether it did; the result is then the reconcile's. What fails is reported in the Synced
// condition, and a full round follows.
func (r *SharedServiceReconciler) mirrorChanges(ctx context.Context, s *serviceScope, resync time.Duration, standby string) (bool, ctrl.Result) {
	refs, ok := r.changedObjects(s, resync)
	if !ok {
		return false, ctrl.Result{}
	}
	var err error
	if len(refs) > 0 {
		done := false
		if done, err = r.syncChanged(ctx, s, refs, standby); !done {
			return false, ctrl.Result{}
		}
		if err == nil {
			metrics.MirrorRounds.WithLabelValues(s.svc.Namespace, s.svc.Name, metrics.RoundChanges).Inc()
		}
	}
	s.changesOnly, s.roundDone = true, err == nil
	last, _ := r.fullRounds.get(s.owner)
	until := max(resync-s.now.Sub(last.at), time.Millisecond)
	if err != nil {
		// The Synced condition says what failed; a full round retries it.
		return true, ctrl.Result{RequeueAfter: min(until, 5*time.Second)}
	}
	// The service stays as its last full round left it: Synced, and the copy's age, which
	// only a full round renews.
	if c := meta.FindStatusCondition(s.before.Status.Conditions, deichv1alpha1.ServiceConditionSynced); c != nil {
		s.synced = *c
	}
	return true, periodic(until)
}

// earliest is the earlier of two times, ignoring a zero one.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
