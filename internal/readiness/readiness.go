// Package readiness decides whether a promotion stage of a SharedService is ready, from the
// stage's readyWhen expression (SharedService.spec.promotion.stages[].readyWhen).
//
// A readyWhen expression is written in CEL, the language of a CustomResourceDefinition's
// x-kubernetes-validations rules, and sees the stage's object as self, for example
//
//	self.status.phase == 'Cluster in healthy state'   // a CloudNativePG Cluster
//	self.status.state == 'Primary'                    // a csi-addons VolumeReplication
//	self.status.readyReplicas >= 1                    // a Deployment
//
// The stage is ready when the expression is true. Besides standard CEL, the string, list,
// set, math and two-variable comprehension libraries of cel-go are available, as are
// optional fields (self.?status.?phase.orValue('unknown')); the libraries that only Kubernetes
// itself provides (quantities, URLs, IP addresses, semantic versions) are not.
//
// Operators of data services fill in an object's status late, so a field the expression
// reads that is not there yet makes the stage not ready, with a message that says so,
// rather than an error; has(self.status.phase) tests for a field explicitly. The same holds
// for any other evaluation error that comes from the object's content, since that content
// can still change. Only what can never work is an error: an expression that does not
// compile or whose result is not a bool, and one that exceeds the cost limit.
//
// Numbers: an object decoded by the Kubernetes client (unstructured) has int64 for whole
// numbers and float64 for others, while plain encoding/json gives float64 for every number.
// Evaluation turns a whole float64 into a CEL int, so that both decodings of an object give
// the same result; this is also what the API server's own encoding does, which writes 2.0
// as 2. CEL compares ints with doubles (self.status.ratio > 0.5 works either way) but does
// not mix them in arithmetic, so self.status.ratio * 2.0 needs double(self.status.ratio)
// when the ratio may be whole.
//
// Evaluating an expression is bounded by a cost limit, the one Kubernetes applies to a
// single validation rule, and by a time limit, so that an expression over a large list
// cannot stall the operator.
package readiness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
)

// costLimit bounds the cost of one evaluation; it is Kubernetes' limit for one validation
// rule (PerCallLimit), so an expression users know to be fine there is fine here.
const costLimit = 1_000_000

// evalTimeout bounds the time of one evaluation. The cost limit alone does not: CEL's cost
// tracking slows down with the length of a comprehension, and a loop of a few hundred
// thousand steps that stays within the limit runs for a minute. An expression that is
// reasonable for a status takes microseconds.
const evalTimeout = time.Second

// interruptCheckFrequency is the number of comprehension steps between two checks of the
// time limit; a check is cheap next to a step.
const interruptCheckFrequency = 100

// selfVar is the name under which an expression sees the stage's object.
const selfVar = "self"

// env is the CEL environment every expression compiles in; it is built once, as it does
// not depend on the expression, and is safe for concurrent use.
var env = sync.OnceValues(newEnv)

// newEnv builds the environment: the standard library with the extensions and settings
// Kubernetes gives validation rules, as far as cel-go provides them.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		// The object is a JSON object: its fields are of any type.
		cel.Variable(selfVar, cel.MapType(cel.StringType, cel.DynType)),
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		// Literals that can never work fail when the expression compiles, not at every
		// evaluation.
		cel.ASTValidators(
			cel.ValidateDurationLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateRegexLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
		),
		ext.Strings(),
		ext.Lists(),
		ext.Sets(),
		ext.Math(),
		ext.TwoVarComprehensions(),
	)
}

// Rule is a compiled readyWhen expression. It is safe for concurrent use.
type Rule struct {
	expr string
	prg  cel.Program
}

// Compile compiles a readyWhen expression. The expression sees the object as self and must
// have type bool; one whose type is only known when it runs (self.status.ready) is accepted,
// and Ready checks its result.
func Compile(expr string) (*Rule, error) {
	if expr == "" {
		return nil, errors.New("readyWhen is empty")
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("readyWhen %q does not compile: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("readyWhen %q has type %s, want bool", expr, t)
	}
	prg, err := e.Program(ast,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	)
	if err != nil {
		return nil, fmt.Errorf("readyWhen %q: %w", expr, err)
	}
	return &Rule{expr: expr, prg: prg}, nil
}

// String returns the expression as written.
func (r *Rule) String() string {
	return r.expr
}

// Ready evaluates the expression over obj, an object as decoded from JSON. It returns
// whether the expression is true and, when it is not, a sentence that says why. A field
// that is missing, like any other error that comes from the object's content, makes the
// object not ready; the error is only for an expression that can never be evaluated: one
// whose result is not a bool, or one that exceeds the cost or the time limit.
func (r *Rule) Ready(obj map[string]any) (bool, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), evalTimeout)
	defer cancel()
	self := types.NewStringInterfaceMap(jsonAdapter{}, obj)
	out, _, err := r.prg.ContextEval(ctx, map[string]any{selfVar: self})
	if err != nil {
		return r.failed(err)
	}
	ready, ok := out.(types.Bool)
	if !ok {
		return false, "", fmt.Errorf("readyWhen %q gave a %s, want a bool", r.expr, out.Type().TypeName())
	}
	if !ready {
		return false, fmt.Sprintf("%s is false", r.expr), nil
	}
	return true, "", nil
}

// failed sorts an evaluation error: CEL reports an error of the object's content (a missing
// field, a value of another type) as a value of type error, which makes the object not
// ready yet; anything else, such as the cost limit, stops evaluation and can never succeed.
// The time limit is the exception to the rule: CEL reports it as a value of type error too.
func (r *Rule) failed(err error) (bool, string, error) {
	if errors.Is(err, context.DeadlineExceeded) {
		return false, "", fmt.Errorf("evaluating readyWhen %q took longer than %v: %w", r.expr, evalTimeout, err)
	}
	var celErr *types.Err
	if errors.As(err, &celErr) {
		return false, fmt.Sprintf("%s cannot be evaluated yet: %v", r.expr, err), nil
	}
	return false, "", fmt.Errorf("evaluating readyWhen %q: %w", r.expr, err)
}

// jsonAdapter converts the values of a JSON-decoded object to CEL values as the object's
// fields are read. It differs from CEL's default only in turning a whole float64 into an
// int (see the package documentation), and it converts nested objects and lists itself so
// that their fields get the same treatment.
type jsonAdapter struct{}

// NativeToValue implements types.Adapter.
func (a jsonAdapter) NativeToValue(value any) ref.Val {
	switch v := value.(type) {
	case map[string]any:
		return types.NewStringInterfaceMap(a, v)
	case []any:
		return types.NewDynamicList(a, v)
	case float64:
		if i, ok := wholeInt(v); ok {
			return types.Int(i)
		}
	}
	return types.DefaultTypeAdapter.NativeToValue(value)
}

// wholeInt returns f as an int64 when it is a whole number in int64's range.
func wholeInt(f float64) (int64, bool) {
	// 1<<63 is exact as a float64, unlike math.MaxInt64, so the bounds are exact too.
	if f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
		return 0, false // NaN fails the first test, the infinities the others.
	}
	return int64(f), true
}

// cacheSize bounds a Cache: far more distinct expressions than the stages of all services
// of one operator have.
const cacheSize = 256

// Cache compiles each distinct expression once and keeps the result, an error included,
// so that evaluating a stage at every reconciliation does not compile its expression again.
// The zero Cache is ready for use; it is safe for concurrent use.
type Cache struct {
	mu     sync.Mutex
	rules  map[string]compiled
	lags   map[string]compiledLag
	values map[string]compiledValue
}

// compiled is the outcome of compiling one expression.
type compiled struct {
	rule *Rule
	err  error
}

// Compile returns the compiled expression, compiling it if the cache does not have it yet.
// When the cache is full, it forgets an arbitrary expression to make room.
func (c *Cache) Compile(expr string) (*Rule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.rules[expr]; ok {
		return got.rule, got.err
	}
	if c.rules == nil {
		c.rules = make(map[string]compiled)
	}
	if len(c.rules) >= cacheSize {
		c.evictOne()
	}
	rule, err := Compile(expr)
	c.rules[expr] = compiled{rule: rule, err: err}
	return rule, err
}

// evictOne forgets one expression. Which one does not matter: the cache only fills up
// when expressions keep changing, and a forgotten one costs a compilation.
func (c *Cache) evictOne() {
	for expr := range c.rules {
		delete(c.rules, expr)
		return
	}
}
