// Package informers runs the watches that mirroring needs, and only those: one informer per
// (resource, namespace, label selector) that some SharedService selects, started when the first
// service asks for it and stopped when the last one lets go. Each informer lists and watches
// with the selector at the API server, so a SharedService that mirrors three ConfigMaps never
// caches the cluster's other ConfigMaps, and Secrets are watched only where a service lists
// them.
package informers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Object is one object as a Set holds it: the metadata its users read without decoding
// anything — name, namespace, UID, resourceVersion and deletionTimestamp, and with
// NewMetadata the annotations it names — and, unless the Set keeps metadata only, the
// object itself as JSON, decoded again only when a user needs its content (Content). Ten
// thousand ConfigMaps held decoded cost about three times as much: every key and value of a
// decoded object is a string and a map entry of its own. Labels are not kept: the informer's
// selector matched them.
type Object struct {
	metav1.ObjectMeta
	raw []byte
}

// errMetadataOnly is Content's error for an object of a Set that keeps metadata only.
var errMetadataOnly = errors.New("the watch keeps only the metadata of this object")

// Content decodes the object as it was stored (without managedFields, and without what the
// Set's Trim removed). Each call returns a new object the caller may change.
func (o *Object) Content() (*unstructured.Unstructured, error) {
	if o.raw == nil {
		return nil, fmt.Errorf("%s/%s: %w", o.Namespace, o.Name, errMetadataOnly)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(o.raw); err != nil {
		return nil, fmt.Errorf("decode %s/%s: %w", o.Namespace, o.Name, err)
	}
	return u, nil
}

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
	// since is when the first of the changes was seen.
	since   time.Time
	changes map[Change]struct{}
	// overflow is set when changes are not known one by one: more than journalLimit, or
	// an informer's first list.
	overflow bool
}

// Set holds the running informers. It is safe for concurrent use.
type Set struct {
	source source
	notify Handler
	resync time.Duration
	// transform is applied to every object before it enters an informer's store.
	transform cache.TransformFunc

	mu       sync.Mutex
	entries  map[Key]*entry
	journals map[types.NamespacedName]*journal
	// keys holds the keys of the informers each owner uses.
	keys map[types.NamespacedName]map[Key]struct{}
}

type entry struct {
	informer cache.SharedIndexInformer
	owners   map[types.NamespacedName]struct{}
	cancel   context.CancelFunc
	// lastErr is the last list or watch error, cleared when the informer syncs.
	lastErr atomic.Pointer[error]
	// broken is set when a list or watch fails, and cleared when one is established again.
	broken atomic.Bool
}

// Option configures a Set.
type Option func(*Set)

// Trim makes the Set pass every object through trim before it is stored, in place of
// dropping managedFields alone: trim must remove managedFields too, and whatever else the
// Set's callers never read.
func Trim(trim func(obj map[string]any)) Option {
	return func(s *Set) { s.transform = compact(trim, true) }
}

// New returns an empty Set that lists and watches with client, any dynamic client (client-go's
// fake among them), and calls notify for every owner of an informer whose objects changed.
// Against a real API server, NewForConfig does the same for less.
func New(client dynamic.Interface, notify Handler, opts ...Option) *Set {
	s := newSet(dynamicSource{client}, notify, compact(dropManagedFields, true))
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewForConfig returns an empty Set that lists and watches the API server of cfg through h
// (nil: a client of its own), reading JSON as jsonSource does, and calls notify for every
// owner of an informer whose objects changed. It is New for a real API server, at a fraction
// of the dynamic client's cost per object.
func NewForConfig(cfg *rest.Config, h *http.Client, notify Handler, opts ...Option) (*Set, error) {
	src, err := newJSONSource(cfg, h)
	if err != nil {
		return nil, err
	}
	s := newSet(src, notify, compact(dropManagedFields, true))
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// NewMetadata returns an empty Set that lists and watches only the metadata of objects, with
// a metadata client, for watches whose callers need to know which objects exist and when they
// change, not what they hold. The API server sends each object as PartialObjectMetadata, in
// protobuf where it can: a copy costs a fraction of its size on the wire, in decoding and in
// memory. The Set keeps, of the annotations, those named; its objects have no content, and
// callers that need it read it from the API server.
func NewMetadata(client metadata.Interface, notify Handler, annotations ...string) *Set {
	return newSet(metadataSource{client}, notify, compact(nil, false, annotations...))
}

func newSet(src source, notify Handler, transform cache.TransformFunc) *Set {
	return &Set{source: src, notify: notify, transform: transform, entries: map[Key]*entry{}, journals: map[types.NamespacedName]*journal{}, keys: map[types.NamespacedName]map[Key]struct{}{}}
}

// source lists and watches the objects of one informer's key.
type source interface {
	list(ctx context.Context, key Key, o metav1.ListOptions) (runtime.Object, error)
	watch(ctx context.Context, key Key, o metav1.ListOptions) (watch.Interface, error)
	// client is the client itself, asked whether it supports streaming lists.
	client() any
	// example is the type of object the source returns.
	example() runtime.Object
}

type dynamicSource struct{ c dynamic.Interface }

func (d dynamicSource) list(ctx context.Context, key Key, o metav1.ListOptions) (runtime.Object, error) {
	return d.c.Resource(key.Resource).Namespace(key.Namespace).List(ctx, o)
}

func (d dynamicSource) watch(ctx context.Context, key Key, o metav1.ListOptions) (watch.Interface, error) {
	return d.c.Resource(key.Resource).Namespace(key.Namespace).Watch(ctx, o)
}

func (d dynamicSource) client() any             { return d.c }
func (d dynamicSource) example() runtime.Object { return &unstructured.Unstructured{} }

type metadataSource struct{ c metadata.Interface }

func (m metadataSource) list(ctx context.Context, key Key, o metav1.ListOptions) (runtime.Object, error) {
	return m.c.Resource(key.Resource).Namespace(key.Namespace).List(ctx, o)
}

func (m metadataSource) watch(ctx context.Context, key Key, o metav1.ListOptions) (watch.Interface, error) {
	return m.c.Resource(key.Resource).Namespace(key.Namespace).Watch(ctx, o)
}

func (m metadataSource) client() any             { return m.c }
func (m metadataSource) example() runtime.Object { return &metav1.PartialObjectMetadata{} }

// TakeChanges returns the objects that changed for owner since its previous call, and
// forgets them. complete is false when the changes are not known one by one (more than
// a thousand, or an informer of the owner listed for the first time): the owner must then go
// through all of its objects. An owner whose informers saw nothing gets (nil, zero, true).
// since is when the first of the changes was seen.
func (s *Set) TakeChanges(owner types.NamespacedName) (changes []Change, since time.Time, complete bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.journals[owner]
	if !ok {
		return nil, time.Time{}, true
	}
	delete(s.journals, owner)
	if j.overflow {
		return nil, j.since, false
	}
	changes = make([]Change, 0, len(j.changes))
	for c := range j.changes {
		changes = append(changes, c)
	}
	return changes, j.since, true
}

// Current reports whether what owner's informers hold is, as far as watching can tell, what
// their API server holds: every informer owner uses has listed, none has failed to list or
// watch since it last (re)established its watch, and no change of owner waits to be taken.
// An owner that uses no informer is not current.
func (s *Set) Current(owner types.NamespacedName) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, pending := s.journals[owner]; pending || len(s.keys[owner]) == 0 {
		return false
	}
	for k := range s.keys[owner] {
		e, ok := s.entries[k]
		if !ok || e.broken.Load() || !e.informer.HasSynced() {
			return false
		}
	}
	return true
}

// Get returns the object name of key's informer from its cache; false when the informer
// does not run, has not listed yet, or does not hold the object.
func (s *Set) Get(key Key, name string) (*Object, bool) {
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
	o, ok := item.(*Object)
	return o, ok
}

// record notes a change for owner. Called with s.mu held.
func (s *Set) record(owner types.NamespacedName, c *Change) {
	j, ok := s.journals[owner]
	if !ok {
		j = &journal{since: time.Now(), changes: map[Change]struct{}{}}
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

// Start makes sure an informer for key runs and that owner is among its users, as Ensure
// does, for an owner that needs the objects soon but not yet.
func (s *Set) Start(key Key, owner types.NamespacedName) {
	s.use(key, owner)
}

// use makes sure an informer for key runs and that owner is among its users.
func (s *Set) use(key Key, owner types.NamespacedName) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	if !ok {
		e = s.start(key)
		s.entries[key] = e
	}
	e.owners[owner] = struct{}{}
	keys, ok := s.keys[owner]
	if !ok {
		keys = map[Key]struct{}{}
		s.keys[owner] = keys
	}
	keys[key] = struct{}{}
	return e
}

// Ensure makes sure an informer for key runs and that owner is among its users, and returns
// the informer's current objects, in no particular order. synced is false until the informer's first list completed;
// the objects are then incomplete and must not be used to decide what to prune. While it is
// not synced, err is the last error listing or watching met (for example "forbidden"), if any.
func (s *Set) Ensure(key Key, owner types.NamespacedName) (objs []*Object, synced bool, err error) {
	e := s.use(key, owner)
	if !e.informer.HasSynced() {
		if p := e.lastErr.Load(); p != nil {
			return nil, false, *p
		}
		return nil, false, nil
	}
	items := e.informer.GetStore().List()
	objs = make([]*Object, 0, len(items))
	for _, it := range items {
		if o, ok := it.(*Object); ok {
			objs = append(objs, o)
		}
	}
	return objs, true, nil
}

// Retain drops owner from every informer whose key is not in keep, and stops informers that
// no owner uses any more. Call it after Ensure with the keys an owner still needs; call it with
// no keys when the owner is gone.
func (s *Set) Retain(owner types.NamespacedName, keep ...Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Only the informers owner uses: a call costs in proportion to them, not to every
	// informer of the Set.
	for k := range s.keys[owner] {
		if slices.Contains(keep, k) {
			continue
		}
		delete(s.keys[owner], k)
		e, ok := s.entries[k]
		if !ok {
			continue
		}
		delete(e.owners, owner)
		if len(e.owners) == 0 {
			e.cancel()
			delete(s.entries, k)
		}
	}
	if len(keep) == 0 {
		delete(s.journals, owner)
		delete(s.keys, owner)
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
	tweak := func(o *metav1.ListOptions) { o.LabelSelector = key.Selector }
	e := &entry{owners: map[types.NamespacedName]struct{}{}}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			list, err := s.source.list(ctx, key, o)
			if err == nil {
				e.broken.Store(false)
			}
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			w, err := s.source.watch(ctx, key, o)
			if err != nil {
				return nil, err
			}
			e.broken.Store(false)
			return watchUntilEnd(w, &e.broken), nil
		},
	}
	// Streaming lists are used where the client supports them (real API servers do).
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, s.source.client()), s.source.example(), s.resync, cache.Indexers{})
	e.informer = inf
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
	// them, keeping the rest as JSON (or, with MetadataOnly, only the metadata) before the
	// object enters the store keeps the manager's memory in proportion.
	_ = inf.SetTransform(s.transform)
	// Remember why listing fails, so the owner can say so instead of waiting silently.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		e.broken.Store(true)
		e.lastErr.Store(&err)
	})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go inf.RunWithContext(ctx)
	// Tell the owners once the first list is complete, so they can prune with confidence.
	go func() {
		select {
		case <-inf.HasSyncedChecker().Done():
			notify(nil)
		case <-ctx.Done():
		}
	}()
	return e
}

// endWatch passes on the events of a watch and sets broken when it ends, however it ends: a
// reflector whose watch ended with an error may wait a while before it lists again, and must
// not be taken for watching meanwhile.
type endWatch struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func watchUntilEnd(w watch.Interface, broken *atomic.Bool) watch.Interface {
	ew := &endWatch{inner: w, out: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(ew.out)
		defer broken.Store(true)
		for ev := range w.ResultChan() {
			select {
			case ew.out <- ev:
			case <-ew.stop:
				return
			}
		}
	}()
	return ew
}

func (w *endWatch) ResultChan() <-chan watch.Event { return w.out }

func (w *endWatch) Stop() {
	w.once.Do(func() { close(w.stop) })
	w.inner.Stop()
}

// dropManagedFields removes metadata.managedFields from an object.
func dropManagedFields(obj map[string]any) {
	unstructured.RemoveNestedField(obj, "metadata", "managedFields")
}

// compact returns the transform that turns each object entering an informer's store into an
// Object: of an unstructured object, trim (when set) is applied to the decoded object first
// and the content is kept as JSON when withContent is set; of a PartialObjectMetadata, only
// the metadata is kept. The annotations named are kept in the metadata. An object that
// already is an Object passes unchanged, as client-go asks of a transform.
func compact(trim func(obj map[string]any), withContent bool, annotations ...string) cache.TransformFunc {
	return func(obj any) (any, error) {
		switch o := obj.(type) {
		case *unstructured.Unstructured:
			return compactUnstructured(o, trim, withContent, annotations)
		case *metav1.PartialObjectMetadata:
			return &Object{ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: unique.Make(o.Namespace).Value(),
				UID: o.UID, ResourceVersion: o.ResourceVersion, DeletionTimestamp: o.DeletionTimestamp,
				Annotations: keptAnnotations(o.Annotations, annotations),
			}}, nil
		default:
			return obj, nil
		}
	}
}

func compactUnstructured(u *unstructured.Unstructured, trim func(obj map[string]any), withContent bool, annotations []string) (*Object, error) {
	if trim != nil {
		trim(u.Object)
	}
	o := &Object{ObjectMeta: metav1.ObjectMeta{
		Name: u.GetName(), Namespace: unique.Make(u.GetNamespace()).Value(),
		UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(), DeletionTimestamp: u.GetDeletionTimestamp(),
	}}
	if len(annotations) > 0 {
		all, _, _ := unstructured.NestedStringMap(u.Object, "metadata", "annotations")
		o.Annotations = keptAnnotations(all, annotations)
	}
	if withContent {
		raw, err := json.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("encode %s/%s: %w", u.GetNamespace(), u.GetName(), err)
		}
		o.raw = raw
	}
	return o, nil
}

// keptAnnotations returns the annotations of all that are named, made canonical.
func keptAnnotations(all map[string]string, named []string) map[string]string {
	kept := map[string]string{}
	for _, a := range named {
		if v, ok := all[a]; ok {
			kept[a] = v
		}
	}
	return shareStrings(kept)
}

// shareLimit is the longest value shareStrings makes canonical.
const shareLimit = 64

// shareStrings makes the keys, and the values of up to shareLimit bytes, of an annotation map
// one canonical copy each (unique.Make): objects decoded from a watch hold a string of their
// own for each, so ten thousand copies held the same annotation keys ten thousand times each.
// Content hashes and other long values are the object's own and stay as they are.
func shareStrings(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) <= shareLimit {
			v = unique.Make(v).Value()
		}
		out[unique.Make(k).Value()] = v
	}
	return out
}
