package inventory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
)

var (
	configMaps = Kind{GroupKind: schema.GroupKind{Kind: "ConfigMap"}, Resource: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}}
	secrets    = Kind{GroupKind: schema.GroupKind{Kind: "Secret"}, Resource: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}}
)

func object(kind, namespace, name, source string, created time.Time) *metav1.PartialObjectMetadata {
	o := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: name, CreationTimestamp: metav1.NewTime(created),
		},
	}
	if source != "" {
		o.Labels = map[string]string{render.LabelSourceSite: source}
	}
	return o
}

// fakeClient is a metadata client holding objs.
func fakeClient(t *testing.T, objs ...runtime.Object) *metadatafake.FakeMetadataClient {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return metadatafake.NewSimpleMetadataClient(scheme, objs...)
}

func TestListCountsOnlyWhatTheSiteWrote(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	c := fakeClient(t,
		object("ConfigMap", "a", "one", "sh-kiel", t0),
		object("ConfigMap", "a", "two", "sh-kiel", t0.Add(time.Hour)),
		object("ConfigMap", "b", "theirs", "mv-schwerin", t0),
		object("ConfigMap", "b", "local", "", t0),
		object("Secret", "b", "token", "sh-kiel", t0.Add(2*time.Hour)),
	)
	items, err := List(context.Background(), c, "sh-kiel", []Kind{configMaps, secrets}, []string{"a", "b"})
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	inv := Summarize(items)
	if inv.Objects != 3 || inv.Secrets != 1 {
		t.Fatalf("objects %d secrets %d, want 3 and 1", inv.Objects, inv.Secrets)
	}
	want := []string{"a//ConfigMap=2 since " + t0.Format(time.RFC3339), "b//Secret=1 since " + t0.Add(2*time.Hour).Format(time.RFC3339)}
	if got := entries(inv); strings.Join(got, ";") != strings.Join(want, ";") {
		t.Errorf("kinds %v, want %v", got, want)
	}
	if len(inv.SecretNames) != 1 || inv.SecretNames[0].Namespace != "b" || inv.SecretNames[0].Name != "token" {
		t.Errorf("secretNames %+v, want b/token", inv.SecretNames)
	}
}

func TestListFallsBackToNamespacesWhereAClusterWideListIsForbidden(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	c := fakeClient(t,
		object("ConfigMap", "a", "one", "sh-kiel", t0),
		object("ConfigMap", "c", "hidden", "sh-kiel", t0),
	)
	c.PrependReactor("list", "configmaps", func(action clienttesting.Action) (bool, runtime.Object, error) {
		switch ns := action.GetNamespace(); ns {
		case "a":
			return false, nil, nil
		default:
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "", fmt.Errorf("namespace %q not granted", ns))
		}
	})
	items, err := List(context.Background(), c, "sh-kiel", []Kind{configMaps}, []string{"a", "c"})
	if err == nil || !strings.Contains(err.Error(), "in namespace c") {
		t.Fatalf("List error %v, want one naming namespace c", err)
	}
	if len(items) != 1 || items[0].Name != "one" {
		t.Errorf("items %+v, want a/one only", items)
	}
}

func TestSummarizeIsBoundedAndCountsStayComplete(t *testing.T) {
	var items []Item
	n := deichv1alpha1.MaxEgressInventoryKinds + 10
	for i := range n {
		ns := fmt.Sprintf("ns-%03d", i)
		items = append(items,
			Item{Namespace: ns, Name: "cm", GroupKind: configMaps.GroupKind},
			Item{Namespace: ns, Name: "s", GroupKind: secrets.GroupKind})
	}
	inv := Summarize(items)
	if !inv.Truncated {
		t.Error("not truncated")
	}
	if int(inv.Objects) != 2*n || int(inv.Secrets) != n {
		t.Errorf("objects %d secrets %d, want %d and %d", inv.Objects, inv.Secrets, 2*n, n)
	}
	if len(inv.Kinds) != deichv1alpha1.MaxEgressInventoryKinds || len(inv.SecretNames) != deichv1alpha1.MaxEgressInventorySecrets {
		t.Errorf("%d kinds and %d secret names kept", len(inv.Kinds), len(inv.SecretNames))
	}
	if inv.Kinds[0].Namespace != "ns-000" || inv.SecretNames[0].Namespace != "ns-000" {
		t.Errorf("not sorted: first entry %+v", inv.Kinds[0])
	}
}

func TestChanged(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	base := []Item{{Namespace: "a", Name: "x", GroupKind: secrets.GroupKind, Created: t0}}
	a, b := Summarize(base), Summarize(base)
	b.ObservedTime = &metav1.Time{Time: t0.Add(time.Minute)}
	b.PolicyGeneration = 7
	if Changed(&a, &b) {
		t.Error("times and policy count as a change")
	}
	// The same name, re-created: another copy, so a change.
	c := Summarize([]Item{{Namespace: "a", Name: "x", GroupKind: secrets.GroupKind, Created: t0.Add(time.Hour)}})
	if !Changed(&a, &c) {
		t.Error("a re-created Secret is no change")
	}
	if !Changed(nil, &a) || Changed(nil, nil) {
		t.Error("nil handling")
	}
	if got := Namespaces(&a); got != 1 {
		t.Errorf("Namespaces = %d, want 1", got)
	}
}

func entries(inv deichv1alpha1.EgressInventory) []string {
	var out []string
	for _, e := range inv.Kinds {
		out = append(out, fmt.Sprintf("%s/%s/%s=%d since %s", e.Namespace, e.Group, e.Kind, e.Count, e.Since.UTC().Format(time.RFC3339)))
	}
	return out
}
