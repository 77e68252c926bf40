package gitops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// fluxKustomizationPath is the Flux Kustomization whose healthCheckExprs users copy.
const fluxKustomizationPath = "config/flux/deich-kustomization.yaml"

// TestKstatusUnaided records what kstatus, and so Flux without healthCheckExprs, makes of
// every status Deich writes. It reads the Ready condition and status.observedGeneration, so
// Ready=True is Current and a stale status is InProgress; but it knows no failure: every
// Ready=False is InProgress (a Fenced service, a failed Switchover, an unreachable peer), and
// an object without status, or with conditions that are not Ready (a failed drill run), is
// Current.
func TestKstatusUnaided(t *testing.T) {
	for _, f := range fixtures(t) {
		t.Run(f.kind()+"/"+f.name, func(t *testing.T) {
			res, err := status.Compute(f.obj)
			if err != nil {
				t.Fatalf("kstatus cannot compute the status: %v", err)
			}
			if diff := cmp.Diff(f.kstatus, res.Status); diff != "" {
				t.Errorf("kstatus status (-want +got):\n%s\nmessage: %s", diff, res.Message)
			}
		})
	}
}

// TestKstatusNeverReportsADeichFailure states the conclusion of TestKstatusUnaided for
// Flux's users: kstatus returns Failed only for a Stalled=True condition, which Deich never
// sets, so Flux with `wait: true` waits out its timeout on a Fenced service instead of
// failing at once.
func TestKstatusNeverReportsADeichFailure(t *testing.T) {
	for _, f := range fixtures(t) {
		res, err := status.Compute(f.obj)
		if err != nil {
			t.Fatalf("%s/%s: kstatus cannot compute the status: %v", f.kind(), f.name, err)
		}
		if res.Status == status.FailedStatus {
			t.Errorf("%s/%s: kstatus says Failed; Deich sets no Stalled condition", f.kind(), f.name)
		}
	}
}

// healthCheckExpr is one entry of a Flux Kustomization's spec.healthCheckExprs.
type healthCheckExpr struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Current    string `json:"current"`
	InProgress string `json:"inProgress,omitempty"`
	Failed     string `json:"failed,omitempty"`
}

// fluxHealthCheckExprs reads spec.healthCheckExprs of config/flux/deich-kustomization.yaml, by kind.
func fluxHealthCheckExprs(t *testing.T) map[string]healthCheckExpr {
	t.Helper()
	var ks struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			HealthCheckExprs []healthCheckExpr `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(repoFile(t, fluxKustomizationPath), &ks); err != nil {
		t.Fatalf("parse %s: %v", fluxKustomizationPath, err)
	}
	if ks.APIVersion != "kustomize.toolkit.fluxcd.io/v1" || ks.Kind != "Kustomization" {
		t.Fatalf("%s is a %s %s, want a kustomize.toolkit.fluxcd.io/v1 Kustomization", fluxKustomizationPath, ks.APIVersion, ks.Kind)
	}
	byKind := map[string]healthCheckExpr{}
	for _, e := range ks.Spec.HealthCheckExprs {
		if e.APIVersion != deichv1alpha1.GroupVersion.String() {
			t.Errorf("healthCheckExprs entry for %s has apiVersion %q, want %q", e.Kind, e.APIVersion, deichv1alpha1.GroupVersion)
		}
		if _, dup := byKind[e.Kind]; dup {
			t.Errorf("healthCheckExprs lists %s twice", e.Kind)
		}
		byKind[e.Kind] = e
	}
	return byKind
}

// fluxExpression parses expr as kustomize-controller does for healthCheckExprs: parsed, not
// compiled (no declarations, so the object's top-level fields are the variables), in the
// environment of fluxcd/pkg runtime/cel/expression.go (NewExpression), with the same
// program options.
func fluxExpression(expr string) (cel.Program, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return nil, fmt.Errorf("create the CEL environment: %w", err)
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, issues.Err())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("plan %q: %w", expr, err)
	}
	return prog, nil
}

// evaluateBool evaluates expr over the object's content, as Expression.EvaluateBoolean does.
func evaluateBool(expr string, obj *unstructured.Unstructured) (bool, error) {
	prog, err := fluxExpression(expr)
	if err != nil {
		return false, err
	}
	val, _, err := prog.ContextEval(context.Background(), obj.UnstructuredContent())
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", expr, err)
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%q gives %s, not a boolean", expr, val.Type())
	}
	return bool(b), nil
}

// errNoStatusYet is returned for an object whose expressions cannot be evaluated.
var errNoStatusYet = errors.New("the health check expressions cannot be evaluated")

// fluxStatus is what kustomize-controller reports for obj with the expressions e, following
// StatusEvaluator.Evaluate of fluxcd/pkg runtime/cel/status_evaluator.go (RFC 0009): a status
// of an older generation is InProgress; then inProgress, failed and current are evaluated in
// that order and the first that is true decides; none true is InProgress. An expression that
// cannot be evaluated makes the status reader report Unknown (cli-utils'
// errResourceToResourceStatus), and Flux keeps waiting.
func fluxStatus(e healthCheckExpr, obj *unstructured.Unstructured) (status.Status, error) {
	observed, found, err := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	if err != nil {
		return status.UnknownStatus, fmt.Errorf("read status.observedGeneration: %w", err)
	}
	if found {
		generation, ok, err := unstructured.NestedInt64(obj.Object, "metadata", "generation")
		if err != nil {
			return status.UnknownStatus, fmt.Errorf("read metadata.generation: %w", err)
		}
		if ok && observed != generation {
			return status.InProgressStatus, nil
		}
	}
	for _, step := range []struct {
		expr   string
		status status.Status
	}{
		{e.InProgress, status.InProgressStatus},
		{e.Failed, status.FailedStatus},
		{e.Current, status.CurrentStatus},
	} {
		if step.expr == "" {
			continue
		}
		ok, err := evaluateBool(step.expr, obj)
		if err != nil {
			return status.UnknownStatus, errors.Join(errNoStatusYet, err)
		}
		if ok {
			return step.status, nil
		}
	}
	return status.InProgressStatus, nil
}

func TestFluxHealthCheckExprsCoverEveryKind(t *testing.T) {
	exprs := fluxHealthCheckExprs(t)
	var got []string
	for kind, e := range exprs {
		got = append(got, kind)
		for name, expr := range map[string]string{"current": e.Current, "inProgress": e.InProgress, "failed": e.Failed} {
			if expr == "" {
				t.Errorf("%s: %s is empty", kind, name)
				continue
			}
			if _, err := fluxExpression(expr); err != nil {
				t.Errorf("%s: %s does not parse as kustomize-controller parses it: %v", kind, name, err)
			}
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff(deichKinds(t), got); diff != "" {
		t.Errorf("kinds with healthCheckExprs in %s (-want +got):\n%s", fluxKustomizationPath, diff)
	}
}

// TestFluxHealthCheckExprs evaluates config/flux's expressions against every status Deich
// writes, as kustomize-controller does: a service that needs a human is Failed at once.
func TestFluxHealthCheckExprs(t *testing.T) {
	exprs := fluxHealthCheckExprs(t)
	for _, f := range fixtures(t) {
		t.Run(f.kind()+"/"+f.name, func(t *testing.T) {
			e, ok := exprs[f.kind()]
			if !ok {
				t.Fatalf("no healthCheckExprs for %s", f.kind())
			}
			got, err := fluxStatus(e, f.obj)
			if err != nil && !errors.Is(err, errNoStatusYet) {
				t.Fatal(err)
			}
			if diff := cmp.Diff(f.flux, got); diff != "" {
				t.Errorf("Flux status (-want +got):\n%s\nerror: %v", diff, err)
			}
			if got == status.UnknownStatus && f.hasStatus() {
				t.Errorf("the expressions fail on a status Deich wrote: %v", err)
			}
		})
	}
}

// TestFluxHealthCheckExprsAreExclusive checks that for every status Deich writes exactly one
// of inProgress, failed and current holds, so the order kustomize-controller evaluates them
// in never decides, and none falls through to the default.
func TestFluxHealthCheckExprsAreExclusive(t *testing.T) {
	exprs := fluxHealthCheckExprs(t)
	for _, f := range fixtures(t) {
		if !f.hasStatus() {
			continue
		}
		e := exprs[f.kind()]
		var holds []string
		for name, expr := range map[string]string{"inProgress": e.InProgress, "failed": e.Failed, "current": e.Current} {
			ok, err := evaluateBool(expr, f.obj)
			if err != nil {
				t.Errorf("%s/%s: %s: %v", f.kind(), f.name, name, err)
				continue
			}
			if ok {
				holds = append(holds, name)
			}
		}
		if len(holds) != 1 {
			slices.Sort(holds)
			t.Errorf("%s/%s: %v hold, want exactly one", f.kind(), f.name, holds)
		}
	}
}

// TestFluxWaitsForAStatusWithExprs shows the one thing the expressions cannot evaluate: an
// object Deich has not written a status for yet has no top-level field status. Flux then
// reports Unknown and keeps waiting, where kstatus unaided says Current.
func TestFluxWaitsForAStatusWithExprs(t *testing.T) {
	exprs := fluxHealthCheckExprs(t)
	for _, f := range fixtures(t) {
		if f.hasStatus() {
			continue
		}
		_, err := fluxStatus(exprs[f.kind()], f.obj)
		if !errors.Is(err, errNoStatusYet) || !strings.Contains(err.Error(), "no such attribute") {
			t.Errorf("%s/%s: want the expressions to fail for want of status, got %v", f.kind(), f.name, err)
		}
	}
}

// TestDocsCarryTheFluxKustomization checks that docs/gitops.md shows config/flux's
// Kustomization as it is tested.
func TestDocsCarryTheFluxKustomization(t *testing.T) {
	example := string(repoFile(t, fluxKustomizationPath))
	start := strings.Index(example, "apiVersion:")
	if start < 0 {
		t.Fatalf("%s has no apiVersion", fluxKustomizationPath)
	}
	if !strings.Contains(string(repoFile(t, "docs/gitops.md")), example[start:]) {
		t.Errorf("docs/gitops.md does not show %s from its apiVersion on, unchanged", fluxKustomizationPath)
	}
}
