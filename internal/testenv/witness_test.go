package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/peer"
)

// witnessed is the three-site environment: the two partners with Deich's CRDs and the
// witness.
var witnessed lazyEnv

func witnessEnv(t *testing.T) *Env {
	t.Helper()
	return witnessed.get(t, func() (*Env, error) {
		env, err := StartDeich()
		if err != nil {
			return nil, err
		}
		if _, err := env.StartWitness(context.Background()); err != nil {
			return nil, errors.Join(err, env.Stop())
		}
		return env, nil
	})
}

// partners are the two partner sites of the witness environment.
func partners(env *Env) []*Site {
	return []*Site{env.Site(SiteKiel), env.Site(SiteSchwerin)}
}

// witnessClient is a client for the witness as partner's manager would build it: from the
// kubeconfig in partner's peer Secret for the witness, accepted by Deich's peer package.
func witnessClient(t *testing.T, env *Env, partner *Site) client.Client {
	t.Helper()
	kubeconfig := peerSecretKubeconfig(t, env, partner)
	cfg, err := peer.RESTConfigFromKubeconfig(kubeconfig)
	if err != nil {
		t.Fatalf("Deich refuses %s's kubeconfig for the witness: %v", partner.Name, err)
	}
	cfg.Timeout = requestTimeout
	c, err := client.New(cfg, client.Options{Scheme: operator.NewScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peerSecretKubeconfig reads the kubeconfig partner holds for the witness.
func peerSecretKubeconfig(t *testing.T, env *Env, partner *Site) []byte {
	t.Helper()
	secret := &corev1.Secret{}
	if err := partner.Client.Get(context.Background(), env.Witness().PeerSecret(), secret); err != nil {
		t.Fatalf("peer Secret for the witness at %s: %v", partner.Name, err)
	}
	kc := secret.Data[PeerSecretKey]
	if len(kc) == 0 {
		t.Fatalf("peer Secret for the witness at %s has no key %s", partner.Name, PeerSecretKey)
	}
	return kc
}

// listLeasesWithin lists the Leases of the witness namespace with c, with a deadline of
// timeout.
func listLeasesWithin(c client.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.List(ctx, &coordinationv1.LeaseList{}, client.InNamespace(WitnessNamespace))
}

// makeLease is a Lease held by holder, renewed now.
func makeLease(namespace, name, holder string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			LeaseDurationSeconds: ptr.To(int32(30)),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}
}

func TestStartWitnessConnectsBothPartnersThroughTheirLinks(t *testing.T) {
	env := witnessEnv(t)
	ctx := context.Background()
	w := env.Witness()
	if w == nil || w.Site == nil || env.Site(SiteHamburg) != w.Site || w.Namespace != WitnessNamespace {
		t.Fatalf("Witness() = %+v, want the site %s with namespace %s", w, SiteHamburg, WitnessNamespace)
	}
	if len(env.Sites) != 3 {
		t.Fatalf("want 3 sites, got %d", len(env.Sites))
	}
	var names []string
	for _, l := range env.Links() {
		names = append(names, l.String())
	}
	if got, want := strings.Join(names, " "), "sh-kiel<->mv-schwerin sh-kiel<->hh-hamburg mv-schwerin<->hh-hamburg"; got != want {
		t.Fatalf("Links() = %s, want %s", got, want)
	}
	if w.ServiceAccount(SiteKiel) != "deich-partner-a" || w.ServiceAccount(SiteSchwerin) != "deich-partner-b" || w.ServiceAccount(SiteHamburg) != "" {
		t.Errorf("ServiceAccount: kiel %q, schwerin %q, hamburg %q", w.ServiceAccount(SiteKiel), w.ServiceAccount(SiteSchwerin), w.ServiceAccount(SiteHamburg))
	}
	if _, err := env.StartWitness(ctx); err == nil {
		t.Error("second StartWitness: want error")
	}

	for _, partner := range partners(env) {
		rp := &deichv1alpha1.ReplicationPeer{}
		if err := partner.Client.Get(ctx, client.ObjectKey{Name: SiteHamburg}, rp); err != nil {
			t.Fatalf("ReplicationPeer for the witness at %s: %v", partner.Name, err)
		}
		if !rp.Spec.IsWitness() || rp.Spec.Site != SiteHamburg || rp.Spec.WitnessLeaseNamespace() != WitnessNamespace {
			t.Errorf("ReplicationPeer at %s: %+v, want a witness %s keeping Leases in %s", partner.Name, rp.Spec, SiteHamburg, WitnessNamespace)
		}
		ref := rp.Spec.KubeconfigSecretRef
		if (client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}) != w.PeerSecret() || ref.Key != PeerSecretKey {
			t.Errorf("ReplicationPeer at %s names Secret %+v, want %s key %s", partner.Name, ref, w.PeerSecret(), PeerSecretKey)
		}

		raw, err := clientcmd.Load(peerSecretKubeconfig(t, env, partner))
		if err != nil {
			t.Fatal(err)
		}
		kctx := raw.Contexts[raw.CurrentContext]
		cluster, user := raw.Clusters[kctx.Cluster], raw.AuthInfos[kctx.AuthInfo]
		if want := env.Link(partner.Name, SiteHamburg).Proxy(partner.Name).URL(); cluster.Server != want {
			t.Errorf("%s's kubeconfig for the witness points at %s, want its link's proxy %s", partner.Name, cluster.Server, want)
		}
		if user.Token == "" || len(user.ClientCertificateData) > 0 || kctx.AuthInfo != w.ServiceAccount(partner.Name) {
			t.Errorf("%s's kubeconfig for the witness is not a token of %s", partner.Name, w.ServiceAccount(partner.Name))
		}
	}
}

func TestWitnessServesLeasesToEachPartnerInItsNamespaceOnly(t *testing.T) {
	env := witnessEnv(t)
	ctx := context.Background()
	w := env.Witness()

	for _, partner := range partners(env) {
		t.Run(partner.Name+" manages a Lease in "+WitnessNamespace, func(t *testing.T) {
			c := witnessClient(t, env, partner)
			lease := makeLease(WitnessNamespace, "deich-buergerkonto."+partner.Name, partner.Name)
			if err := c.Create(ctx, lease); err != nil {
				t.Fatalf("create: %v", err)
			}
			got := &coordinationv1.Lease{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(lease), got); err != nil {
				t.Fatalf("get: %v", err)
			}
			got.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
			if err := c.Update(ctx, got); err != nil {
				t.Fatalf("renew: %v", err)
			}
			if err := listLeasesWithin(c, requestTimeout); err != nil {
				t.Fatalf("list: %v", err)
			}
			if err := c.Delete(ctx, got); err != nil {
				t.Fatalf("delete: %v", err)
			}
		})

		t.Run(partner.Name+" is refused Leases in other namespaces", func(t *testing.T) {
			c := witnessClient(t, env, partner)
			for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem} {
				err := c.Create(ctx, makeLease(ns, "deich-buergerkonto.buergerkonto", partner.Name))
				if !apierrors.IsForbidden(err) {
					t.Errorf("create a Lease in %s: want Forbidden, got %v", ns, err)
				}
			}
			if err := c.List(ctx, &coordinationv1.LeaseList{}); !apierrors.IsForbidden(err) {
				t.Errorf("list the Leases of every namespace: want Forbidden, got %v", err)
			}
		})
	}

	t.Run("the witness does not serve Deich's API", func(t *testing.T) {
		dc, err := discovery.NewDiscoveryClientForConfig(w.Site.Config)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.ServerResourcesForGroupVersion(deichv1alpha1.GroupVersion.String()); !apierrors.IsNotFound(err) {
			t.Errorf("discovery of %s at the witness: want NotFound, got %v", deichv1alpha1.GroupVersion, err)
		}
		if err := w.Site.Client.List(ctx, &deichv1alpha1.ReplicationPeerList{}); !meta.IsNoMatchError(err) {
			t.Errorf("admin lists ReplicationPeers at the witness: want no match for the kind, got %v", err)
		}
		c := witnessClient(t, env, env.Site(SiteKiel))
		if err := c.List(ctx, &deichv1alpha1.SharedServiceList{}, client.InNamespace(WitnessNamespace)); !meta.IsNoMatchError(err) {
			t.Errorf("a partner lists SharedServices at the witness: want no match for the kind, got %v", err)
		}
		// The partners do serve it: the witness alone was started without CRDs.
		for _, partner := range partners(env) {
			if err := partner.Client.List(ctx, &deichv1alpha1.ReplicationPeerList{}); err != nil {
				t.Errorf("list ReplicationPeers at %s: %v", partner.Name, err)
			}
		}
	})
}

// path is one direction of a link: site from reaching the other end through the link.
type path struct {
	link *Link
	from string
	c    client.Client
}

func (p path) String() string { return p.from + "->" + p.link.Other(p.from).Name }

func TestEachLinkCutAloneBlocksOnlyItsPair(t *testing.T) {
	env := witnessEnv(t)

	var paths []path
	for _, l := range env.Links() {
		a, b := l.Sites()
		for _, from := range []string{a.Name, b.Name} {
			kc, err := l.Kubeconfig(from)
			if err != nil {
				t.Fatal(err)
			}
			p := path{link: l, from: from, c: clientFromKubeconfig(t, kc)}
			// Warm up discovery, which honours only the client's Timeout.
			if err := listNamespaces(p.c); err != nil {
				t.Fatalf("%s before any cut: %v", p, err)
			}
			paths = append(paths, p)
		}
	}
	// The partners' identities at the witness, as their managers use them.
	identities := map[string]client.Client{}
	for _, partner := range partners(env) {
		identities[partner.Name] = witnessClient(t, env, partner)
		if err := listLeasesWithin(identities[partner.Name], requestTimeout); err != nil {
			t.Fatalf("%s's peer Secret before any cut: %v", partner.Name, err)
		}
	}
	allHeal := func(t *testing.T) {
		t.Helper()
		for _, p := range paths {
			eventually(t, p.String()+" heals", func() error { return listNamespaces(p.c) })
		}
		for partner, c := range identities {
			eventually(t, partner+"'s peer Secret for the witness works again", func() error { return listLeasesWithin(c, requestTimeout) })
		}
	}

	for _, cut := range env.Links() {
		t.Run("cutting "+cut.String()+" blocks that pair both ways and no other", func(t *testing.T) {
			cut.Cut()
			t.Cleanup(cut.Restore)
			for _, p := range paths {
				if p.link == cut {
					eventually(t, p.String()+" fails", func() error { return listMustFail(p.c) })
				} else if err := listNamespaces(p.c); err != nil {
					t.Errorf("%s while %s is cut: %v", p, cut, err)
				}
			}
			for partner, c := range identities {
				err := listLeasesWithin(c, failTimeout)
				switch blocked := env.Link(partner, SiteHamburg) == cut; {
				case blocked && err == nil:
					t.Errorf("%s's peer Secret reaches the witness while %s is cut", partner, cut)
				case !blocked && err != nil:
					t.Errorf("%s's peer Secret while %s is cut: %v", partner, cut, err)
				}
			}
			// Both API servers keep running.
			a, b := cut.Sites()
			for _, s := range []*Site{a, b} {
				if err := listNamespaces(s.Client); err != nil {
					t.Errorf("%s directly while %s is cut: %v", s.Name, cut, err)
				}
			}

			cut.Restore()
			allHeal(t)
		})
	}

	t.Run("cutting one proxy of a link blocks one direction only", func(t *testing.T) {
		l := env.Link(SiteKiel, SiteSchwerin)
		l.Proxy(SiteKiel).Cut()
		t.Cleanup(l.Restore)
		for _, p := range paths {
			switch {
			case p.link == l && p.from == SiteKiel:
				eventually(t, p.String()+" fails", func() error { return listMustFail(p.c) })
			default:
				if err := listNamespaces(p.c); err != nil {
					t.Errorf("%s while only %s->%s is cut: %v", p, SiteKiel, SiteSchwerin, err)
				}
			}
		}
		l.Restore()
		allHeal(t)
	})
}

func TestRestartedWitnessKeepsItsLeasesAndTokens(t *testing.T) {
	env := witnessEnv(t)
	ctx := context.Background()
	w := env.Witness()
	kiel := env.Site(SiteKiel)
	c := witnessClient(t, env, kiel)

	lease := makeLease(WitnessNamespace, "deich-buergerkonto.survivor", kiel.Name)
	if err := c.Create(ctx, lease); err != nil {
		t.Fatal(err)
	}

	if err := w.Site.StopAPIServer(); err != nil {
		t.Fatalf("stop the witness: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Site.StartAPIServer(); err != nil {
			t.Errorf("start the witness again: %v", err)
		}
	})
	eventually(t, "the witness is unreachable", func() error {
		if err := listLeasesWithin(c, failTimeout); err == nil {
			return errors.New("request unexpectedly succeeded")
		}
		return nil
	})
	for _, p := range partners(env) {
		if err := listNamespaces(p.Client); err != nil {
			t.Errorf("%s while the witness is stopped: %v", p.Name, err)
		}
	}
	kc, err := env.Link(SiteKiel, SiteSchwerin).Kubeconfig(SiteKiel)
	if err != nil {
		t.Fatal(err)
	}
	if err := listNamespaces(clientFromKubeconfig(t, kc)); err != nil {
		t.Errorf("the partners' link while the witness is stopped: %v", err)
	}

	if err := w.Site.StartAPIServer(); err != nil {
		t.Fatalf("start the witness again: %v", err)
	}
	// The same token through the same proxy: the signing key and etcd survived the restart.
	got := &coordinationv1.Lease{}
	eventually(t, "the Lease is read again with the token issued before the restart", func() error {
		return c.Get(ctx, client.ObjectKeyFromObject(lease), got)
	})
	if got.UID != lease.UID || got.ResourceVersion != lease.ResourceVersion || ptr.Deref(got.Spec.HolderIdentity, "") != kiel.Name {
		t.Errorf("Lease after the restart: uid %s rv %s holder %v; before: uid %s rv %s holder %s",
			got.UID, got.ResourceVersion, ptr.Deref(got.Spec.HolderIdentity, ""), lease.UID, lease.ResourceVersion, kiel.Name)
	}
	if err := c.Delete(ctx, got); err != nil {
		t.Errorf("delete the Lease: %v", err)
	}
}

func TestAManagerAtEachPartnerReachesTheWitnessThroughItsLink(t *testing.T) {
	env := witnessEnv(t)
	ctx := context.Background()
	for _, partner := range partners(env) {
		mgr, err := StartManager(partner, operator.Options{MaxClockSkew: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := mgr.Stop(); err != nil {
				t.Errorf("stop the manager at %s: %v", partner.Name, err)
			}
		})
	}
	readyReason := func(partner *Site, want string) func() error {
		return func() error {
			rp := &deichv1alpha1.ReplicationPeer{}
			if err := partner.Client.Get(ctx, client.ObjectKey{Name: SiteHamburg}, rp); err != nil {
				return err
			}
			c := meta.FindStatusCondition(rp.Status.Conditions, deichv1alpha1.ConditionReady)
			if c == nil || c.Reason != want {
				return fmt.Errorf("ReplicationPeer %s at %s: Ready %+v, want reason %s", SiteHamburg, partner.Name, c, want)
			}
			return nil
		}
	}
	for _, partner := range partners(env) {
		eventually(t, partner.Name+"'s manager reports the witness connected", readyReason(partner, deichv1alpha1.PeerReasonWitnessConnected))
	}

	l := env.Link(SiteKiel, SiteHamburg)
	l.Cut()
	t.Cleanup(l.Restore)
	kiel, schwerin := env.Site(SiteKiel), env.Site(SiteSchwerin)
	eventually(t, "sh-kiel's manager loses the witness when their link is cut", func() error {
		if readyReason(kiel, deichv1alpha1.PeerReasonWitnessConnected)() == nil {
			return errors.New("still connected")
		}
		return nil
	})
	if err := readyReason(schwerin, deichv1alpha1.PeerReasonWitnessConnected)(); err != nil {
		t.Errorf("mv-schwerin's manager while only sh-kiel<->hh-hamburg is cut: %v", err)
	}
	l.Restore()
	eventually(t, "sh-kiel's manager reaches the witness again", readyReason(kiel, deichv1alpha1.PeerReasonWitnessConnected))
}

func TestStartWitnessNeedsDeichsAPIAtThePartners(t *testing.T) {
	env := sharedEnv(t) // the test CRD only, no ReplicationPeer
	_, err := env.StartWitness(context.Background())
	if err == nil || !strings.Contains(err.Error(), "ReplicationPeer") {
		t.Fatalf("StartWitness without Deich's CRDs at the partners: want an error about the ReplicationPeer, got %v", err)
	}
	t.Logf("StartWitness: %v", err)
	if env.Witness() != nil || env.Site(SiteHamburg) != nil || len(env.Sites) != 2 || len(env.Links()) != 1 {
		t.Errorf("a failed StartWitness changed the environment: witness %v, %d sites, %d links", env.Witness(), len(env.Sites), len(env.Links()))
	}
}
