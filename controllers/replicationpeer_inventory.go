package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/inventory"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/render"
)

// inventoryTimeout bounds the listing of one partner's inventory.
const inventoryTimeout = 30 * time.Second

// Deich's own kinds, whose copies at a partner the inventory counts with the mirrored objects.
var (
	sharedServiceKind = schema.GroupKind{Group: deichv1alpha1.GroupVersion.Group, Kind: "SharedService"}
	switchoverKind    = schema.GroupKind{Group: deichv1alpha1.GroupVersion.Group, Kind: "Switchover"}
)

// takeInventory lists, when one is due, what a partner that answered the heartbeat holds of
// this site's objects, and records it in status.egress with an event when it changed. It is
// due every inventoryInterval, when the egress policy changed since the last one, and at
// every heartbeat for one inventoryInterval after such a change.
func (r *ReplicationPeerReconciler) takeInventory(ctx context.Context, obj *deichv1alpha1.ReplicationPeer, obs peerObservation) {
	if obj.Spec.IsWitness() {
		obj.Status.Egress = nil // nothing but Leases is written at a witness
		return
	}
	if obs.conn == nil || obs.heartbeat == nil || !obs.heartbeat.DeichAPIServed {
		return // the last inventory stands until the peer can be listed again
	}
	now := r.clock.Now()
	prev := obj.Status.Egress
	r.mu.Lock()
	if prev != nil && prev.PolicyGeneration != obj.Generation {
		r.follow[obj.Name] = now.Add(r.inventoryInterval)
	}
	following := now.Before(r.follow[obj.Name])
	r.mu.Unlock()
	if prev != nil && prev.ObservedTime != nil && prev.PolicyGeneration == obj.Generation &&
		now.Sub(prev.ObservedTime.Time) < r.inventoryInterval && !following {
		return
	}

	kinds, namespaces, mapErrs := r.inventoryScope(ctx, obj, obs.conn)
	listCtx, cancel := context.WithTimeout(ctx, inventoryTimeout)
	defer cancel()
	items, err := inventory.List(listCtx, obs.conn.Metadata, r.site, kinds, namespaces)
	inv := inventory.Summarize(items)
	inv.ObservedTime = &metav1.Time{Time: now}
	inv.PolicyGeneration = obj.Generation
	inv.LabelSelector = inventory.Selector(r.site)
	var incomplete []string
	incomplete = append(incomplete, mapErrs...)
	if err != nil {
		incomplete = append(incomplete, err.Error())
	}
	if len(incomplete) > 0 {
		inv.Message = truncate("incomplete: "+strings.Join(incomplete, "; "), 1024)
		ctrl.LoggerFrom(ctx).Info("Inventory of the peer incomplete", "message", inv.Message)
	}

	changed := inventory.Changed(prev, &inv)
	switch {
	case changed || prev == nil || prev.LastChangeTime == nil:
		inv.LastChangeTime = &metav1.Time{Time: now}
	default:
		inv.LastChangeTime = prev.LastChangeTime
	}
	if changed && prev != nil && prev.Message == "" && inv.Message == "" {
		r.recorder.Eventf(obj, nil, corev1.EventTypeNormal, deichv1alpha1.PeerEventInventoryChanged, "Inventory",
			"Peer %s holds %d object(s) of site %s in %d namespace(s), %d of them Secrets (was %d, %d Secrets), under egress policy generation %d",
			obj.Spec.Site, inv.Objects, r.site, inventory.Namespaces(&inv), inv.Secrets, prev.Objects, prev.Secrets, obj.Generation)
	}
	obj.Status.Egress = &inv
	recordInventoryMetrics(obj.Name, items)
}

// inventoryScope returns the kinds whose objects a partner may hold of this site's, with
// their resources at the partner, and the namespaces to list them in where the partner only
// lets this site list namespace by namespace: those of the services that name the partner's
// site, those of the last inventory (a service that is gone may have left copies behind),
// and Deich's own kinds. It also returns the kinds it could not map.
func (r *ReplicationPeerReconciler) inventoryScope(ctx context.Context, obj *deichv1alpha1.ReplicationPeer, conn *peer.Connection) ([]inventory.Kind, []string, []string) {
	gks := sets.New(sharedServiceKind, switchoverKind)
	namespaces := sets.New[string]()
	var services deichv1alpha1.SharedServiceList
	if err := r.client.List(ctx, &services, client.MatchingFields{serviceSiteIndex: obj.Spec.Site}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List SharedServices for the inventory")
	}
	for i := range services.Items {
		svc := &services.Items[i]
		namespaces.Insert(svc.Namespace)
		for _, res := range svc.Spec.Resources {
			gk := schema.GroupKind{Group: res.Group, Kind: res.Kind}
			if render.Mirrorable(gk) == nil {
				gks.Insert(gk)
			}
		}
	}
	if prev := obj.Status.Egress; prev != nil {
		for _, e := range prev.Kinds {
			gks.Insert(schema.GroupKind{Group: e.Group, Kind: e.Kind})
			namespaces.Insert(e.Namespace)
		}
	}

	mapper := conn.Cluster.GetRESTMapper()
	var kinds []inventory.Kind
	var errs []string
	for _, gk := range sortedGroupKinds(gks) {
		mapping, err := mapper.RESTMapping(gk)
		switch {
		case meta.IsNoMatchError(err):
			continue // the partner does not serve the kind, so it holds none
		case err != nil:
			errs = append(errs, fmt.Sprintf("kind %s at %s: %v", gk, obj.Spec.Site, err))
			continue
		}
		kinds = append(kinds, inventory.Kind{GroupKind: gk, Resource: mapping.Resource})
	}
	return kinds, sets.List(namespaces), errs
}

// sortedGroupKinds returns gks in a stable order: the order of the lists at the peer.
func sortedGroupKinds(gks sets.Set[schema.GroupKind]) []schema.GroupKind {
	out := gks.UnsortedList()
	slices.SortFunc(out, func(a, b schema.GroupKind) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind))
	})
	return out
}

// recordInventoryMetrics sets the gauges of what peer holds, by kind.
func recordInventoryMetrics(peerName string, items []inventory.Item) {
	counts := map[string]int{}
	for _, it := range items {
		counts[kindLabel(it.GroupKind)]++
	}
	metrics.EgressHeldObjects.DeletePartialMatch(map[string]string{"peer": peerName})
	for kind, n := range counts {
		metrics.EgressHeldObjects.WithLabelValues(peerName, kind).Set(float64(n))
	}
}

// kindLabel is a kind as a metric label: "Kind" for the core group, "group/Kind" otherwise.
func kindLabel(gk schema.GroupKind) string {
	if gk.Group == "" {
		return gk.Kind
	}
	return gk.Group + "/" + gk.Kind
}
