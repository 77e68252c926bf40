package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestProbeShareNamesChecksThatProbeTheSameThing(t *testing.T) {
	tcp := func(addr string, timeout time.Duration) deichv1alpha1.HealthCheck {
		return deichv1alpha1.HealthCheck{Name: "front-door", TCP: &deichv1alpha1.TCPCheck{Address: addr, Timeout: metav1.Duration{Duration: timeout}}}
	}
	web := func(name, url string, ca *deichv1alpha1.LocalSecretKeyReference) deichv1alpha1.HealthCheck {
		return deichv1alpha1.HealthCheck{Name: name, HTTP: &deichv1alpha1.HTTPCheck{URL: url, ExpectedStatus: 200, Timeout: metav1.Duration{Duration: 2 * time.Second}, CASecretRef: ca}}
	}
	ca := &deichv1alpha1.LocalSecretKeyReference{Name: "portal-ca", Key: "ca.crt"}
	for _, tc := range []struct {
		name      string
		a, b      deichv1alpha1.HealthCheck
		nsA, nsB  string
		wantShare bool
	}{
		{"the same TCP check in two services", tcp("portal.example.de:443", 2*time.Second), tcp("portal.example.de:443", 2*time.Second), "procedure-1", "procedure-2", true},
		{"another address", tcp("portal.example.de:443", 2*time.Second), tcp("portal.example.de:8443", 2*time.Second), "procedure-1", "procedure-2", false},
		{"another timeout", tcp("portal.example.de:443", 2*time.Second), tcp("portal.example.de:443", time.Second), "procedure-1", "procedure-1", false},
		{"the same HTTP check in two services", web("front-door", "https://portal.example.de/healthz", nil), web("front-door", "https://portal.example.de/healthz", nil), "procedure-1", "procedure-2", true},
		{"another name: another User-Agent", web("front-door", "https://portal.example.de/healthz", nil), web("portal", "https://portal.example.de/healthz", nil), "procedure-1", "procedure-2", false},
		{"a CA read from each service's namespace", web("front-door", "https://portal.example.de/healthz", ca), web("front-door", "https://portal.example.de/healthz", ca), "procedure-1", "procedure-2", false},
		{"a CA read from the same namespace", web("front-door", "https://portal.example.de/healthz", ca), web("front-door", "https://portal.example.de/healthz", ca), "procedure-1", "procedure-1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := probeShare(tc.a, tc.nsA), probeShare(tc.b, tc.nsB)
			if a == "" || b == "" {
				t.Fatalf("probeShare() = %q, %q; want keys for HTTP and TCP checks", a, b)
			}
			if got := a == b; got != tc.wantShare {
				t.Errorf("probeShare() = %q and %q; shared = %v, want %v", a, b, got, tc.wantShare)
			}
		})
	}
	workload := deichv1alpha1.HealthCheck{Name: "web", Workload: &deichv1alpha1.WorkloadCheck{Kind: "Deployment", Name: "web"}}
	if got := probeShare(workload, "procedure-1"); got != "" {
		t.Errorf("probeShare(workload check) = %q, want none: it reads the service's own objects", got)
	}
}
