// Package mirror writes what Deich keeps at another site's cluster: the copies of a
// SharedService's objects, the mirrored SharedService itself and the copy of a Switchover. Every
// write is a server-side apply under one field manager, so a copy has one owner however often
// and from whichever controller it is written; deletions are conditional on the UID that was
// read, so a copy re-created in the meantime is never removed by mistake; and listing selects
// by the labels that mark a copy, so nothing Deich does not manage is ever touched.
//
// Both the SharedService and the Switchover controllers write at a peer through a [Site]. The
// package does no rendering (see package render) and decides nothing; callers say what to
// write and report what failed.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/deich-io/deich/internal/render"
)

// FieldManager is the server-side apply field manager of everything Deich writes.
const FieldManager = "deich"

// Labels are the labels that mark an object as Deich's copy of service's, written from
// sourceSite.
func Labels(service, sourceSite string) map[string]string {
	return map[string]string{
		render.LabelSharedService: service,
		render.LabelSourceSite:    sourceSite,
		render.LabelManagedBy:     render.ManagedByDeich,
	}
}

// Selector selects the copies of service written from sourceSite.
func Selector(service, sourceSite string) string {
	return labels.SelectorFromSet(Labels(service, sourceSite)).String()
}

// ServiceSelector selects every object Deich manages for service, whichever site wrote it:
// after moves between the sites a copy may name either as its source.
func ServiceSelector(service string) string {
	return labels.SelectorFromSet(labels.Set{
		render.LabelSharedService: service,
		render.LabelManagedBy:     render.ManagedByDeich,
	}).String()
}

// Site writes at one site's cluster.
type Site struct {
	// Name is the site's name, for messages.
	Name string
	// Dynamic reaches the site's API server.
	Dynamic dynamic.Interface
	// Metadata reaches the site's API server for ApplyAll, which needs of each object it
	// writes only the resourceVersion it was stored with: the answer comes as
	// PartialObjectMetadata, not the whole object.
	Metadata metadata.Interface
	// Mapper maps kinds to resources at the site.
	Mapper meta.RESTMapper
}

// Copy is one object to write, with the resource it is written as.
type Copy struct {
	Resource schema.GroupVersionResource
	// Kind and Name name the object in messages; Name defaults to Obj's.
	Kind, Name string
	// JSON is the copy to write, encoded, in Namespace under Name. Where it is nil, Obj is
	// the copy; where that is nil too, Render makes it just before it is written, so that a
	// large batch does not hold every copy at once.
	JSON      []byte
	Namespace string
	Obj       *unstructured.Unstructured
	Render    func() (*unstructured.Unstructured, error)
}

// encoded returns the copy to write, encoded, with its namespace and name.
func (c Copy) encoded() (data []byte, namespace, name string, err error) {
	if c.JSON != nil {
		return c.JSON, c.Namespace, c.Name, nil
	}
	obj := c.Obj
	if obj == nil && c.Render != nil {
		if obj, err = c.Render(); err != nil {
			return nil, "", "", err
		}
	}
	if obj == nil {
		return nil, "", "", errors.New("no copy to write")
	}
	if data, err = obj.MarshalJSON(); err != nil {
		return nil, "", "", fmt.Errorf("encode %s: %w", obj.GetName(), err)
	}
	return data, obj.GetNamespace(), obj.GetName(), nil
}

// name is the copy's name for messages.
func (c Copy) name() string {
	if c.Name == "" && c.Obj != nil {
		return c.Obj.GetName()
	}
	return c.Name
}

// Apply server-side applies obj as resource, taking over the fields it sets.
func (s Site) Apply(ctx context.Context, resource schema.GroupVersionResource, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return s.Dynamic.Resource(resource).Namespace(obj.GetNamespace()).
		Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
}

// ApplyStatus server-side applies obj's status as resource.
func (s Site) ApplyStatus(ctx context.Context, resource schema.GroupVersionResource, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	return s.Dynamic.Resource(resource).Namespace(obj.GetNamespace()).
		ApplyStatus(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
}

// Failure is a copy that was not applied, and why.
type Failure struct {
	Kind, Name string
	Err        error
}

// String names the copy and says why it was not applied.
func (f Failure) String() string {
	return fmt.Sprintf("%s %s: %v", f.Kind, f.Name, f.Err)
}

// ApplyAll applies every copy, at most parallelism at once. It returns the resourceVersion
// each copy was stored with ("" where it was not applied; the stored objects themselves are
// not kept) and the copies that were not applied, sorted by kind and name. A copy that is
// rejected leaves the one already there as it is; the others are applied all the same.
func (s Site) ApplyAll(ctx context.Context, parallelism int, copies []Copy) (versions []string, failures []Failure) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallelism, 1))
	versions = make([]string, len(copies))
	var mu sync.Mutex
	for i, c := range copies {
		g.Go(func() error {
			data, namespace, name, err := c.encoded()
			if err == nil {
				var rv string
				if rv, err = s.applyForVersion(gctx, c.Resource, namespace, name, data); err == nil {
					versions[i] = rv // each goroutine writes its own index
					return nil
				}
			}
			mu.Lock()
			failures = append(failures, Failure{Kind: c.Kind, Name: c.name(), Err: err})
			mu.Unlock()
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through versions and failures
	sort.Slice(failures, func(i, j int) bool { return failures[i].String() < failures[j].String() })
	return versions, failures
}

// applyForVersion server-side applies data, an object encoded, as resource, as Apply does, and
// returns the resourceVersion it was stored with.
func (s Site) applyForVersion(ctx context.Context, resource schema.GroupVersionResource, namespace, name string, data []byte) (string, error) {
	if s.Metadata == nil {
		return "", fmt.Errorf("no metadata client for site %s", s.Name)
	}
	got, err := s.Metadata.Resource(resource).Namespace(namespace).
		Patch(ctx, name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)})
	if err != nil {
		return "", err
	}
	return got.ResourceVersion, nil
}

// EnsureNamespace creates namespace at the site when it is missing, marked as Deich's.
func (s Site) EnsureNamespace(ctx context.Context, namespace string) error {
	res := corev1.SchemeGroupVersion.WithResource("namespaces")
	if _, err := s.Dynamic.Resource(res).Get(ctx, namespace, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get namespace %s at %s: %w", namespace, s.Name, err)
	}
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(namespace)
	ns.SetLabels(map[string]string{render.LabelManagedBy: render.ManagedByDeich})
	if _, err := s.Dynamic.Resource(res).Apply(ctx, namespace, ns, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("create namespace %s at %s: %w", namespace, s.Name, err)
	}
	return nil
}

// Delete deletes the object that was read as cp, unless it was replaced since (another UID).
// An object already gone is no error.
func (s Site) Delete(ctx context.Context, resource schema.GroupVersionResource, cp metav1.Object) error {
	uid := cp.GetUID()
	err := s.Dynamic.Resource(resource).Namespace(cp.GetNamespace()).
		Delete(ctx, cp.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// List lists the objects of kind gk in namespace that selector selects; resource is how the
// site serves the kind. A kind the site does not serve is an error that meta.IsNoMatchError
// recognizes.
func (s Site) List(ctx context.Context, gk schema.GroupKind, namespace, selector string) (resource schema.GroupVersionResource, items []unstructured.Unstructured, err error) {
	mapping, err := s.Mapper.RESTMapping(gk)
	if err != nil {
		return schema.GroupVersionResource{}, nil, fmt.Errorf("map %s at %s: %w", gk, s.Name, err)
	}
	list, err := s.Dynamic.Resource(mapping.Resource).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return mapping.Resource, nil, fmt.Errorf("list %s copies at %s: %w", gk, s.Name, err)
	}
	return mapping.Resource, list.Items, nil
}

// DeleteService deletes every object of the given kinds that Deich manages for service in
// namespace, and the SharedService there when it is a copy (it names a source site). It
// returns how many objects it deleted, the SharedService not counted.
func (s Site) DeleteService(ctx context.Context, namespace, service string, kinds []schema.GroupKind, sharedServices schema.GroupVersionResource) (int, error) {
	deleted := 0
	sel := ServiceSelector(service)
	for _, gk := range kinds {
		resource, items, err := s.List(ctx, gk, namespace, sel)
		if meta.IsNoMatchError(err) {
			continue // nothing of this kind can exist there
		}
		if err != nil {
			return deleted, err
		}
		for i := range items {
			if err := s.Delete(ctx, resource, &items[i]); err != nil {
				return deleted, fmt.Errorf("delete %s %s at %s: %w", gk.Kind, items[i].GetName(), s.Name, err)
			}
			deleted++
		}
	}
	ri := s.Dynamic.Resource(sharedServices).Namespace(namespace)
	cp, err := ri.Get(ctx, service, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return deleted, fmt.Errorf("get SharedService at %s: %w", s.Name, err)
	case cp.GetLabels()[render.LabelSourceSite] != "":
		if err := s.Delete(ctx, sharedServices, cp); err != nil {
			return deleted, fmt.Errorf("delete SharedService at %s: %w", s.Name, err)
		}
	}
	return deleted, nil
}

// DryRunActive asks the site's API server whether every copy of the given kinds that Deich
// manages for service in namespace would be accepted in the form activate gives it (a
// server-side apply with dryRun=All: nothing changes). It returns how many were accepted; an
// error lists those that were not, and says so when there were none to ask about.
func (s Site) DryRunActive(ctx context.Context, namespace, service string, kinds []schema.GroupKind, activate func(*unstructured.Unstructured) (*unstructured.Unstructured, error)) (int, error) {
	sel := ServiceSelector(service)
	accepted := 0
	var rejected []string
	for _, gk := range kinds {
		resource, items, err := s.List(ctx, gk, namespace, sel)
		if err != nil {
			return accepted, err
		}
		ri := s.Dynamic.Resource(resource).Namespace(namespace)
		for i := range items {
			live := &items[i]
			want, err := activate(live)
			if err == nil {
				_, err = ri.Apply(ctx, live.GetName(), want, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
			}
			if err != nil {
				rejected = append(rejected, fmt.Sprintf("%s %s: %v", gk.Kind, live.GetName(), err))
				continue
			}
			accepted++
		}
	}
	switch {
	case len(rejected) > 0:
		sort.Strings(rejected)
		return accepted, fmt.Errorf("%d of %d copies rejected: %s", len(rejected), len(rejected)+accepted, strings.Join(rejected, "; "))
	case accepted == 0:
		return 0, errors.New("there are no copies to promote")
	}
	return accepted, nil
}
