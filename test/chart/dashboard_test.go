package chart

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/deich-io/deich/test/dashboard"
)

// The kinds of metrics in managerMetrics.
const (
	counter   = "counter"
	gauge     = "gauge"
	histogram = "histogram"
)

// managerMetrics are the metrics Deich's manager exports, by kind: Deich's own
// (internal/metrics, which TestDashboardMetricListNamesEveryDeichMetric holds this list to)
// and those of controller-runtime and client-go's leader election that the dashboard may
// use. test/dashboard scrapes real managers for every name the dashboard queries.
var managerMetrics = map[string]string{
	"deich_change_propagation_seconds":                histogram,
	"deich_copies_rendered_total":                     counter,
	"deich_drill_failed":                              gauge,
	"deich_drill_last_run_timestamp_seconds":          gauge,
	"deich_drills_total":                              counter,
	"deich_egress_denials_total":                      counter,
	"deich_egress_held_objects":                       gauge,
	"deich_egress_withdrawals_total":                  counter,
	"deich_failovers_total":                           counter,
	"deich_fenced":                                    gauge,
	"deich_health_check_up":                           gauge,
	"deich_health_probes_total":                       counter,
	"deich_lease_record_writes_total":                 counter,
	"deich_lease_remaining_seconds":                   gauge,
	"deich_lease_write_duration_seconds":              histogram,
	"deich_mirror_rounds_total":                       counter,
	"deich_mirrored_objects":                          gauge,
	"deich_peer_credentials_expiry_timestamp_seconds": gauge,
	"deich_peer_heartbeat_failures_total":             counter,
	"deich_peer_heartbeat_latency_seconds":            histogram,
	"deich_peer_reachable":                            gauge,
	"deich_peer_ready":                                gauge,
	"deich_recovery_seconds":                          histogram,
	"deich_recovery_slower_than_rto_total":            counter,
	"deich_replication_lag_seconds":                   gauge,
	"deich_serving":                                   gauge,
	"deich_sync_errors_total":                         counter,

	"controller_runtime_active_workers":                  gauge,
	"controller_runtime_max_concurrent_reconciles":       gauge,
	"controller_runtime_reconcile_errors_total":          counter,
	"controller_runtime_reconcile_panics_total":          counter,
	"controller_runtime_reconcile_time_seconds":          histogram,
	"controller_runtime_reconcile_total":                 counter,
	"controller_runtime_terminal_reconcile_errors_total": counter,
	"workqueue_adds_total":                               counter,
	"workqueue_depth":                                    gauge,
	"workqueue_longest_running_processor_seconds":        gauge,
	"workqueue_queue_duration_seconds":                   histogram,
	"workqueue_retries_total":                            counter,
	"workqueue_unfinished_work_seconds":                  gauge,
	"workqueue_work_duration_seconds":                    histogram,
	"leader_election_master_status":                      gauge,
}

// dashboardRows are the rows of the dashboard, in order.
var dashboardRows = []string{"Services", "Failover & recovery", "Peers", "Drills", "Controller"}

func TestDashboardIsNotRenderedByDefault(t *testing.T) {
	requireHelm(t)
	for _, o := range render(t, "--set", "site="+site) {
		if _, ok := o.GetLabels()["grafana_dashboard"]; ok || o.GetName() == releaseName+"-dashboard" {
			t.Errorf("rendered %s without grafana.dashboard.enabled", objectKey(o))
		}
	}
}

func TestDashboardConfigMapCarriesTheDashboardForTheSidecar(t *testing.T) {
	requireHelm(t)
	want := decodeJSON(t, readFile(t, filepath.Join(root, dashboard.Path)))
	for _, tc := range []struct {
		name            string
		args            []string
		wantNamespace   string
		wantLabels      map[string]string
		wantAnnotations map[string]string
	}{{
		name:          "in the release namespace with the sidecar's default label",
		wantNamespace: releaseNamespace,
		wantLabels:    map[string]string{"grafana_dashboard": "1"},
	}, {
		name: "in Grafana's namespace, in a folder",
		args: []string{
			"--set", "grafana.dashboard.namespace=monitoring",
			"--set", "grafana.dashboard.annotations.grafana_folder=Deich",
		},
		wantNamespace:   "monitoring",
		wantLabels:      map[string]string{"grafana_dashboard": "1"},
		wantAnnotations: map[string]string{"grafana_folder": "Deich"},
	}, {
		name: "with the sidecar's label replaced",
		args: []string{
			"--set", "grafana.dashboard.labels.grafana_dashboard=null",
			"--set-string", "grafana.dashboard.labels.dashboards=deich",
		},
		wantNamespace: releaseNamespace,
		wantLabels:    map[string]string{"dashboards": "deich"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, append([]string{"--set", "site=" + site, "--set", "grafana.dashboard.enabled=true"}, tc.args...)...)
			var found []corev1.ConfigMap
			for _, o := range objs {
				if o.GetKind() != "ConfigMap" {
					continue
				}
				var cm corev1.ConfigMap
				fromUnstructured(t, o, &cm)
				if _, ok := cm.Data["deich.json"]; ok {
					found = append(found, cm)
				}
			}
			if len(found) != 1 {
				t.Fatalf("rendered %d ConfigMaps with deich.json, want 1", len(found))
			}
			cm := found[0]
			if cm.Name != releaseName+"-dashboard" || cm.Namespace != tc.wantNamespace {
				t.Errorf("ConfigMap is %s/%s, want %s/%s-dashboard", cm.Namespace, cm.Name, tc.wantNamespace, releaseName)
			}
			gotLabels := map[string]string{}
			for k, v := range cm.Labels {
				if !strings.HasPrefix(k, "app.kubernetes.io/") && !strings.HasPrefix(k, "helm.sh/") {
					gotLabels[k] = v
				}
			}
			if diff := cmp.Diff(tc.wantLabels, gotLabels); diff != "" {
				t.Errorf("labels besides the chart's own (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAnnotations, cm.Annotations); diff != "" {
				t.Errorf("annotations (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, decodeJSON(t, []byte(cm.Data["deich.json"]))); diff != "" {
				t.Errorf("deich.json differs from %s (-want +got):\n%s", dashboard.Path, diff)
			}
		})
	}
}

func TestDashboardHasTheRowsVariablesAndPanelsAnSREExpects(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion %d, want at least 39", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both", d.UID, d.Title)
	}

	vars := map[string]dashboard.Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || v.Query != "prometheus" {
		t.Errorf("variable datasource is %+v, want a data source variable of type prometheus", v)
	}
	for _, name := range []string{"namespace", "service", "site"} {
		v := vars[name]
		q, _ := v.Query.(string)
		if v.Type != "query" || !strings.HasPrefix(q, "label_values(") || !strings.HasSuffix(q, ", "+name+")") {
			t.Errorf("variable %s is %+v, want a query variable label_values(..., %s)", name, v, name)
		}
		if !isDatasourceVariable(v.Datasource) {
			t.Errorf("variable %s reads data source %+v, want ${datasource}", name, v.Datasource)
		}
	}

	var rows []string
	ids := map[int]string{}
	for _, p := range d.AllPanels() {
		if other, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", other, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if !isDatasourceVariable(p.Datasource) {
			t.Errorf("panel %q reads data source %+v, want ${datasource}", p.Title, p.Datasource)
		}
		if p.FieldConfig.Defaults.Unit == "" {
			t.Errorf("panel %q sets no unit", p.Title)
		}
		var exprs int
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) != "" {
				exprs++
			}
			if q.Datasource != nil && !isDatasourceVariable(q.Datasource) {
				t.Errorf("panel %q query %s reads data source %+v, want ${datasource}", p.Title, q.RefID, q.Datasource)
			}
		}
		if exprs == 0 {
			t.Errorf("panel %q has no query with an expr", p.Title)
		}
	}
	if diff := cmp.Diff(dashboardRows, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
}

func TestDashboardQueriesOnlyMetricsTheManagerExports(t *testing.T) {
	d := loadDashboard(t)
	known := map[string]bool{}
	for _, f := range slices.Concat(dashboard.Functions, dashboard.Aggregations) {
		known[f] = true
	}
	used := map[string]bool{}
	for _, q := range d.Queries() {
		e, err := dashboard.Scan(q.PromQL)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
			continue
		}
		for _, f := range e.Functions {
			if !known[strings.ToLower(f)] {
				t.Errorf("%s calls %s, which is no PromQL function: %s", q.Where, f, q.PromQL)
			}
		}
		for _, name := range e.Metrics() {
			used[name] = true
			if _, ok := exportedAs(name); !ok {
				t.Errorf("%s queries %s, which the manager does not export: %s", q.Where, name, q.PromQL)
			}
		}
	}
	// The dashboard shows what its rows promise; a query edited away from them shows here.
	for _, name := range []string{
		"deich_serving", "deich_replication_lag_seconds", "deich_lease_remaining_seconds",
		"deich_health_check_up", "deich_failovers_total", "deich_recovery_seconds_bucket",
		"deich_recovery_slower_than_rto_total", "deich_peer_reachable", "deich_peer_ready",
		"deich_peer_credentials_expiry_timestamp_seconds", "deich_drill_failed",
		"deich_drill_last_run_timestamp_seconds", "deich_drills_total",
		"controller_runtime_reconcile_total", "workqueue_depth",
	} {
		if !used[name] {
			t.Errorf("no query of the dashboard reads %s", name)
		}
	}
}

// exportedAs returns the metric of managerMetrics a queried series name belongs to: the name
// itself, or for a histogram's _bucket, _sum and _count series the histogram's.
func exportedAs(series string) (string, bool) {
	if _, ok := managerMetrics[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && managerMetrics[base] == histogram {
			return base, true
		}
	}
	return "", false
}

func TestDashboardMetricListNamesEveryDeichMetric(t *testing.T) {
	want := deichMetrics(t, filepath.Join(root, "internal", "metrics"))
	got := map[string]string{}
	for name, kind := range managerMetrics {
		if strings.HasPrefix(name, "deich_") {
			got[name] = kind
		}
	}
	if len(want) == 0 {
		t.Fatal("found no metrics in internal/metrics")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("managerMetrics differs from internal/metrics (-want +got):\n%s", diff)
	}
}

// deichMetrics reads the metrics that the Go files of dir define with client_golang's
// prometheus.New<Kind>[Vec](prometheus.<Kind>Opts{Name: "..."}), by name and kind.
func deichMetrics(t *testing.T, dir string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
				return true
			}
			kind := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(sel.Sel.Name, "New"), "Vec"))
			if kind != counter && kind != gauge && kind != histogram && kind != "summary" {
				return true
			}
			opts, ok := call.Args[0].(*ast.CompositeLit)
			if !ok {
				return true
			}
			for _, elt := range opts.Elts {
				kv, ok := elt.(*ast.KeyValueExpr)
				if key, _ := kv.Key.(*ast.Ident); !ok || key == nil || key.Name != "Name" {
					continue
				}
				lit, ok := kv.Value.(*ast.BasicLit)
				if !ok {
					t.Errorf("%s: a metric name that is not a string literal", fset.Position(kv.Pos()))
					continue
				}
				name, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
				}
				out[name] = kind
			}
			return true
		})
	}
	return out
}

func TestDashboardQueryScanFindsTheMetricsOfAQuery(t *testing.T) {
	for _, tc := range []struct {
		name          string
		expr          string
		wantMetrics   []string
		wantFunctions []string
		wantLabels    map[string][]string
	}{{
		name:        "a bare metric name",
		expr:        "deich_serving",
		wantMetrics: []string{"deich_serving"},
	}, {
		name:        "a metric followed by its label matchers, with Grafana variables in the values",
		expr:        `deich_serving{namespace=~"$namespace", service =~ "${service}", site!="x"}`,
		wantMetrics: []string{"deich_serving"},
		wantLabels:  map[string][]string{"deich_serving": {"namespace", "service", "site"}},
	}, {
		name:          "a metric followed by a range with a Grafana interval",
		expr:          "rate(deich_sync_errors_total[$__rate_interval])",
		wantMetrics:   []string{"deich_sync_errors_total"},
		wantFunctions: []string{"rate"},
	}, {
		name:          "a metric followed by ) and by white space",
		expr:          "sum(deich_fenced) + deich_serving == 1",
		wantMetrics:   []string{"deich_fenced", "deich_serving"},
		wantFunctions: []string{"sum"},
	}, {
		name:          "a metric followed by a comma",
		expr:          `label_replace(deich_serving, "to", "$1", "site", "(.*)")`,
		wantMetrics:   []string{"deich_serving"},
		wantFunctions: []string{"label_replace"},
	}, {
		name:          "an aggregation with a grouping clause before its argument",
		expr:          "histogram_quantile(0.99, sum by (le, peer) (rate(deich_peer_heartbeat_latency_seconds_bucket[5m])))",
		wantMetrics:   []string{"deich_peer_heartbeat_latency_seconds_bucket"},
		wantFunctions: []string{"histogram_quantile", "sum", "rate"},
	}, {
		name:          "an aggregation with the grouping clause after its argument",
		expr:          "max(deich_lease_remaining_seconds) without(site)",
		wantMetrics:   []string{"deich_lease_remaining_seconds"},
		wantFunctions: []string{"max"},
	}, {
		name:          "vector matching with on and group_left label lists",
		expr:          "deich_replication_lag_seconds * on (namespace, service) group_left (site) deich_serving",
		wantMetrics:   []string{"deich_replication_lag_seconds", "deich_serving"},
		wantFunctions: nil,
	}, {
		name:          "keywords, numbers, offsets and the bool modifier",
		expr:          "deich_fenced offset 5m > bool 1e3 and deich_serving unless deich_peer_ready or inf",
		wantMetrics:   []string{"deich_fenced", "deich_peer_ready", "deich_serving"},
		wantFunctions: nil,
	}, {
		name:          "a Grafana variable as a value",
		expr:          "vector($rpo)",
		wantFunctions: []string{"vector"},
	}, {
		name:          "a function without arguments",
		expr:          "min by (peer) (deich_peer_credentials_expiry_timestamp_seconds) - time()",
		wantMetrics:   []string{"deich_peer_credentials_expiry_timestamp_seconds"},
		wantFunctions: []string{"min", "time"},
	}, {
		name:        "a subquery and a comment",
		expr:        "max_over_time(deich_replication_lag_seconds[1h:1m]) # not_a_metric\n",
		wantMetrics: []string{"deich_replication_lag_seconds"},
		wantFunctions: []string{
			"max_over_time",
		},
	}, {
		name:        "a recording rule's name with colons",
		expr:        "job:deich_failovers:rate5m",
		wantMetrics: []string{"job:deich_failovers:rate5m"},
	}, {
		name:          "a string that looks like a metric",
		expr:          `count_values("deich_fake", deich_serving)`,
		wantMetrics:   []string{"deich_serving"},
		wantFunctions: []string{"count_values"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := dashboard.Scan(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantMetrics, e.Metrics()); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFunctions, e.Functions); diff != "" {
				t.Errorf("functions (-want +got):\n%s", diff)
			}
			gotLabels := map[string][]string{}
			for _, s := range e.Selectors {
				if len(s.Labels) > 0 {
					gotLabels[s.Metric] = s.Labels
				}
			}
			if tc.wantLabels == nil {
				tc.wantLabels = map[string][]string{}
			}
			if diff := cmp.Diff(tc.wantLabels, gotLabels); diff != "" {
				t.Errorf("label names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDashboardQueryScanRefusesUnbalancedQueries(t *testing.T) {
	for _, expr := range []string{
		"sum(deich_serving",
		"deich_serving)",
		`deich_serving{site="sh-kiel"`,
		"rate(deich_sync_errors_total[5m)",
		`deich_serving{site="sh-kiel}`,
	} {
		t.Run(expr, func(t *testing.T) {
			if e, err := dashboard.Scan(expr); err == nil {
				t.Errorf("Scan(%q) = %+v, want an error", expr, e)
			}
		})
	}
}

func loadDashboard(t *testing.T) *dashboard.Dashboard {
	t.Helper()
	d, err := dashboard.Load(filepath.Join(root, dashboard.Path))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// isDatasourceVariable reports whether ref names the dashboard's datasource variable.
func isDatasourceVariable(ref *dashboard.DatasourceRef) bool {
	return ref != nil && ref.Type == "prometheus" && (ref.UID == "${datasource}" || ref.UID == "$datasource")
}

func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode JSON: %v", err)
	}
	return v
}
