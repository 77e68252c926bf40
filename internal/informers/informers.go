// Package informers runs the watches that mirroring needs, and only those: one informer per
// (resource, namespace, label selector) that some SharedService selects, started when the first
// service asks for it and stopped when the last one lets go. Each informer lists and watches
// with the selector at the API server, so a SharedService that mirrors three ConfigMaps never
// caches the cluster's other ConfigMaps, and Secrets are watched only where a service lists
// them.
package informers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
)

// Key identifies one informer.
type Key struct {
	// Resource is the watched resource, e.g. apps/v1 deployments.
	Resource schema.GroupVersionResource
	// Namespace the informer is limited to.
	Namespace string
	// Selector is the label selector in its canonical string form.
	Selector string
}

// String returns the key for logs.
func (k Key) String() string {
	return fmt.Sprintf("%s/%s in %s [%s]", k.Resource.GroupResource(), k.Resource.Version, k.Namespace, k.Selector)
}

// Handler is told which owner's objects changed. It must not block.
type Handler func(owner types.NamespacedName)

// Change names one object an informer saw added, updated or deleted (or leave its selector).
type Change struct {
	// Key is the informer's.
	Key Key
	// Name is the object's name; it lives in Key.Namespace.
	Name string
}

// journalLimit bounds the changes kept per owner; beyond it the owner is told that an
// unknown set changed, and goes through all of its objects.
const journalLimit = 1024

// journal is what changed for one owner since it last took its changes.
type journal struct {
	changes map[Change]struct{}
	// overflow is set when changes are not known one by one: more than journalLimit, or
	// an informer's first list.
	overflow bool
}

// Set holds the running informers. It is safe for concurrent use.
type Set struct {
	client dynamic.Interface
	notify Handler
	resync time.Duration
	// transform is applied to every object before it enters an informer's store.
	transform cache.TransformFunc

	mu       sync.Mutex
	entries  map[Key]*entry
	journals map[types.NamespacedName]*journal
}

type entry struct {
	informer cache.SharedIndexInformer
	owners   map[types.NamespacedName]struct{}
	cancel   context.CancelFunc
	// lastErr is the last list or watch error, cleared when the informer syncs.
	lastErr atomic.Pointer[error]
}

// Option configures a Set.
type Option func(*Set)

// MetadataOnly makes the Set keep only the apiVersion and kind of each object and its name,
// namespace, UID, resourceVersion, labels, annotations and deletionTimestamp (never
// managedFields), for watches whose callers need to know which objects exist and when they
// change, not what they hold: a copy then costs a fraction of its size in memory. Callers
// that need an object's content read it from the API server.
func MetadataOnly() Option {
	return func(s *Set) { s.transform = keepMetadata }
}

// Trim makes the Set pass every object through trim before it enters an informer's store, in
// place of dropping managedFields alone: trim must remove managedFields too, and whatever
// else the Set's callers never read.
func Trim(trim func(obj map[string]any)) Option {
	return func(s *Set) {
		s.transform = func(obj any) (any, error) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				trim(u.Object)
				share(u.Object, false)
			}
			return obj, nil
		}
	}
}

// New returns an empty Set that lists and watches with client and calls notify for every
// owner of an informer whose objects changed.
func New(client dynamic.Interface, notify Handler, opts ...Option) *Set {
	s := &Set{client: client, notify: notify, transform: dropManagedFields, entries: map[Key]*entry{}, journals: map[types.NamespacedName]*journal{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// TakeChanges returns the objects that changed for owner since its previous call, and
// forgets them. complete is false when the changes are not known one by one (more than
// a thousand, or an informer of the owner listed for the first time): the owner must then go
// through all of its objects. An owner whose informers saw nothing gets (nil, true).
func (s *Set) TakeChanges(owner types.NamespacedName) (changes []Change, complete bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.journals[owner]
	if !ok {
		return nil, true
	}
	delete(s.journals, owner)
	if j.overflow {
		return nil, false
	}
	changes = make([]Change, 0, len(j.changes))
	for c := range j.changes {
		changes = append(changes, c)
	}
	return changes, true
}

// Get returns the object name of key's informer from its cache; false when the informer
// does not run, has not listed yet, or does not hold the object.
func (s *Set) Get(key Key, name string) (*unstructured.Unstructured, bool) {
	s.mu.Lock()
	e, ok := s.entries[key]
	s.mu.Unlock()
	if !ok || !e.informer.HasSynced() {
		return nil, false
	}
	item, exists, err := e.informer.GetStore().GetByKey(key.Namespace + "/" + name)
	if err != nil || !exists {
		return nil, false
	}
	u, ok := item.(*unstructured.Unstructured)
	return u, ok
}

// record notes a change for owner. Called with s.mu held.
func (s *Set) record(owner types.NamespacedName, c *Change) {
	j, ok := s.journals[owner]
	if !ok {
		j = &journal{changes: map[Change]struct{}{}}
		s.journals[owner] = j
	}
	switch {
	case j.overflow:
	case c == nil || len(j.changes) >= journalLimit:
		j.overflow, j.changes = true, nil
	default:
		j.changes[*c] = struct{}{}
	}
}

// Ensure makes sure an informer for key runs and that owner is among its users, and returns
// the informer's current objects, in no particular order. synced is false until the informer's first list completed;
// the objects are then incomplete and must not be used to decide what to prune. While it is
// not synced, err is the last error listing or watching met (for example "forbidden"), if any.
func (s *Set) Ensure(key Key, owner types.NamespacedName) (objs []*unstructured.Unstructured, synced bool, err error) {
	s.mu.Lock()
	e, ok := s.entries[key]
	if !ok {
		e = s.start(key)
		s.entries[key] = e
	}
	if _, known := e.owners[owner]; !known {
		e.owners[owner] = struct{}{}
	}
	s.mu.Unlock()

	if !e.informer.HasSynced() {
		if p := e.lastErr.Load(); p != nil {
			return nil, false, *p
		}
		return nil, false, nil
	}
	items := e.informer.GetStore().List()
	objs = make([]*unstructured.Unstructured, 0, len(items))
	for _, it := range items {
		if u, ok := it.(*unstructured.Unstructured); ok {
			objs = append(objs, u)
		}
	}
	return objs, true, nil
}

// Retain drops owner from every informer whose key is not in keep, and stops informers that
// no owner uses any more. Call it after Ensure with the keys an owner still needs; call it with
// no keys when the owner is gone.
func (s *Set) Retain(owner types.NamespacedName, keep ...Key) {
	wanted := make(map[Key]struct{}, len(keep))
	for _, k := range keep {
		wanted[k] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		if _, ok := wanted[k]; ok {
			continue
		}
		delete(e.owners, owner)
		if len(keep) == 0 {
			delete(s.journals, owner)
		}
		if len(e.owners) == 0 {
			e.cancel()
			delete(s.entries, k)
		}
	}
}

// Len reports how many informers run.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Stop stops every informer.
func (s *Set) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.entries {
		e.cancel()
		delete(s.entries, k)
	}
}

// start builds and runs the informer for key. Called with s.mu held.
func (s *Set) start(key Key) *entry {
	ri := s.client.Resource(key.Resource).Namespace(key.Namespace)
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = key.Selector }
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return ri.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return ri.Watch(ctx, o)
		},
	}
	// Streaming lists are used where the client supports them (real API servers do).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.client), &unstructured.Unstructured{}, s.resync, cache.Indexers{})
	e := &entry{informer: inf, owners: map[types.NamespacedName]struct{}{}}
	// notify records the change of obj (every object when obj is nil) for every owner and
	// tells them.
	notify := func(obj any) {
		var c *Change
		if obj != nil {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				if _, name, err := cache.SplitMetaNamespaceKey(k); err == nil {
					c = &Change{Key: key, Name: name}
				}
			}
		}
		s.mu.Lock()
		owners := make([]types.NamespacedName, 0, len(e.owners))
		for o := range e.owners {
			owners = append(owners, o)
			s.record(o, c)
		}
		s.mu.Unlock()
		for _, o := range owners {
			s.notify(o)
		}
	}
	// Registration cannot fail on an informer that has not started.
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { notify(obj) },
		UpdateFunc: func(_, obj any) { notify(obj) },
		DeleteFunc: func(obj any) { notify(obj) },
	})
	// managedFields can be a third of an object and nothing downstream reads them; dropping
	// them (or, with MetadataOnly, all but the metadata) before the object enters the store
	// keeps the manager's memory in proportion.
	_ = inf.SetTransform(s.transform)
	// Remember why listing fails, so the owner can say so instead of waiting silently.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		e.lastErr.Store(&err)
	})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go inf.RunWithContext(ctx)
	// Tell the owners once the first list is complete, so they can prune with confidence.
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			notify(nil)
		}
	}()
	return e
}

// dropManagedFields removes metadata.managedFields from objects entering an informer's store.
func dropManagedFields(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
		share(u.Object, false)
	}
	return obj, nil
}

// keptMetadata are the fields of metadata that MetadataOnly keeps.
var keptMetadata = []string{"name", "namespace", "uid", "resourceVersion", "labels", "annotations", "deletionTimestamp"}

// keepMetadata reduces objects entering an informer's store to what MetadataOnly keeps.
func keepMetadata(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := map[string]any{"apiVersion": u.Object["apiVersion"], "kind": u.Object["kind"]}
	if md, ok := u.Object["metadata"].(map[string]any); ok {
		kept := make(map[string]any, len(keptMetadata))
		for _, f := range keptMetadata {
			if v, ok := md[f]; ok {
				kept[f] = v
			}
		}
		out["metadata"] = kept
	}
	share(out, false)
	return &unstructured.Unstructured{Object: out}, nil
}

// shareLimit is the longest string value share makes canonical.
const shareLimit = 64

// ownMetadata are the fields of metadata whose values differ from object to object.
var ownMetadata = map[string]bool{"name": true, "uid": true, "resourceVersion": true, "creationTimestamp": true, "generateName": true}

// share makes the strings an object has in common with others one canonical copy each
// (unique.Make): every map key, and every string value of up to shareLimit bytes except
// the values that are the object's own (its name, UID, resourceVersion, creation time).
// Objects decoded from a watch hold a string of their own for every key and value, so ten
// thousand ConfigMaps held "metadata", "labels", "app.kubernetes.io/part-of" and their
// shared label values ten thousand times each. inMetadata is set for the metadata map.
func share(obj map[string]any, inMetadata bool) {
	for k, v := range obj {
		switch val := v.(type) {
		case string:
			if len(val) <= shareLimit && (!inMetadata || !ownMetadata[k]) {
				v = unique.Make(val).Value()
			}
		case map[string]any:
			share(val, k == "metadata" && !inMetadata)
		case []any:
			for i, e := range val {
				switch ev := e.(type) {
				case map[string]any:
					share(ev, false)
				case string:
					if len(ev) <= shareLimit {
						val[i] = unique.Make(ev).Value()
					}
				}
			}
		}
		// Assigning to an existing key replaces the key too: the map keeps the canonical one.
		obj[unique.Make(k).Value()] = v
	}
}
