package render

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// cronJob is a CronJob as sh-kiel runs it.
const cronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: letters
  namespace: buergerkonto
  resourceVersion: "55"
  labels: {app.kubernetes.io/part-of: buergerkonto}
spec:
  schedule: "0 6 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: send, image: letters:1}]
`

// standbyOverrides are overrides of every kind the tests render: for the Standby role, a
// strategic-merge patch and a JSON 6902 patch per kind (READ_ONLY switches, other images,
// removed fields); for mv-schwerin as Active, a label; for mv-schwerin in either role, an
// annotation.
func standbyOverrides() []deichv1alpha1.Override {
	kind := func(k string) deichv1alpha1.PatchTarget { return deichv1alpha1.PatchTarget{Kind: k} }
	return []deichv1alpha1.Override{
		override("", standby,
			targeted(kind("Deployment"), "spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        env: [{name: READ_ONLY, value: \"true\"}]\n"),
			targeted(kind("Deployment"), `[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "registry.example.de/buergerkonto/web:1.8.2-ro"}]`),
			targeted(kind("DaemonSet"), "spec:\n  template:\n    spec:\n      containers:\n      - name: shipper\n        env: [{name: READ_ONLY, value: \"true\"}]\n"),
			targeted(kind("DaemonSet"), `[{"op": "add", "path": "/spec/template/spec/tolerations", "value": [{"operator": "Exists"}]}]`),
			targeted(kind("Job"), "spec: {backoffLimit: 0}\n"),
			targeted(kind("Job"), `[{"op": "remove", "path": "/spec/parallelism"}]`),
			targeted(kind("CronJob"), "spec: {schedule: \"0 7 * * *\"}\n"),
			targeted(kind("CronJob"), `[{"op": "add", "path": "/spec/jobTemplate/spec/template/spec/containers/0/env", "value": [{"name": "READ_ONLY", "value": "true"}]}]`),
			targeted(kind("ConfigMap"), "data: {FEATURE_READ_ONLY: \"true\"}\n"),
			targeted(kind("ConfigMap"), `[{"op": "remove", "path": "/data/LOG_LEVEL"}]`),
		),
		override(schwerin, active, targeted(deichv1alpha1.PatchTarget{}, "metadata: {labels: {serving: \"yes\"}}\n")),
		override(schwerin, "", targeted(deichv1alpha1.PatchTarget{}, "metadata: {annotations: {buergerkonto.example.de/site: mv-schwerin}}\n")),
	}
}

// withoutAnnotations returns a copy of obj without the annotations keys, and without
// annotations at all when none is left.
func withoutAnnotations(obj *unstructured.Unstructured, keys ...string) *unstructured.Unstructured {
	c := obj.DeepCopy()
	annotations := c.GetAnnotations()
	for _, k := range keys {
		delete(annotations, k)
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	} else {
		c.SetAnnotations(annotations)
	}
	return c
}

// withoutProvenance drops the annotations ActiveForm leaves out of every result: the
// source's resourceVersion and the hash, which describe a rendering, not an object.
func withoutProvenance(obj *unstructured.Unstructured) *unstructured.Unstructured {
	return withoutAnnotations(obj, AnnotationSourceResourceVersion, AnnotationContentHash)
}

func mustActiveForm(t testing.TB, live *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	got, err := ActiveForm(live)
	if err != nil {
		t.Fatalf("ActiveForm: %v", err)
	}
	return got
}

// sources are the objects of the golden files and a CronJob.
func sources(t *testing.T) map[string]*unstructured.Unstructured {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "strip", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{"cronjob": fromYAML(t, cronJob)}
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.yaml") {
			continue
		}
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = fromFile(t, f)
	}
	return out
}

var modes = []deichv1alpha1.StandbyMode{deichv1alpha1.StandbyCold, deichv1alpha1.StandbyWarm, deichv1alpha1.StandbyHot}

func TestActiveFormOfAStandbyCopyIsTheActiveCopy(t *testing.T) {
	for name, src := range sources(t) {
		for _, mode := range modes {
			for _, withOverrides := range []bool{false, true} {
				target := standbyFor(mode)
				desc := name + " in " + string(mode) + " standby form"
				if withOverrides {
					target.Overrides = standbyOverrides()
					desc += " with overrides for both roles"
				}
				t.Run(desc+" becomes the copy rendered for the Active role", func(t *testing.T) {
					standbyCopy := mustRender(t, src, target)
					activeTarget := target
					activeTarget.Role = deichv1alpha1.RoleActive
					want := withoutProvenance(mustRender(t, src, activeTarget))

					got := mustActiveForm(t, standbyCopy)
					if diff := cmp.Diff(want.Object, got.Object); diff != "" {
						t.Errorf("ActiveForm() differs from the active copy (-active +got):\n%s", diff)
					}
				})
			}
		}
	}
}

func TestAHorizontalPodAutoscalerKeepsOneReplicaAtAColdOrWarmStandby(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "hpa.yaml"))
	for _, tc := range []struct {
		mode     deichv1alpha1.StandbyMode
		min, max int64
	}{
		{deichv1alpha1.StandbyCold, 1, 1},
		{deichv1alpha1.StandbyWarm, 1, 1},
		{deichv1alpha1.StandbyHot, 3, 12},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			standbyCopy := mustRender(t, src, standbyFor(tc.mode))
			gotMin, _ := field(standbyCopy, "spec", "minReplicas")
			gotMax, _ := field(standbyCopy, "spec", "maxReplicas")
			if gotMin != tc.min || gotMax != tc.max {
				t.Errorf("standby copy scales between %v and %v, want %d and %d", gotMin, gotMax, tc.min, tc.max)
			}
			active := mustActiveForm(t, standbyCopy)
			if m, _ := field(active, "spec", "minReplicas"); m != int64(3) {
				t.Errorf("promoted minReplicas = %v, want 3", m)
			}
			if m, _ := field(active, "spec", "maxReplicas"); m != int64(12) {
				t.Errorf("promoted maxReplicas = %v, want 12", m)
			}
		})
	}
}

func TestStandbyOverridesAreUndoneOnPromotion(t *testing.T) {
	// The spelled-out case of the property above: what a standby override did is gone, what
	// the standby form did is undone, what an active override does is there.
	src := fromFile(t, filepath.Join("testdata", "strip", "deployment.yaml"))
	standbyCopy := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold, standbyOverrides()...))
	if env, _ := field(standbyCopy, "spec", "template", "spec", "containers"); !strings.Contains(string(mustJSONValue(t, env)), "READ_ONLY") {
		t.Fatalf("the standby copy lacks READ_ONLY: %s", mustJSONValue(t, env))
	}

	got := mustActiveForm(t, standbyCopy)

	if r, _ := field(got, "spec", "replicas"); r != int64(3) {
		t.Errorf("spec.replicas = %v, want 3", r)
	}
	containers, _ := field(got, "spec", "template", "spec", "containers")
	wantContainers := []any{map[string]any{
		"name": "web", "image": "registry.example.de/buergerkonto/web:1.8.2",
		"ports":     []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}},
		"env":       []any{map[string]any{"name": "TZ", "value": "Europe/Berlin"}},
		"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
	}}
	if diff := cmp.Diff(wantContainers, containers); diff != "" {
		t.Errorf("containers mismatch (-want +got):\n%s", diff)
	}
	if l := got.GetLabels()["serving"]; l != "yes" {
		t.Errorf("label serving = %q, want the active override's yes", l)
	}
	wantAnnotations := map[string]string{
		"buergerkonto.example.de/owner": "team-konto",
		"buergerkonto.example.de/site":  "mv-schwerin",
	}
	if diff := cmp.Diff(wantAnnotations, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations mismatch (-want +got):\n%s", diff)
	}
}

func mustJSONValue(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestActivePatchRecordsTheDifferenceOnly(t *testing.T) {
	readOnly := override("", standby, patchOf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: buergerkonto-web}\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        env: [{name: READ_ONLY, value: \"true\"}]\n"))
	tests := []struct {
		name   string
		src    string
		target Target
		want   string
	}{
		{
			"a Cold Deployment records its replicas, the record to drop and, since the override changed an element, the whole list of containers",
			standbyDeployment, standbyFor(deichv1alpha1.StandbyCold, readOnly),
			`{"metadata":{"annotations":{"resilience.deich.io/source-replicas":null}},"spec":{"replicas":3,"template":{"spec":{"containers":[` +
				`{"env":[{"name":"TZ","value":"Europe/Berlin"}],"image":"web:1","name":"web"},{"image":"proxy:1","name":"proxy"}]}}}}`,
		},
		{
			"a Hot Deployment without overrides records only the record to drop",
			standbyDeployment, standbyFor(deichv1alpha1.StandbyHot),
			`{"metadata":{"annotations":{"resilience.deich.io/source-replicas":null}}}`,
		},
		{
			"a Job that was not suspended loses spec.suspend, as its active copy has none",
			"apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec: {template: {spec: {restartPolicy: Never}}}\n", standbyFor(deichv1alpha1.StandbyWarm),
			`{"metadata":{"annotations":{"resilience.deich.io/standby-suspended":null}},"spec":{"suspend":null}}`,
		},
		{
			"a ConfigMap without overrides records an empty patch: it is the same in both forms",
			"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, resourceVersion: \"4\"}\ndata: {a: b}\n", standbyFor(deichv1alpha1.StandbyCold),
			`{}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, fromYAML(t, tt.src), tt.target)
			if diff := cmp.Diff(tt.want, got.GetAnnotations()[AnnotationActivePatch]); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", AnnotationActivePatch, diff)
			}
		})
	}

	t.Run("a copy for the Active role records no patch", func(t *testing.T) {
		got := mustRender(t, fromYAML(t, standbyDeployment), activeFor())
		if p, ok := got.GetAnnotations()[AnnotationActivePatch]; ok {
			t.Errorf("%s = %q on an active copy", AnnotationActivePatch, p)
		}
	})
	t.Run("the content hash covers the patch", func(t *testing.T) {
		got := mustRender(t, fromYAML(t, standbyDeployment), standbyFor(deichv1alpha1.StandbyCold))
		forged := withoutAnnotations(got, AnnotationContentHash)
		forged.Object["metadata"].(map[string]any)["annotations"].(map[string]any)[AnnotationActivePatch] = `{}`
		h, err := ContentHash(forged)
		if err != nil {
			t.Fatal(err)
		}
		if h == got.GetAnnotations()[AnnotationContentHash] {
			t.Error("another patch gives the same hash")
		}
	})
}

func TestActivePatchIsLimitedTo64KiB(t *testing.T) {
	// A standby override that removes a large value makes the patch carry it back. The patch
	// is {"data":{"blob":"…"}}: 20 bytes around the value.
	render := func(size int) (*unstructured.Unstructured, error) {
		src := fromYAML(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: buergerkonto}\n")
		src.Object["data"] = map[string]any{"blob": strings.Repeat("x", size)}
		return Render(src, standbyFor(deichv1alpha1.StandbyCold,
			override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "ConfigMap"}, `[{"op": "remove", "path": "/data/blob"}]`))))
	}
	t.Run("a patch of exactly 64 KiB is recorded", func(t *testing.T) {
		got, err := render(64<<10 - 20)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		if n := len(got.GetAnnotations()[AnnotationActivePatch]); n != 64<<10 {
			t.Errorf("patch of %d bytes, want %d", n, 64<<10)
		}
		promoted := mustActiveForm(t, got)
		if v, _ := field(promoted, "data", "blob"); v != strings.Repeat("x", 64<<10-20) {
			t.Error("the active form lacks the removed value")
		}
	})
	t.Run("a patch one byte larger fails the render and says why", func(t *testing.T) {
		got, err := render(64<<10 - 19)
		if err == nil {
			t.Fatalf("Render() = %v, want an error", got)
		}
		if !strings.Contains(err.Error(), "differs from the standby form by more than 64 KiB") {
			t.Errorf("error %q does not say the active form is more than 64 KiB away", err)
		}
	})
}

func TestRenderingAStandbyCopyAgainGivesTheSameCopy(t *testing.T) {
	// A copy is rendered again when it is mirrored onwards, or when a fenced object is
	// rendered. These overrides cannot be undone by patching the standby copy again: the
	// JSON 6902 patch would append READ_ONLY a second time, TZ is gone, and the image is
	// replaced. The recorded active form is the way back.
	irreversible := override("", standby,
		targeted(deichv1alpha1.PatchTarget{Kind: "Deployment|Job|CronJob"}, `[{"op": "add", "path": "/metadata/labels/read-only", "value": "true"}]`),
		targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, `[{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "READ_ONLY", "value": "true"}}]`),
		targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, "spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        env:\n        - {name: TZ, $patch: delete}\n"),
		targeted(deichv1alpha1.PatchTarget{Kind: "Deployment|Job"}, `[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "busybox:read-only"}]`),
		targeted(deichv1alpha1.PatchTarget{Kind: "CronJob"}, `[{"op": "remove", "path": "/spec/schedule"}]`),
	)
	srcs := sources(t)
	for _, name := range []string{"deployment", "job", "cronjob", "daemonset", "configmap"} {
		for _, mode := range modes {
			t.Run(name+" in "+string(mode)+" standby form renders the same copy again", func(t *testing.T) {
				target := standbyFor(mode, irreversible, override(schwerin, "", targeted(deichv1alpha1.PatchTarget{}, "metadata: {annotations: {buergerkonto.example.de/site: mv-schwerin}}\n")))
				once := mustRender(t, srcs[name], target)
				twice := mustRender(t, once, target)
				// The copy has no resourceVersion, so only that annotation may differ.
				want := withoutAnnotations(once, AnnotationSourceResourceVersion)
				if diff := cmp.Diff(want.Object, twice.Object); diff != "" {
					t.Errorf("second rendering differs (-once +twice):\n%s", diff)
				}
			})
		}
	}

	t.Run("an override for the Active role at the copy's site becomes part of its source", func(t *testing.T) {
		// The way back the copy records leads to its active form, overrides included; what
		// the source was before them is not recorded. So the second rendering starts from
		// the label the Active override set.
		target := standbyFor(deichv1alpha1.StandbyCold, override(schwerin, active, targeted(deichv1alpha1.PatchTarget{}, "metadata: {labels: {serving: \"yes\"}}\n")))
		once := mustRender(t, srcs["configmap"], target)
		twice := mustRender(t, once, target)
		if _, ok := once.GetLabels()["serving"]; ok {
			t.Error("the first standby copy has the Active override's label")
		}
		if l := twice.GetLabels()["serving"]; l != "yes" {
			t.Errorf("label serving = %q on the second rendering, want yes", l)
		}
	})
	t.Run("a copy rendered before the active-form patch existed renders as before", func(t *testing.T) {
		for _, name := range []string{"deployment", "job", "daemonset"} {
			once := mustRender(t, srcs[name], standbyFor(deichv1alpha1.StandbyCold))
			old := withoutAnnotations(once, AnnotationActivePatch, AnnotationContentHash)
			twice := mustRender(t, old, standbyFor(deichv1alpha1.StandbyCold))
			want := withoutAnnotations(once, AnnotationSourceResourceVersion)
			if diff := cmp.Diff(want.Object, twice.Object); diff != "" {
				t.Errorf("%s: second rendering differs (-once +twice):\n%s", name, diff)
			}
		}
	})
}

// asLive returns obj as an API server would return it after applying it over prev (nil for
// a new object): prev's fields with obj's applied over them (objects merged, lists replaced,
// as a JSON merge patch does), metadata and status of the server, and defaults in the pod
// template.
func asLive(t *testing.T, prev, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	base := map[string]any{}
	if prev != nil {
		base = prev.DeepCopy().Object
	}
	live := &unstructured.Unstructured{Object: applyMergePatch(base, obj.DeepCopy().Object).(map[string]any)}
	live.SetUID("8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")
	live.SetResourceVersion("912")
	live.SetGeneration(7)
	live.Object["metadata"].(map[string]any)["creationTimestamp"] = "2026-03-04T10:00:00Z"
	live.Object["metadata"].(map[string]any)["managedFields"] = []any{map[string]any{"manager": "deich", "operation": "Apply"}}
	live.Object["status"] = map[string]any{"observedGeneration": int64(7)}
	if podSpec, ok := nestedMap(live.Object, "spec", "template", "spec"); ok {
		podSpec["securityContext"] = map[string]any{}
		if containers, ok := podSpec["containers"].([]any); ok {
			for _, c := range containers {
				c.(map[string]any)["terminationMessagePath"] = "/dev/termination-log"
			}
		}
	}
	return live
}

func TestActiveFormOfALiveCopy(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "deployment.yaml"))
	live := asLive(t, nil, mustRender(t, src, standbyFor(deichv1alpha1.StandbyWarm, standbyOverrides()...)))
	before := live.DeepCopy()

	got := mustActiveForm(t, live)

	t.Run("is the active form", func(t *testing.T) {
		if r, _ := field(got, "spec", "replicas"); r != int64(3) {
			t.Errorf("spec.replicas = %v, want 3", r)
		}
		env, _ := field(got, "spec", "template", "spec", "containers")
		if s := string(mustJSONValue(t, env)); strings.Contains(s, "READ_ONLY") || strings.Contains(s, "-ro") {
			t.Errorf("containers keep the standby overrides: %s", s)
		}
	})
	t.Run("keeps what the server added outside the patched fields", func(t *testing.T) {
		if v, ok := field(got, "spec", "template", "spec", "securityContext"); !ok {
			t.Errorf("spec.template.spec.securityContext = %v, want it kept", v)
		}
	})
	t.Run("has nothing the server owns", func(t *testing.T) {
		for _, path := range [][]string{
			{"status"}, {"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "generation"},
			{"metadata", "creationTimestamp"}, {"metadata", "managedFields"},
		} {
			if v, ok := field(got, path...); ok {
				t.Errorf("%v = %v, want it absent", path, v)
			}
		}
	})
	t.Run("drops Deich's annotations and keeps the provenance labels", func(t *testing.T) {
		for k := range got.GetAnnotations() {
			if strings.HasPrefix(k, "resilience.deich.io/") {
				t.Errorf("annotation %s kept", k)
			}
		}
		for _, k := range provenanceLabels {
			if got.GetLabels()[k] != live.GetLabels()[k] {
				t.Errorf("label %s = %q, want %q", k, got.GetLabels()[k], live.GetLabels()[k])
			}
		}
		if InStandbyForm(got) {
			t.Error("InStandbyForm() of the active form is true")
		}
	})
	t.Run("does not modify live and is deterministic", func(t *testing.T) {
		if diff := cmp.Diff(before.Object, live.Object); diff != "" {
			t.Errorf("ActiveForm modified live (-before +after):\n%s", diff)
		}
		if a, b := mustJSON(t, got), mustJSON(t, mustActiveForm(t, live)); !bytes.Equal(a, b) {
			t.Errorf("two calls differ:\n%s\n%s", a, b)
		}
	})
}

func TestActiveFormLiftsAFence(t *testing.T) {
	// sh-kiel fences its own Deployment: renders it for itself as Cold standby and applies
	// that over the object. Lifting the fence must give back the object sh-kiel rendered for
	// itself as active, with the standby override for sh-kiel gone and the user's annotations
	// and labels kept.
	fence := Target{
		SourceSite: kiel, Site: kiel, Role: deichv1alpha1.RoleStandby, Standby: deichv1alpha1.StandbyCold, Service: "buergerkonto",
		Overrides: []deichv1alpha1.Override{override(kiel, standby, targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"},
			`[{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "READ_ONLY", "value": "true"}}]`))},
	}
	original := fromFile(t, filepath.Join("testdata", "strip", "deployment.yaml"))
	delete(original.Object, "status")
	fenced := asLive(t, original, mustRender(t, original, fence))
	if r, _ := field(fenced, "spec", "replicas"); r != int64(0) {
		t.Fatalf("fenced spec.replicas = %v, want 0", r)
	}
	if !InStandbyForm(fenced) {
		t.Fatal("InStandbyForm() of the fenced object is false")
	}

	got := mustActiveForm(t, fenced)

	unfenced := fence
	unfenced.Role = deichv1alpha1.RoleActive
	want := withoutProvenance(mustRender(t, original, unfenced))
	// The server's defaults outside what the patch replaced stay.
	want.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["securityContext"] = map[string]any{}
	if diff := cmp.Diff(want.Object, got.Object); diff != "" {
		t.Errorf("ActiveForm() of the fenced object (-want +got):\n%s", diff)
	}
}

func TestActiveFormOfObjectsWithoutThePatch(t *testing.T) {
	tests := []struct {
		name  string
		live  string
		path  []string
		want  any
		found bool
	}{
		{"a copy rendered before the patch existed gets its recorded replicas back",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, annotations: {resilience.deich.io/source-replicas: \"4\"}}\nspec: {replicas: 0}\n",
			[]string{"spec", "replicas"}, int64(4), true},
		{"a DaemonSet loses the standby node selector",
			"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d, annotations: {resilience.deich.io/standby-node-selector: \"true\"}}\nspec: {template: {spec: {nodeSelector: {resilience.deich.io/standby: \"true\"}}}}\n",
			[]string{"spec", "template", "spec", "nodeSelector"}, nil, false},
		{"a suspended Job is resumed",
			"apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, annotations: {resilience.deich.io/standby-suspended: \"true\"}}\nspec: {suspend: true}\n",
			[]string{"spec", "suspend"}, false, true},
		{"an object in its active form keeps its fields",
			"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, uid: x, labels: {resilience.deich.io/source-site: sh-kiel}}\nspec: {replicas: 2}\n",
			[]string{"spec", "replicas"}, int64(2), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustActiveForm(t, fromYAML(t, tt.live))
			v, found := field(got, tt.path...)
			if found != tt.found || !cmp.Equal(v, tt.want) {
				t.Errorf("%v = %v (found %v), want %v (found %v)", tt.path, v, found, tt.want, tt.found)
			}
			if len(got.GetAnnotations()) > 0 {
				t.Errorf("annotations %v, want none", got.GetAnnotations())
			}
		})
	}
}

func TestActiveFormStripsLikeRender(t *testing.T) {
	// A live Service carries the addresses and ports its cluster allocated; applying them is
	// the cluster's business, not Deich's.
	live := fromFile(t, filepath.Join("testdata", "strip", "service-nodeport.yaml"))
	got := mustActiveForm(t, live)
	want := withoutProvenance(mustRender(t, live, activeFor()))
	for _, k := range provenanceLabels {
		unstructured.RemoveNestedField(want.Object, "metadata", "labels", k)
	}
	if len(want.GetLabels()) == 0 {
		unstructured.RemoveNestedField(want.Object, "metadata", "labels")
	}
	if diff := cmp.Diff(want.Object, got.Object); diff != "" {
		t.Errorf("ActiveForm() of a Service that was never a copy (-stripped +got):\n%s", diff)
	}
}

func TestMalformedActiveFormPatches(t *testing.T) {
	withPatch := func(patch string) *unstructured.Unstructured {
		obj := fromYAML(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: buergerkonto}\nspec: {replicas: 0}\n")
		obj.SetAnnotations(map[string]string{AnnotationActivePatch: patch})
		return obj
	}
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
	}{
		{"a patch that is not JSON", withPatch(`{"spec":`)},
		{"a patch that is null", withPatch(`null`)},
		{"a patch that is a list", withPatch(`[{"op": "remove", "path": "/spec"}]`)},
		{"a patch that renames the object", withPatch(`{"metadata": {"name": "other"}}`)},
		{"a patch that moves the object", withPatch(`{"metadata": {"namespace": null}}`)},
		{"a patch that retypes the object", withPatch(`{"kind": "StatefulSet"}`)},
		{"a patch that removes metadata", withPatch(`{"metadata": null}`)},
		{"a patch that makes a label a number", withPatch(`{"metadata": {"labels": {"a": 1}}}`)},
		{"an object without metadata", fromYAML(t, "apiVersion: v1\nkind: ConfigMap\n")},
		{"no object", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error of ActiveForm and Render", func(t *testing.T) {
			var before *unstructured.Unstructured
			if tt.obj != nil {
				before = tt.obj.DeepCopy()
			}
			if got, err := ActiveForm(tt.obj); err == nil {
				t.Errorf("ActiveForm() = %v, want an error", got)
			}
			if got, err := Render(tt.obj, standbyFor(deichv1alpha1.StandbyCold)); err == nil {
				t.Errorf("Render() = %v, want an error", got)
			}
			if tt.obj != nil {
				if diff := cmp.Diff(before.Object, tt.obj.Object); diff != "" {
					t.Errorf("input modified (-before +after):\n%s", diff)
				}
			}
		})
	}
}

func TestInStandbyForm(t *testing.T) {
	src := fromYAML(t, standbyDeployment)
	configMap := fromYAML(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want bool
	}{
		{"a Deployment copy for the Standby role is", mustRender(t, src, standbyFor(deichv1alpha1.StandbyHot)), true},
		{"a ConfigMap copy for the Standby role is, though its forms are the same", mustRender(t, configMap, standbyFor(deichv1alpha1.StandbyCold)), true},
		{"a copy for the Active role is not", mustRender(t, src, activeFor()), false},
		{"a copy rendered before the patch existed is, by its recorded replicas", fromYAML(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, annotations: {resilience.deich.io/source-replicas: \"3\"}}\n"), true},
		{"a suspended Job is, by its record", fromYAML(t, "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j, annotations: {resilience.deich.io/standby-suspended: \"true\"}}\n"), true},
		{"a DaemonSet is, by its record", fromYAML(t, "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d, annotations: {resilience.deich.io/standby-node-selector: \"true\"}}\n"), true},
		{"a hand-built object with the patch is", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationActivePatch: "{}"}}}}, true},
		{"an object without annotations is not", configMap, false},
		{"an object whose metadata is not an object is not", &unstructured.Unstructured{Object: map[string]any{"metadata": "x"}}, false},
		{"no object is not", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name+" in standby form", func(t *testing.T) {
			if got := InStandbyForm(tt.obj); got != tt.want {
				t.Errorf("InStandbyForm() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSameInBothForms(t *testing.T) {
	deployment := fromYAML(t, standbyDeployment)
	configMap := fromYAML(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {LOG_LEVEL: info}\n")
	readOnly := override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "ConfigMap"}, "data: {FEATURE_READ_ONLY: \"true\"}\n"))
	servingLabel := override(schwerin, active, targeted(deichv1alpha1.PatchTarget{}, "metadata: {labels: {serving: \"yes\"}}\n"))
	bothRoles := override(schwerin, "", targeted(deichv1alpha1.PatchTarget{}, "metadata: {annotations: {buergerkonto.example.de/site: mv-schwerin}}\n"))
	handBuilt := func(annotations map[string]string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"annotations": annotations}}}
	}
	tests := []struct {
		name string
		obj  *unstructured.Unstructured
		want bool
	}{
		{"a ConfigMap copy for the Standby role", mustRender(t, configMap, standbyFor(deichv1alpha1.StandbyCold)), true},
		{"a ConfigMap copy with an override for both roles", mustRender(t, configMap, standbyFor(deichv1alpha1.StandbyCold, bothRoles)), true},
		{"a ConfigMap copy with a Standby override", mustRender(t, configMap, standbyFor(deichv1alpha1.StandbyCold, readOnly)), false},
		{"a ConfigMap copy with an Active override", mustRender(t, configMap, standbyFor(deichv1alpha1.StandbyCold, servingLabel)), false},
		{"a Deployment copy in Hot standby", mustRender(t, deployment, standbyFor(deichv1alpha1.StandbyHot)), false},
		{"a Deployment copy in Cold standby", mustRender(t, deployment, standbyFor(deichv1alpha1.StandbyCold)), false},
		{"a copy for the Active role", mustRender(t, configMap, activeFor()), false},
		{"a hand-built object with the empty patch", handBuilt(map[string]string{AnnotationActivePatch: "{}"}), true},
		{"the empty patch and a record of replicas", handBuilt(map[string]string{AnnotationActivePatch: "{}", AnnotationSourceReplicas: "3"}), false},
		{"an empty patch written otherwise", handBuilt(map[string]string{AnnotationActivePatch: "{ }"}), false},
		{"an object without annotations", configMap, false},
		{"no object", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameInBothForms(tt.obj); got != tt.want {
				t.Errorf("SameInBothForms() = %v, want %v", got, tt.want)
			}
		})
	}
}

func parseJSON(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := utiljson.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return v
}

func TestApplyMergePatchFollowsRFC7386(t *testing.T) {
	// The examples of RFC 7386, appendix A.
	for _, tt := range []struct{ target, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	} {
		t.Run(tt.patch+" on "+tt.target, func(t *testing.T) {
			got := applyMergePatch(parseJSON(t, tt.target), parseJSON(t, tt.patch))
			if diff := cmp.Diff(parseJSON(t, tt.want), got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergePatch(t *testing.T) {
	tests := []struct {
		name, from, to, want string
		// lossy says to has nulls that a merge patch turns into missing fields.
		lossy bool
	}{
		{"of equal objects is empty", `{"a":{"b":[1,{"c":2}]}}`, `{"a":{"b":[1,{"c":2}]}}`, `{}`, false},
		{"removes with null and adds new fields", `{"a":1,"b":2}`, `{"b":2,"c":3}`, `{"a":null,"c":3}`, false},
		{"descends into objects", `{"a":{"b":1,"c":1}}`, `{"a":{"b":1,"c":2}}`, `{"a":{"c":2}}`, false},
		{"replaces a list whole when one element differs", `{"l":[{"n":"a","v":1},{"n":"b"}]}`, `{"l":[{"n":"a","v":2},{"n":"b"}]}`, `{"l":[{"n":"a","v":2},{"n":"b"}]}`, false},
		{"replaces an object by a scalar and back", `{"a":{"b":1},"c":"x"}`, `{"a":"s","c":{"d":1}}`, `{"a":"s","c":{"d":1}}`, false},
		{"keeps integers beyond 2^53 exact", `{"n":1}`, `{"n":9007199254740993}`, `{"n":9007199254740993}`, false},
		{"can only remove a field that becomes null", `{"a":1}`, `{"a":null}`, `{"a":null}`, true},
		{"leaves out a new null field, which a patch cannot add", `{}`, `{"a":null}`, `{}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := parseJSON(t, tt.from).(map[string]any)
			to := parseJSON(t, tt.to).(map[string]any)
			patch := mergePatch(from, to)
			if got := string(mustJSONValue(t, patch)); got != tt.want {
				t.Errorf("mergePatch() = %s, want %s", got, tt.want)
			}
			// The patch, serialized and applied, turns from into to.
			applied := applyMergePatch(parseJSON(t, tt.from), parseJSON(t, string(mustJSONValue(t, patch))))
			want := any(to)
			if tt.lossy {
				want = dropNulls(to)
			}
			if diff := cmp.Diff(want, applied); diff != "" {
				t.Errorf("applying the patch (-to +got):\n%s", diff)
			}
		})
	}
}

// dropNulls returns v without the null fields of its objects, the one difference merge
// patches leave.
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = dropNulls(e)
		}
		return out
	default:
		return v
	}
}
