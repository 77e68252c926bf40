package render

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

const (
	schwerin = "mv-schwerin"
	kiel     = "sh-kiel"
	active   = deichv1alpha1.RoleActive
	standby  = deichv1alpha1.RoleStandby
)

func override(site string, role deichv1alpha1.Role, patches ...deichv1alpha1.Patch) deichv1alpha1.Override {
	return deichv1alpha1.Override{Site: site, Role: role, Patches: patches}
}

func patchOf(text string) deichv1alpha1.Patch { return deichv1alpha1.Patch{Patch: text} }

func targeted(target deichv1alpha1.PatchTarget, text string) deichv1alpha1.Patch {
	return deichv1alpha1.Patch{Target: &target, Patch: text}
}

// standbyDeployment is a Deployment with two containers, as sh-kiel runs it.
const standbyDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: buergerkonto-web
  namespace: buergerkonto
  resourceVersion: "7"
  labels: {app.kubernetes.io/part-of: buergerkonto, tier: frontend}
  annotations: {buergerkonto.example.de/owner: team-konto}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: web:1
        env: [{name: TZ, value: Europe/Berlin}]
      - name: proxy
        image: proxy:1
`

func TestOverridesApply(t *testing.T) {
	ingress := fromFile(t, filepath.Join("testdata", "strip", "ingress.yaml"))
	tests := []struct {
		name     string
		src      *unstructured.Unstructured
		target   Target
		path     []string
		want     any
		wantMore []fieldWant // more fields to check
	}{
		{
			name: "a site override's strategic-merge patch naming the Deployment merges env by container name",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyHot, override(schwerin, "", patchOf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: buergerkonto-web}
spec:
  template:
    spec:
      containers:
      - name: web
        env: [{name: STATE, value: MV}]
`))),
			path: []string{"spec", "template", "spec", "containers"},
			want: []any{
				map[string]any{"name": "web", "image": "web:1", "env": []any{
					map[string]any{"name": "STATE", "value": "MV"},
					map[string]any{"name": "TZ", "value": "Europe/Berlin"},
				}},
				map[string]any{"name": "proxy", "image": "proxy:1"},
			},
		},
		{
			name: "a site override's JSON 6902 patch targeted by kind and name replaces the Ingress host",
			src:  ingress,
			target: standbyFor(deichv1alpha1.StandbyCold, override(schwerin, "", targeted(
				deichv1alpha1.PatchTarget{Group: "networking.k8s.io", Kind: "Ingress", Name: "buergerkonto"},
				"- op: replace\n  path: /spec/rules/0/host\n  value: buergerkonto.mv.example.de\n- op: replace\n  path: /spec/tls/0/hosts/0\n  value: buergerkonto.mv.example.de\n"))),
			path: []string{"spec", "rules", "0", "host"},
			want: "buergerkonto.mv.example.de",
			wantMore: []fieldWant{
				{[]string{"spec", "tls", "0", "hosts", "0"}, "buergerkonto.mv.example.de"},
				{[]string{"spec", "rules", "0", "http", "paths", "0", "backend", "service", "name"}, "buergerkonto-web"},
			},
		},
		{
			name: "a role override's strategic-merge patch targeted by label selector applies at the standby",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{LabelSelector: "tier=frontend"},
				"spec:\n  template:\n    spec:\n      containers:\n      - name: proxy\n        image: maintenance-page:1\n"))),
			path: []string{"spec", "template", "spec", "containers"},
			want: []any{
				map[string]any{"name": "proxy", "image": "maintenance-page:1"},
				map[string]any{"name": "web", "image": "web:1", "env": []any{map[string]any{"name": "TZ", "value": "Europe/Berlin"}}},
			},
		},
		{
			name: "a role override's JSON 6902 patch targeted by kind adds an env var at the standby, as docs/api.md shows",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Group: "apps", Kind: "Deployment", Name: "buergerkonto-web"},
				"- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {name: READ_ONLY, value: \"true\"}\n"))),
			path: []string{"spec", "template", "spec", "containers", "0", "env"},
			want: []any{
				map[string]any{"name": "TZ", "value": "Europe/Berlin"},
				map[string]any{"name": "READ_ONLY", "value": "true"},
			},
		},
		{
			name: "a role override may scale the standby: overrides apply after the standby form",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Kind: "Deployment"}, `[{"op": "replace", "path": "/spec/replicas", "value": 2}]`))),
			path:     []string{"spec", "replicas"},
			want:     int64(2),
			wantMore: []fieldWant{{[]string{"metadata", "annotations", AnnotationSourceReplicas}, "3"}},
		},
		{
			name: "a role override for Active applies to the active copy only",
			src:  fromYAML(t, standbyDeployment),
			target: func() Target {
				t := activeFor()
				t.Overrides = []deichv1alpha1.Override{override("", active, patchOf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: buergerkonto-web}\nspec: {minReadySeconds: 10}\n"))}
				return t
			}(),
			path: []string{"spec", "minReadySeconds"},
			want: int64(10),
		},
		{
			name: "a target name is an anchored regular expression, as in kustomize",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Name: "buergerkonto-.*"}, "metadata: {labels: {matched: \"yes\"}}\n"))),
			path: []string{"metadata", "labels", "matched"},
			want: "yes",
		},
		{
			name: "a target by annotation selector applies",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{AnnotationSelector: "buergerkonto.example.de/owner in (team-konto)"}, "metadata: {labels: {matched: \"yes\"}}\n"))),
			path: []string{"metadata", "labels", "matched"},
			want: "yes",
		},
		{
			name: "overrides apply in order, so a later one wins",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold,
				override(schwerin, "", targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, "spec: {minReadySeconds: 5}\n")),
				override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, "spec: {minReadySeconds: 30}\n"))),
			path: []string{"spec", "minReadySeconds"},
			want: int64(30),
		},
		{
			name: "a strategic-merge patch parses as YAML 1.2, as kustomize parses it: yes stays a string",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Kind: "Deployment"}, "metadata: {annotations: {readonly: yes}}\n"))),
			path: []string{"metadata", "annotations", "readonly"},
			want: "yes",
		},
		{
			name: "a strategic-merge patch may delete a list element with $patch: delete",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Kind: "Deployment"}, "spec:\n  template:\n    spec:\n      containers:\n      - {name: proxy, $patch: delete}\n"))),
			path: []string{"spec", "template", "spec", "containers"},
			want: []any{map[string]any{"name": "web", "image": "web:1", "env": []any{map[string]any{"name": "TZ", "value": "Europe/Berlin"}}}},
		},
		{
			name: "a strategic-merge patch of a custom resource merges objects, deletes null fields and replaces lists",
			src:  fromYAML(t, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: buergerkonto}\nspec:\n  settings: {a: 1, b: 2}\n  items: [{name: x, v: 1}, {name: y, v: 2}]\n"),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Kind: "Widget"}, "spec:\n  settings: {a: null, c: 3}\n  items: [{name: y, v: 3}]\n"))),
			path: []string{"spec"},
			want: map[string]any{"settings": map[string]any{"b": int64(2), "c": int64(3)}, "items": []any{map[string]any{"name": "y", "v": int64(3)}}},
		},
		{
			name: "a targeted strategic-merge patch with another name does not rename the object, as in kustomize",
			src:  fromYAML(t, standbyDeployment),
			target: standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
				deichv1alpha1.PatchTarget{Kind: "Deployment"}, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: not-important, namespace: elsewhere}\nspec: {minReadySeconds: 7}\n"))),
			path:     []string{"metadata", "name"},
			want:     "buergerkonto-web",
			wantMore: []fieldWant{{[]string{"metadata", "namespace"}, "buergerkonto"}, {[]string{"spec", "minReadySeconds"}, int64(7)}},
		},
		{
			name: "a strategic-merge patch replaces an Ingress's rules, which have no merge key: the paths must be repeated",
			src:  ingress,
			target: standbyFor(deichv1alpha1.StandbyCold, override(schwerin, "", targeted(
				deichv1alpha1.PatchTarget{Group: "networking.k8s.io", Kind: "Ingress", Name: "buergerkonto"},
				"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: buergerkonto}\nspec:\n  rules:\n  - host: buergerkonto.mv.example.de\n"))),
			path: []string{"spec", "rules"},
			want: []any{map[string]any{"host": "buergerkonto.mv.example.de"}},
		},
		{
			name: "a site override may pin a Service's node port at the peer",
			src:  fromFile(t, filepath.Join("testdata", "strip", "service-nodeport.yaml")),
			target: standbyFor(deichv1alpha1.StandbyCold, override(schwerin, "", targeted(
				deichv1alpha1.PatchTarget{Kind: "Service"}, `[{"op": "add", "path": "/spec/ports/0/nodePort", "value": 30080}]`))),
			path: []string{"spec", "ports", "0", "nodePort"},
			want: int64(30080),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, tt.src, tt.target)
			checkField(t, got, tt.path, tt.want)
			for _, f := range tt.wantMore {
				checkField(t, got, f.path, f.want)
			}
		})
	}
}

type fieldWant struct {
	path []string
	want any
}

// checkField compares the value at path, where numeric steps index lists.
func checkField(t *testing.T, obj *unstructured.Unstructured, path []string, want any) {
	t.Helper()
	var cur any = obj.Object
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			i := 0
			for _, r := range p {
				i = i*10 + int(r-'0')
			}
			if i >= len(c) {
				t.Fatalf("%v: index %d out of range", path, i)
			}
			cur = c[i]
		default:
			t.Fatalf("%v: %q is not inside an object or list", path, p)
		}
	}
	if diff := cmp.Diff(want, cur); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", strings.Join(path, "."), diff)
	}
}

func TestOverridesThatDoNotApply(t *testing.T) {
	src := fromYAML(t, standbyDeployment)
	unpatched := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold))
	setLabel := "metadata: {labels: {patched: \"yes\"}}\n"
	tests := []struct {
		name     string
		override deichv1alpha1.Override
		// forActive says the override applies to the copy's active form, which the copy
		// records in AnnotationActivePatch (and so in its hash).
		forActive bool
	}{
		{name: "an override for another site is not applied", override: override(kiel, "", targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, setLabel))},
		{
			name:      "an override for the Active role is not applied to the standby copy, only recorded for its active form",
			override:  override(schwerin, active, targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, setLabel)),
			forActive: true,
		},
		{name: "an untargeted strategic-merge patch naming another object is skipped", override: override("", standby, patchOf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: other}\n"+"spec: {minReadySeconds: 3}\n"))},
		{name: "an untargeted strategic-merge patch naming another kind of the same name is skipped", override: override("", standby, patchOf("apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: buergerkonto-web}\nspec: {minReadySeconds: 3}\n"))},
		{name: "an untargeted strategic-merge patch naming the same kind in another group is skipped", override: override("", standby, patchOf("apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: buergerkonto-web}\nspec: {minReadySeconds: 3}\n"))},
		{name: "an untargeted strategic-merge patch naming another namespace is skipped", override: override("", standby, patchOf("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: buergerkonto-web, namespace: other}\nspec: {minReadySeconds: 3}\n"))},
		{name: "a patch whose target kind does not match is not applied", override: override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "StatefulSet"}, setLabel))},
		{name: "a patch whose target version does not match is not applied", override: override("", standby, targeted(deichv1alpha1.PatchTarget{Version: "v1beta1", Kind: "Deployment"}, setLabel))},
		{name: "a patch whose target name only matches part of the name is not applied", override: override("", standby, targeted(deichv1alpha1.PatchTarget{Name: "buergerkonto"}, setLabel))},
		{name: "a patch whose label selector does not match is not applied", override: override("", standby, targeted(deichv1alpha1.PatchTarget{LabelSelector: "tier=backend"}, `[{"op": "remove", "path": "/spec"}]`))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold, tt.override))
			want := unpatched
			if tt.forActive {
				want = withoutAnnotations(unpatched, AnnotationActivePatch, AnnotationContentHash)
				promoted, err := ActiveForm(got)
				if err != nil {
					t.Fatalf("ActiveForm: %v", err)
				}
				if l := promoted.GetLabels()["patched"]; l != "yes" {
					t.Errorf("active form has label patched = %q, want yes", l)
				}
				got = withoutAnnotations(got, AnnotationActivePatch, AnnotationContentHash)
			}
			if diff := cmp.Diff(want.Object, got.Object); diff != "" {
				t.Errorf("copy changed (-unpatched +got):\n%s", diff)
			}
		})
	}
}

func TestOverridesCannotBreakTheGuarantees(t *testing.T) {
	src := fromYAML(t, standbyDeployment)
	got := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "Deployment"}, `
metadata:
  uid: 1234
  resourceVersion: "99"
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: x, uid: "1"}]
  finalizers: [example.com/x]
  labels:
    resilience.deich.io/source-site: forged
  annotations:
    resilience.deich.io/source-replicas: "100"
status: {readyReplicas: 3}
`))))
	for _, path := range [][]string{{"status"}, {"metadata", "uid"}, {"metadata", "resourceVersion"}, {"metadata", "ownerReferences"}, {"metadata", "finalizers"}} {
		if v, ok := field(got, path...); ok {
			t.Errorf("%v = %v, want it absent", path, v)
		}
	}
	if site := got.GetLabels()[LabelSourceSite]; site != "sh-kiel" {
		t.Errorf("label %s = %q, want sh-kiel", LabelSourceSite, site)
	}
	if n, _ := SourceReplicas(got); n != 3 {
		t.Errorf("SourceReplicas() = %d, want 3", n)
	}
}

func TestOverrideErrors(t *testing.T) {
	src := fromYAML(t, standbyDeployment)
	deployment := deichv1alpha1.PatchTarget{Kind: "Deployment"}
	tests := []struct {
		name        string
		overrides   []deichv1alpha1.Override
		wantIndexes [2]int
		wantMessage string
	}{
		{
			name:        "a patch that is not YAML fails with the indexes of its override and patch",
			overrides:   []deichv1alpha1.Override{override(kiel, "", patchOf("x")), override(schwerin, standby, targeted(deployment, "spec: {replicas: 1}\n"), patchOf("spec: [unclosed\n"))},
			wantIndexes: [2]int{1, 1},
			wantMessage: "spec.overrides[1].patches[1] (site mv-schwerin, role Standby): parse the patch:",
		},
		{
			name:        "a JSON 6902 replace of a missing path fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "- op: replace\n  path: /spec/paused/x\n  value: true\n"))},
			wantMessage: "spec.overrides[0].patches[0] (role Standby): JSON 6902 patch: replace operation does not apply",
		},
		{
			name:        "a JSON 6902 patch without target fails",
			overrides:   []deichv1alpha1.Override{override(schwerin, "", patchOf(`[{"op": "remove", "path": "/spec/replicas"}]`))},
			wantMessage: "a JSON 6902 patch needs a target",
		},
		{
			name:        "a JSON 6902 patch that renames the object fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, `[{"op": "replace", "path": "/metadata/name", "value": "renamed"}]`))},
			wantMessage: `the patch changes metadata.name from "buergerkonto-web" to "renamed"; an override may not rename, move or retype the object`,
		},
		{
			name:        "a JSON 6902 patch that moves the object to another namespace fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, `[{"op": "replace", "path": "/metadata/namespace", "value": "kube-system"}]`))},
			wantMessage: `the patch changes metadata.namespace from "buergerkonto" to "kube-system"`,
		},
		{
			name:        "a JSON 6902 patch that changes the kind fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, `[{"op": "replace", "path": "/kind", "value": "StatefulSet"}]`))},
			wantMessage: `the patch changes kind from "Deployment" to "StatefulSet"`,
		},
		{
			name:        "a JSON 6902 patch that removes the metadata fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, `[{"op": "remove", "path": "/metadata"}]`))},
			wantMessage: "the patched object is malformed: object has no metadata",
		},
		{
			name:        "a JSON 6902 patch that makes a label a number fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, `[{"op": "add", "path": "/metadata/labels/n", "value": 1}]`))},
			wantMessage: `metadata.labels["n"] is not a string`,
		},
		{
			name:        "a JSON 6902 operation that is not one fails even when the target does not select the object",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deichv1alpha1.PatchTarget{Kind: "Secret"}, `[{"op": "merge", "path": "/spec"}]`))},
			wantMessage: "JSON 6902 operation 0: op merge is none of add, remove, replace, move, copy, test",
		},
		{
			name:        "a JSON 6902 patch that doubles the object again and again fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, doublingPatch(40)))},
			wantMessage: "grows the object beyond",
		},
		{
			name:        "a patch whose YAML aliases expand to billions of nodes fails fast",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, aliasBomb(12)))},
			wantMessage: "excessive aliasing",
		},
		{
			name:        "a strategic-merge patch that deletes the object fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "$patch: delete\n"))},
			wantMessage: "the patch deletes the object",
		},
		{
			name:        "an untargeted strategic-merge patch that names no object fails",
			overrides:   []deichv1alpha1.Override{override("", standby, patchOf("spec: {replicas: 1}\n"))},
			wantMessage: "a strategic-merge patch without target must name the object it patches",
		},
		{
			name:        "a targeted strategic-merge patch of several documents fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "spec: {replicas: 1}\n---\nspec: {replicas: 2}\n"))},
			wantMessage: "a strategic-merge patch with a target must be a single document",
		},
		{
			name:        "a patch that mixes operations and objects fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "spec: {replicas: 1}\n---\n- {op: remove, path: /spec}\n"))},
			wantMessage: "the patch mixes a JSON 6902 list of operations with strategic-merge objects",
		},
		{
			name:        "a patch that is a plain string fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "just text\n"))},
			wantMessage: "the patch is neither a strategic-merge patch (an object) nor a JSON 6902 patch (a list of operations)",
		},
		{
			name:        "a patch with only comments fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deployment, "# nothing here\n"))},
			wantMessage: "the patch is empty",
		},
		{
			name:        "a target name that is no regular expression fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deichv1alpha1.PatchTarget{Name: "web-("}, "spec: {replicas: 1}\n"))},
			wantMessage: "target: error parsing regexp",
		},
		{
			name:        "a target label selector that does not parse fails",
			overrides:   []deichv1alpha1.Override{override("", standby, targeted(deichv1alpha1.PatchTarget{LabelSelector: "tier in frontend"}, "spec: {replicas: 1}\n"))},
			wantMessage: "target labelSelector:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(src, standbyFor(deichv1alpha1.StandbyCold, tt.overrides...))
			if got != nil {
				t.Errorf("Render() returned a copy along with an error: %v", got.Object)
			}
			var pe *PatchError
			if !errors.As(err, &pe) {
				t.Fatalf("Render() error = %v, want a *PatchError", err)
			}
			if idx := [2]int{pe.Override, pe.Patch}; idx != tt.wantIndexes {
				t.Errorf("PatchError indexes = %v, want %v", idx, tt.wantIndexes)
			}
			if !strings.Contains(err.Error(), tt.wantMessage) {
				t.Errorf("Render() error = %q, want it to contain %q", err, tt.wantMessage)
			}
		})
	}
}

func TestAnOverrideCannotTurnASecretIntoAToken(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "secret.yaml"))
	_, err := Render(src, standbyFor(deichv1alpha1.StandbyCold, override("", standby, targeted(
		deichv1alpha1.PatchTarget{Kind: "Secret"}, "type: kubernetes.io/service-account-token\n"))))
	var nm *NotMirrorableError
	if !errors.As(err, &nm) {
		t.Fatalf("Render() error = %v, want a *NotMirrorableError", err)
	}
}

func TestPatchErrorMessage(t *testing.T) {
	inner := errors.New("boom")
	for _, tt := range []struct {
		name string
		err  *PatchError
		want string
	}{
		{"names site and role when the override has both", &PatchError{Override: 2, Patch: 1, Site: schwerin, Role: standby, Err: inner}, "spec.overrides[2].patches[1] (site mv-schwerin, role Standby): boom"},
		{"names only the site when the override applies to any role", &PatchError{Override: 0, Patch: 3, Site: kiel, Err: inner}, "spec.overrides[0].patches[3] (site sh-kiel): boom"},
		{"names nothing more when the override has neither", &PatchError{Err: inner}, "spec.overrides[0].patches[0]: boom"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, inner) {
				t.Error("errors.Is does not find the underlying error")
			}
		})
	}
}

// doublingPatch copies the spec into itself n times, doubling the object each time.
func doublingPatch(n int) string {
	ops := make([]string, n)
	for i := range ops {
		ops[i] = fmt.Sprintf(`{"op": "copy", "from": "/spec", "path": "/spec/x%d"}`, i)
	}
	return "[" + strings.Join(ops, ",") + "]"
}

// aliasBomb is YAML whose aliases expand to 9^levels strings.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [lol]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}
