package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	sigsyaml "sigs.k8s.io/yaml"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// fromYAML builds an object from YAML, with numbers typed as the API server's JSON gives them.
func fromYAML(t testing.TB, y string) *unstructured.Unstructured {
	t.Helper()
	j, err := sigsyaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("parse YAML: %v", err)
	}
	var m map[string]any
	if err := utiljson.Unmarshal(j, &m); err != nil {
		t.Fatalf("parse JSON: %v", err)
	}
	return &unstructured.Unstructured{Object: m}
}

func fromFile(t testing.TB, path string) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fromYAML(t, string(b))
}

// activeFor is the target of the copy that sh-kiel, active, renders for a promoted
// mv-schwerin; standbyFor the usual one, for mv-schwerin as standby.
func activeFor() Target {
	return Target{SourceSite: "sh-kiel", Site: "mv-schwerin", Role: deichv1alpha1.RoleActive, Service: "buergerkonto"}
}

func standbyFor(mode deichv1alpha1.StandbyMode, overrides ...deichv1alpha1.Override) Target {
	return Target{
		SourceSite: "sh-kiel", Site: "mv-schwerin", Role: deichv1alpha1.RoleStandby, Standby: mode,
		Service: "buergerkonto", Overrides: overrides,
	}
}

func mustRender(t testing.TB, src *unstructured.Unstructured, target Target) *unstructured.Unstructured {
	t.Helper()
	got, err := Render(src, target)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return got
}

func mustJSON(t testing.TB, obj *unstructured.Unstructured) []byte {
	t.Helper()
	b, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// field returns the value at a dotted path, and whether it exists.
func field(obj *unstructured.Unstructured, path ...string) (any, bool) {
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	return v, found && err == nil
}

func TestRenderStripsClusterLocalFields(t *testing.T) {
	tests := []struct {
		name string
		file string
	}{
		{"a Deployment loses status, server metadata, managedFields, finalizers, kubectl, Argo CD and Flux traces, its revision and the epoch its site serves on", "deployment.yaml"},
		{"a StatefulSet loses the controller-revision-hash label of its template and the status of its volume claim templates", "statefulset.yaml"},
		{"a DaemonSet loses the template generation annotation of its controller", "daemonset.yaml"},
		{"a LoadBalancer Service loses its cluster IPs, node ports, health check node port and default IP family settings", "service-nodeport.yaml"},
		{"a headless dual-stack Service keeps clusterIP None and its ipFamilyPolicy", "service-headless.yaml"},
		{"a PersistentVolumeClaim loses its volume name, binding and provisioning annotations and its protection finalizer", "pvc.yaml"},
		{"a ServiceAccount loses its token secrets and keeps its image pull secrets", "serviceaccount.yaml"},
		{"a Secret keeps its type and data", "secret.yaml"},
		{"a ConfigMap loses its managedFields and keeps its data", "configmap.yaml"},
		{"an Ingress loses its load balancer status", "ingress.yaml"},
		{"a NetworkPolicy loses only server metadata", "networkpolicy.yaml"},
		{"a custom resource loses status and finalizers and keeps spec.replicas for the Active role", "customresource.yaml"},
		{"a Job loses its generated selector and the controller-uid labels of its template", "job.yaml"},
		{"a HorizontalPodAutoscaler loses its status and keeps its range for the Active role", "hpa.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fromFile(t, filepath.Join("testdata", "strip", tt.file))
			got := mustRender(t, src, activeFor())

			golden := filepath.Join("testdata", "strip", tt.file[:len(tt.file)-len(".yaml")]+".golden.yaml")
			if *update {
				out, err := sigsyaml.Marshal(got.Object)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			want := fromFile(t, golden)
			if diff := cmp.Diff(want.Object, got.Object); diff != "" {
				t.Errorf("Render() mismatch with %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// TestRenderDropsTheEpochOfTheSourcesClaim: the annotation the lease keeper stamps with its
// claim's epoch says on what claim an object serves at its own site; a copy serves on none.
func TestRenderDropsTheEpochOfTheSourcesClaim(t *testing.T) {
	src := fromYAML(t, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {%s: \"3\"}}\n", failover.EpochAnnotation))
	for _, target := range []Target{activeFor(), standbyFor(deichv1alpha1.StandbyCold)} {
		if got := mustRender(t, src, target).GetAnnotations(); got[failover.EpochAnnotation] != "" {
			t.Errorf("the copy for the %s role carries %s: %q", target.Role, failover.EpochAnnotation, got[failover.EpochAnnotation])
		}
	}
}

func TestRenderNeverLeavesClusterLocalMetadata(t *testing.T) {
	// Golden files could be updated carelessly; this says what must hold whatever they contain.
	entries, err := filepath.Glob(filepath.Join("testdata", "strip", "*.golden.yaml"))
	if err != nil || len(entries) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, golden := range entries {
		t.Run(filepath.Base(golden)+" has no status and no metadata of the source cluster", func(t *testing.T) {
			got := fromFile(t, golden)
			for _, path := range [][]string{
				{"status"}, {"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "generation"},
				{"metadata", "creationTimestamp"}, {"metadata", "managedFields"}, {"metadata", "ownerReferences"},
				{"metadata", "finalizers"}, {"metadata", "selfLink"}, {"spec", "clusterIPs", "0"},
				{"spec", "healthCheckNodePort"}, {"spec", "volumeName"}, {"secrets"},
			} {
				if v, ok := field(got, path...); ok {
					t.Errorf("%v = %v, want it absent", path, v)
				}
			}
			if ip, ok := field(got, "spec", "clusterIP"); ok && ip != "None" {
				t.Errorf("spec.clusterIP = %v, want it absent or None", ip)
			}
			ports, _ := field(got, "spec", "ports")
			list, _ := ports.([]any)
			for i, p := range list {
				if np, ok := p.(map[string]any)["nodePort"]; ok {
					t.Errorf("spec.ports[%d].nodePort = %v, want it absent", i, np)
				}
			}
		})
	}
}

func TestRenderProvenance(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "configmap.yaml"))
	// A copy of a copy: the source carries stale provenance from an earlier mirroring.
	src.SetLabels(map[string]string{
		"app.kubernetes.io/part-of": "buergerkonto",
		LabelSourceSite:             "hh-hamburg",
		LabelSharedService:          "old-service",
		LabelManagedBy:              ManagedByDeich,
	})
	src.SetAnnotations(map[string]string{
		AnnotationSourceResourceVersion: "17",
		AnnotationContentHash:           "0123456789abcdef0123456789abcdef",
	})

	got := mustRender(t, src, activeFor())

	wantLabels := map[string]string{
		"app.kubernetes.io/part-of": "buergerkonto",
		LabelSourceSite:             "sh-kiel",
		LabelSharedService:          "buergerkonto",
		LabelManagedBy:              ManagedByDeich,
	}
	if diff := cmp.Diff(wantLabels, got.GetLabels()); diff != "" {
		t.Errorf("labels mismatch (-want +got):\n%s", diff)
	}
	hash, err := ContentHash(got)
	if err != nil {
		t.Fatal(err)
	}
	wantAnnotations := map[string]string{
		AnnotationSourceResourceVersion: "1410",
		AnnotationContentHash:           hash,
	}
	if diff := cmp.Diff(wantAnnotations, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations mismatch (-want +got):\n%s", diff)
	}
	if len(hash) != 32 {
		t.Errorf("ContentHash() = %q, want 32 hex digits", hash)
	}
}

func TestRenderIsDeterministicAndLeavesItsInputAlone(t *testing.T) {
	overrides := []deichv1alpha1.Override{{
		Role: deichv1alpha1.RoleStandby,
		Patches: []deichv1alpha1.Patch{
			{Patch: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: buergerkonto-web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        env: [{name: READ_ONLY, value: \"true\"}]\n"},
			{Target: &deichv1alpha1.PatchTarget{Kind: "Deployment"}, Patch: `[{"op": "add", "path": "/metadata/labels/tier", "value": "standby"}]`},
		},
	}}
	for _, file := range []string{"deployment.yaml", "service-nodeport.yaml", "statefulset.yaml", "pvc.yaml"} {
		t.Run(file+" renders byte-identical JSON twice and is not modified", func(t *testing.T) {
			src := fromFile(t, filepath.Join("testdata", "strip", file))
			before := src.DeepCopy()

			first := mustJSON(t, mustRender(t, src, standbyFor(deichv1alpha1.StandbyWarm, overrides...)))
			second := mustJSON(t, mustRender(t, src, standbyFor(deichv1alpha1.StandbyWarm, overrides...)))

			if !bytes.Equal(first, second) {
				t.Errorf("two renders differ:\n%s\n%s", first, second)
			}
			if diff := cmp.Diff(before.Object, src.Object); diff != "" {
				t.Errorf("Render modified its input (-before +after):\n%s", diff)
			}
		})
	}
}

func TestRenderedCopiesDoNotShareMemoryWithTheSource(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "deployment.yaml"))
	before := src.DeepCopy()
	got := mustRender(t, src, activeFor())

	containers, _ := field(got, "spec", "template", "spec", "containers")
	containers.([]any)[0].(map[string]any)["image"] = "changed"
	got.Object["spec"].(map[string]any)["selector"].(map[string]any)["matchLabels"].(map[string]any)["x"] = "y"

	if diff := cmp.Diff(before.Object, src.Object); diff != "" {
		t.Errorf("changing the copy changed the source (-before +after):\n%s", diff)
	}
}

func TestContentHash(t *testing.T) {
	base := fromFile(t, filepath.Join("testdata", "strip", "configmap.yaml"))
	hashOf := func(src *unstructured.Unstructured) string {
		t.Helper()
		got := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold))
		return got.GetAnnotations()[AnnotationContentHash]
	}
	baseHash := hashOf(base)

	tests := []struct {
		name     string
		change   func(*unstructured.Unstructured)
		wantSame bool
	}{
		{"is unchanged when only the source's resourceVersion moved", func(u *unstructured.Unstructured) { u.SetResourceVersion("999999") }, true},
		{"is unchanged when only cluster-local fields changed", func(u *unstructured.Unstructured) {
			u.SetUID("other")
			u.SetGeneration(42)
			u.Object["status"] = map[string]any{"anything": "new"}
		}, true},
		{"changes when the data changes", func(u *unstructured.Unstructured) {
			u.Object["data"].(map[string]any)["LOG_LEVEL"] = "debug"
		}, false},
		{"changes when a label changes", func(u *unstructured.Unstructured) {
			u.SetLabels(map[string]string{"app.kubernetes.io/part-of": "other"})
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base.DeepCopy()
			tt.change(src)
			if same := hashOf(src) == baseHash; same != tt.wantSame {
				t.Errorf("hash unchanged = %v, want %v", same, tt.wantSame)
			}
		})
	}

	t.Run("of a rendered copy equals its content-hash annotation", func(t *testing.T) {
		got := mustRender(t, base, standbyFor(deichv1alpha1.StandbyCold))
		h, err := ContentHash(got)
		if err != nil {
			t.Fatal(err)
		}
		if want := got.GetAnnotations()[AnnotationContentHash]; h != want {
			t.Errorf("ContentHash() = %q, want the annotation %q", h, want)
		}
	})
	t.Run("differs between the copies for different sites", func(t *testing.T) {
		a := mustRender(t, base, standbyFor(deichv1alpha1.StandbyCold))
		target := standbyFor(deichv1alpha1.StandbyCold)
		target.SourceSite = "mv-schwerin"
		b := mustRender(t, base, target)
		if a.GetAnnotations()[AnnotationContentHash] == b.GetAnnotations()[AnnotationContentHash] {
			t.Error("copies with different provenance have the same hash")
		}
	})
}

func TestRenderRejectsInvalidTargetsAndSources(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "configmap.yaml"))
	tests := []struct {
		name   string
		src    *unstructured.Unstructured
		target func(*Target)
	}{
		{"a target without role is an error rather than an active copy", src, func(t *Target) { t.Role = "" }},
		{"an unknown standby mode is an error", src, func(t *Target) { t.Role, t.Standby = deichv1alpha1.RoleStandby, "Lukewarm" }},
		{"a target without site is an error", src, func(t *Target) { t.Site = "" }},
		{"a shared service name that is no label value is an error", src, func(t *Target) { t.Service = "a-name-that-is-far-too-long-to-be-a-label-value-in-kubernetes-at-all" }},
		{"a source without name is an error", fromYAML(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n"), func(*Target) {}},
		{"a source without kind is an error", fromYAML(t, "apiVersion: v1\nmetadata: {name: x}\n"), func(*Target) {}},
		{"a source with labels that are not strings is an error", fromYAML(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: {a: 1}}\n"), func(*Target) {}},
		{"a source holding a Go value JSON cannot encode is an error", &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x"}, "data": map[string]any{"c": make(chan int)},
		}}, func(*Target) {}},
		{"no source is an error", nil, func(*Target) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := activeFor()
			tt.target(&target)
			got, err := Render(tt.src, target)
			if err == nil {
				t.Fatalf("Render() = %v, want an error", got)
			}
			var nm *NotMirrorableError
			var pe *PatchError
			if errors.As(err, &nm) || errors.As(err, &pe) {
				t.Errorf("Render() error = %T %v, want a plain error", err, err)
			}
		})
	}
}

func TestRenderAcceptsHandBuiltObjects(t *testing.T) {
	// Objects built in Go, not decoded from JSON, hold int and []string; Render normalizes them
	// (runtime.DeepCopyJSONValue would panic).
	src := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata":   map[string]any{"name": "web", "namespace": "buergerkonto", "labels": map[string]string{"app": "web"}},
		"spec": map[string]any{
			"replicas": 3,
			"template": map[string]any{"spec": map[string]any{"containers": []map[string]any{{"name": "web", "args": []string{"--port", "8080"}}}}},
		},
	}}
	got := mustRender(t, src, standbyFor(deichv1alpha1.StandbyHot))
	want := map[string]any{
		"replicas": int64(3),
		"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "web", "args": []any{"--port", "8080"}}}}},
	}
	if diff := cmp.Diff(want, got.Object["spec"]); diff != "" {
		t.Errorf("spec mismatch (-want +got):\n%s", diff)
	}
	if n, ok := SourceReplicas(got); !ok || n != 3 {
		t.Errorf("SourceReplicas() = %d, %v, want 3, true", n, ok)
	}
}

func TestRenderConcurrently(t *testing.T) {
	// Render shares kyaml's schema and its cache of parsed patches between goroutines; run
	// with -race to check them.
	src := fromFile(t, filepath.Join("testdata", "strip", "deployment.yaml"))
	target := standbyFor(deichv1alpha1.StandbyWarm, deichv1alpha1.Override{Role: deichv1alpha1.RoleStandby, Patches: []deichv1alpha1.Patch{
		{Target: &deichv1alpha1.PatchTarget{Kind: "Deployment"}, Patch: "spec: {minReadySeconds: 5}\n"},
		{Target: &deichv1alpha1.PatchTarget{Kind: "Deployment"}, Patch: `[{"op": "replace", "path": "/spec/replicas", "value": 2}]`},
	}})
	want := mustJSON(t, mustRender(t, src, target))
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				got, err := Render(src, target)
				if err == nil && !bytes.Equal(jsonOf(got), want) {
					err = errors.New("a concurrent render differs")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func jsonOf(obj *unstructured.Unstructured) []byte {
	b, _ := json.Marshal(obj.Object)
	return b
}
