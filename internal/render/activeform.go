package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// maxActivePatchSize bounds the JSON of AnnotationActivePatch. The API server allows 256 KiB
// for all annotations of an object together, and the copy's own annotations need room too.
const maxActivePatchSize = 64 << 10

// standbyFormKeys are the annotations that say an object is in standby form.
var standbyFormKeys = []string{
	AnnotationActivePatch, AnnotationSourceReplicas, AnnotationStandbyNodeSelector, AnnotationStandbySuspended,
}

// provenanceLabels are the labels ActiveForm keeps: the object stays a copy of its service
// (or, fenced, marked as Deich's) when it becomes active.
var provenanceLabels = []string{LabelSourceSite, LabelSharedService, LabelManagedBy}

// InStandbyForm reports whether obj, as read from a cluster, is in standby form: a copy
// rendered for the Standby role, or a fenced object. Such an object carries
// AnnotationActivePatch, or, when Deich rendered it before that annotation existed, one of
// the annotations recording its standby form. ActiveForm turns it into its active form.
func InStandbyForm(obj *unstructured.Unstructured) bool {
	has := annotationsOf(obj)
	for _, k := range standbyFormKeys {
		if _, ok := has(k); ok {
			return true
		}
	}
	return false
}

// SameInBothForms reports whether obj, as read from a cluster, is in a standby form that is
// its active form too: its AnnotationActivePatch is the empty patch {} and it carries no
// other annotation of a standby form. ActiveForm would change nothing in it but Deich's
// annotations, so it serves as it is at either site — typically a ConfigMap, Secret or
// Service that no override treats differently by role — and a promotion need not switch it.
func SameInBothForms(obj *unstructured.Unstructured) bool {
	get := annotationsOf(obj)
	if patch, _ := get(AnnotationActivePatch); patch != "{}" {
		return false
	}
	for _, k := range standbyFormKeys {
		if _, ok := get(k); ok && k != AnnotationActivePatch {
			return false
		}
	}
	return true
}

// annotationsOf returns a lookup of obj's annotations, whether they are decoded (map[string]any)
// or hand-built (map[string]string); it finds nothing in an object without them.
func annotationsOf(obj *unstructured.Unstructured) func(key string) (string, bool) {
	var meta map[string]any
	if obj != nil {
		meta, _ = obj.Object["metadata"].(map[string]any)
	}
	switch annotations := meta["annotations"].(type) {
	case map[string]any:
		return func(k string) (string, bool) {
			v, ok := annotations[k]
			s, _ := v.(string)
			return s, ok
		}
	case map[string]string:
		return func(k string) (string, bool) { v, ok := annotations[k]; return v, ok }
	}
	return func(string) (string, bool) { return "", false }
}

// ActiveForm returns what to apply, with server-side apply at the cluster live was read from,
// to put live, an object in standby form, into its active form: a standby copy at a standby
// site being promoted while the source's site is down, or a fenced object whose fence is
// lifted.
//
// The active form is the one Render recorded in AnnotationActivePatch: for a copy, the copy
// Render gives for the Active role at the same site, overrides included, so that standby
// overrides (say READ_ONLY=true) are reverted too. An object rendered before that annotation
// existed gets back what its standby-form annotations record: replicas, node selector,
// suspend. The result leaves out what the cluster owns (status, uid, resourceVersion,
// managedFields, ownerReferences, finalizers, allocated cluster IPs and node ports, …, as
// Render strips them) and Deich's annotations, which no longer apply; it keeps the
// provenance labels.
//
// ActiveForm never modifies live and is deterministic. An object not in standby form (see
// InStandbyForm) comes back stripped and otherwise unchanged. Errors: a malformed live, or an
// AnnotationActivePatch that is no JSON merge patch or would rename, move or retype the
// object.
func ActiveForm(live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if live == nil || live.Object == nil {
		return nil, errors.New("no object")
	}
	id, err := identify(live.Object)
	if err != nil {
		return nil, err
	}
	obj, err := servingForm(live.Object, id)
	if err != nil {
		return nil, err
	}
	applyable(obj, id)
	return &unstructured.Unstructured{Object: obj}, nil
}

// applyable strips obj, an object in its serving form read from a cluster, to what Deich
// applies at that cluster: like a copy, but with the provenance labels it has.
func applyable(obj map[string]any, id identity) {
	meta, _ := obj["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	keep := map[string]any{}
	for _, k := range provenanceLabels {
		if v, ok := labels[k]; ok {
			keep[k] = v
		}
	}
	strip(obj, id)
	if len(keep) > 0 && meta != nil {
		labels := ensureStringMap(meta, "labels")
		for k, v := range keep {
			labels[k] = v
		}
	}
}

// servingForm returns a copy of src, without status and managedFields, in the form it serves
// in: src itself unless it is in standby form. The patch in AnnotationActivePatch undoes a
// standby form exactly, overrides included; without it, undoStandbyForm restores what the
// standby-form annotations record.
func servingForm(src map[string]any, id identity) (map[string]any, error) {
	obj, err := copyObject(src)
	if err != nil {
		return nil, fmt.Errorf("copy the source: %w", err)
	}
	meta, _ := obj["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	text, ok := annotations[AnnotationActivePatch].(string)
	if !ok {
		undoStandbyForm(obj, id)
		return obj, nil
	}
	patch, err := parseMergePatch(text)
	if err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AnnotationActivePatch, err)
	}
	patched, _ := applyMergePatch(obj, patch).(map[string]any) // a map patched with a map is a map
	got, err := identify(patched)
	if err != nil {
		return nil, fmt.Errorf("annotation %s breaks the object: %w", AnnotationActivePatch, err)
	}
	if got != id {
		return nil, fmt.Errorf("annotation %s would turn %s into %s; it may not rename, move or retype the object", AnnotationActivePatch, id, got)
	}
	return patched, nil
}

// activePatch returns the JSON of the merge patch that turns the standby copy into the active
// one.
func activePatch(standby, active map[string]any) (string, error) {
	b, err := json.Marshal(mergePatch(standby, active))
	if err != nil {
		return "", fmt.Errorf("record the active form: %w", err)
	}
	if len(b) > maxActivePatchSize {
		return "", fmt.Errorf("the active form differs from the standby form by more than %d KiB (a JSON merge patch of %d bytes), "+
			"so it cannot be recorded on the copy; make the overrides that differ between the Active and Standby roles smaller",
			maxActivePatchSize>>10, len(b))
	}
	return string(b), nil
}

// mergePatch returns the JSON merge patch (RFC 7386) that turns from into to: objects are
// compared field by field, any other value that differs is replaced whole (lists too: a merge
// patch cannot change one element of a list). A merge patch cannot set a field to null, only
// remove it; a null in to comes out as a missing field, which API servers treat alike.
//
// The patch may share values with to. Values are compared strictly, int64 3 differing from
// float64 3, which at worst puts a value into the patch that did not need to be there.
// (Unlike gopkg.in/evanphx/json-patch's CreateMergePatch, this never passes integers through
// float64, where those beyond 2^53 would change.)
func mergePatch(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k, fv := range from {
		tv, ok := to[k]
		if !ok {
			patch[k] = nil
			continue
		}
		fm, fromIsMap := fv.(map[string]any)
		tm, toIsMap := tv.(map[string]any)
		if fromIsMap && toIsMap {
			if p := mergePatch(fm, tm); len(p) > 0 {
				patch[k] = p
			}
			continue
		}
		if !jsonEqual(fv, tv) {
			patch[k] = tv
		}
	}
	for k, tv := range to {
		if _, ok := from[k]; !ok && tv != nil {
			patch[k] = tv
		}
	}
	return patch
}

// jsonEqual reports whether two JSON values are the same, numbers of the same Go type.
// reflect.DeepEqual gives the same answer, several times slower on the maps in lists.
func jsonEqual(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !jsonEqual(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !jsonEqual(a[i], b[i]) {
				return false
			}
		}
		return true
	case string, bool, int64, float64, nil:
		return a == b
	default:
		return reflect.DeepEqual(a, b)
	}
}

// parseMergePatch reads a JSON merge patch that must be an object, with numbers typed as
// apimachinery decodes them.
func parseMergePatch(text string) (map[string]any, error) {
	var patch map[string]any
	if err := utiljson.Unmarshal([]byte(text), &patch); err != nil {
		return nil, fmt.Errorf("not a JSON merge patch: %w", err)
	}
	if patch == nil {
		return nil, errors.New("not a JSON merge patch: not an object")
	}
	return patch, nil
}

// applyMergePatch applies a JSON merge patch (RFC 7386) to target and returns the result. It
// changes the objects of target in place and puts values of patch into it without copying
// them.
func applyMergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = make(map[string]any, len(p))
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = applyMergePatch(t[k], v)
	}
	return t
}
