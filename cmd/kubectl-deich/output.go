package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Output formats of -o.
const (
	outputTable = ""
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// checkOutput rejects an unknown -o value before anything is read or changed.
func checkOutput(format string) error {
	switch format {
	case outputTable, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use json or yaml, or leave -o out for a table", format)
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	var out []byte
	var err error
	switch format {
	case outputJSON:
		out, err = json.MarshalIndent(v, "", "    ")
		out = append(out, '\n')
	case outputYAML:
		out, err = yaml.Marshal(v)
	default:
		return fmt.Errorf("unknown output format %q", format)
	}
	if err != nil {
		return fmt.Errorf("encode the output as %s: %w", format, err)
	}
	_, err = w.Write(out)
	return err
}

// table writes rows under header the way kubectl does: columns separated by at least three
// spaces, upper-case headers.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := printers.GetNewTabWriter(w)
	_, _ = fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// ago says how long before now t was, as kubectl shows ages ("3m ago"), or how long after
// ("in 5s"); "-" for no time.
func ago(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(t.Time)
	if d < 0 {
		return "in " + duration.HumanDuration(-d)
	}
	return duration.HumanDuration(d) + " ago"
}

// span formats a duration for a table: to a tenth of a second below ten seconds ("4.1s"),
// to the second below an hour ("41s", "1m", "2m5s"), then as kubectl shows ages ("3h").
func span(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	switch {
	case d < 10*time.Second:
		return neg + d.Round(100*time.Millisecond).String()
	case d < time.Hour:
		d = d.Round(time.Second)
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		switch {
		case m == 0:
			return fmt.Sprintf("%s%ds", neg, s)
		case s == 0:
			return fmt.Sprintf("%s%dm", neg, m)
		}
		return fmt.Sprintf("%s%dm%ds", neg, m, s)
	}
	return neg + duration.HumanDuration(d)
}

// spanOf formats a metav1.Duration with span; "-" for none.
func spanOf(d *metav1.Duration) string {
	if d == nil {
		return "-"
	}
	return span(d.Duration)
}

// orDash returns s, or "-" when it is empty, for table cells.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shorten cuts s to at most n characters at a word boundary, marking the cut with "...".
func shorten(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)[:n-3]
	cut := string(r)
	if i := strings.LastIndexByte(cut, ' '); i > n/2 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ,;:") + "..."
}

// durationPtr returns d as a *metav1.Duration.
func durationPtr(d time.Duration) *metav1.Duration {
	return &metav1.Duration{Duration: d}
}

// boolPtr returns a pointer to b.
func boolPtr(b bool) *bool { return &b }
