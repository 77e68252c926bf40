package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The normaliser of the golden files. Outputs of the tests on real API servers differ from
// run to run only in what the clocks and the network decide; normalise replaces exactly that,
// and nothing a user would check:
//   - timestamps (RFC 3339) by <time>;
//   - relative times ("3m ago", "in 5s") by <age>;
//   - measured durations by <d>: the lease's time left, the copy's age and the recovery time
//     in front of the objective's RPO or RTO ("4.1s/1m" becomes "<d>/1m"), the duration of a
//     move or a dry run in a message, a drill's estimated recovery time, and in JSON and YAML
//     the values of dataAge, expiresIn, recoveryTime and estimatedRecoveryTime;
//   - the elapsed time in front of each progress line ("+1.2s") by +<t>;
//   - in tables, the padding between columns, which follows the widths of the values
//     replaced: the columns are aligned again after the replacements;
//   - the loopback ports of the API servers and proxies by <port>;
//   - in a table, the cells of the RECOVERY column by <d>;
//   - what a running move waits for: the controllers poll, so how often a running
//     Switchover's message changes, and to what, depends on timing. Each such message
//     ("...: waiting for ...") becomes "<what it waits for>", and a run of them one line.
//
// The objectives' RPO and RTO, the epochs, sites, phases, reasons and messages stay as they are.
var normalisers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`), "<time>"},
	{regexp.MustCompile(dur + ` ago`), "<age> ago"},
	{regexp.MustCompile(`\bin ` + dur), "in <age>"},
	{regexp.MustCompile(`(?m)^\+` + dur + ` +`), "+<t>  "},
	{regexp.MustCompile(`(/\d+) ` + dur + ` left`), "$1 <d> left"},
	{regexp.MustCompile(dur + `/(` + dur + `|-)`), "<d>/$1"},
	{regexp.MustCompile(`(dry run, )` + dur), "$1<d>"},
	{regexp.MustCompile(`(estimated recovery time )` + dur), "$1<d>"},
	{regexp.MustCompile(`("(dataAge|expiresIn|recoveryTime|estimatedRecoveryTime)": ")[^"]*"`), `$1<d>"`},
	{regexp.MustCompile(`(?m)^(\s*(dataAge|expiresIn|recoveryTime|estimatedRecoveryTime): ).*$`), `$1<d>`},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:<port>"},
	{regexp.MustCompile(`(Running: moving SharedService \S+ from \S+ to \S+: ).*waiting for.*`), "$1<what it waits for>"},
}

// measuredColumns are the table columns whose every value is a measured duration.
var measuredColumns = map[string]bool{"RECOVERY": true}

// dur matches a Go or kubectl duration: "12ms", "4.1s", "2m5s", "3h".
const dur = `-?\d+(?:\.\d+)?(?:ms|µs|ns|s|m|h|d)(?:\d+(?:\.\d+)?(?:ms|s|m|h))*`

// normalise replaces what varies between runs in the plugin's output. A table (its first
// line an upper-case header) is normalised cell by cell and aligned again.
func normalise(s string) string {
	if !tableHeader.MatchString(s) {
		var out []string
		for _, line := range strings.SplitAfter(replaceVarying(s), "\n") {
			if len(out) > 0 && out[len(out)-1] == line && strings.Contains(line, "<what it waits for>") {
				continue
			}
			out = append(out, line)
		}
		return strings.Join(out, "")
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		cells := columnGap.Split(line, -1)
		for i := range cells {
			cells[i] = replaceVarying(cells[i])
			if len(rows) > 0 && i < len(rows[0]) && measuredColumns[rows[0][i]] && cells[i] != "-" {
				cells[i] = "<d>"
			}
		}
		rows = append(rows, cells)
	}
	var b strings.Builder
	if err := table(&b, rows[0], rows[1:]); err != nil {
		return err.Error()
	}
	return b.String()
}

// tableHeader matches output that starts with a table's header; columnGap separates its
// columns (the tables pad them with at least three spaces, and no value holds three).
var (
	tableHeader = regexp.MustCompile(`^[A-Z][A-Z /.]+ {3}[A-Z]`)
	columnGap   = regexp.MustCompile(` {3,}`)
)

func replaceVarying(s string) string {
	for _, n := range normalisers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return s
}

// golden compares got, normalised, with testdata/name, or writes it there with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalise(got)
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (create it with -update): %v", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got); run with -update if the change is intended:\n%s", path, diff)
	}
}
