package informers_test

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/testenv"
)

// TestSetForConfigHoldsWhatTheDynamicClientReads runs a Set as the manager runs its watches
// of selected objects, against a real API server: for a ConfigMap, a Deployment (with the
// status and defaults the API server adds) and a custom resource, the Set holds what client-go's
// dynamic client reads of them, and it sees them change and go.
func TestSetForConfigHoldsWhatTheDynamicClientReads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env, err := testenv.Start(testenv.Options{
		CRDDirectoryPaths:     []string{filepath.Join("..", "testenv", "testdata", "crd")},
		ErrorIfCRDPathMissing: true,
	}, testenv.SiteSchwerin)
	if err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	site := env.Site(testenv.SiteSchwerin)
	dyn, err := dynamic.NewForConfig(site.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "selected"
	namespaces := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	if _, err := dyn.Resource(namespaces).Create(ctx, object("v1", "Namespace", "", ns, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	configMaps := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	deployments := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	widgets := schema.GroupVersionResource{Group: "testenv.deich.io", Version: "v1", Resource: "widgets"}
	created := map[schema.GroupVersionResource]*unstructured.Unstructured{
		configMaps: object("v1", "ConfigMap", ns, "settings", map[string]any{
			"data": map[string]any{"LOG_LEVEL": "info", "application.properties": "server.port=8080\nname=Straße <Kiel>\n"},
		}),
		deployments: object("apps/v1", "Deployment", ns, "web", map[string]any{"spec": map[string]any{
			"replicas": int64(2),
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"template": map[string]any{
				"metadata": map[string]any{"labels": map[string]any{"app": "web"}},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "web", "image": "registry.example.de/web:1", "args": []any{"--ratio", "0.25"},
				}}},
			},
		}}),
		widgets: object("testenv.deich.io/v1", "Widget", ns, "w", map[string]any{"spec": map[string]any{
			"ratio": 0.5, "count": int64(9007199254740993), "ok": true, "none": nil, "list": []any{int64(1), "two"},
		}}),
	}
	for res, obj := range created {
		if _, err := dyn.Resource(res).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", res.Resource, err)
		}
	}

	s, err := informers.NewForConfig(site.Config, nil, func(types.NamespacedName) {})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	owner := types.NamespacedName{Namespace: ns, Name: "svc"}
	for res, obj := range created {
		key := informers.Key{Resource: res, Namespace: ns, Selector: "app=x"}
		objs := waitListed(t, s, key, owner)
		if len(objs) != 1 {
			t.Fatalf("%s: the Set holds %d objects, want 1", res.Resource, len(objs))
		}
		got, err := objs[0].Content()
		if err != nil {
			t.Fatal(err)
		}
		want, err := dyn.Resource(res).Namespace(ns).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		unstructured.RemoveNestedField(want.Object, "metadata", "managedFields")
		if !reflect.DeepEqual(got.Object, want.Object) {
			t.Errorf("%s: the Set holds\n%#v\nthe dynamic client reads\n%#v", res.Resource, got.Object, want.Object)
		}
	}

	t.Run("sees an edit", func(t *testing.T) {
		key := informers.Key{Resource: configMaps, Namespace: ns, Selector: "app=x"}
		edit := []byte(`{"data":{"LOG_LEVEL":"debug"}}`)
		if _, err := dyn.Resource(configMaps).Namespace(ns).Patch(ctx, "settings", types.MergePatchType, edit, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the Set holds the edited ConfigMap", func() bool {
			o, ok := s.Get(key, "settings")
			if !ok {
				return false
			}
			u, err := o.Content()
			if err != nil {
				return false
			}
			v, _, _ := unstructured.NestedString(u.Object, "data", "LOG_LEVEL")
			return v == "debug"
		})
	})
	t.Run("sees an object go", func(t *testing.T) {
		key := informers.Key{Resource: widgets, Namespace: ns, Selector: "app=x"}
		if err := dyn.Resource(widgets).Namespace(ns).Delete(ctx, "w", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the Set no longer holds the deleted Widget", func() bool {
			_, ok := s.Get(key, "w")
			return !ok
		})
	})
}

// object returns an object of kind, labelled app=x, with the fields of content.
func object(apiVersion, kind, ns, name string, content map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: content}
	if u.Object == nil {
		u.Object = map[string]any{}
	}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(map[string]string{"app": "x"})
	return u
}

// waitListed waits until key's informer has listed, and returns what it holds.
func waitListed(t *testing.T, s *informers.Set, key informers.Key, owner types.NamespacedName) []*informers.Object {
	t.Helper()
	var objs []*informers.Object
	eventually(t, "the informer of "+key.String()+" lists", func() bool {
		var synced bool
		var err error
		objs, synced, err = s.Ensure(key, owner)
		if err != nil {
			t.Logf("listing %s: %v", key, err)
		}
		return synced
	})
	return objs
}

// eventually polls cond until it holds, for up to ten seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
