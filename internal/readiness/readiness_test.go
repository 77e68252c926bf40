package readiness

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// cluster is a CloudNativePG Cluster as the Kubernetes client decodes it: whole numbers are
// int64.
func cluster() map[string]any {
	return map[string]any{
		"apiVersion": "postgresql.cnpg.io/v1",
		"kind":       "Cluster",
		"metadata":   map[string]any{"name": "db", "labels": map[string]any{"tier": "data"}},
		"spec":       map[string]any{"instances": int64(3)},
		"status": map[string]any{
			"phase":          "Cluster in healthy state",
			"readyInstances": int64(3),
			"ratio":          0.5,
			"conditions": []any{
				map[string]any{"type": "Ready", "status": "True", "observedGeneration": int64(2)},
			},
		},
	}
}

func TestReady(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		obj        map[string]any
		ready      bool
		message    string
	}{
		{name: "true", expr: "self.status.phase == 'Cluster in healthy state'", obj: cluster(), ready: true},
		{
			name: "false", expr: "self.status.phase == 'primary'", obj: cluster(),
			message: "self.status.phase == 'primary' is false",
		},
		{
			name: "a missing field is not ready yet", expr: "self.status.phase == 'primary'",
			obj:     map[string]any{"kind": "Cluster"},
			message: "self.status.phase == 'primary' cannot be evaluated yet: no such key: status",
		},
		{
			name: "a missing list entry is not ready yet", expr: "self.status.conditions[1].status == 'True'",
			obj:     cluster(),
			message: "self.status.conditions[1].status == 'True' cannot be evaluated yet: index out of bounds: 1",
		},
		{
			name: "a field of another type is not ready yet", expr: "self.status.phase > 1",
			obj:     cluster(),
			message: "self.status.phase > 1 cannot be evaluated yet: no such overload",
		},
		{name: "has() of a present field", expr: "has(self.status.phase)", obj: cluster(), ready: true},
		{
			name: "has() of a missing field", expr: "has(self.status.phase)", obj: map[string]any{"status": map[string]any{}},
			message: "has(self.status.phase) is false",
		},
		{
			name: "has() guards a missing parent", expr: "has(self.status) && self.status.phase == 'x'",
			obj: map[string]any{}, message: "has(self.status) && self.status.phase == 'x' is false",
		},
		{name: "a nil object has no fields", expr: "!has(self.status)", ready: true},
		{name: "optional fields", expr: "self.?status.?phase.orValue('') == ''", obj: map[string]any{}, ready: true},
		{name: "a bool field", expr: "self.status.ready", obj: map[string]any{"status": map[string]any{"ready": true}}, ready: true},
		{
			name: "conditions", obj: cluster(), ready: true,
			expr: "self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
		},
		{name: "int64 compares with an int", expr: "self.status.readyInstances >= 1", obj: cluster(), ready: true},
		{name: "int64 compares with a double", expr: "self.status.readyInstances > 2.5", obj: cluster(), ready: true},
		{name: "int64 in arithmetic", expr: "self.status.readyInstances + 1 == 4", obj: cluster(), ready: true},
		{name: "a fraction compares with an int", expr: "self.status.ratio < 1", obj: cluster(), ready: true},
		{name: "a fraction stays a double", expr: "self.status.ratio * 2.0 == 1.0", obj: cluster(), ready: true},
		{
			name: "a field equals another", obj: cluster(), ready: true,
			expr: "self.status.readyInstances == self.spec.instances",
		},
		{name: "string library", expr: "self.status.phase.lowerAscii().contains('healthy')", obj: cluster(), ready: true},
		{name: "list library", expr: "self.status.conditions.map(c, c.type).distinct() == ['Ready']", obj: cluster(), ready: true},
		{name: "set library", expr: "sets.contains(['Ready', 'Synced'], self.status.conditions.map(c, c.type))", obj: cluster(), ready: true},
		{name: "math library", expr: "math.greatest(self.status.readyInstances, 1) == 3", obj: cluster(), ready: true},
		{name: "two-variable comprehensions", expr: "self.metadata.labels.all(k, v, k != '' && v != '')", obj: cluster(), ready: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule, err := Compile(tc.expr)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.expr, err)
			}
			ready, message, err := rule.Ready(tc.obj)
			if err != nil || ready != tc.ready || message != tc.message {
				t.Errorf("Ready() = %v, %q, %v; want %v, %q, nil", ready, message, err, tc.ready, tc.message)
			}
		})
	}
}

// TestNumbersOfEitherDecoding checks that an expression over numbers gives the same result
// whether the object was decoded by the Kubernetes client (whole numbers are int64) or by
// encoding/json (every number is a float64).
func TestNumbersOfEitherDecoding(t *testing.T) {
	const doc = `{"apiVersion": "apps/v1", "kind": "Deployment", "status": {"readyReplicas": 2, "ratio": 0.5, "replicas": [1, 2, 3],
		"pods": [{"restarts": 0}], "big": 1e300}}`
	var plain map[string]any
	if err := json.Unmarshal([]byte(doc), &plain); err != nil {
		t.Fatal(err)
	}
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON([]byte(doc)); err != nil {
		t.Fatal(err)
	}
	if _, ok := u.Object["status"].(map[string]any)["readyReplicas"].(int64); !ok {
		t.Fatalf("unstructured decoded readyReplicas as %T, want int64", u.Object["status"].(map[string]any)["readyReplicas"])
	}
	for _, expr := range []string{
		"self.status.readyReplicas >= 1",
		"self.status.readyReplicas == 2",
		"self.status.readyReplicas + 1 == 3",
		"self.status.readyReplicas % 2 == 0",
		"self.status.ratio == 0.5",
		"self.status.ratio > 0",
		"self.status.replicas.all(r, r >= 1)",
		"self.status.replicas[1] == 2",
		"self.status.pods.all(p, p.restarts + 0 == 0)",
		"self.status.big > 1e299",
	} {
		for name, obj := range map[string]map[string]any{"encoding/json": plain, "unstructured": u.Object} {
			t.Run(name+"/"+expr, func(t *testing.T) {
				ready, message, err := mustCompile(t, expr).Ready(obj)
				if err != nil || !ready {
					t.Errorf("Ready() = %v, %q, %v; want true", ready, message, err)
				}
			})
		}
	}
}

func TestWholeInt(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want int64
		ok   bool
	}{
		{f: 0, want: 0, ok: true},
		{f: -3, want: -3, ok: true},
		{f: 0.5},
		{f: -(1 << 63), want: -(1 << 63), ok: true},
		{f: 1 << 63},
		{f: 1e300},
		{f: nan()},
		{f: inf()},
	} {
		if got, ok := wholeInt(tc.f); got != tc.want || ok != tc.ok {
			t.Errorf("wholeInt(%v) = %d, %v; want %d, %v", tc.f, got, ok, tc.want, tc.ok)
		}
	}
}

func nan() float64 { return inf() - inf() }

func inf() float64 {
	var zero float64
	return 1 / zero
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string // each is part of the error's message
	}{
		{name: "empty", expr: "", want: []string{"readyWhen is empty"}},
		{name: "syntax", expr: "self.status.phase ==", want: []string{`readyWhen "self.status.phase =="`, "Syntax error"}},
		{name: "unknown variable", expr: "status.phase == 'x'", want: []string{"undeclared reference to 'status'"}},
		{name: "unknown function", expr: "self.status.phase.frobnicate()", want: []string{"undeclared reference to 'frobnicate'"}},
		{name: "a string", expr: "'ready'", want: []string{`readyWhen "'ready'" has type string, want bool`}},
		{name: "an int", expr: "size(self)", want: []string{"has type int, want bool"}},
		{name: "an optional", expr: "self.?status", want: []string{"want bool"}},
		{name: "a bad regular expression", expr: "self.status.phase.matches('[')", want: []string{"invalid matches argument"}},
		{name: "a mixed list", expr: "self.status.phase in ['a', 1]", want: []string{"expected type 'string' but found 'int'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rule, err := Compile(tc.expr)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tc.expr, rule)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Compile(%q) error %q does not contain %q", tc.expr, err, want)
				}
			}
		})
	}
}

func TestReadyErrors(t *testing.T) {
	// Searching a string for itself costs the product of their lengths.
	long := strings.Repeat("a", 40_000)
	for _, tc := range []struct {
		name, expr string
		obj        map[string]any
		want       string // part of the error's message
	}{
		{
			name: "a result that is not a bool", expr: "self.status.phase", obj: cluster(),
			want: `readyWhen "self.status.phase" gave a string, want a bool`,
		},
		{name: "a null result", expr: "self.status.phase", obj: map[string]any{"status": map[string]any{"phase": nil}}, want: "gave a null_type"},
		{
			name: "the cost limit", expr: "self.spec.text.contains(self.spec.text)",
			obj: map[string]any{"spec": map[string]any{"text": long}}, want: "cost limit exceeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready, message, err := mustCompile(t, tc.expr).Ready(tc.obj)
			if err == nil || !strings.Contains(err.Error(), tc.want) || ready || message != "" {
				t.Errorf("Ready() = %v, %q, %v; want false, \"\", an error containing %q", ready, message, err, tc.want)
			}
		})
	}
}

// TestTimeLimit evaluates a loop that stays within the cost limit but would run for a
// minute.
func TestTimeLimit(t *testing.T) {
	rule := mustCompile(t, "lists.range(400000).all(x, true)")
	start := time.Now()
	ready, message, err := rule.Ready(nil)
	if took := time.Since(start); took > 10*evalTimeout {
		t.Errorf("Ready() took %v, want about %v", took, evalTimeout)
	}
	if err == nil || !strings.Contains(err.Error(), "took longer than") || ready || message != "" {
		t.Errorf("Ready() = %v, %q, %v; want false, \"\", an error about the time limit", ready, message, err)
	}
}

func TestString(t *testing.T) {
	const expr = "self.status.state == 'Primary'"
	if got := mustCompile(t, expr).String(); got != expr {
		t.Errorf("String() = %q, want %q", got, expr)
	}
}

func TestCacheCompilesOnce(t *testing.T) {
	var c Cache
	first, err := c.Compile("self.status.state == 'Primary'")
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Compile("self.status.state == 'Primary'")
	if err != nil || second != first {
		t.Errorf("the second Compile() = %p, %v; want the first rule %p", second, err, first)
	}
	other, err := c.Compile("self.status.state == 'Secondary'")
	if err != nil || other == first {
		t.Errorf("Compile() of another expression = %p, %v; want a rule of its own", other, err)
	}
}

func TestCacheKeepsErrors(t *testing.T) {
	var c Cache
	_, first := c.Compile("self ==")
	_, second := c.Compile("self ==")
	if first == nil || !errors.Is(second, first) {
		t.Errorf("Compile() errors = %v, %v; want the same error twice", first, second)
	}
}

func TestCacheIsBounded(t *testing.T) {
	var c Cache
	for i := range cacheSize + 10 {
		if _, err := c.Compile(fmt.Sprintf("self.status.readyReplicas >= %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(c.rules); got != cacheSize {
		t.Errorf("the cache holds %d expressions, want %d", got, cacheSize)
	}
	last := fmt.Sprintf("self.status.readyReplicas >= %d", cacheSize+9)
	if _, ok := c.rules[last]; !ok {
		t.Errorf("the cache lacks the expression compiled last")
	}
}

// TestConcurrentUse compiles through one cache and evaluates one rule from many goroutines,
// for the race detector.
func TestConcurrentUse(t *testing.T) {
	var c Cache
	exprs := []string{
		"self.status.phase == 'Cluster in healthy state'",
		"self.status.readyInstances >= 1",
		"self.status.conditions.exists(c, c.type == 'Ready')",
	}
	obj := cluster()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			rule, err := c.Compile(exprs[i%len(exprs)])
			if err != nil {
				errs <- err
				return
			}
			if ready, message, err := rule.Ready(obj); err != nil || !ready {
				errs <- fmt.Errorf("%s: Ready() = %v, %q, %w", rule, ready, message, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzReady compiles arbitrary expressions and evaluates those that compile over a fixed
// object: neither may panic, and a rule that is not ready says why.
func FuzzReady(f *testing.F) {
	for _, seed := range []string{
		"self.status.phase == 'Cluster in healthy state'",
		"self.status.readyInstances >= 1",
		"has(self.status.phase)",
		"self.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
		"self.?status.?phase.orValue('') == ''",
		"self.status.conditions[3].type == 'x'",
		"self.status.ratio / 0.0 > 1.0",
		"self.spec.instances / 0 > 1",
		"self.status.phase",
		"self.metadata.labels.all(k, v, k.size() > 0)",
		"sets.contains([1], [1]) && math.abs(-1) == 1",
		"self ==",
		"",
	} {
		f.Add(seed)
	}
	obj := cluster()
	f.Fuzz(func(t *testing.T, expr string) {
		rule, err := Compile(expr)
		if err != nil {
			return
		}
		ready, message, err := rule.Ready(obj)
		if err == nil && !ready && message == "" {
			t.Errorf("Ready() of %q is false without a message", expr)
		}
	})
}

func mustCompile(t *testing.T, expr string) *Rule {
	t.Helper()
	rule, err := Compile(expr)
	if err != nil {
		t.Fatalf("Compile(%q): %v", expr, err)
	}
	return rule
}
