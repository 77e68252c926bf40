package operator

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	valid := Options{Site: "sh-kiel", Namespace: "deich-system", MaxClockSkew: 2 * time.Second}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string // empty: valid
	}{
		{"accepts a site, a namespace and a skew", func(*Options) {}, ""},
		{"accepts a zero clock skew", func(o *Options) { o.MaxClockSkew = 0 }, ""},
		{"requires --site", func(o *Options) { o.Site = "" }, "--site is required"},
		{"rejects a site that is not a DNS label", func(o *Options) { o.Site = "SH_Kiel" }, `--site "SH_Kiel" is not a DNS label`},
		{"requires --namespace", func(o *Options) { o.Namespace = "" }, "--namespace is required"},
		{"rejects a negative clock skew", func(o *Options) { o.MaxClockSkew = -time.Second }, "--max-clock-skew -1s must not be negative"},
		{"rejects a negative peer rate limit", func(o *Options) { o.PeerQPS = -1 }, "--peer-qps and --peer-burst must not be negative"},
		{"rejects a negative lease rate limit", func(o *Options) { o.LeaseBurst = -1 }, "--lease-qps and --lease-burst must not be negative"},
		{"accepts short election timings", func(o *Options) {
			o.LeaderElectionLeaseDuration, o.LeaderElectionRenewDeadline, o.LeaderElectionRetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
		}, ""},
		{"rejects a renew deadline as long as the election lease", func(o *Options) { o.LeaderElectionRenewDeadline = 8 * time.Second },
			"--leader-elect-renew-deadline 8s must be shorter than --leader-elect-lease-duration 8s"},
		{"rejects a retry period too close to the renew deadline", func(o *Options) { o.LeaderElectionRetryPeriod = 5 * time.Second },
			"--leader-elect-retry-period 5s must be shorter than --leader-elect-renew-deadline 6s"},
		{"rejects a negative election timing", func(o *Options) { o.LeaderElectionRetryPeriod = -time.Second }, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.mutate(&o)
			err := o.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
