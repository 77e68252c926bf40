package render

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// FuzzRender renders objects built from fuzzed JSON, once plainly and once with a fuzzed patch,
// and checks what Render promises: no panic, an unmodified input, and on success a copy
// without status or cluster-local metadata, with the source's identity and provenance; for
// the Standby role, a copy whose ActiveForm is the copy for the Active role. It also takes
// the fuzzed object for a live one and checks ActiveForm on it. The seed corpus is in
// testdata/fuzz/FuzzRender.
func FuzzRender(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"ns","uid":"u","resourceVersion":"3"},"spec":{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],"ports":[{"port":80,"nodePort":30080}]},"status":{}}`),
		"- op: add\n  path: /spec/ports/0/nodePort\n  value: 30081\n", byte(4))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c"}]}}}}`),
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n", byte(1))
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"DaemonSet","metadata":{"name":"d","annotations":{"resilience.deich.io/standby-node-selector":"true"}},"spec":{"template":{"spec":{"nodeSelector":{"resilience.deich.io/standby":"true"}}}}}`),
		"spec:\n  template: null\n", byte(6))

	f.Fuzz(func(t *testing.T, objJSON []byte, patchText string, flags byte) {
		var m map[string]any
		if err := utiljson.Unmarshal(objJSON, &m); err != nil || m == nil {
			return
		}
		src := &unstructured.Unstructured{Object: m}
		before := src.DeepCopy()

		target := Target{SourceSite: "sh-kiel", Site: "mv-schwerin", Role: deichv1alpha1.RoleActive, Service: "svc"}
		if flags&1 != 0 {
			target.Role = deichv1alpha1.RoleStandby
			target.Standby = []deichv1alpha1.StandbyMode{"", deichv1alpha1.StandbyCold, deichv1alpha1.StandbyWarm, deichv1alpha1.StandbyHot}[flags>>6]
		}

		plain, err := Render(src, target)
		checkRendered(t, src, before, plain, err, true)
		if err == nil {
			checkTrimmedRendersAlike(t, before, target, plain)
		}
		if err == nil && target.Role == deichv1alpha1.RoleStandby {
			checkActiveForm(t, src, target, plain)
		}
		checkActiveFormOfLive(t, src, before)

		p := deichv1alpha1.Patch{Patch: patchText}
		if flags&2 != 0 {
			p.Target = &deichv1alpha1.PatchTarget{}
		}
		if flags&4 != 0 {
			p.Target = &deichv1alpha1.PatchTarget{Kind: "Service|Deployment|DaemonSet"}
		}
		target.Overrides = []deichv1alpha1.Override{{Patches: []deichv1alpha1.Patch{p}}}
		patched, err := Render(src, target)
		checkRendered(t, src, before, patched, err, false)
		if err == nil && target.Role == deichv1alpha1.RoleStandby {
			checkActiveForm(t, src, target, patched)
		}

		if err == nil {
			again, err := Render(src, target)
			if err != nil {
				t.Fatalf("second Render() failed: %v", err)
			}
			if a, b := mustJSON(t, patched), mustJSON(t, again); !bytes.Equal(a, b) {
				t.Fatalf("Render() is not deterministic:\n%s\n%s", a, b)
			}
		}
	})
}

// checkTrimmedRendersAlike checks TrimSource's promise: the trimmed source renders to the
// same copy as the whole one.
func checkTrimmedRendersAlike(t *testing.T, src *unstructured.Unstructured, target Target, want *unstructured.Unstructured) {
	t.Helper()
	trimmed := src.DeepCopy()
	TrimSource(trimmed.Object)
	got, err := Render(trimmed, target)
	if err != nil {
		t.Fatalf("Render() of the trimmed source failed where the whole one rendered: %v", err)
	}
	if a, b := mustJSON(t, want), mustJSON(t, got); !bytes.Equal(a, b) {
		t.Fatalf("the trimmed source renders differently:\nwhole   %s\ntrimmed %s", a, b)
	}
}

func checkRendered(t *testing.T, src, before, got *unstructured.Unstructured, err error, noOverrides bool) {
	t.Helper()
	if !reflect.DeepEqual(before.Object, src.Object) {
		t.Fatalf("Render() modified its input:\nbefore %v\nafter  %v", before.Object, src.Object)
	}
	if err != nil {
		if got != nil {
			t.Fatalf("Render() returned a copy along with error %v", err)
		}
		return
	}
	if _, err := json.Marshal(got.Object); err != nil {
		t.Fatalf("copy does not serialize: %v", err)
	}
	for _, path := range [][]string{{"status"}, {"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "managedFields"}, {"metadata", "ownerReferences"}} {
		if v, ok := field(got, path...); ok {
			t.Fatalf("copy has %v = %v", path, v)
		}
	}
	if got.GetAPIVersion() != before.GetAPIVersion() || got.GetKind() != before.GetKind() ||
		got.GetName() != before.GetName() || got.GetNamespace() != before.GetNamespace() {
		t.Fatalf("copy %s %s %s/%s has another identity than the source %s %s %s/%s",
			got.GetAPIVersion(), got.GetKind(), got.GetNamespace(), got.GetName(),
			before.GetAPIVersion(), before.GetKind(), before.GetNamespace(), before.GetName())
	}
	if got.GetLabels()[LabelSourceSite] != "sh-kiel" || got.GetLabels()[LabelManagedBy] != ManagedByDeich {
		t.Fatalf("copy lacks provenance: %v", got.GetLabels())
	}
	if h, err := ContentHash(got); err != nil || h != got.GetAnnotations()[AnnotationContentHash] {
		t.Fatalf("ContentHash() = %q, %v; annotation %q", h, err, got.GetAnnotations()[AnnotationContentHash])
	}
	// Overrides may pin addresses and ports at a site; without overrides none survive.
	if noOverrides && got.GetAPIVersion() == "v1" && got.GetKind() == "Service" {
		if ip, ok := field(got, "spec", "clusterIP"); ok && ip != "None" {
			t.Fatalf("copy has spec.clusterIP %v", ip)
		}
		ports, _ := field(got, "spec", "ports")
		list, _ := ports.([]any)
		for _, p := range list {
			if port, ok := p.(map[string]any); ok {
				if np, ok := port["nodePort"]; ok {
					t.Fatalf("copy has nodePort %v", np)
				}
			}
		}
	}
}

// checkActiveForm checks that the active form of standbyCopy, src rendered for target, is src
// rendered for the Active role: the same object, up to what a JSON merge patch cannot express
// (a null field comes out missing) and up to what ActiveForm strips from any object it is
// given (cluster-local fields an override pinned, say a nodePort).
func checkActiveForm(t *testing.T, src *unstructured.Unstructured, target Target, standbyCopy *unstructured.Unstructured) {
	t.Helper()
	target.Role = deichv1alpha1.RoleActive
	activeCopy, err := Render(src, target)
	if err != nil {
		t.Fatalf("Render() for the Active role failed where the copy for the Standby role rendered: %v", err)
	}
	got, err := ActiveForm(standbyCopy)
	if err != nil {
		t.Fatalf("ActiveForm() of a standby copy failed: %v", err)
	}
	if want, have := comparableForm(t, activeCopy), comparableForm(t, got); !reflect.DeepEqual(want, have) {
		w, _ := json.Marshal(want)
		h, _ := json.Marshal(have)
		t.Fatalf("ActiveForm() of the standby copy is not the active copy:\nactive copy %s\nactive form %s\npatch %s",
			w, h, standbyCopy.GetAnnotations()[AnnotationActivePatch])
	}
}

// comparableForm is obj as JSON decodes it, without null fields, stripped as ActiveForm strips.
func comparableForm(t *testing.T, obj *unstructured.Unstructured) map[string]any {
	t.Helper()
	b, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := utiljson.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m = dropNulls(m).(map[string]any)
	id, err := identify(m)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	applyable(m, id)
	return m
}

// checkActiveFormOfLive calls ActiveForm on the fuzzed object as if read from a cluster: no
// panic, an unmodified input, and on success nothing the cluster owns and no standby form.
func checkActiveFormOfLive(t *testing.T, live, before *unstructured.Unstructured) {
	t.Helper()
	got, err := ActiveForm(live)
	if !reflect.DeepEqual(before.Object, live.Object) {
		t.Fatalf("ActiveForm() modified its input:\nbefore %v\nafter  %v", before.Object, live.Object)
	}
	if err != nil {
		if got != nil {
			t.Fatalf("ActiveForm() returned an object along with error %v", err)
		}
		return
	}
	if _, err := json.Marshal(got.Object); err != nil {
		t.Fatalf("active form does not serialize: %v", err)
	}
	for _, path := range [][]string{{"status"}, {"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "managedFields"}, {"metadata", "ownerReferences"}} {
		if v, ok := field(got, path...); ok {
			t.Fatalf("active form has %v = %v", path, v)
		}
	}
	if InStandbyForm(got) {
		t.Fatalf("active form is in standby form: %v", got.GetAnnotations())
	}
}
