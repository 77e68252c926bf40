package health

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestProbeOfACheckWithoutProbeIsUnknown(t *testing.T) {
	got := NewProber().Probe(t.Context(), deichv1alpha1.HealthCheck{Name: "empty"}, "buergerkonto", nil, nil)

	want := Result{Status: StatusUnknown, Message: "check has no probe: set one of http, tcp or workload"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
}

func TestProbeBoundsTheMessage(t *testing.T) {
	// A URL near the API's 2048-character limit would otherwise be repeated in full.
	long := "http://buergerkonto.example.de/" + strings.Repeat("ä", 1200)

	got := NewProber().Probe(t.Context(), httpCheck("ftp"+strings.TrimPrefix(long, "http"), 200, 0), "buergerkonto", nil, nil)

	if len(got.Message) > maxMessageLength || !strings.HasSuffix(got.Message, "…") {
		t.Errorf("Probe() message has %d bytes and ends %q; want at most %d bytes ending in …", len(got.Message), got.Message[max(0, len(got.Message)-8):], maxMessageLength)
	}
}

func TestTruncate(t *testing.T) {
	cases := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{name: "a string within the limit is kept", s: "status 500", n: 10, want: "status 500"},
		{name: "a longer string is cut and marked", s: "status 500, want 200", n: 13, want: "status 500…"},
		{name: "a cut never splits a multi-byte character", s: "Prüfung fehlgeschlagen", n: 6, want: "Pr…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := truncate(tc.s, tc.n); got != tc.want {
				t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
			}
		})
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("GET https://buergerkonto.example.de/healthz: status 500, want 200", 20)
	f.Add("Prüfung fehlgeschlagen", 6)
	f.Add("", 4)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < len("…") || n > 4096 {
			t.Skip("limits below the length of the mark are never used")
		}
		got := truncate(s, n)
		if len(got) > n {
			t.Errorf("truncate(%q, %d) = %q has %d bytes, want at most %d", s, n, got, len(got), n)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q split a character", s, n, got)
		}
		if len(s) <= n && got != s {
			t.Errorf("truncate(%q, %d) = %q, want the string unchanged", s, n, got)
		}
	})
}
