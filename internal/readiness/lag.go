package readiness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
)

// LagRule is a compiled replicationLag expression of a promotion stage
// (SharedService.spec.promotion.stages[].replicationLag): how far the data behind one of the
// stage's objects is behind the active site, read from the object's status by the site that
// serves, for example
//
//	timestamp(self.status.lastSyncTime)   // a csi-addons VolumeReplication: when it last synced
//	duration(self.status.lag)             // a status that gives the lag itself
//
// It is safe for concurrent use.
type LagRule struct {
	expr string
	prg  cel.Program
}

// CompileLag compiles a replicationLag expression. The expression sees the object as self and
// must give a duration (the lag) or a timestamp (when the data was last replicated); one whose
// type is only known when it runs is accepted, and Lag checks its result.
func CompileLag(expr string) (*LagRule, error) {
	if expr == "" {
		return nil, errors.New("replicationLag is empty")
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("replicationLag %q does not compile: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(cel.DurationType) && !t.IsExactType(cel.TimestampType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("replicationLag %q has type %s, want a duration or a timestamp", expr, t)
	}
	prg, err := e.Program(ast,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	)
	if err != nil {
		return nil, fmt.Errorf("replicationLag %q: %w", expr, err)
	}
	return &LagRule{expr: expr, prg: prg}, nil
}

// String returns the expression as written.
func (r *LagRule) String() string {
	return r.expr
}

// Lag evaluates the expression over obj at now. A duration is the lag; a timestamp is when
// the data was last replicated, and the lag is now minus it (never below zero). known is
// false, with a message that says why, while the object's status does not tell yet (a field
// that is missing); the error is only for an expression that can never be evaluated.
func (r *LagRule) Lag(obj map[string]any, now time.Time) (lag time.Duration, known bool, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), evalTimeout)
	defer cancel()
	out, _, err := r.prg.ContextEval(ctx, map[string]any{selfVar: types.NewStringInterfaceMap(jsonAdapter{}, obj)})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, false, "", fmt.Errorf("evaluating replicationLag %q took longer than %v: %w", r.expr, evalTimeout, err)
		}
		var celErr *types.Err
		if errors.As(err, &celErr) {
			return 0, false, fmt.Sprintf("%s cannot be evaluated yet: %v", r.expr, err), nil
		}
		return 0, false, "", fmt.Errorf("evaluating replicationLag %q: %w", r.expr, err)
	}
	switch v := out.(type) {
	case types.Duration:
		return max(v.Duration, 0), true, "", nil
	case types.Timestamp:
		return max(now.Sub(v.Time), 0), true, "", nil
	}
	return 0, false, "", fmt.Errorf("replicationLag %q gave a %s, want a duration or a timestamp", r.expr, out.Type().TypeName())
}

// CompileLag returns the compiled replicationLag expression, compiling it if the cache does
// not have it yet.
func (c *Cache) CompileLag(expr string) (*LagRule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.lags[expr]; ok {
		return got.rule, got.err
	}
	if c.lags == nil {
		c.lags = make(map[string]compiledLag)
	}
	if len(c.lags) >= cacheSize {
		for expr := range c.lags {
			delete(c.lags, expr)
			break
		}
	}
	rule, err := CompileLag(expr)
	c.lags[expr] = compiledLag{rule: rule, err: err}
	return rule, err
}

// compiledLag is the outcome of compiling one replicationLag expression.
type compiledLag struct {
	rule *LagRule
	err  error
}

// ValueRule is a compiled expression that reads a string from an object, such as the from of
// a promotion stage's handoff ("self.status.demotionToken"). It is safe for concurrent use.
type ValueRule struct {
	expr string
	prg  cel.Program
}

// CompileValue compiles an expression that gives a string.
func CompileValue(expr string) (*ValueRule, error) {
	if expr == "" {
		return nil, errors.New("the expression is empty")
	}
	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%q does not compile: %w", expr, iss.Err())
	}
	if t := ast.OutputType(); !t.IsExactType(cel.StringType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("%q has type %s, want string", expr, t)
	}
	prg, err := e.Program(ast,
		cel.EvalOptions(cel.OptOptimize),
		cel.CostLimit(costLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", expr, err)
	}
	return &ValueRule{expr: expr, prg: prg}, nil
}

// Value evaluates the expression over obj. ok is false, with a message that says why, while
// the object does not have the value yet (a missing field, an empty string).
func (r *ValueRule) Value(obj map[string]any) (value string, ok bool, msg string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), evalTimeout)
	defer cancel()
	out, _, err := r.prg.ContextEval(ctx, map[string]any{selfVar: types.NewStringInterfaceMap(jsonAdapter{}, obj)})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return "", false, "", fmt.Errorf("evaluating %q took longer than %v: %w", r.expr, evalTimeout, err)
		}
		var celErr *types.Err
		if errors.As(err, &celErr) {
			return "", false, fmt.Sprintf("%s cannot be evaluated yet: %v", r.expr, err), nil
		}
		return "", false, "", fmt.Errorf("evaluating %q: %w", r.expr, err)
	}
	s, isString := out.(types.String)
	if !isString {
		return "", false, "", fmt.Errorf("%q gave a %s, want a string", r.expr, out.Type().TypeName())
	}
	if s == "" {
		return "", false, fmt.Sprintf("%s is empty", r.expr), nil
	}
	return string(s), true, "", nil
}

// CompileValue returns the compiled value expression, compiling it if the cache does not have
// it yet.
func (c *Cache) CompileValue(expr string) (*ValueRule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.values[expr]; ok {
		return got.rule, got.err
	}
	if c.values == nil {
		c.values = make(map[string]compiledValue)
	}
	if len(c.values) >= cacheSize {
		for expr := range c.values {
			delete(c.values, expr)
			break
		}
	}
	rule, err := CompileValue(expr)
	c.values[expr] = compiledValue{rule: rule, err: err}
	return rule, err
}

// compiledValue is the outcome of compiling one value expression.
type compiledValue struct {
	rule *ValueRule
	err  error
}
