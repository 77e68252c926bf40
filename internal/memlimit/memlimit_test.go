package memlimit

import (
	"runtime/debug"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		want          int64
		ok, err       bool
	}{
		{name: "a cgroup v2 limit in bytes", content: "536870912\n", want: 536870912, ok: true},
		{name: "no limit in cgroup v2", content: "max\n"},
		{name: "no limit in cgroup v1 (the largest page-aligned value)", content: "9223372036854771712\n"},
		{name: "a zero limit is taken for none", content: "0"},
		{name: "garbage is an error", content: "512Mi", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := Parse(tc.content)
			if (err != nil) != tc.err || ok != tc.ok || got != tc.want {
				t.Errorf("Parse(%q) = %d, %v, %v; want %d, %v, error %v", tc.content, got, ok, err, tc.want, tc.ok, tc.err)
			}
		})
	}
}

func TestSoftLimitLeavesATenthForTheRuntime(t *testing.T) {
	if got, want := SoftLimit(512<<20), int64(483183820); got != want {
		t.Errorf("SoftLimit(512 MiB) = %d, want %d", got, want)
	}
}

func TestSetLeavesAnExplicitGOMEMLIMITAlone(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "1GiB")
	got, err := Set()
	if err != nil || got != 0 {
		t.Errorf("Set() with GOMEMLIMIT = %d, %v; want 0, nil", got, err)
	}
}

func TestSetGCPercentLeavesAnExplicitGOGCAlone(t *testing.T) {
	t.Setenv("GOGC", "200")
	if got := SetGCPercent(); got != 0 {
		t.Errorf("SetGCPercent() with GOGC = %d; want 0", got)
	}
}

func TestSetGCPercentLowersTheDefault(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if got := SetGCPercent(); got != GCPercent {
		t.Fatalf("SetGCPercent() = %d; want %d", got, GCPercent)
	}
	if got := debug.SetGCPercent(GCPercent); got != GCPercent {
		t.Errorf("the collector's target is %d%%, want %d%%", got, GCPercent)
	}
}
