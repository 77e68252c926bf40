package chart

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// alertTests holds the promtool unit tests of the chart's alerting rules. Each file reads the
// rules from rules.yaml, which the tests render next to it.
const alertTests = "test/chart/testdata/alerts"

// promtoolPath is the promtool binary: $PROMTOOL (set by `make test-all`), else
// bin/promtool-<PROMTOOL_VERSION>, which `make tools` builds.
func promtoolPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs promtool on the rendered chart")
	}
	bin := toolPath(t, "PROMTOOL", "promtool")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("promtool is missing (build it with `make tools`, or set PROMTOOL): %v", err)
	}
	return bin
}

// alertRulesFile renders the chart with every alert enabled and writes the PrometheusRule's
// spec, which is a Prometheus rule file, to dir/rules.yaml. It returns the rules.
func alertRulesFile(t *testing.T, dir string) []map[string]any {
	t.Helper()
	objs := render(t, "--set", "site="+site,
		"--set", "metrics.prometheusRule.enabled=true",
		"--set", "metrics.prometheusRule.alerts.noSiteServing.enabled=true")
	rule := find(t, objs, "PrometheusRule", releaseName)
	spec, _, err := unstructured.NestedMap(rule.Object, "spec")
	if err != nil || spec == nil {
		t.Fatalf("PrometheusRule %s has no spec: %v", releaseName, err)
	}
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	var rules []map[string]any
	groups, _, _ := unstructured.NestedSlice(spec, "groups")
	for _, g := range groups {
		rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rs {
			rules = append(rules, r.(map[string]any))
		}
	}
	return rules
}

// runPromtool runs promtool with args in dir and fails the test with its output when it
// fails.
func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), helmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolPath(t), args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out.String())
	}
}

// alertTestFiles returns the unit-test files under testdata/alerts.
func alertTestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, alertTests, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no alert unit tests in %s", alertTests)
	}
	return files
}

func TestAlertRulesPassPromtoolCheck(t *testing.T) {
	requireHelm(t)
	dir := t.TempDir()
	alertRulesFile(t, dir)
	runPromtool(t, dir, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
}

func TestAlertRulesPassTheirUnitTests(t *testing.T) {
	requireHelm(t)
	dir := t.TempDir()
	alertRulesFile(t, dir)
	for _, file := range alertTestFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			dst := filepath.Join(dir, filepath.Base(file))
			if err := os.WriteFile(dst, readFile(t, file), 0o600); err != nil {
				t.Fatal(err)
			}
			runPromtool(t, dir, "test", "rules", filepath.Base(file))
		})
	}
}

// alertUnitTests is the part of a promtool unit-test file that says which alerts it expects.
type alertUnitTests struct {
	Tests []struct {
		AlertRuleTests []struct {
			Alertname string `json:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `json:"exp_labels"`
			} `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestAlertRulesAreEachUnitTestedFiringAndNotFiring(t *testing.T) {
	requireHelm(t)
	rules := alertRulesFile(t, t.TempDir())

	// Every alert at each of its severities must be expected to fire somewhere, and every
	// alert expected not to fire somewhere.
	firing, quiet := map[string]bool{}, map[string]bool{}
	for _, file := range alertTestFiles(t) {
		var tests alertUnitTests
		if err := yaml.Unmarshal(readFile(t, file), &tests); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range tests.Tests {
			for _, at := range tc.AlertRuleTests {
				if len(at.ExpAlerts) == 0 {
					quiet[at.Alertname] = true
				}
				for _, a := range at.ExpAlerts {
					firing[at.Alertname+"/"+a.ExpLabels["severity"]] = true
				}
			}
		}
	}
	var untested []string
	for _, r := range rules {
		name := r["alert"].(string)
		severity, _, _ := unstructured.NestedString(r, "labels", "severity")
		if !firing[name+"/"+severity] {
			untested = append(untested, name+" firing with severity "+severity)
		}
		if !quiet[name] {
			untested = append(untested, name+" not firing")
		}
	}
	slices.Sort(untested)
	if diff := cmp.Diff([]string(nil), slices.Compact(untested)); diff != "" {
		t.Errorf("alerts without a unit test in %s (-want +got):\n%s", alertTests, diff)
	}
}
