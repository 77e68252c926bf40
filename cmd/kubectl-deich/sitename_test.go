package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// reported is a service between sh-kiel and mv-schwerin as a site reports it.
func reported(role deichv1alpha1.Role, active string) deichv1alpha1.SharedService {
	svc := deichv1alpha1.SharedService{Spec: deichv1alpha1.SharedServiceSpec{PrimarySite: "sh-kiel", StandbySite: "mv-schwerin"}}
	svc.Status.Role, svc.Status.ActiveSite = role, active
	return svc
}

func TestResolveSiteName(t *testing.T) {
	unreported := deichv1alpha1.SharedService{Spec: deichv1alpha1.SharedServiceSpec{PrimarySite: "sh-kiel", StandbySite: "mv-schwerin"}}
	for _, c := range []struct {
		name     string
		ev       nameEvidence
		wantName string
		wantFrom string
	}{
		{"the manager's site ConfigMap decides",
			nameEvidence{configMap: "sh-kiel", services: []deichv1alpha1.SharedService{reported(deichv1alpha1.RoleActive, "mv-schwerin")}, context: "prod"},
			"sh-kiel", nameFromConfigMap},
		{"a site reporting role Active is the active site",
			nameEvidence{services: []deichv1alpha1.SharedService{reported(deichv1alpha1.RoleActive, "mv-schwerin")}, context: "prod"},
			"mv-schwerin", nameFromStatus},
		{"a site reporting role Standby is the service's other site",
			nameEvidence{services: []deichv1alpha1.SharedService{reported(deichv1alpha1.RoleStandby, "mv-schwerin")}, context: "prod"},
			"sh-kiel", nameFromStatus},
		{"the services' majority wins over one caught in a move",
			nameEvidence{services: []deichv1alpha1.SharedService{
				reported(deichv1alpha1.RoleStandby, "mv-schwerin"), reported(deichv1alpha1.RoleActive, "sh-kiel"), reported(deichv1alpha1.RoleActive, "mv-schwerin"),
			}},
			"sh-kiel", nameFromStatus},
		{"without status, the site of the services no ReplicationPeer names",
			nameEvidence{services: []deichv1alpha1.SharedService{unreported}, partners: []string{"mv-schwerin", "hh-hamburg"}, context: "prod"},
			"sh-kiel", nameFromPeers},
		{"the context's name is the last resort",
			nameEvidence{services: []deichv1alpha1.SharedService{unreported}, context: "prod"},
			"prod", nameFromContext},
	} {
		t.Run(c.name, func(t *testing.T) {
			name, from := resolveSiteName(c.ev)
			if name != c.wantName || from != c.wantFrom {
				t.Errorf("resolveSiteName() = %s (from %s), want %s (from %s)", name, from, c.wantName, c.wantFrom)
			}
		})
	}
}

func TestSiteFromConfigMaps(t *testing.T) {
	cm := func(name, site string) corev1.ConfigMap {
		return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"site": site}}
	}
	for _, c := range []struct {
		name string
		cms  []corev1.ConfigMap
		want string
	}{
		{"the Helm chart's <release>-site", []corev1.ConfigMap{cm("deich-metrics", "x"), cm("resilience-site", "mv-schwerin")}, "mv-schwerin"},
		{"no site ConfigMap", []corev1.ConfigMap{cm("deich-metrics", "x")}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := siteFromConfigMaps(c.cms); got != c.want {
				t.Errorf("siteFromConfigMaps() = %q, want %q", got, c.want)
			}
		})
	}
}
