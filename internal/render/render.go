package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// Labels and annotations Deich writes on every copy. All keys with these names are Deich's:
// Render drops them from the source and overwrites whatever an override put there.
const (
	// LabelSourceSite names the site the copy was rendered from.
	LabelSourceSite = "resilience.deich.io/source-site"
	// LabelSharedService names the SharedService (in the copy's namespace) the copy belongs
	// to. The controller prunes copies by it.
	LabelSharedService = "resilience.deich.io/shared-service"
	// LabelManagedBy marks objects Deich created at a peer; its value is ManagedByDeich.
	LabelManagedBy = "resilience.deich.io/managed-by"
	// ManagedByDeich is the value of LabelManagedBy.
	ManagedByDeich = "deich"

	// AnnotationSourceResourceVersion is the source's metadata.resourceVersion when the copy
	// was rendered. It is left out of the content hash.
	AnnotationSourceResourceVersion = "resilience.deich.io/source-resource-version"
	// AnnotationContentHash is ContentHash of the copy.
	AnnotationContentHash = "resilience.deich.io/content-hash"

	// AnnotationSourceReplicas holds, on a copy in standby form, the replica count of the
	// source, so that promotion can restore it (see SourceReplicas).
	AnnotationSourceReplicas = "resilience.deich.io/source-replicas"
	// AnnotationStandbyNodeSelector is "true" on a DaemonSet whose pod template got the
	// NodeSelectorStandby node selector from the standby form.
	AnnotationStandbyNodeSelector = "resilience.deich.io/standby-node-selector"
	// AnnotationStandbySuspended is "true" on a Job or CronJob that the standby form
	// suspended.
	AnnotationStandbySuspended = "resilience.deich.io/standby-suspended"
	// AnnotationActivePatch holds, on every copy rendered for the Standby role, the JSON merge
	// patch (RFC 7386) that turns the copy into the copy rendered for the Active role: the
	// standby form undone, the standby overrides reverted, the active overrides applied. A
	// standby site that is promoted while the source's site is down, and an active site that
	// lifts its fence, have nothing else to go by (see ActiveForm).
	AnnotationActivePatch = "resilience.deich.io/active-form-patch"

	// NodeSelectorStandby is the node label a DaemonSet in Cold or Warm standby form selects
	// (with value "true"). No node carries it, so no daemon pod runs.
	NodeSelectorStandby = "resilience.deich.io/standby"
)

// deichKeys are the labels and annotations Render owns.
var deichKeys = map[string]bool{
	LabelSourceSite:                 true,
	LabelSharedService:              true,
	LabelManagedBy:                  true,
	AnnotationSourceResourceVersion: true,
	AnnotationContentHash:           true,
	AnnotationSourceReplicas:        true,
	AnnotationStandbyNodeSelector:   true,
	AnnotationStandbySuspended:      true,
	AnnotationActivePatch:           true,
}

// Target says for whom a copy is rendered.
type Target struct {
	// SourceSite is the site the source object lives at; it goes on the copy as provenance.
	SourceSite string
	// Site is the site the copy is for; overrides with this site apply.
	Site string
	// Role is the part Site plays for the service: Active or Standby. Overrides with this
	// role apply, and Standby puts workloads into standby form.
	Role deichv1alpha1.Role
	// Standby is the RecoveryObjective's standby mode, used when Role is Standby. Empty means
	// Cold, the API's default.
	Standby deichv1alpha1.StandbyMode
	// Service is the SharedService's name; it goes on the copy as LabelSharedService.
	Service string
	// Overrides are the SharedService's spec.overrides. Indexes in a *PatchError refer to
	// this slice.
	Overrides []deichv1alpha1.Override
	// Egress is what may leave for Site when it is another site than SourceSite: the policy
	// of its ReplicationPeer; nil allows everything.
	Egress *Egress
}

func (t Target) validate() error {
	switch t.Role {
	case deichv1alpha1.RoleActive, deichv1alpha1.RoleStandby:
	default:
		// An unknown role must not fall back to Active: an active copy at the wrong site
		// would serve twice.
		return fmt.Errorf("invalid target: role %q is neither Active nor Standby", t.Role)
	}
	switch t.Standby {
	case "", deichv1alpha1.StandbyCold, deichv1alpha1.StandbyWarm, deichv1alpha1.StandbyHot:
	default:
		return fmt.Errorf("invalid target: standby mode %q is none of Cold, Warm, Hot", t.Standby)
	}
	if t.Site == "" {
		return errors.New("invalid target: no site")
	}
	for _, l := range []struct{ what, value string }{{"source site", t.SourceSite}, {"shared service name", t.Service}} {
		if l.value == "" {
			return fmt.Errorf("invalid target: no %s", l.what)
		}
		if errs := validation.IsValidLabelValue(l.value); len(errs) > 0 {
			return fmt.Errorf("invalid target: %s %q cannot be a label value: %s", l.what, l.value, strings.Join(errs, "; "))
		}
	}
	return nil
}

// identity is what names an object; overrides may not change it.
type identity struct {
	apiVersion      string
	gk              schema.GroupKind
	namespace, name string
}

func (id identity) String() string {
	kind := id.gk.Kind
	if id.gk.Group != "" {
		kind += "." + id.gk.Group
	}
	if id.namespace == "" {
		return kind + " " + id.name
	}
	return kind + " " + id.namespace + "/" + id.name
}

// identify reads an object's identity and checks the shape every later step relies on:
// metadata is an object, labels and annotations are maps of strings.
func identify(obj map[string]any) (identity, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if apiVersion == "" || kind == "" {
		return identity{}, errors.New("object has no apiVersion or kind")
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return identity{}, fmt.Errorf("object has an invalid apiVersion: %w", err)
	}
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return identity{}, errors.New("object has no metadata")
	}
	name, _ := meta["name"].(string)
	if name == "" {
		return identity{}, errors.New("object has no metadata.name")
	}
	namespace, ok := meta["namespace"].(string)
	if !ok && meta["namespace"] != nil {
		return identity{}, errors.New("object's metadata.namespace is not a string")
	}
	for _, key := range []string{"labels", "annotations"} {
		if _, err := stringMap(meta, key); err != nil {
			return identity{}, err
		}
	}
	return identity{apiVersion: apiVersion, gk: schema.GroupKind{Group: gv.Group, Kind: kind}, namespace: namespace, name: name}, nil
}

// Render returns the copy of src for t: src refused if it must never be mirrored, stripped
// of everything cluster-local, in standby form when t.Role is Standby, patched by the
// overrides that apply to t, and labelled with its provenance. A copy for the Standby role
// also records, in AnnotationActivePatch, how to become the copy for the Active role. See the
// package documentation for the details.
//
// Render never modifies src, and it is deterministic: the same src and t give the same copy,
// byte for byte when serialized with encoding/json. It is safe for concurrent use.
//
// Errors: a *NotMirrorableError when src must never be mirrored (lasting: skip the object and
// report it); an *EgressDeniedError when t.Egress keeps it at this site (lasting: send
// nothing of it, delete its copy at the peer, and report it); a *PatchError when an override's patch fails (the user must fix the
// SharedService) — for the Standby role, an override for the Active role counts too, since
// the copy records its active form; other errors for an invalid t, a malformed src, or an
// active form too far from the standby form to record. Only a *NotMirrorableError names src;
// wrap the others with it. No partial copy is ever returned.
func Render(src *unstructured.Unstructured, t Target) (*unstructured.Unstructured, error) {
	if src == nil || src.Object == nil {
		return nil, errors.New("no source object")
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	id, err := identify(src.Object)
	if err != nil {
		return nil, err
	}
	if err := refuse(src.Object, id); err != nil {
		return nil, err
	}
	if err := t.Egress.Check(src); err != nil {
		return nil, err
	}
	sourceRV := nestedString(src.Object, "metadata", "resourceVersion")

	obj, err := servingForm(src.Object, id)
	if err != nil {
		return nil, err
	}
	if err := refuse(obj, id); err != nil {
		// Only a forged active-form patch can get here.
		return nil, err
	}
	strip(obj, id)

	var activeCopy map[string]any
	if t.Role == deichv1alpha1.RoleStandby {
		// The active copy starts from the same stripped object; the standby form and the
		// overrides change what they are given, so it gets its own.
		c, err := copyValue(obj)
		if err != nil {
			return nil, fmt.Errorf("copy the source: %w", err) // copyObject accepted it before
		}
		at := t
		at.Role = deichv1alpha1.RoleActive
		if activeCopy, err = renderRole(c.(map[string]any), id, at); err != nil {
			return nil, err
		}
	}
	if obj, err = renderRole(obj, id, t); err != nil {
		return nil, err
	}

	// renderRole leaves metadata an object with annotations.
	annotations := obj["metadata"].(map[string]any)["annotations"].(map[string]any)
	if activeCopy != nil {
		// Computed before the source's resourceVersion and the hash are added, so neither is
		// ever part of the patch.
		patch, err := activePatch(obj, activeCopy)
		if err != nil {
			return nil, err
		}
		annotations[AnnotationActivePatch] = patch
	}
	if sourceRV != "" {
		annotations[AnnotationSourceResourceVersion] = sourceRV
	}
	hash, err := contentHash(obj)
	if err != nil {
		return nil, err
	}
	annotations[AnnotationContentHash] = hash
	return &unstructured.Unstructured{Object: obj}, nil
}

// renderRole turns obj, stripped, into the copy for t: the standby form when t.Role is
// Standby, the overrides, the metadata guarantees, the provenance labels and the standby
// form's record. Render adds the rest once it has the copy: the active-form patch, the
// source's resourceVersion and the hash. The result may share values with obj, which it
// changes. Its metadata is an object with labels and annotations.
func renderRole(obj map[string]any, id identity, t Target) (map[string]any, error) {
	var record map[string]string
	if t.Role == deichv1alpha1.RoleStandby {
		var err error
		if record, err = standbyForm(obj, id, t.Standby); err != nil {
			return nil, fmt.Errorf("standby form: %w", err)
		}
	}

	obj, err := applyOverrides(obj, id, t)
	if err != nil {
		return nil, err
	}

	// Whatever the overrides did, the guarantees hold: nothing cluster-local in metadata,
	// no status, and Deich's keys are Deich's.
	delete(obj, "status")
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return nil, errors.New("the copy has no metadata") // identify and checkIdentity rule this out
	}
	stripMetadata(meta)
	if err := refuse(obj, id); err != nil {
		// Only an override can get here, by turning a Secret into a token Secret.
		return nil, err
	}
	labels := ensureStringMap(meta, "labels")
	labels[LabelSourceSite] = t.SourceSite
	labels[LabelSharedService] = t.Service
	labels[LabelManagedBy] = ManagedByDeich
	annotations := ensureStringMap(meta, "annotations")
	for k, v := range record {
		annotations[k] = v
	}
	return obj, nil
}

func ensureStringMap(meta map[string]any, key string) map[string]any {
	m, ok := meta[key].(map[string]any)
	if !ok {
		m = map[string]any{}
		meta[key] = m
	}
	return m
}

// ContentHash returns the hash of a rendered copy: hex of the first 16 bytes of the SHA-256
// of its JSON (object keys sorted, as encoding/json writes them), leaving out the
// AnnotationSourceResourceVersion and AnnotationContentHash annotations. A source whose
// resourceVersion moved but whose content did not renders the same hash, so the controller
// can skip applying it.
//
// The hash is defined on rendered copies. An object read back from a cluster carries fields
// its API server added (uid, defaults, status) and hashes differently; compare its
// AnnotationContentHash instead.
func ContentHash(obj *unstructured.Unstructured) (string, error) {
	if obj == nil || obj.Object == nil {
		return "", errors.New("no object to hash")
	}
	return contentHash(obj.Object)
}

func contentHash(obj map[string]any) (string, error) {
	view := obj
	if meta, ok := obj["metadata"].(map[string]any); ok {
		if ann, ok := meta["annotations"].(map[string]any); ok {
			_, rv := ann[AnnotationSourceResourceVersion]
			_, h := ann[AnnotationContentHash]
			if rv || h || len(ann) == 0 {
				// Hash a view without the two annotations (and without annotations at all
				// when no other is left); obj stays as it is.
				a := make(map[string]any, len(ann))
				for k, v := range ann {
					if k != AnnotationSourceResourceVersion && k != AnnotationContentHash {
						a[k] = v
					}
				}
				m := make(map[string]any, len(meta))
				for k, v := range meta {
					m[k] = v
				}
				if len(a) == 0 {
					delete(m, "annotations")
				} else {
					m["annotations"] = a
				}
				view = make(map[string]any, len(obj))
				for k, v := range obj {
					view[k] = v
				}
				view["metadata"] = m
			}
		}
	}
	b, err := json.Marshal(view)
	if err != nil {
		return "", fmt.Errorf("hash the copy: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]), nil
}
