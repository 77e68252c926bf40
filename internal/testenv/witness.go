package testenv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testobjects"
)

// WitnessNamespace is the namespace config/witness creates at the witness, where the partners
// keep their Leases; the witness's ReplicationPeers leave spec.leaseNamespace unset, which
// means this namespace.
const WitnessNamespace = deichv1alpha1.DefaultWitnessLeaseNamespace

// witnessTokenTTL is how long the partners' tokens for the witness are valid: longer than any
// test run.
const witnessTokenTTL = 24 * time.Hour

// witnessServiceAccounts are the identities config/witness creates at the witness, one per
// partner state: the first site of the [Env] gets the first, the second the second.
var witnessServiceAccounts = [2]string{"deich-partner-a", "deich-partner-b"}

// Witness is the witness site [Env.StartWitness] starts: a control plane without Deich's CRDs
// and without a manager, holding only what config/witness creates, and the partners' way to
// it. Stop, restart and cut it off with the same [Site] and [Link] methods as a partner.
type Witness struct {
	// Site is the witness's control plane, also [Env.Site]([SiteHamburg]).
	Site *Site
	// Namespace is where the partners may manage Leases at the witness: [WitnessNamespace].
	Namespace string

	// serviceAccounts maps each partner's site name to its ServiceAccount at the witness.
	serviceAccounts map[string]string
}

// ServiceAccount returns the ServiceAccount in [Witness.Namespace] that partner authenticates
// as at the witness, or "" if partner is not one of the witness's partners.
func (w *Witness) ServiceAccount(partner string) string {
	return w.serviceAccounts[partner]
}

// PeerSecret is where each partner holds its kubeconfig for the witness: the Secret
// deich-system/peer-hh-hamburg, key [PeerSecretKey], which the partner's ReplicationPeer for
// the witness names.
func (w *Witness) PeerSecret() client.ObjectKey {
	return client.ObjectKey{Namespace: operator.DefaultNamespace, Name: "peer-" + w.Site.Name}
}

// Witness returns the witness started by [Env.StartWitness], or nil before.
func (e *Env) Witness() *Witness {
	return e.witness
}

// StartWitness adds the witness site [SiteHamburg] to an environment of two partner sites
// started with Deich's CRDs (see [StartDeich]), for fault tests that need three real API
// servers; two-site tests do not call it and pay for no third one. It
//
//   - starts the witness's control plane with the environment's [Options] but without any
//     CRDs, and runs no manager for it;
//   - puts a [Link] between the witness and each partner;
//   - applies config/witness there, built by [KustomizeBuild]: the namespace
//     [WitnessNamespace] and one ServiceAccount per partner that may manage Leases in it and
//     nothing else (the first partner is deich-partner-a, the second deich-partner-b);
//   - writes at each partner the Secret [Witness.PeerSecret] with a kubeconfig for that
//     partner's ServiceAccount whose server is the partner's [Link.Proxy] to the witness, and
//     a ReplicationPeer hh-hamburg with spec.role Witness that names the Secret.
//
// So a manager started at a partner reaches the witness's Lease API only through the link,
// and only as its own identity. Call StartWitness once, before the environment is used from
// other goroutines. If it fails, the witness is stopped again and the environment is as
// before, except for objects already written at the partners.
func (e *Env) StartWitness(ctx context.Context) (*Witness, error) {
	if e.witness != nil {
		return nil, errors.New("testenv: start witness: already started")
	}
	if _, ok := e.Sites[SiteHamburg]; ok {
		return nil, fmt.Errorf("testenv: start witness: the environment already has a site %s", SiteHamburg)
	}
	if len(e.names) != len(witnessServiceAccounts) {
		return nil, fmt.Errorf("testenv: start witness: config/witness serves %d partners, the environment has %d sites %v",
			len(witnessServiceAccounts), len(e.names), e.names)
	}
	tree, err := witnessTree()
	if err != nil {
		return nil, fmt.Errorf("testenv: start witness: %w", err)
	}

	opts := e.opts
	opts.CRDDirectoryPaths, opts.ErrorIfCRDPathMissing = nil, false
	site, err := startSite(opts, SiteHamburg)
	if err != nil {
		return nil, fmt.Errorf("testenv: start witness: %w", err)
	}
	w := &Witness{Site: site, Namespace: WitnessNamespace, serviceAccounts: make(map[string]string, len(e.names))}
	links := make([]*Link, 0, len(e.names))
	fail := func(err error) (*Witness, error) {
		for _, l := range links {
			if closeErr := l.close(); closeErr != nil {
				err = errors.Join(err, closeErr)
			}
		}
		if stopErr := site.stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, fmt.Errorf("testenv: start witness: %w", err)
	}

	for _, obj := range tree {
		if err := site.Client.Create(ctx, obj.DeepCopy()); err != nil {
			return fail(fmt.Errorf("apply config/witness %s %s/%s at %s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), site.Name, err))
		}
	}
	for i, name := range e.names {
		partner := e.Sites[name]
		l, err := newLink(partner, site)
		if err != nil {
			return fail(err)
		}
		links = append(links, l)
		w.serviceAccounts[name] = witnessServiceAccounts[i]
		if err := connectToWitness(ctx, w, partner, l); err != nil {
			return fail(err)
		}
	}

	e.Sites[site.Name] = site
	for _, l := range links {
		e.links[linkKey(l.ends[0].Name, l.ends[1].Name)] = l
		e.linkOrder = append(e.linkOrder, l)
	}
	e.witness = w
	return w, nil
}

// witnessTree builds config/witness and checks that it holds what StartWitness relies on.
func witnessTree() ([]*unstructured.Unstructured, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	tree, err := KustomizeBuild(filepath.Join(root, "config", "witness"))
	if err != nil {
		return nil, err
	}
	want := []string{"Namespace /" + WitnessNamespace}
	for _, sa := range witnessServiceAccounts {
		want = append(want, "ServiceAccount "+WitnessNamespace+"/"+sa)
	}
	for _, obj := range tree {
		want = slices.DeleteFunc(want, func(w string) bool {
			return w == obj.GetKind()+" "+obj.GetNamespace()+"/"+obj.GetName()
		})
	}
	if len(want) > 0 {
		return nil, fmt.Errorf("config/witness no longer creates %v", want)
	}
	return tree, nil
}

// connectToWitness gives partner its peer Secret for the witness, a kubeconfig for its
// ServiceAccount through l, and a ReplicationPeer with role Witness that uses it.
func connectToWitness(ctx context.Context, w *Witness, partner *Site, l *Link) error {
	sa := w.ServiceAccount(partner.Name)
	kubeconfig, err := w.Site.ServiceAccountKubeconfigFor(ctx, l.Proxy(partner.Name).URL(), w.Namespace, sa, witnessTokenTTL)
	if err != nil {
		return err
	}
	key := w.PeerSecret()
	if _, err := putPeerSecret(ctx, partner, key.Namespace, key.Name, kubeconfig); err != nil {
		return err
	}

	// Written as unstructured, so that it does not depend on the scheme of the partner's
	// client; it needs Deich's CRDs at the partner.
	peer := testobjects.MakeReplicationPeer(w.Site.Name).Witness("").Secret(key.Namespace, key.Name).Obj()
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(peer)
	if err != nil {
		return fmt.Errorf("convert ReplicationPeer %s: %w", peer.Name, err)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetGroupVersionKind(deichv1alpha1.GroupVersion.WithKind("ReplicationPeer"))
	if err := partner.Client.Create(ctx, u); err != nil {
		return fmt.Errorf("create ReplicationPeer %s at %s (are Deich's CRDs installed there? see StartDeich): %w", peer.Name, partner.Name, err)
	}
	return nil
}
