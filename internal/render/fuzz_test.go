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
// without status or cluster-local metadata, with the source's identity and provenance.
// The seed corpus is in testdata/fuzz/FuzzRender.
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
