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
}

// switchForm puts every object of the service at this site into its active form (active) or
// its standby form, with server-side apply under Deich's field manager, and returns how many
// objects it changed. Objects already in the wanted form are left alone, so the switch is
// idempotent and a retry after a partial failure finishes the job. The standby form is the
// one the copies at a standby have: Cold/Warm/Hot replicas, suspended Jobs, Standby
// overrides; the active form is the one recorded on the object when it was switched.
//
// A switch to the active form stamps epoch, the fencing token of the claim the site serves
// on, in the annotation failover.EpochAnnotation of every object, also of those already
// active, so that a data layer can tell a stale primary.
func (r *SharedServiceReconciler) switchForm(ctx context.Context, f formSpec, active bool, epoch int64) (int, error) {
	if f.svc == nil {
		return 0, errors.New("the service's kinds are not known yet")
	}
	changed := 0
	for _, k := range f.kinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(k.gk.WithVersion(k.version).GroupVersion().WithKind(k.gk.Kind + "List"))
		if err := r.apiReader.List(ctx, list, client.InNamespace(f.svc.Namespace), client.MatchingLabelsSelector{Selector: f.selector}); err != nil {
			return changed, fmt.Errorf("list %s at %s: %w", k.gk, r.site, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			if other := obj.GetLabels()[render.LabelSharedService]; other != "" && other != f.svc.Name {
				continue // belongs to another service
			}
			var (
				want *unstructured.Unstructured
				err  error
			)
			switch {
			case active && render.InStandbyForm(obj):
				want, err = render.ActiveForm(obj)
				if err == nil {
					stampEpoch(want, epoch)
				}
			case active && epoch > 0 && obj.GetAnnotations()[failover.EpochAnnotation] != strconv.FormatInt(epoch, 10):
				if err := r.stampLive(ctx, k, obj, epoch); err != nil {
					return changed, err
				}
				continue
			case !active && !render.InStandbyForm(obj):
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
					continue // never mirrored, so never part of the service's form
				}
			default:
				continue
			}
			if err != nil {
				return changed, fmt.Errorf("%s %s: %w", k.gk.Kind, obj.GetName(), err)
			}
			if _, err := r.local.Resource(k.resource).Namespace(obj.GetNamespace()).
				Apply(ctx, obj.GetName(), want, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
				return changed, fmt.Errorf("switch %s %s to its %s form: %w", k.gk.Kind, obj.GetName(), formName(active), err)
			}
			changed++
		}
	}
	return changed, nil
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
