package testenv

import (
	"context"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
)

// HeldKinds are the kinds the tests' services mirror, and Deich's own: the kinds HeldAt lists.
var HeldKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ConfigMap"}, {Version: "v1", Kind: "Secret"}, {Version: "v1", Kind: "Service"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	deichv1alpha1.GroupVersion.WithKind("SharedService"), deichv1alpha1.GroupVersion.WithKind("Switchover"),
}

// HeldAt lists what site's API server holds in namespace ns of the objects source wrote (the
// label resilience.deich.io/source-site), of HeldKinds: the count per kind and the Secrets by
// name, as one line that InventoryOf's can be compared with.
func HeldAt(ctx context.Context, site *Site, source, ns string) (string, error) {
	counts := map[string]int{}
	var secretNames []string
	for _, gvk := range HeldKinds {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := site.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{render.LabelSourceSite: source}); err != nil {
			return "", fmt.Errorf("list %s at %s: %w", gvk.Kind, site.Name, err)
		}
		for _, o := range list.Items {
			counts[gvk.Kind]++
			if gvk.Kind == "Secret" {
				secretNames = append(secretNames, o.Name)
			}
		}
	}
	return heldLine(counts, secretNames), nil
}

// InventoryOf is what site's inventory of its partner peer (status.egress of the
// ReplicationPeer named after it) says the partner holds in namespace ns, in HeldAt's form —
// or, while there is no complete inventory taken under the peer's current egress policy, why.
func InventoryOf(ctx context.Context, site *Site, peer, ns string) (string, error) {
	p := &deichv1alpha1.ReplicationPeer{}
	if err := site.Client.Get(ctx, client.ObjectKey{Name: peer}, p); err != nil {
		return "", err
	}
	inv := p.Status.Egress
	switch {
	case inv == nil:
		return "no inventory", nil
	case inv.PolicyGeneration != p.Generation:
		return fmt.Sprintf("inventory of policy generation %d, not %d", inv.PolicyGeneration, p.Generation), nil
	case inv.Message != "":
		return "incomplete inventory: " + inv.Message, nil
	case inv.LabelSelector != render.LabelSourceSite+"="+site.Name:
		return "label selector " + inv.LabelSelector, nil
	}
	counts := map[string]int{}
	for _, e := range inv.Kinds {
		if e.Namespace == ns {
			counts[e.Kind] = int(e.Count)
		}
	}
	var secretNames []string
	for _, s := range inv.SecretNames {
		if s.Namespace == ns {
			secretNames = append(secretNames, s.Name)
		}
	}
	return heldLine(counts, secretNames), nil
}

// heldLine is counts per kind and the Secrets' names as one sorted line, e.g.
// "ConfigMap=2,SharedService=1 secrets:db".
func heldLine(counts map[string]int, secretNames []string) string {
	parts := make([]string, 0, len(counts))
	for kind, n := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", kind, n))
	}
	sort.Strings(parts)
	sort.Strings(secretNames)
	return strings.Join(parts, ",") + " secrets:" + strings.Join(secretNames, ",")
}
