package testenv

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestStartJoinsTheTwoSitesByOneLinkAndNoWitness(t *testing.T) {
	env := sharedEnv(t)
	kiel, schwerin := env.Site(SiteKiel), env.Site(SiteSchwerin)
	if env.Witness() != nil || env.Site(SiteHamburg) != nil {
		t.Fatal("a two-site environment has a witness")
	}
	links := env.Links()
	if len(links) != 1 {
		t.Fatalf("want 1 link, got %v", links)
	}
	l := links[0]
	if env.Link(SiteKiel, SiteSchwerin) != l || env.Link(SiteSchwerin, SiteKiel) != l {
		t.Fatal("Link(a, b) and Link(b, a) are not the link of the two sites")
	}
	if a, b := l.Sites(); a != kiel || b != schwerin {
		t.Errorf("Sites() = %s, %s; want the start order %s, %s", a.Name, b.Name, SiteKiel, SiteSchwerin)
	}
	if got := l.String(); got != "sh-kiel<->mv-schwerin" {
		t.Errorf("String() = %q", got)
	}
	if env.Link(SiteKiel, SiteKiel) != nil || env.Link(SiteKiel, "nowhere") != nil {
		t.Error("Link of a site with itself or an unknown site is not nil")
	}
	if l.Proxy("nowhere") != nil || l.Other("nowhere") != nil {
		t.Error("Proxy and Other of a site that is not an end are not nil")
	}
	if _, err := l.Kubeconfig("nowhere"); err == nil || !strings.Contains(err.Error(), "not one of its sites") {
		t.Errorf("Kubeconfig(unknown site): want an error, got %v", err)
	}
	if l.Proxy(SiteKiel) == l.Proxy(SiteSchwerin) {
		t.Fatal("both directions share one proxy")
	}

	for _, from := range []*Site{kiel, schwerin} {
		to := l.Other(from.Name)
		kc, err := l.Kubeconfig(from.Name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := clientcmd.Load(kc)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := raw.Clusters[raw.Contexts[raw.CurrentContext].Cluster].Server, l.Proxy(from.Name).URL(); got != want {
			t.Errorf("%s's kubeconfig for %s points at %s, want its proxy %s", from.Name, to.Name, got, want)
		}
		// The kubeconfig through the link reaches the other site, not from itself.
		c := clientFromKubeconfig(t, kc)
		createNamespace(t, to.Client, "reached-from-"+from.Name)
		if err := getNamespace(c, "reached-from-"+from.Name); err != nil {
			t.Errorf("%s through the link: namespace made at %s: %v", from.Name, to.Name, err)
		}
	}
}

// getNamespace gets the namespace name with c within requestTimeout.
func getNamespace(c client.Client, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return c.Get(ctx, client.ObjectKey{Name: name}, &corev1.Namespace{})
}
