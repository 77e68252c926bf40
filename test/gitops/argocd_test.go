package gitops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// argoCDConfigMapPatchPath is the argocd-cm patch carrying the health scripts.
const argoCDConfigMapPatchPath = "config/argocd/argocd-cm-patch.yaml"

// argoScriptPath is the Lua health script of kind in config/argocd.
func argoScriptPath(kind string) string {
	return "config/argocd/" + strings.ToLower(kind) + ".lua"
}

// argoConfigMapKey is the argocd-cm key of kind's health script: resource.customizations.
// health.<group>_<kind>.
func argoConfigMapKey(kind string) string {
	return "resource.customizations.health.resilience.deich.io_" + kind
}

// argoHealthStatus is what Argo CD reads from a health script's return value
// (gitops-engine pkg/health HealthStatus).
type argoHealthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

// argoValidStatuses are the statuses Argo CD accepts from a script (isValidHealthStatusCode
// in argo-cd util/lua/lua.go); any other becomes Unknown.
var argoValidStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

// argoScriptTimeout is how long Argo CD lets a health script run (runLua).
const argoScriptTimeout = time.Second

// argoHealth is the health Argo CD shows for obj with script as its custom health check,
// mirroring two functions of Argo CD:
//
//   - GetResourceHealth of github.com/argoproj/gitops-engine pkg/health/health.go: an object
//     being deleted is Progressing ("Pending deletion") without running the script, and a
//     script that fails makes the health Unknown with the error as message;
//   - VM.runLua and VM.ExecuteHealthLua of github.com/argoproj/argo-cd util/lua/lua.go: a
//     fresh gopher-lua state created with SkipOpenLibs (a script in argocd-cm runs without
//     the standard libraries unless resource.customizations.useOpenLibs.<group_kind> is
//     set), of which only the package, base and table libraries are opened, and the safe os
//     library of util/lua/oslib_safe.go (os.time and os.date only), preloaded for
//     require("os"); a context that stops the script after a second; the object, decoded
//     from its JSON form (decodeValue), as the global obj; the script's return value, the
//     value on top of the stack, encoded to JSON and read as {status, message}; a status
//     Argo CD does not know becomes Unknown.
func argoHealth(obj *unstructured.Unstructured, script string) argoHealthStatus {
	if obj.GetDeletionTimestamp() != nil {
		return argoHealthStatus{Status: "Progressing", Message: "Pending deletion"}
	}
	hs, err := runArgoHealthScript(obj, script)
	if err != nil {
		return argoHealthStatus{Status: "Unknown", Message: err.Error()}
	}
	return hs
}

// runArgoHealthScript runs script in a Lua state set up as Argo CD sets it up.
func runArgoHealthScript(obj *unstructured.Unstructured, script string) (argoHealthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return argoHealthStatus{}, fmt.Errorf("open the Lua library %q: %w", lib.name, err)
		}
	}
	// Argo CD also opens its safe os library (OpenSafeOs) and preloads it for require("os");
	// only require("os") is offered here, and Deich's scripts use neither.
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), argoScriptTimeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", luaValueOf(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return argoHealthStatus{}, fmt.Errorf("run the health script: %w", err)
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return argoHealthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	data, err := json.Marshal(goValueOf(ret))
	if err != nil {
		return argoHealthStatus{}, fmt.Errorf("encode the script's result: %w", err)
	}
	var hs argoHealthStatus
	if err := json.Unmarshal(data, &hs); err != nil {
		return argoHealthStatus{}, fmt.Errorf("read the script's result %s: %w", data, err)
	}
	if !argoValidStatuses[hs.Status] {
		return argoHealthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// safeOsLoader is the module require("os") loads: the two functions of Argo CD's safe os.
// Deich's scripts use neither; the module is here so that the environment matches.
func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), map[string]lua.LGFunction{
		"time": func(l *lua.LState) int {
			l.Push(lua.LNumber(time.Now().Unix()))
			return 1
		},
		"date": func(l *lua.LState) int {
			l.Push(lua.LString(time.Now().UTC().Format(time.RFC1123)))
			return 1
		},
	}))
	return 1
}

// luaValueOf converts a value of an object's JSON form to Lua as Argo CD's decodeValue does:
// numbers of any Go type become numbers, json.Number a string, lists tables with 1-based
// indexes, objects tables keyed by string, and anything else nil.
func luaValueOf(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(luaValueOf(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), luaValueOf(l, item))
		}
		return t
	default:
		return lua.LNil
	}
}

// goValueOf converts a script's result to Go for JSON, as layeh.com/gopher-json's Encode
// does: a table with keys 1..n is a list, any other table an object.
func goValueOf(v lua.LValue) any {
	switch v := v.(type) {
	case lua.LBool:
		return bool(v)
	case lua.LNumber:
		return float64(v)
	case lua.LString:
		return string(v)
	case *lua.LTable:
		if n := v.Len(); n > 0 {
			list := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				list = append(list, goValueOf(v.RawGetInt(i)))
			}
			return list
		}
		object := map[string]any{}
		v.ForEach(func(key, value lua.LValue) {
			object[key.String()] = goValueOf(value)
		})
		return object
	default:
		return nil
	}
}

// argoScripts reads config/argocd's script of every Deich kind.
func argoScripts(t *testing.T) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	for _, kind := range deichKinds(t) {
		scripts[kind] = string(repoFile(t, argoScriptPath(kind)))
	}
	return scripts
}

// TestArgoCDHealth runs config/argocd's scripts as Argo CD runs them against every status
// Deich writes.
func TestArgoCDHealth(t *testing.T) {
	scripts := argoScripts(t)
	for _, f := range fixtures(t) {
		t.Run(f.kind()+"/"+f.name, func(t *testing.T) {
			got := argoHealth(f.obj, scripts[f.kind()])
			if diff := cmp.Diff(f.argo, got.Status); diff != "" {
				t.Errorf("Argo CD health (-want +got):\n%s\nmessage: %s", diff, got.Message)
			}
			if !strings.Contains(got.Message, f.argoMessage) {
				t.Errorf("Argo CD message %q does not say %q", got.Message, f.argoMessage)
			}
		})
	}
}

// TestArgoCDHealthOfAnUnknownPhase checks that a phase a newer Deich may add shows as
// Unknown rather than as a guess.
func TestArgoCDHealthOfAnUnknownPhase(t *testing.T) {
	scripts := argoScripts(t)
	for _, f := range fixtures(t) {
		if _, ok, _ := unstructured.NestedString(f.obj.Object, "status", "phase"); !ok || f.obj.GetDeletionTimestamp() != nil {
			continue
		}
		obj := f.obj.DeepCopy()
		if err := unstructured.SetNestedField(obj.Object, "Flooded", "status", "phase"); err != nil {
			t.Fatal(err)
		}
		if f.obj.GetGeneration() != 1 {
			continue // a stale status is Progressing whatever its phase
		}
		want := argoHealthStatus{Status: argoUnknown, Message: "Unknown phase Flooded"}
		if diff := cmp.Diff(want, argoHealth(obj, scripts[f.kind()])); diff != "" {
			t.Errorf("%s/%s in phase Flooded (-want +got):\n%s", f.kind(), f.name, diff)
		}
	}
}

// TestArgoCDConfigMapPatchCarriesTheScripts checks that config/argocd/argocd-cm-patch.yaml
// is a patch of argocd-cm holding exactly the .lua files, unchanged, under Argo CD's keys.
func TestArgoCDConfigMapPatchCarriesTheScripts(t *testing.T) {
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(repoFile(t, argoCDConfigMapPatchPath), &cm); err != nil {
		t.Fatalf("parse %s: %v", argoCDConfigMapPatchPath, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Name != "argocd-cm" {
		t.Errorf("%s patches %s %s %s, want the v1 ConfigMap argocd-cm", argoCDConfigMapPatchPath, cm.APIVersion, cm.Kind, cm.Name)
	}
	want := map[string]string{}
	for kind, script := range argoScripts(t) {
		want[argoConfigMapKey(kind)] = script
	}
	if diff := cmp.Diff(want, cm.Data); diff != "" {
		t.Errorf("argocd-cm data (-want +got):\n%s", diff)
	}
}

// TestArgoCDScriptsCoverEveryKind checks that config/argocd holds a script for every Deich
// kind and none for a kind that does not exist.
func TestArgoCDScriptsCoverEveryKind(t *testing.T) {
	var want []string
	for _, kind := range deichKinds(t) {
		want = append(want, argoScriptPath(kind))
	}
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "config", "argocd"))
	if err != nil {
		t.Fatalf("list config/argocd: %v", err)
	}
	var got []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lua") {
			got = append(got, "config/argocd/"+e.Name())
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("health scripts in config/argocd (-want +got):\n%s", diff)
	}
}

// TestArgoCDVMOffersOnlyArgoCDsLibraries checks the harness itself: what a health script in
// argocd-cm can and cannot call in Argo CD can and cannot be called here, so a script that
// passes these tests does not fail in Argo CD for want of a library.
func TestArgoCDVMOffersOnlyArgoCDsLibraries(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "resilience.deich.io/v1alpha1", "kind": "SharedService",
		"metadata": map[string]any{"name": "buergerkonto", "generation": int64(3)},
	}}
	for _, tc := range []struct {
		name   string
		script string
		works  bool
	}{
		{"the base library is there", `return {status = "Healthy", message = tostring(obj.metadata.generation) .. type(ipairs)}`, true},
		{"the table library is there", `local t = {} table.insert(t, "a") return {status = "Healthy", message = table.concat(t, ",")}`, true},
		{"the safe os library loads with require", `local os = require("os") return {status = "Healthy", message = tostring(os.time() > 0)}`, true},
		{"there is no string library", `return {status = "Healthy", message = string.format("%d", 1)}`, false},
		{"strings have no methods", `local s = "Fenced" return {status = "Healthy", message = s:lower()}`, false},
		{"there is no math library", `return {status = "Healthy", message = tostring(math.floor(1.5))}`, false},
		{"there is no io library", `io.write("x") return {status = "Healthy"}`, false},
		{"a script that never ends is stopped", `while true do end`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runArgoHealthScript(obj, tc.script)
			if tc.works && err != nil {
				t.Errorf("want the script to run, got %v", err)
			}
			if !tc.works && err == nil {
				t.Error("want the script to fail in Argo CD's Lua environment, it ran")
			}
		})
	}
}

// TestArgoCDRejectsAnUnknownStatus checks the harness reads a script's result as Argo CD does.
func TestArgoCDRejectsAnUnknownStatus(t *testing.T) {
	obj := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}
	got, err := runArgoHealthScript(obj, `return {status = "Fenced", message = "no such health"}`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(argoHealthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := runArgoHealthScript(obj, `return "Healthy"`); err == nil || !strings.Contains(err.Error(), "expect table output") {
		t.Errorf("want a script that returns no table refused, got %v", err)
	}
}
