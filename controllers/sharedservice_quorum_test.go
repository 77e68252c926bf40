package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
)

func TestFinalSyncWindow(t *testing.T) {
	fencedAt := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	held := func(holder string, epoch int64) failover.Observation {
		return failover.Observation{Record: failover.LeaseRecord{Holder: holder, Epoch: epoch}, ObservedAt: fencedAt}
	}
	handingOver := func(obs map[string]failover.Observation) lease.Snapshot {
		return lease.Snapshot{
			Plan:         failover.Plan{Reason: failover.PlanHandingOver},
			Claim:        failover.Claim{Epoch: 3, Releasing: true},
			Observations: obs,
		}
	}
	ownCopies := map[string]failover.Observation{"sh-kiel": held("sh-kiel", 3), "hh-hamburg": held("sh-kiel", 3)}
	for _, tc := range []struct {
		name     string
		snap     lease.Snapshot
		fencedAt time.Time
		now      time.Time
		want     bool
	}{{
		name: "a hand-over whose fence took effect pushes the fenced objects",
		snap: handingOver(ownCopies), fencedAt: fencedAt, now: fencedAt.Add(time.Second), want: true,
	}, {
		name: "nothing is pushed before this site's own fence took effect",
		snap: handingOver(ownCopies), now: fencedAt,
	}, {
		name: "nothing is pushed once the final sync's wait is over",
		snap: handingOver(ownCopies), fencedAt: fencedAt, now: fencedAt.Add(finalSyncWait),
	}, {
		name: "nothing is pushed once the keeper reported the fence done and releases the lease",
		snap: func() lease.Snapshot {
			s := handingOver(ownCopies)
			s.Fenced = true
			return s
		}(),
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}, {
		name: "a claim the partner overtook pushes nothing: the partner may serve already",
		snap: handingOver(map[string]failover.Observation{
			"sh-kiel": held("sh-kiel", 3), "mv-schwerin": held("mv-schwerin", 4), "hh-hamburg": held("mv-schwerin", 4),
		}),
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}, {
		name:     "a copy naming the partner at this site's epoch pushes nothing",
		snap:     handingOver(map[string]failover.Observation{"sh-kiel": held("sh-kiel", 3), "hh-hamburg": held("mv-schwerin", 3)}),
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}, {
		name:     "released copies of this site's claim do not stop the push",
		snap:     handingOver(map[string]failover.Observation{"sh-kiel": held("", 3), "hh-hamburg": held("sh-kiel", 3)}),
		fencedAt: fencedAt, now: fencedAt.Add(time.Second), want: true,
	}, {
		name:     "a site that serves does not hand over",
		snap:     lease.Snapshot{Plan: failover.Plan{Reason: failover.PlanServing, Serve: true}, Claim: failover.Claim{Epoch: 3}, Observations: ownCopies},
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}, {
		name:     "a fence by the deadline is no hand-over",
		snap:     lease.Snapshot{Plan: failover.Plan{Reason: failover.PlanFenceDeadline}, Claim: failover.Claim{Epoch: 3, Established: true}, Observations: ownCopies},
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}, {
		name:     "without a claim there is nothing to hand over",
		snap:     lease.Snapshot{Plan: failover.Plan{Reason: failover.PlanHandingOver}},
		fencedAt: fencedAt, now: fencedAt.Add(time.Second),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			until, got := finalSyncWindow("sh-kiel", tc.snap, tc.fencedAt, tc.now)
			if got != tc.want {
				t.Fatalf("finalSyncWindow = %v, want %v", got, tc.want)
			}
			if got && !until.Equal(tc.fencedAt.Add(finalSyncWait)) {
				t.Fatalf("the push must be done by %s, the end of the final sync's wait; got %s", tc.fencedAt.Add(finalSyncWait), until)
			}
		})
	}
}

// TestRoleChangesPassTheQueue: a service whose site starts or stops serving is reconciled
// before the events and periodic rounds queued ahead of it, and a role change of a service
// already queued moves it ahead.
func TestRoleChangesPassTheQueue(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("role-test")
	defer q.ShutDown()
	ev := func(name string) event.GenericEvent {
		return event.GenericEvent{Object: &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: name}}}
	}
	ctx := context.Background()
	q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "edited", Name: "edited"}})
	prioritized{handler.LowPriority}.Generic(ctx, ev("periodic"), q)
	prioritized{rolePriority}.Generic(ctx, ev("promoted"), q)
	prioritized{rolePriority}.Generic(ctx, ev("periodic"), q)

	var order []string
	for range 3 {
		req, _, _ := q.GetWithPriority()
		order = append(order, req.Name)
		q.Done(req)
	}
	first := slices.Clone(order[:2])
	slices.Sort(first)
	if !slices.Equal(first, []string{"periodic", "promoted"}) || order[2] != "edited" {
		t.Errorf("reconciled in the order %v, want the two role changes before the edit", order)
	}
}
