package controllers

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// The history of a service's moves, merged from both sites.
//
// The site that serves after a move records it (recordPromotion) with the lease epoch it
// serves with. The other site learns of the move from the lease: when the epoch it reads is
// newer than every move its own history knows, it reads the partner's SharedService once and
// merges the partner's records into its own. Both sites so show the whole history, and only a
// site that missed a move asks its partner anything.

const (
	// historyAskInterval is how long a site waits before it asks its partner again for a
	// move its history lacks: the partner records a move shortly after it serves.
	historyAskInterval = 5 * time.Second
	// historyAsks bounds how often a site asks for the same epoch: a move recorded by no
	// site (one before the epoch was recorded, say) is not asked for forever.
	historyAsks = 6
)

// historyAsk is what a site last asked its partner for one service.
type historyAsk struct {
	epoch int64
	tries int
	at    time.Time
}

// historyBook remembers, per service, the asks for the partner's history.
type historyBook struct {
	mu   sync.Mutex
	asks map[types.NamespacedName]historyAsk
}

// due reports whether the partner should be asked now for epoch, and notes the ask.
func (b *historyBook) due(owner types.NamespacedName, epoch int64, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.asks == nil {
		b.asks = map[types.NamespacedName]historyAsk{}
	}
	last, ok := b.asks[owner]
	switch {
	case !ok || last.epoch != epoch:
		last = historyAsk{epoch: epoch}
	case last.tries >= historyAsks || now.Sub(last.at) < historyAskInterval:
		return false
	}
	last.tries++
	last.at = now
	b.asks[owner] = last
	return true
}

func (b *historyBook) forget(owner types.NamespacedName) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.asks, owner)
}

// completeHistory merges into the service's failoverHistory the moves the partner recorded
// that this site's history lacks, when the lease says there are such moves.
func (r *SharedServiceReconciler) completeHistory(ctx context.Context, s *serviceScope) {
	st := &s.svc.Status
	if st.Lease == nil || !historyBehind(st.Lease.Epoch, st.FailoverHistory) {
		return
	}
	partner := peerSite(s.svc, r.site)
	conn, ok := r.registry.Get(partner)
	if !ok || !r.peerReady(ctx, partner) || !r.history.due(s.owner, st.Lease.Epoch, s.now) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, peerStatusTimeout)
	defer cancel()
	theirs := &deichv1alpha1.SharedService{}
	if err := conn.Cluster.GetAPIReader().Get(ctx, client.ObjectKeyFromObject(s.svc), theirs); err != nil {
		ctrl.LoggerFrom(ctx).V(1).Info("Cannot read the partner's history of the service", "partner", partner, "error", err.Error())
		return
	}
	st.FailoverHistory = mergeHistory(st.FailoverHistory, theirs.Status.FailoverHistory)
	if len(st.FailoverHistory) == 0 {
		return
	}
	newest := st.FailoverHistory[0]
	if lf := st.LastFailover; lf == nil || lf.CompletedAt != nil && newest.Epoch > lf.Epoch {
		st.LastFailover = &newest
	}
}

// historyBehind reports whether the lease's epoch is newer than every move in history: a site
// served with an epoch after the first claim (epoch 1) that this history does not record.
func historyBehind(epoch int64, history []deichv1alpha1.FailoverRecord) bool {
	if epoch <= 1 {
		return false
	}
	for _, rec := range history {
		if rec.Epoch >= epoch {
			return false
		}
	}
	return true
}

// mergeHistory adds to ours the moves of theirs it lacks, newest first, at most
// maxFailoverHistory. A move is known by its epoch; records without one (written before the
// epoch was recorded) by their sites and completion time. Records are ordered by completion
// (or detection) time, and by epoch where the times are equal.
func mergeHistory(ours, theirs []deichv1alpha1.FailoverRecord) []deichv1alpha1.FailoverRecord {
	out := slices.Clone(ours)
	for _, rec := range theirs {
		if !slices.ContainsFunc(out, func(o deichv1alpha1.FailoverRecord) bool { return sameMove(o, rec) }) {
			out = append(out, rec)
		}
	}
	slices.SortStableFunc(out, func(a, b deichv1alpha1.FailoverRecord) int {
		return cmp.Or(b.MovedAt().Compare(a.MovedAt()), cmp.Compare(b.Epoch, a.Epoch))
	})
	if len(out) > maxFailoverHistory {
		out = out[:maxFailoverHistory]
	}
	return out
}

// sameMove reports whether two records describe one move.
func sameMove(a, b deichv1alpha1.FailoverRecord) bool {
	if a.Epoch != 0 && b.Epoch != 0 {
		return a.Epoch == b.Epoch
	}
	return a.From == b.From && a.To == b.To && a.CompletedAt.Equal(b.CompletedAt) && a.DetectedAt.Equal(b.DetectedAt)
}
