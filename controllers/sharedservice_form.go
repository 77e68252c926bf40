package controllers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
)

// formSpec says which objects at this site make up a service and how their standby form is
// rendered: what the lease keeper needs to fence and unfence the site.
type formSpec struct {
	// svc is the SharedService as of the last reconcile; nil until one resolved its kinds.
	svc      *deichv1alpha1.SharedService
	kinds    []*mirroredKind
	selector labels.Selector
	standby  deichv1alpha1.StandbyMode
	// planned is set while a Switchover moves the service to this site: the stages' handoffs
	// then carry values from the site that hands it over.
	planned bool
}

// A service's objects at this site are switched between their active and standby form with
// server-side apply under Deich's field manager; objects already in the wanted form are left
// alone, so a switch is idempotent and a retry after a partial failure finishes the job. The
// standby form is the one the copies at a standby have: Cold/Warm/Hot replicas, suspended
// Jobs, Standby overrides; the active form is the one recorded on the object when it was
// switched. The writes of one stage go out apply-parallelism at a time (see
// sharedservice_promotion.go for the stages).
//
// A switch to the active form stamps epoch, the fencing token of the claim the site serves
// on, in the annotation failover.EpochAnnotation of every object it switches, and, when the
// claim superseded an earlier one (epoch 2 and above), of every object already in active form
// too, so that a data layer can tell a stale primary. The first claim of a service stamps
// only what it switches: no site served the service under an earlier epoch, and a data layer
// reads a missing annotation as epoch 0. An object whose standby form is its active form
// (render.SameInBothForms: most ConfigMaps, Secrets and Services) serves as it is: a
// promotion neither switches nor stamps it, unless a stage's handoff writes into it. Copies
// never carry an epoch (Render drops it), so such an object carries none either.

// formListing says how much of each object a switch lists.
type formListing int

const (
	// wholeObjects: what a switch renders from, a stage's readiness rule reads and a handoff
	// writes into.
	wholeObjects formListing = iota
	// metadataOnly: what formActionFor and a stage's target read, and a stamp writes. The API
	// server sends it as protobuf, a small part of a whole list's cost; a promotion that finds
	// an object to switch in it lists the whole objects (see promotionStages).
	metadataOnly
)

// formObjects lists the objects of kind k that belong to the service at this site, whole or
// their metadata only. An object of metadata only carries its kind and apiVersion, name,
// namespace, labels, annotations, uid and resourceVersion.
func (r *SharedServiceReconciler) formObjects(ctx context.Context, f formSpec, k *mirroredKind, listing formListing) ([]*unstructured.Unstructured, error) {
	if listing == metadataOnly {
		return r.formMetadata(ctx, f, k)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(k.gk.WithVersion(k.version).GroupVersion().WithKind(k.gk.Kind + "List"))
	if err := r.apiReader.List(ctx, list, client.InNamespace(f.svc.Namespace), client.MatchingLabelsSelector{Selector: f.selector}); err != nil {
		return nil, fmt.Errorf("list %s at %s: %w", k.gk, r.site, err)
	}
	objs := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		objs[i] = &list.Items[i]
	}
	return objs, nil
}

// formMetadata lists the metadata of the objects of kind k that belong to the service at this
// site (see formObjects).
func (r *SharedServiceReconciler) formMetadata(ctx context.Context, f formSpec, k *mirroredKind) ([]*unstructured.Unstructured, error) {
	list, err := r.localMeta.Resource(k.resource).Namespace(f.svc.Namespace).
		List(ctx, metav1.ListOptions{LabelSelector: f.selector.String()})
	if err != nil {
		return nil, fmt.Errorf("list the metadata of %s at %s: %w", k.gk, r.site, err)
	}
	apiVersion := k.gk.WithVersion(k.version).GroupVersion().String()
	objs := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		m := &list.Items[i].ObjectMeta
		obj := &unstructured.Unstructured{Object: map[string]any{}}
		obj.SetAPIVersion(apiVersion)
		obj.SetKind(k.gk.Kind)
		obj.SetName(m.Name)
		obj.SetNamespace(m.Namespace)
		obj.SetLabels(m.Labels)
		obj.SetAnnotations(m.Annotations)
		obj.SetUID(m.UID)
		obj.SetResourceVersion(m.ResourceVersion)
		objs[i] = obj
	}
	return objs, nil
}

// formAction is what one object needs for its service to be in the wanted form.
type formAction int

const (
	// formKeep: nothing.
	formKeep formAction = iota
	// formSwitch: a switch to the other form, rendered from the whole object.
	formSwitch
	// formStamp: the epoch stamped on an object already in the wanted form.
	formStamp
)

// formActionFor decides what obj needs; it reads the object's metadata alone. adjusted is set
// when a switch changes the active form of the object (a stage's handoff).
func formActionFor(f formSpec, obj *unstructured.Unstructured, active, adjusted bool, epoch int64) formAction {
	if other := obj.GetLabels()[render.LabelSharedService]; other != "" && other != f.svc.Name {
		return formKeep // belongs to another service
	}
	switch {
	case active && awaitsSwitch(obj, adjusted):
		return formSwitch
	case active && render.InStandbyForm(obj):
		return formKeep // the same in both forms: it serves as it is
	case active && epoch > 1 && obj.GetAnnotations()[failover.EpochAnnotation] != strconv.FormatInt(epoch, 10):
		return formStamp
	case !active && !render.InStandbyForm(obj):
		return formSwitch
	}
	return formKeep
}

// awaitsSwitch reports whether obj is in a standby form that a promotion switches: one that
// differs from its active form (see render.SameInBothForms), or, when adjusted, any: the
// switch then changes the active form it records.
func awaitsSwitch(obj *unstructured.Unstructured, adjusted bool) bool {
	return render.InStandbyForm(obj) && (adjusted || !render.SameInBothForms(obj))
}

// formWrite is one write of a switch: the object put into the wanted form, or the epoch
// stamped on an object already in it.
type formWrite struct {
	// switches is set when the write changes the object's form.
	switches bool
	do       func(context.Context) error
}

// formWriteFor decides what obj needs for the service to be in the wanted form; ok is false
// when it needs nothing.
// adjust, if set, changes an object's active form before a switch writes it (a stage's
// handoff).
func (r *SharedServiceReconciler) formWriteFor(f formSpec, k *mirroredKind, obj *unstructured.Unstructured, active bool, epoch int64, adjust func(*unstructured.Unstructured) error) (w formWrite, ok bool, err error) {
	var want *unstructured.Unstructured
	switch formActionFor(f, obj, active, adjust != nil, epoch) {
	case formKeep:
		return formWrite{}, false, nil
	case formStamp:
		return formWrite{do: func(ctx context.Context) error { return r.stampLive(ctx, k, obj, epoch) }}, true, nil
	case formSwitch:
		if active {
			want, err = render.ActiveForm(obj)
			if err == nil {
				stampEpoch(want, epoch)
			}
			if err == nil && adjust != nil {
				err = adjust(want)
			}
			break
		}
		target := render.Target{
			SourceSite: r.site, Site: r.site, Role: deichv1alpha1.RoleStandby, Standby: f.standby,
			Service: f.svc.Name, Overrides: f.svc.Spec.Overrides,
		}
		want, err = render.Render(obj, target)
		var pe *render.PatchError
		if errors.As(err, &pe) {
			// A broken override must not keep a site serving: fence without overrides.
			target.Overrides = nil
			want, err = render.Render(obj, target)
		}
		var nm *render.NotMirrorableError
		if errors.As(err, &nm) {
			return formWrite{}, false, nil // never mirrored, so never part of the service's form
		}
	}
	if err != nil {
		return formWrite{}, false, fmt.Errorf("%s %s: %w", k.gk.Kind, obj.GetName(), err)
	}
	return formWrite{switches: true, do: func(ctx context.Context) error {
		if _, err := r.local.Resource(k.resource).Namespace(obj.GetNamespace()).
			Apply(ctx, obj.GetName(), want, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("switch %s %s to its %s form: %w", k.gk.Kind, obj.GetName(), formName(active), err)
		}
		return nil
	}}, true, nil
}

// stampEpoch sets the epoch annotation on obj.
func stampEpoch(obj *unstructured.Unstructured, epoch int64) {
	if epoch <= 0 {
		return
	}
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[failover.EpochAnnotation] = strconv.FormatInt(epoch, 10)
	obj.SetAnnotations(a)
}

// stampLive sets the epoch annotation on an object that is already in its active form, with a
// merge patch: an apply of the annotation alone would drop the fields Deich applied before.
func (r *SharedServiceReconciler) stampLive(ctx context.Context, k *mirroredKind, obj *unstructured.Unstructured, epoch int64) error {
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, failover.EpochAnnotation, strconv.FormatInt(epoch, 10))
	if _, err := r.local.Resource(k.resource).Namespace(obj.GetNamespace()).
		Patch(ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("stamp epoch %d on %s %s: %w", epoch, k.gk.Kind, obj.GetName(), err)
	}
	return nil
}

func formName(active bool) string {
	if active {
		return "active"
	}
	return "standby"
}
