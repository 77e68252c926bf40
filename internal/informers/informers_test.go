package informers

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
)

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func configMap(ns, name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("ConfigMap")
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

// waitSynced polls Ensure until the informer has listed.
func waitSynced(t *testing.T, s *Set, key Key, owner types.NamespacedName) []*Object {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		objs, synced, err := s.Ensure(key, owner)
		if err != nil {
			t.Fatalf("Ensure() error = %v", err)
		}
		if synced {
			return objs
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("informer %s did not sync", key)
	return nil
}

// watchConfigMaps returns a Set over a fake client holding objs, and the channel its owners'
// notifications arrive on.
func watchConfigMaps(t *testing.T, objs ...runtime.Object) (*Set, chan types.NamespacedName) {
	t.Helper()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"}, objs...)
	notified := make(chan types.NamespacedName, 100)
	s := New(client, func(o types.NamespacedName) { notified <- o })
	t.Cleanup(s.Stop)
	return s, notified
}

func TestSetWatchesOnlyWhatIsSelectedAndStopsUnusedInformers(t *testing.T) {
	s, notified := watchConfigMaps(t,
		configMap("a", "selected", map[string]string{"app": "x"}),
		configMap("a", "other-label", map[string]string{"app": "y"}),
		configMap("b", "other-namespace", map[string]string{"app": "x"}),
	)
	owner := types.NamespacedName{Namespace: "a", Name: "svc"}
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}

	objs := waitSynced(t, s, key, owner)
	if len(objs) != 1 || objs[0].GetName() != "selected" {
		t.Fatalf("Ensure() = %v, want only the selected ConfigMap in namespace a", objs)
	}
	select {
	case got := <-notified:
		if got != owner {
			t.Fatalf("notified %v, want %v", got, owner)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the owner was not told that its informer synced")
	}

	t.Run("shares an informer between owners", func(t *testing.T) {
		waitSynced(t, s, key, types.NamespacedName{Namespace: "a", Name: "other"})
		if s.Len() != 1 {
			t.Fatalf("Len() = %d, want 1", s.Len())
		}
	})
	t.Run("keeps an informer while one owner still needs it", func(t *testing.T) {
		s.Retain(owner)
		if s.Len() != 1 {
			t.Fatalf("Len() = %d, want 1", s.Len())
		}
	})
	t.Run("stops an informer no owner needs", func(t *testing.T) {
		s.Retain(types.NamespacedName{Namespace: "a", Name: "other"})
		if s.Len() != 0 {
			t.Fatalf("Len() = %d, want 0", s.Len())
		}
	})
}

func TestStartListsBeforeTheOwnerAsksForTheObjects(t *testing.T) {
	s, notified := watchConfigMaps(t, configMap("a", "selected", map[string]string{"app": "x"}))
	owner := types.NamespacedName{Namespace: "a", Name: "svc"}
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}

	s.Start(key, owner)
	s.Start(key, owner) // a second start of the same key is the same informer
	select {
	case got := <-notified:
		if got != owner {
			t.Fatalf("notified %v, want %v", got, owner)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the owner was not told that the informer Start began has listed")
	}
	objs, synced, err := s.Ensure(key, owner)
	if err != nil || !synced || len(objs) != 1 || objs[0].GetName() != "selected" {
		t.Fatalf("Ensure() after Start = %v, %v, %v; want the selected ConfigMap, listed", objs, synced, err)
	}
	if s.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", s.Len())
	}
	s.Retain(owner)
	if s.Len() != 0 {
		t.Fatalf("Len() after Retain() = %d, want 0: the owner's started informer must stop with it", s.Len())
	}
}

func TestSetReportsWhyListingFails(t *testing.T) {
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"})
	client.PrependReactor("list", "configmaps", func(_ k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`configmaps is forbidden: User "deich" cannot list resource "configmaps"`)
	})
	s := New(client, func(types.NamespacedName) {})
	t.Cleanup(s.Stop)
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, synced, err := s.Ensure(key, types.NamespacedName{Namespace: "a", Name: "svc"})
		if synced {
			t.Fatal("an informer that cannot list reports synced")
		}
		if err != nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("Ensure() never reported the list error")
}

func TestSetJournalsChangesPerOwner(t *testing.T) {
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"},
		configMap("a", "first", map[string]string{"app": "x"}),
	)
	s := New(client, func(types.NamespacedName) {})
	t.Cleanup(s.Stop)
	owner := types.NamespacedName{Namespace: "a", Name: "svc"}
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}
	waitSynced(t, s, key, owner)

	// The first list is not known one by one.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, complete := s.TakeChanges(owner); !complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the informer's first list was not reported as an incomplete set of changes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if changes, _, complete := s.TakeChanges(owner); !complete || len(changes) != 0 {
		t.Fatalf("TakeChanges() after taking = %v, %v; want none, complete", changes, complete)
	}

	ctx := t.Context()
	cms := client.Resource(configMaps).Namespace("a")
	if _, err := cms.Create(ctx, configMap("a", "second", map[string]string{"app": "x"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"first": true, "second": true}
	got := map[string]bool{}
	deadline = time.Now().Add(5 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		changes, _, complete := s.TakeChanges(owner)
		if !complete {
			t.Fatal("two changes reported as an incomplete set")
		}
		for _, c := range changes {
			if c.Key != key {
				t.Fatalf("change %v of another informer", c)
			}
			got[c.Name] = true
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(got) != len(want) || !got["first"] || !got["second"] {
		t.Fatalf("changes = %v, want the created and the deleted ConfigMap", got)
	}
	if u, ok := s.Get(key, "second"); !ok || u.GetName() != "second" {
		t.Fatalf("Get(second) = %v, %v", u, ok)
	}
	if _, ok := s.Get(key, "first"); ok {
		t.Fatal("Get(first) found a deleted object")
	}

	// TakeChanges says when the first change since the last take was seen.
	before := time.Now()
	s.mu.Lock()
	s.record(owner, &Change{Key: key, Name: "third"})
	s.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	s.mu.Lock()
	s.record(owner, &Change{Key: key, Name: "fourth"})
	s.mu.Unlock()
	changes, since, complete := s.TakeChanges(owner)
	if !complete || len(changes) != 2 || since.Before(before) || time.Since(since) < 5*time.Millisecond {
		t.Fatalf("TakeChanges() = %v, %s, %v; want two changes since the first, seen after %s", changes, since, complete, before)
	}
	if _, since, _ := s.TakeChanges(owner); !since.IsZero() {
		t.Fatalf("TakeChanges() with nothing to take = %s, want zero", since)
	}

	// More than the journal holds is reported as an incomplete set.
	s.mu.Lock()
	for i := range journalLimit + 1 {
		s.record(owner, &Change{Key: key, Name: fmt.Sprint(i)})
	}
	s.mu.Unlock()
	if _, _, complete := s.TakeChanges(owner); complete {
		t.Fatal("an overflowing journal reported as complete")
	}
}

func TestMetadataSetKeepsTheMetadataAndNoContent(t *testing.T) {
	cm := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "a", Name: "settings", Labels: map[string]string{"app": "x"},
			Annotations:   map[string]string{"resilience.deich.io/content-hash": "abc", "other": "dropped"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "deich", Operation: metav1.ManagedFieldsOperationApply}},
		},
	}
	other := cm.DeepCopy()
	other.Name, other.Labels = "unselected", map[string]string{"app": "y"}
	scheme := runtime.NewScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, cm, other)
	s := NewMetadata(client, func(types.NamespacedName) {}, "resilience.deich.io/content-hash")
	t.Cleanup(s.Stop)
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}
	objs := waitSynced(t, s, key, types.NamespacedName{Namespace: "a", Name: "svc"})
	if len(objs) != 1 {
		t.Fatalf("Ensure() = %d objects, want the selected one", len(objs))
	}
	got := objs[0]
	if u, err := got.Content(); err == nil {
		t.Errorf("the cached object has content: %v", u.Object)
	}
	if got.GetManagedFields() != nil {
		t.Errorf("the cached object keeps managedFields: %v", got.GetManagedFields())
	}
	if got.GetName() != "settings" || got.GetNamespace() != "a" || got.GetAnnotations()["resilience.deich.io/content-hash"] != "abc" {
		t.Errorf("the cached object lost its metadata: %+v", got.ObjectMeta)
	}
	if _, ok := got.GetAnnotations()["other"]; ok || got.GetLabels() != nil {
		t.Errorf("the cached object keeps what was not asked for: %+v", got.ObjectMeta)
	}
	if g, ok := s.Get(key, "settings"); !ok || g.GetName() != "settings" {
		t.Errorf("Get(settings) = %v, %v; want the cached object", g, ok)
	}
}

func TestTrimKeepsTheContentAsItWasTrimmed(t *testing.T) {
	cm := configMap("a", "settings", map[string]string{"app": "x"})
	cm.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "deich", Operation: metav1.ManagedFieldsOperationApply}})
	cm.Object["data"] = map[string]any{"greeting": "Moin"}
	cm.Object["status"] = map[string]any{"phase": "dropped"}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"}, cm)
	s := New(client, func(types.NamespacedName) {}, Trim(func(obj map[string]any) {
		dropManagedFields(obj)
		delete(obj, "status")
	}))
	t.Cleanup(s.Stop)
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}
	objs := waitSynced(t, s, key, types.NamespacedName{Namespace: "a", Name: "svc"})
	if len(objs) != 1 {
		t.Fatalf("Ensure() = %d objects, want 1", len(objs))
	}
	u, err := objs[0].Content()
	if err != nil {
		t.Fatalf("Content() error = %v", err)
	}
	if got, _, _ := unstructured.NestedString(u.Object, "data", "greeting"); got != "Moin" {
		t.Errorf("the content lost its data: %v", u.Object)
	}
	if _, ok := u.Object["status"]; ok || u.GetManagedFields() != nil {
		t.Errorf("the content keeps what Trim removed: %v", u.Object)
	}
	if u.GetName() != "settings" || u.GetKind() != "ConfigMap" || u.GetLabels()["app"] != "x" {
		t.Errorf("the content lost its identity: %v", u.Object)
	}
	// Content hands out a new object each time: a caller that changes it changes no other.
	u.SetName("changed")
	if again, _ := objs[0].Content(); again.GetName() != "settings" {
		t.Errorf("a change of one decoded object reached the cache: %v", again.Object)
	}
}

func TestShareStringsKeepsOneCopyOfWhatObjectsHaveInCommon(t *testing.T) {
	// Built from fresh strings each time, as a watch decodes them.
	fresh := func(s string) string { return string([]byte(s)) }
	decode := func(hash string) map[string]string {
		return map[string]string{
			fresh("app.kubernetes.io/part-of"):        fresh("buergerkonto"),
			fresh("resilience.deich.io/content-hash"): fresh(hash),
		}
	}
	long := strings.Repeat("0123456789abcdef", 5)
	a, b := shareStrings(decode(long)), shareStrings(decode(long))
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	keyOf := func(m map[string]string, k string) string {
		for key := range m {
			if key == k {
				return key
			}
		}
		t.Fatalf("no key %q", k)
		return ""
	}
	if !same(keyOf(a, "app.kubernetes.io/part-of"), keyOf(b, "app.kubernetes.io/part-of")) {
		t.Error("a label key is held twice")
	}
	if !same(a["app.kubernetes.io/part-of"], b["app.kubernetes.io/part-of"]) {
		t.Error("a short label value is held twice")
	}
	if same(a["resilience.deich.io/content-hash"], b["resilience.deich.io/content-hash"]) {
		t.Error("a value longer than shareLimit, each object's own, was made canonical")
	}
	if a["resilience.deich.io/content-hash"] != long || a["app.kubernetes.io/part-of"] != "buergerkonto" {
		t.Errorf("shareStrings changed the values: %v", a)
	}
	if shareStrings(nil) != nil || shareStrings(map[string]string{}) != nil {
		t.Error("an empty map is kept as a map")
	}
}

func TestSetIsCurrentOnlyWhileNothingWaitsAndEveryWatchHolds(t *testing.T) {
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{configMaps: "ConfigMapList"},
		configMap("a", "first", map[string]string{"app": "x"}),
	)
	s := New(client, func(types.NamespacedName) {})
	t.Cleanup(s.Stop)
	owner := types.NamespacedName{Namespace: "a", Name: "svc"}
	if s.Current(owner) {
		t.Fatal("an owner without informers is current")
	}
	key := Key{Resource: configMaps, Namespace: "a", Selector: "app=x"}
	waitSynced(t, s, key, owner)
	// takeAll waits until the first list's notice arrived and takes it.
	takeAll := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !s.Current(owner) {
			s.TakeChanges(owner)
			if time.Now().After(deadline) {
				t.Fatal("the owner never became current after taking its changes")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	takeAll()

	cms := client.Resource(configMaps).Namespace("a")
	if _, err := cms.Create(t.Context(), configMap("a", "second", map[string]string{"app": "x"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Current(owner) {
		if time.Now().After(deadline) {
			t.Fatal("an owner with a change waiting to be taken is current")
		}
		time.Sleep(10 * time.Millisecond)
	}
	takeAll()

	// A watch that fails makes its owners not current until it is established again.
	var failing atomic.Bool
	watches := make(chan *watch.FakeWatcher, 10)
	client.PrependWatchReactor("configmaps", func(k8stesting.Action) (bool, watch.Interface, error) {
		if failing.Load() {
			return true, nil, errors.New("connection refused")
		}
		w := watch.NewFake()
		watches <- w
		return true, w, nil
	})
	client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failing.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	s.Retain(owner)
	waitSynced(t, s, key, owner)
	takeAll()
	var w *watch.FakeWatcher
	select {
	case w = <-watches:
	case <-time.After(5 * time.Second):
		t.Fatal("the informer did not watch")
	}
	failing.Store(true)
	w.Stop()
	// Whatever the failed watch left to take is taken: the owner stays not current.
	for range 100 {
		s.TakeChanges(owner)
		time.Sleep(10 * time.Millisecond)
	}
	if s.Current(owner) {
		t.Fatal("an owner whose watch fails is current")
	}
	failing.Store(false)
	deadline = time.Now().Add(10 * time.Second)
	for !s.Current(owner) {
		s.TakeChanges(owner)
		if time.Now().After(deadline) {
			t.Fatal("the owner did not become current once its watch was established again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
