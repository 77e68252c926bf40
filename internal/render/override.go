package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/kustomize/api/filters/patchstrategicmerge"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// PatchError says which patch of which override failed on the object being rendered, and why.
// Override and Patch index Target.Overrides and its Patches, as in
// spec.overrides[Override].patches[Patch].
type PatchError struct {
	// Override is the index of the override in Target.Overrides.
	Override int
	// Patch is the index of the patch in the override's patches.
	Patch int
	// Site and Role are the override's site and role (empty when it applies to any).
	Site string
	Role deichv1alpha1.Role
	// Err is what went wrong.
	Err error
}

func (e *PatchError) Error() string {
	var scope []string
	if e.Site != "" {
		scope = append(scope, "site "+e.Site)
	}
	if e.Role != "" {
		scope = append(scope, "role "+string(e.Role))
	}
	where := fmt.Sprintf("spec.overrides[%d].patches[%d]", e.Override, e.Patch)
	if len(scope) > 0 {
		where += " (" + strings.Join(scope, ", ") + ")"
	}
	return where + ": " + e.Err.Error()
}

func (e *PatchError) Unwrap() error { return e.Err }

// maxPatchedSize bounds the JSON size an object may grow to through JSON 6902 copy
// operations, each of which can double it. The API server stores objects up to 1.5 MiB.
const maxPatchedSize = 3 << 20

// applyOverrides applies, in order, the patches of every override in t whose site and role
// match t. It returns obj unchanged when none does, without touching kustomize.
func applyOverrides(obj map[string]any, id identity, t Target) (map[string]any, error) {
	for i, o := range t.Overrides {
		if (o.Site != "" && o.Site != t.Site) || (o.Role != "" && o.Role != t.Role) {
			continue
		}
		for j, p := range o.Patches {
			patched, err := applyPatch(obj, id, p)
			if err != nil {
				return nil, &PatchError{Override: i, Patch: j, Site: o.Site, Role: o.Role, Err: err}
			}
			obj = patched
		}
	}
	return obj, nil
}

// patch is a parsed kustomize patch: strategic-merge documents, or JSON 6902 operations.
type patch struct {
	smp []map[string]any
	// json6902 says the patch is a list of operations, ops.
	json6902 bool
	ops      jsonpatch.Patch
	// copies says whether ops has a copy operation, which can double the object.
	copies bool
}

// patchCache remembers parsed patches, since the controller renders every object of a
// service with the same overrides. A parsed patch is never modified after parsing, so it is
// shared between concurrent renders. The cache is bounded: when it would hold more than
// patchCacheBytes of patch text, it starts over.
type patchCache struct {
	mu     sync.RWMutex
	bytes  int
	byText map[string]parseResult
}

type parseResult struct {
	patch patch
	err   error
}

const patchCacheBytes = 4 << 20

var parsedPatches = &patchCache{byText: map[string]parseResult{}}

func (c *patchCache) get(text string) (patch, error) {
	c.mu.RLock()
	r, ok := c.byText[text]
	c.mu.RUnlock()
	if ok {
		return r.patch, r.err
	}
	p, err := parsePatch(text)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bytes+len(text) > patchCacheBytes {
		clear(c.byText)
		c.bytes = 0
	}
	if _, ok := c.byText[text]; !ok {
		c.byText[text] = parseResult{patch: p, err: err}
		c.bytes += len(text)
	}
	return p, err
}

// parsePatch tells the two kinds of kustomize patch apart by shape, as kustomize does: a
// list of operations is a JSON 6902 patch; one or more objects (YAML documents, or JSON) are
// strategic-merge patches. Each is parsed as kustomize parses it: strategic-merge patches with
// YAML 1.2 (kyaml), so `on` and `yes` stay strings; JSON 6902 patches with sigs.k8s.io/yaml.
func parsePatch(text string) (patch, error) {
	var p patch
	list := false
	dec := kyaml.NewDecoder(strings.NewReader(text))
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return patch{}, fmt.Errorf("parse the patch: %w", err)
		}
		switch doc := v.(type) {
		case nil:
			continue // an empty document
		case map[string]any:
			c, err := copyValue(doc)
			if err != nil {
				return patch{}, fmt.Errorf("parse the patch: %w", err)
			}
			p.smp = append(p.smp, c.(map[string]any))
		case []any:
			if list {
				return patch{}, errors.New("a JSON 6902 patch is one list of operations, not several documents")
			}
			list = true
		default:
			return patch{}, errors.New("the patch is neither a strategic-merge patch (an object) nor a JSON 6902 patch (a list of operations)")
		}
	}
	switch {
	case list && len(p.smp) > 0:
		return patch{}, errors.New("the patch mixes a JSON 6902 list of operations with strategic-merge objects")
	case list:
		j, err := sigsyaml.YAMLToJSON([]byte(text))
		if err != nil {
			return patch{}, fmt.Errorf("parse the patch: %w", err)
		}
		var ops []any
		if err := utiljson.Unmarshal(j, &ops); err != nil {
			return patch{}, fmt.Errorf("parse the patch: %w", err)
		}
		return parseOps(ops)
	case len(p.smp) == 0:
		return patch{}, errors.New("the patch is empty")
	}
	return p, nil
}

// jsonPatchOps are the operations of RFC 6902.
var jsonPatchOps = map[string]bool{"add": true, "remove": true, "replace": true, "move": true, "copy": true, "test": true}

// parseOps checks the operations up front, so that a malformed patch fails on every object
// rather than only on those it would have touched.
func parseOps(list []any) (patch, error) {
	p := patch{json6902: true}
	for i, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return patch{}, fmt.Errorf("JSON 6902 operation %d is not an object", i)
		}
		op, _ := m["op"].(string)
		if !jsonPatchOps[op] {
			return patch{}, fmt.Errorf("JSON 6902 operation %d: op %v is none of add, remove, replace, move, copy, test", i, m["op"])
		}
		if _, ok := m["path"].(string); !ok {
			return patch{}, fmt.Errorf("JSON 6902 operation %d (%s) has no path", i, op)
		}
		if op == "move" || op == "copy" {
			if _, ok := m["from"].(string); !ok {
				return patch{}, fmt.Errorf("JSON 6902 operation %d (%s) has no from", i, op)
			}
		}
		if op == "add" || op == "replace" || op == "test" {
			if _, ok := m["value"]; !ok {
				return patch{}, fmt.Errorf("JSON 6902 operation %d (%s) has no value", i, op)
			}
		}
		p.copies = p.copies || op == "copy"
	}
	b, err := json.Marshal(list)
	if err != nil {
		return patch{}, fmt.Errorf("JSON 6902 patch: %w", err)
	}
	if p.ops, err = jsonpatch.DecodePatch(b); err != nil {
		return patch{}, fmt.Errorf("JSON 6902 patch: %w", err)
	}
	return p, nil
}

// applyPatch applies one patch of an override to obj, if it selects obj, and returns the
// result: obj when the patch does not apply, otherwise a new object that may share values
// with obj. obj itself is not changed.
func applyPatch(obj map[string]any, id identity, p deichv1alpha1.Patch) (map[string]any, error) {
	parsed, err := parsedPatches.get(p.Patch)
	if err != nil {
		return nil, err
	}
	if parsed.json6902 {
		if p.Target == nil {
			return nil, errors.New("a JSON 6902 patch needs a target")
		}
		ok, err := selects(p.Target, obj, id)
		if err != nil || !ok {
			return obj, err
		}
		return applyJSON6902(obj, id, parsed)
	}

	if p.Target != nil {
		if len(parsed.smp) > 1 {
			return nil, errors.New("a strategic-merge patch with a target must be a single document")
		}
		ok, err := selects(p.Target, obj, id)
		if err != nil || !ok {
			return obj, err
		}
		return applySMP(obj, id, parsed.smp[0])
	}
	// Without target, each document patches the object it names, and this render concerns one
	// object only: documents naming other objects are for other renders.
	for i, doc := range parsed.smp {
		names, err := namesObject(doc, id)
		if err != nil {
			if len(parsed.smp) > 1 {
				err = fmt.Errorf("document %d: %w", i, err)
			}
			return nil, err
		}
		if !names {
			continue
		}
		if obj, err = applySMP(obj, id, doc); err != nil {
			return nil, err
		}
	}
	return obj, nil
}

// namesObject says whether an untargeted strategic-merge patch names the object: same API
// group, kind and name, and same namespace if the patch gives one. The version is not
// compared: Deich reads each kind at the version the API server prefers, which the patch's
// author need not know.
func namesObject(doc map[string]any, id identity) (bool, error) {
	apiVersion, _ := doc["apiVersion"].(string)
	kind, _ := doc["kind"].(string)
	name := nestedString(doc, "metadata", "name")
	if apiVersion == "" || kind == "" || name == "" {
		return false, errors.New("a strategic-merge patch without target must name the object it patches: apiVersion, kind and metadata.name")
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return false, fmt.Errorf("the patch's apiVersion: %w", err)
	}
	namespace := nestedString(doc, "metadata", "namespace")
	return gv.Group == id.gk.Group && kind == id.gk.Kind && name == id.name &&
		(namespace == "" || namespace == id.namespace), nil
}

// selects says whether a kustomize patch target selects obj: group, version, kind and name are
// anchored regular expressions, matched by kustomize's own types.SelectorRegex; labelSelector
// and annotationSelector are label selectors, matched against the object as the previous
// patches left it (as kustomize does).
func selects(t *deichv1alpha1.PatchTarget, obj map[string]any, id identity) (bool, error) {
	sr, err := types.NewSelectorRegex(&types.Selector{
		ResId: resid.ResId{
			Gvk:  resid.Gvk{Group: t.Group, Version: t.Version, Kind: t.Kind},
			Name: t.Name,
		},
	})
	if err != nil {
		return false, fmt.Errorf("target: %w", err)
	}
	gv, _ := schema.ParseGroupVersion(id.apiVersion) // identify parsed it before
	if !sr.MatchGvk(resid.Gvk{Group: id.gk.Group, Version: gv.Version, Kind: id.gk.Kind}) || !sr.MatchName(id.name) {
		return false, nil
	}
	meta, _ := obj["metadata"].(map[string]any)
	for _, s := range []struct{ field, selector, metaKey string }{
		{"labelSelector", t.LabelSelector, "labels"},
		{"annotationSelector", t.AnnotationSelector, "annotations"},
	} {
		if s.selector == "" {
			continue
		}
		sel, err := labels.Parse(s.selector)
		if err != nil {
			return false, fmt.Errorf("target %s: %w", s.field, err)
		}
		set := labels.Set{}
		if m, ok := meta[s.metaKey].(map[string]any); ok {
			for k, v := range m {
				set[k], _ = v.(string)
			}
		}
		if !sel.Matches(set) {
			return false, nil
		}
	}
	return true, nil
}

// applySMP applies a strategic-merge patch with kustomize's patchstrategicmerge filter. The
// filter merges by the OpenAPI schema kyaml has built in for Kubernetes' own kinds (lists
// with a patch merge key, such as containers and env, merge by that key). For kinds it has no
// schema for, such as custom resources, objects merge field by field and lists are replaced:
// JSON merge patch semantics, plus the $patch directives.
//
// As in kustomize, a strategic-merge patch never changes the identity of what it patches: its
// apiVersion, kind, name and namespace select, they are not applied.
func applySMP(obj map[string]any, id identity, doc map[string]any) (map[string]any, error) {
	// kyaml's walker visits every field of the object, which costs about a millisecond for a
	// Deployment; only the fields the patch mentions can change, so only those are merged.
	touched, untouched := splitForPatch(obj, doc)
	touched["apiVersion"], touched["kind"] = id.apiVersion, id.gk.Kind // kyaml finds the schema by them
	dest, err := toYNode(touched)
	if err != nil {
		return nil, err
	}
	src, err := toYNode(doc)
	if err != nil {
		return nil, err
	}
	out, err := patchstrategicmerge.Filter{Patch: kyaml.NewRNode(src)}.Filter([]*kyaml.RNode{kyaml.NewRNode(dest)})
	if err != nil {
		return nil, fmt.Errorf("strategic-merge patch: %w", err)
	}
	if len(out) == 0 || out[0].IsNilOrEmpty() {
		return nil, errors.New("the patch deletes the object; an override may change an object, not remove it")
	}
	v, err := fromYNode(out[0].YNode())
	if err != nil {
		return nil, fmt.Errorf("strategic-merge patch: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the patched object is not an object")
	}
	untouched.graft(m)
	m["apiVersion"], m["kind"] = id.apiVersion, id.gk.Kind
	meta, ok := m["metadata"].(map[string]any)
	if !ok {
		meta = map[string]any{}
		m["metadata"] = meta
	}
	meta["name"] = id.name
	if id.namespace != "" {
		meta["namespace"] = id.namespace
	} else {
		delete(meta, "namespace")
	}
	return m, checkIdentity(m, id)
}

// untouched holds the fields of an object that a strategic-merge patch does not mention, by
// object: fields holds them at this level, nested the levels below that the patch mentions.
type untouched struct {
	fields map[string]any
	nested map[string]*untouched
}

// splitForPatch splits obj into the fields a strategic-merge patch mentions and the rest. The
// walker of merge2 keeps fields the patch does not mention as they are, so merging only the
// mentioned ones and grafting the rest back gives its result. Where the patch has a directive
// ($patch, $retainKeys, …) the whole object at that level is merged, since a directive
// concerns fields the patch does not name.
func splitForPatch(obj, patch map[string]any) (map[string]any, *untouched) {
	for k := range patch {
		if strings.HasPrefix(k, "$") {
			touched := make(map[string]any, len(obj))
			for k, v := range obj {
				touched[k] = v
			}
			return touched, nil
		}
	}
	touched := make(map[string]any, len(patch))
	var rest *untouched
	for k, v := range obj {
		p, mentioned := patch[k]
		if !mentioned {
			if rest == nil {
				rest = &untouched{}
			}
			if rest.fields == nil {
				rest.fields = map[string]any{}
			}
			rest.fields[k] = v
			continue
		}
		objChild, objIsMap := v.(map[string]any)
		patchChild, patchIsMap := p.(map[string]any)
		if !objIsMap || !patchIsMap {
			touched[k] = v
			continue
		}
		t, r := splitForPatch(objChild, patchChild)
		touched[k] = t
		if r != nil {
			if rest == nil {
				rest = &untouched{}
			}
			if rest.nested == nil {
				rest.nested = map[string]*untouched{}
			}
			rest.nested[k] = r
		}
	}
	return touched, rest
}

// graft puts the untouched fields back into the merged object m.
func (u *untouched) graft(m map[string]any) {
	if u == nil {
		return
	}
	for k, v := range u.fields {
		m[k] = v
	}
	for k, r := range u.nested {
		// When the merge removed or replaced the object at k, its untouched fields go with it.
		if child, ok := m[k].(map[string]any); ok {
			r.graft(child)
		}
	}
}

// applyJSON6902 applies JSON 6902 operations with the library kustomize's patchjson6902 filter
// wraps (gopkg.in/evanphx/json-patch.v4), on the object's JSON: the filter itself would
// convert the object to YAML text and back twice for the same result. Patches that copy are
// applied one operation at a time so that doubling the object again and again is caught.
func applyJSON6902(obj map[string]any, id identity, p patch) (map[string]any, error) {
	doc, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	if p.copies {
		for i := range p.ops {
			if doc, err = p.ops[i : i+1].Apply(doc); err != nil {
				return nil, fmt.Errorf("JSON 6902 operation %d: %w", i, err)
			}
			if len(doc) > maxPatchedSize {
				return nil, fmt.Errorf("JSON 6902 operation %d grows the object beyond %d bytes", i, maxPatchedSize)
			}
		}
	} else if doc, err = p.ops.Apply(doc); err != nil {
		return nil, fmt.Errorf("JSON 6902 patch: %w", err)
	}
	var m map[string]any
	if err := utiljson.Unmarshal(doc, &m); err != nil || m == nil {
		return nil, errors.New("the patched object is not an object")
	}
	return m, checkIdentity(m, id)
}

// checkIdentity fails when a patch renamed, moved or retyped the object, or broke the shape
// of its metadata.
func checkIdentity(obj map[string]any, id identity) error {
	got, err := identify(obj)
	if err != nil {
		return fmt.Errorf("the patched object is malformed: %w", err)
	}
	for _, c := range []struct{ field, was, is string }{
		{"apiVersion", id.apiVersion, got.apiVersion},
		{"kind", id.gk.Kind, got.gk.Kind},
		{"metadata.name", id.name, got.name},
		{"metadata.namespace", id.namespace, got.namespace},
	} {
		if c.was != c.is {
			return fmt.Errorf("the patch changes %s from %q to %q; an override may not rename, move or retype the object", c.field, c.was, c.is)
		}
	}
	return nil
}

// Selects reports whether target selects obj, as the target of a kustomize patch would: the
// rule that puts an object into a stage of a service's promotion.
func Selects(target *deichv1alpha1.PatchTarget, obj *unstructured.Unstructured) (bool, error) {
	id, err := identify(obj.Object)
	if err != nil {
		return false, err
	}
	return selects(target, obj.Object, id)
}
