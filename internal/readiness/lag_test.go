package readiness

import (
	"strings"
	"testing"
	"time"
)

func TestLag(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	obj := map[string]any{"status": map[string]any{
		"lastSyncTime": "2026-12-06T02:59:15Z",
		"lag":          "12s",
		"future":       "2026-12-06T03:00:05Z",
	}}
	for _, tc := range []struct {
		name      string
		expr      string
		wantLag   time.Duration
		wantKnown bool
		wantMsg   string
		wantErr   string
	}{
		{name: "a timestamp is when the data was last replicated", expr: "timestamp(self.status.lastSyncTime)", wantLag: 45 * time.Second, wantKnown: true},
		{name: "a duration is the lag", expr: "duration(self.status.lag)", wantLag: 12 * time.Second, wantKnown: true},
		{name: "a timestamp ahead of the clock is no lag", expr: "timestamp(self.status.future)", wantKnown: true},
		{name: "a field not set yet is not known yet", expr: "timestamp(self.status.lastSync)", wantMsg: "cannot be evaluated yet"},
		{name: "a dyn that is no time is an error", expr: "self.status.lag", wantErr: "want a duration or a timestamp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CompileLag(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			lag, known, msg, err := r.Lag(obj, now)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Lag error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || lag != tc.wantLag || known != tc.wantKnown || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("Lag = %s, %t, %q, %v; want %s, %t, a message containing %q", lag, known, msg, err, tc.wantLag, tc.wantKnown, tc.wantMsg)
			}
		})
	}
}

func TestCompileLagRefusesWhatCanNeverBeATime(t *testing.T) {
	for _, expr := range []string{"", "self.status.lag == 'x'", "1 +"} {
		if _, err := CompileLag(expr); err == nil {
			t.Errorf("CompileLag(%q) compiled", expr)
		}
	}
	var c Cache
	a, err := c.CompileLag("duration(self.status.lag)")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.CompileLag("duration(self.status.lag)"); a != b {
		t.Error("the cache compiled an expression twice")
	}
}

func TestValue(t *testing.T) {
	obj := map[string]any{"status": map[string]any{"demotionToken": "eyJsc24iOiIwLzQwMDAwMDAifQ==", "empty": "", "n": int64(3)}}
	for _, tc := range []struct {
		expr    string
		want    string
		ok      bool
		msg     string
		wantErr bool
	}{
		{expr: "self.status.demotionToken", want: "eyJsc24iOiIwLzQwMDAwMDAifQ==", ok: true},
		{expr: "self.status.empty", msg: "is empty"},
		{expr: "self.status.missing", msg: "cannot be evaluated yet"},
		{expr: "self.status.n", wantErr: true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			r, err := CompileValue(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			v, ok, msg, err := r.Value(obj)
			if (err != nil) != tc.wantErr || v != tc.want || ok != tc.ok || !strings.Contains(msg, tc.msg) {
				t.Errorf("Value = %q, %t, %q, %v", v, ok, msg, err)
			}
		})
	}
	if _, err := CompileValue("1 + 1"); err == nil {
		t.Error("an int expression compiled")
	}
}
