// Package inventory answers what a partner site holds of this site's objects: it lists them at
// the partner's API server by their provenance label and summarises them, bounded, for
// ReplicationPeer.status.egress.
//
// Every object Deich writes at a partner carries the label resilience.deich.io/source-site
// with the name of the site that wrote it: the copies of a service's objects, the copy of the
// SharedService itself, and the copies a failover promoted there. The inventory counts exactly
// the objects that label selects, so that an auditor can check it with the same label query.
package inventory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
)

// pageSize is how many objects one list request asks for.
const pageSize = 500

// Kind is a kind whose objects are counted, and its resource at the peer.
type Kind struct {
	GroupKind schema.GroupKind
	Resource  schema.GroupVersionResource
}

// Item is one object the peer holds of this site's.
type Item struct {
	Namespace string
	Name      string
	GroupKind schema.GroupKind
	// Created is the object's creationTimestamp at the peer.
	Created time.Time
}

// Selector returns the label selector of the objects at a peer that sourceSite wrote.
func Selector(sourceSite string) string {
	return labels.SelectorFromSet(labels.Set{render.LabelSourceSite: sourceSite}).String()
}

// List lists at a peer the objects of kinds that sourceSite wrote. It lists each kind across
// all namespaces; where the peer lets this site's identity list a kind only namespace by
// namespace (a grant limited to named namespaces), it lists it in each of namespaces. It
// returns what it could list, and an error that names every kind and namespace it could not.
func List(ctx context.Context, c metadata.Interface, sourceSite string, kinds []Kind, namespaces []string) ([]Item, error) {
	sel := Selector(sourceSite)
	var items []Item
	var errs []error
	for _, k := range kinds {
		got, err := list(ctx, c, k, metav1.NamespaceAll, sel)
		if err == nil {
			items = append(items, got...)
			continue
		}
		if !apierrors.IsForbidden(err) {
			errs = append(errs, fmt.Errorf("list %s: %w", k.GroupKind, err))
			continue
		}
		for _, ns := range namespaces {
			got, err := list(ctx, c, k, ns, sel)
			if err != nil {
				errs = append(errs, fmt.Errorf("list %s in namespace %s: %w", k.GroupKind, ns, err))
				continue
			}
			items = append(items, got...)
		}
	}
	return items, errors.Join(errs...)
}

// list pages through one kind's objects in namespace (all when empty).
func list(ctx context.Context, c metadata.Interface, k Kind, namespace, sel string) ([]Item, error) {
	var items []Item
	opts := metav1.ListOptions{LabelSelector: sel, Limit: pageSize}
	for {
		page, err := c.Resource(k.Resource).Namespace(namespace).List(ctx, opts)
		if err != nil {
			if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
				return items, nil // the peer does not serve the kind: it holds none
			}
			return nil, err
		}
		for i := range page.Items {
			o := &page.Items[i]
			items = append(items, Item{Namespace: o.Namespace, Name: o.Name, GroupKind: k.GroupKind, Created: o.CreationTimestamp.Time})
		}
		if page.Continue == "" {
			return items, nil
		}
		opts.Continue = page.Continue
	}
}

// secretKind is the kind whose objects a summary names one by one.
var secretKind = schema.GroupKind{Kind: "Secret"}

// Summarize returns the bounded summary of items: the counts, the entries per namespace and
// kind, and the Secrets by name. Entries and names beyond their bounds are left out and the
// summary marked truncated; the counts are always complete. It sets no times.
func Summarize(items []Item) deichv1alpha1.EgressInventory {
	type key struct {
		namespace string
		gk        schema.GroupKind
	}
	entries := map[key]*deichv1alpha1.EgressInventoryEntry{}
	var inv deichv1alpha1.EgressInventory
	for _, it := range items {
		inv.Objects++
		k := key{it.Namespace, it.GroupKind}
		e, ok := entries[k]
		if !ok {
			e = &deichv1alpha1.EgressInventoryEntry{Namespace: it.Namespace, Group: it.GroupKind.Group, Kind: it.GroupKind.Kind}
			entries[k] = e
		}
		e.Count++
		if !it.Created.IsZero() && (e.Since == nil || it.Created.Before(e.Since.Time)) {
			e.Since = &metav1.Time{Time: it.Created}
		}
		if it.GroupKind == secretKind {
			inv.Secrets++
			s := deichv1alpha1.EgressInventorySecret{Namespace: it.Namespace, Name: it.Name}
			if !it.Created.IsZero() {
				s.Since = &metav1.Time{Time: it.Created}
			}
			inv.SecretNames = append(inv.SecretNames, s)
		}
	}
	for _, e := range entries {
		inv.Kinds = append(inv.Kinds, *e)
	}
	slices.SortFunc(inv.Kinds, func(a, b deichv1alpha1.EgressInventoryEntry) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind))
	})
	slices.SortFunc(inv.SecretNames, func(a, b deichv1alpha1.EgressInventorySecret) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	if len(inv.Kinds) > deichv1alpha1.MaxEgressInventoryKinds {
		inv.Kinds = inv.Kinds[:deichv1alpha1.MaxEgressInventoryKinds]
		inv.Truncated = true
	}
	if len(inv.SecretNames) > deichv1alpha1.MaxEgressInventorySecrets {
		inv.SecretNames = inv.SecretNames[:deichv1alpha1.MaxEgressInventorySecrets]
		inv.Truncated = true
	}
	return inv
}

// Changed reports whether two summaries differ in what the peer holds: the counts, the
// entries or the Secrets. Times, policy and message are not compared.
func Changed(a, b *deichv1alpha1.EgressInventory) bool {
	if a == nil || b == nil {
		return a != b
	}
	if a.Objects != b.Objects || a.Secrets != b.Secrets || a.Truncated != b.Truncated ||
		len(a.Kinds) != len(b.Kinds) || len(a.SecretNames) != len(b.SecretNames) {
		return true
	}
	for i := range a.Kinds {
		x, y := a.Kinds[i], b.Kinds[i]
		if x.Namespace != y.Namespace || x.Group != y.Group || x.Kind != y.Kind || x.Count != y.Count || !x.Since.Equal(y.Since) {
			return true
		}
	}
	for i := range a.SecretNames {
		x, y := a.SecretNames[i], b.SecretNames[i]
		if x.Namespace != y.Namespace || x.Name != y.Name || !x.Since.Equal(y.Since) {
			return true
		}
	}
	return false
}

// Namespaces returns how many namespaces a summary's entries cover.
func Namespaces(inv *deichv1alpha1.EgressInventory) int {
	n := 0
	for i := range inv.Kinds {
		if i == 0 || inv.Kinds[i].Namespace != inv.Kinds[i-1].Namespace {
			n++
		}
	}
	return n
}
