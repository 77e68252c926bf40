// Package dashboard reads the Grafana dashboard the Helm chart ships
// (charts/deich/dashboards/deich.json) and finds the metrics its PromQL queries, so that tests
// can hold the dashboard to what Deich's manager exports: test/chart checks the dashboard's
// shape and names against the manager's metric definitions, and this package's test scrapes
// two real managers through a failover, a drill and a cut link.
package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Path is where the dashboard lives, relative to the repository root.
var Path = filepath.Join("charts", "deich", "dashboards", "deich.json")

// Dashboard is the part of a Grafana dashboard model the tests read.
type Dashboard struct {
	UID           string     `json:"uid"`
	Title         string     `json:"title"`
	SchemaVersion int        `json:"schemaVersion"`
	Panels        []Panel    `json:"panels"`
	Templating    Templating `json:"templating"`
}

// Panel is a panel of the dashboard, or a row (Type "row") holding the panels below it.
type Panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Datasource  *DatasourceRef `json:"datasource"`
	Targets     []Target       `json:"targets"`
	FieldConfig FieldConfig    `json:"fieldConfig"`
	// Panels are a collapsed row's panels; an open row's panels follow it in the dashboard.
	Panels []Panel `json:"panels"`
}

// DatasourceRef names the data source a panel or query reads, usually the dashboard's
// variable ("${datasource}").
type DatasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Datasource *DatasourceRef `json:"datasource"`
}

// FieldConfig holds a panel's display settings; the tests read its unit.
type FieldConfig struct {
	Defaults struct {
		Unit string `json:"unit"`
	} `json:"defaults"`
}

// Templating holds the dashboard's variables.
type Templating struct {
	List []Variable `json:"list"`
}

// Variable is a dashboard variable. Query is a string, or for query variables saved by
// newer Grafana versions an object with the query in its field "query".
type Variable struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Query      any            `json:"query"`
	Datasource *DatasourceRef `json:"datasource"`
}

// Load reads the dashboard at path.
func Load(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the tests read the dashboard the repository ships.
	if err != nil {
		return nil, fmt.Errorf("read dashboard: %w", err)
	}
	return Parse(data)
}

// Parse decodes a dashboard model.
func Parse(data []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode dashboard: %w", err)
	}
	return &d, nil
}

// AllPanels returns every panel and row, the panels of collapsed rows included, in order.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// Query is one PromQL expression of the dashboard and where it is.
type Query struct {
	// Where names the panel and query, or the variable, for messages.
	Where string
	// PromQL is the expression as the dashboard holds it, Grafana variables included.
	PromQL string
}

// labelValues matches a query variable's label_values(<selector>, <label>).
var labelValues = regexp.MustCompile(`^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// Queries returns every PromQL expression of the dashboard: the panels' targets, and the
// series selectors and expressions of its query variables.
func (d *Dashboard) Queries() []Query {
	var out []Query
	for _, p := range d.AllPanels() {
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) != "" {
				out = append(out, Query{Where: fmt.Sprintf("panel %q query %s", p.Title, t.RefID), PromQL: t.Expr})
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Query
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		if m := labelValues.FindStringSubmatch(s); m != nil {
			out = append(out, Query{Where: fmt.Sprintf("variable %q", v.Name), PromQL: m[1]})
		} else if inner, ok := strings.CutPrefix(strings.TrimSpace(s), "query_result("); ok {
			out = append(out, Query{Where: fmt.Sprintf("variable %q", v.Name), PromQL: strings.TrimSuffix(inner, ")")})
		}
	}
	return out
}

// Selector is a series selector of a query: a metric name and the names of the labels it
// matches on.
type Selector struct {
	Metric string
	Labels []string
}

// Expr is what [Scan] finds in a PromQL expression.
type Expr struct {
	// Selectors are the series selectors in order of appearance.
	Selectors []Selector
	// Functions are the names called as functions or used as aggregation operators.
	Functions []string
}

// Metrics returns the distinct metric names of the selectors, sorted.
func (e Expr) Metrics() []string {
	var names []string
	for _, s := range e.Selectors {
		names = append(names, s.Metric)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Aggregations are PromQL's aggregation operators. They may be followed by a grouping clause
// instead of their parenthesised argument (sum by (site) (...)), so they are known by name.
var Aggregations = []string{
	"avg", "bottomk", "count", "count_values", "group", "limit_ratio", "limitk", "max", "min",
	"quantile", "stddev", "stdvar", "sum", "topk",
}

// Functions are PromQL's functions (Prometheus 3).
var Functions = []string{
	"abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
	"avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
	"count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
	"delta", "deriv", "double_exponential_smoothing", "end", "exp", "first_over_time", "floor",
	"histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
	"histogram_stddev", "histogram_stdvar", "histogram_sum", "hour", "idelta", "increase",
	"info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
	"mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi",
	"predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
	"round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc",
	"sort_desc", "sqrt", "start", "stddev_over_time", "stdvar_over_time", "sum_over_time",
	"tan", "tanh", "time", "timestamp", "ts_of_max_over_time", "ts_of_min_over_time",
	"ts_of_last_over_time", "vector", "year",
}

// keywords are PromQL's binary operators spelled as words, modifiers and literals.
var keywords = []string{"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}

// grouping keywords take a parenthesised list of label names.
var grouping = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// Scan finds the series selectors and function names of a PromQL expression, as Grafana
// holds it (with $variables). It is a tokenizer, not a parser: an identifier is a metric name
// unless it is a keyword, a function or aggregation (followed by "(", or known by name), a
// label name (inside {...}, or in the list after by, without, on, ignoring, group_left or
// group_right), inside a range or subquery [...], a string, a comment or a Grafana variable.
// It fails on unbalanced brackets and unterminated strings.
func Scan(expr string) (Expr, error) {
	var (
		out Expr
		// parens records, per open "(", whether it holds a list of label names.
		parens []bool
		// braces and brackets count the open "{" and "[".
		braces, brackets int
		// groupNext is set after a grouping keyword: the next "(" opens a label list.
		groupNext bool
		// current is the selector whose {...} may follow.
		current = -1
	)
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return Expr{}, err
			}
			i = end
			continue
		case c == '$':
			i = skipVariable(expr, i)
			groupNext = false
			continue
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdentPart(expr[i]) {
				i++
			}
			word := expr[start:i]
			if braces > 0 {
				if current >= 0 {
					out.Selectors[current].Labels = append(out.Selectors[current].Labels, word)
				}
				continue
			}
			if brackets > 0 || len(parens) > 0 && parens[len(parens)-1] {
				continue
			}
			lower := strings.ToLower(word)
			switch {
			case slices.Contains(grouping, lower):
				groupNext = true
				current = -1
				continue
			case slices.Contains(keywords, lower):
				current = -1
			case nextNonSpace(expr, i) == '(' || slices.Contains(Aggregations, lower):
				out.Functions = append(out.Functions, word)
				current = -1
			default:
				out.Selectors = append(out.Selectors, Selector{Metric: word})
				current = len(out.Selectors) - 1
			}
			groupNext = false
			continue
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			// A number or a duration (offset 5m): digits, letters, dots, underscores.
			for i < len(expr) && (isIdentPart(expr[i]) || expr[i] == '.') {
				i++
			}
			current = -1
			continue
		}
		switch c {
		case '{':
			braces++
		case '}':
			if braces == 0 {
				return Expr{}, fmt.Errorf("unbalanced } at offset %d in %q", i, expr)
			}
			braces--
			if braces == 0 {
				current = -1
			}
		case '[':
			brackets++
			current = -1
		case ']':
			if brackets == 0 {
				return Expr{}, fmt.Errorf("unbalanced ] at offset %d in %q", i, expr)
			}
			brackets--
		case '(':
			parens = append(parens, groupNext)
			groupNext = false
			current = -1
		case ')':
			if len(parens) == 0 {
				return Expr{}, fmt.Errorf("unbalanced ) at offset %d in %q", i, expr)
			}
			parens = parens[:len(parens)-1]
			current = -1
		default:
			if braces == 0 {
				current = -1
			}
		}
		i++
	}
	if braces > 0 || brackets > 0 || len(parens) > 0 {
		return Expr{}, fmt.Errorf("unclosed brackets in %q", expr)
	}
	return out, nil
}

// skipString returns the offset after the string literal that starts at expr[start].
func skipString(expr string, start int) (int, error) {
	quote := expr[start]
	for i := start + 1; i < len(expr); i++ {
		switch {
		case expr[i] == '\\' && quote != '`':
			i++
		case expr[i] == quote:
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d in %q", start, expr)
}

// skipVariable returns the offset after the Grafana variable that starts at expr[start]:
// $name or ${name} (with an optional :format).
func skipVariable(expr string, start int) int {
	i := start + 1
	if i < len(expr) && expr[i] == '{' {
		if end := strings.IndexByte(expr[i:], '}'); end >= 0 {
			return i + end + 1
		}
		return len(expr)
	}
	for i < len(expr) && isIdentPart(expr[i]) {
		i++
	}
	return i
}

// nextNonSpace returns the first character at or after expr[i] that is not white space, or
// 0 at the end.
func nextNonSpace(expr string, i int) byte {
	for ; i < len(expr); i++ {
		if c := expr[i]; c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9'
}
