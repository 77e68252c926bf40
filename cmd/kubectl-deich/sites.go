package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// How a site's name was learned, as the JSON and YAML output's sites[].nameFrom says.
const (
	nameFromConfigMap       = "ConfigMap"
	nameFromReplicationPeer = "ReplicationPeer"
	nameFromStatus          = "SharedServiceStatus"
	nameFromPeers           = "ReplicationPeers"
	nameFromContext         = "Context"
)

// siteConfigMapName is the ConfigMap, in Deich's namespace, whose key "site" names the
// cluster's site: config/default generates it as deich-site, and the Helm chart as
// <release>-site; both label it app.kubernetes.io/part-of=deich.
const (
	siteConfigMapName = "deich-site"
	siteConfigMapKey  = "site"
	partOfLabel       = "app.kubernetes.io/part-of"
)

// scheme knows the kinds the plugin reads: Deich's and the core ConfigMaps and Secrets.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("register core/v1: %v", err))
	}
	if err := deichv1alpha1.AddToScheme(s); err != nil {
		panic(fmt.Sprintf("register %s: %v", deichv1alpha1.GroupVersion, err))
	}
	return s
}()

// mapper maps the plugin's kinds to resources without asking the API server (no discovery),
// so that reading a site costs one request and an unreachable site fails at once.
var mapper = func() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{corev1.SchemeGroupVersion, deichv1alpha1.GroupVersion})
	for _, kind := range []string{"ConfigMap", "Secret"} {
		m.Add(corev1.SchemeGroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	for _, kind := range []string{"SharedService", "Switchover", "DrillSchedule"} {
		m.Add(deichv1alpha1.GroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	for _, kind := range []string{"ReplicationPeer", "RecoveryObjective"} {
		m.Add(deichv1alpha1.GroupVersion.WithKind(kind), meta.RESTScopeRoot)
	}
	return m
}()

// site is one cluster the plugin reads: a Deich site reached through a kubeconfig context or
// through the peer Secret of a ReplicationPeer.
type site struct {
	// name is the site's name, as its own objects name it (see resolveSiteName).
	name string
	// nameFrom says how name was learned (nameFrom* constants).
	nameFrom string
	// via says how the plugin reaches the site, for messages.
	via string
	// context is the kubeconfig context, empty for a site reached through a peer Secret.
	context string

	config  *rest.Config
	client  client.Client
	dynamic dynamic.Interface

	// err is why the site cannot be read; nil while it can.
	err error
}

// reachable reports whether the site answered.
func (s *site) reachable() bool { return s.err == nil }

// connect builds the site's clients for cfg.
func (s *site) connect(cfg *rest.Config) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 50, 100
	s.config = cfg
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: mapper})
	if err != nil {
		s.err = fmt.Errorf("build a client: %w", err)
		return
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		s.err = fmt.Errorf("build a client: %w", err)
		return
	}
	s.client, s.dynamic = c, d
}

// fail records that the site could not be read because of err, when err says the site
// cannot be reached (as opposed to, say, one object not being found).
func (s *site) fail(err error) bool {
	if err == nil || !siteLost(err) {
		return false
	}
	if s.err == nil {
		s.err = err
	}
	return true
}

// siteLost reports whether err means the site as a whole cannot be read: no answer, refused
// credentials, or no Deich API.
func siteLost(err error) bool {
	var status apierrors.APIStatus
	switch {
	case meta.IsNoMatchError(err):
		return true
	case errors.As(err, &status):
		switch {
		case apierrors.IsUnauthorized(err), apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err),
			apierrors.IsServerTimeout(err), apierrors.IsInternalError(err):
			return true
		case apierrors.IsNotFound(err):
			// A list that is not found is an API the site does not serve: no Deich there.
			d := status.Status().Details
			return d != nil && d.Name == ""
		}
		return false
	}
	return true // a transport error: refused, timed out, TLS
}

// describeSiteError says in a line why a site cannot be read.
func describeSiteError(err error) string {
	var uerr *url.Error
	switch {
	case err == nil:
		return ""
	case meta.IsNoMatchError(err), apierrors.IsNotFound(err):
		return "Deich is not installed there (no resilience.deich.io API)"
	case apierrors.IsUnauthorized(err):
		return "unauthorized: the credentials were refused"
	case apierrors.IsForbidden(err):
		return "forbidden: " + apiMessage(err)
	case errors.Is(err, context.DeadlineExceeded):
		return "unreachable: no answer in time"
	case errors.As(err, &uerr):
		return "unreachable: " + uerr.Err.Error()
	}
	return "unreachable: " + err.Error()
}

// apiMessage is the message of an API error, without the request details.
func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		return status.Status().Message
	}
	return err.Error()
}

// sites connects to every site: the current (or --context) context's cluster first, then
// the --peer-context clusters or the partners its ReplicationPeers name. Sites that cannot
// be reached are returned with err set; an error is returned only for a kubeconfig that
// cannot be used at all. warnings are for the user, on stderr.
func (o *options) sites(ctx context.Context) (sites []*site, warnings []string, err error) {
	loader := o.configFlags.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	current := raw.CurrentContext
	if o.configFlags.Context != nil && *o.configFlags.Context != "" {
		current = *o.configFlags.Context
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("build a client for context %q: %w", current, err)
	}
	first := &site{via: fmt.Sprintf("context %q", current), context: current}
	first.connect(cfg)
	sites = append(sites, first)

	for _, name := range o.peerContexts {
		if _, ok := raw.Contexts[name]; !ok {
			return nil, nil, fmt.Errorf("--peer-context %q: no such context in the kubeconfig", name)
		}
		pcfg, err := clientcmd.NewNonInteractiveClientConfig(raw, name, &clientcmd.ConfigOverrides{}, loader.ConfigAccess()).ClientConfig()
		if err != nil {
			return nil, nil, fmt.Errorf("build a client for --peer-context %q: %w", name, err)
		}
		pcfg.Timeout = cfg.Timeout
		s := &site{via: fmt.Sprintf("context %q", name), context: name}
		s.connect(pcfg)
		sites = append(sites, s)
	}

	ns, err := o.namespace()
	if err != nil {
		return nil, nil, err
	}
	o.resolveNames(ctx, sites, ns)

	if len(o.peerContexts) == 0 {
		peers, warning := o.peerSites(ctx, first, cfg)
		if warning != "" {
			warnings = append(warnings, warning)
		}
		sites = append(sites, peers...)
	}
	return dedupe(sites, &warnings), warnings, nil
}

// resolveNames learns the name of each site reached through a context, in parallel.
func (o *options) resolveNames(ctx context.Context, sites []*site, namespace string) {
	var wg sync.WaitGroup
	for _, s := range sites {
		if !s.reachable() {
			s.name, s.nameFrom = s.context, nameFromContext
			continue
		}
		wg.Go(func() {
			ev := o.nameEvidence(ctx, s, namespace)
			s.name, s.nameFrom = resolveSiteName(ev)
		})
	}
	wg.Wait()
}

// nameEvidence reads what a site's objects say about its name. A site that does not answer
// gets err set; evidence it may not read is left out.
func (o *options) nameEvidence(ctx context.Context, s *site, namespace string) nameEvidence {
	ctx, cancel := context.WithTimeout(ctx, o.siteTimeout)
	defer cancel()
	ev := nameEvidence{context: s.context}

	cm := &corev1.ConfigMap{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: o.deichNamespace, Name: siteConfigMapName}, cm)
	switch {
	case err == nil:
		ev.configMap = cm.Data[siteConfigMapKey]
	case apierrors.IsNotFound(err):
		var cms corev1.ConfigMapList
		if err := s.client.List(ctx, &cms, client.InNamespace(o.deichNamespace), client.MatchingLabels{partOfLabel: "deich"}); err == nil {
			ev.configMap = siteFromConfigMaps(cms.Items)
		}
	case s.fail(err):
		return ev
	}

	var services deichv1alpha1.SharedServiceList
	err = s.client.List(ctx, &services)
	if apierrors.IsForbidden(err) {
		err = s.client.List(ctx, &services, client.InNamespace(namespace))
	}
	if s.fail(err) {
		return ev
	}
	ev.services = services.Items

	var peers deichv1alpha1.ReplicationPeerList
	if err := s.client.List(ctx, &peers); s.fail(err) {
		return ev
	}
	for _, p := range peers.Items {
		if !p.Spec.IsWitness() {
			ev.partners = append(ev.partners, p.Spec.Site)
		}
	}
	return ev
}

// siteFromConfigMaps returns the site a Deich site ConfigMap (named <prefix>-site, with the
// key "site") names; empty when there is none.
func siteFromConfigMaps(cms []corev1.ConfigMap) string {
	for _, cm := range cms {
		if strings.HasSuffix(cm.Name, "-site") && cm.Data[siteConfigMapKey] != "" {
			return cm.Data[siteConfigMapKey]
		}
	}
	return ""
}

// peerSites returns the partner sites the ReplicationPeers at first name, each connected with
// the kubeconfig of its peer Secret. Witnesses are left out: they hold no services.
func (o *options) peerSites(ctx context.Context, first *site, base *rest.Config) ([]*site, string) {
	if !first.reachable() {
		return nil, fmt.Sprintf("cannot find the other sites through %s (%s): pass --peer-context", first.name, describeSiteError(first.err))
	}
	ctx, cancel := context.WithTimeout(ctx, o.siteTimeout)
	defer cancel()
	var peers deichv1alpha1.ReplicationPeerList
	if err := first.client.List(ctx, &peers); err != nil {
		first.fail(err)
		return nil, fmt.Sprintf("cannot list the ReplicationPeers at %s to find the other sites (%s): pass --peer-context", first.name, describeSiteError(err))
	}
	slices.SortFunc(peers.Items, func(a, b deichv1alpha1.ReplicationPeer) int { return strings.Compare(a.Name, b.Name) })
	var out []*site
	for _, p := range peers.Items {
		if p.Spec.IsWitness() || p.Spec.Site == first.name {
			continue
		}
		ref := p.Spec.KubeconfigSecretRef
		key := ref.Key
		if key == "" {
			key = deichv1alpha1.DefaultKubeconfigKey
		}
		s := &site{
			name: p.Spec.Site, nameFrom: nameFromReplicationPeer,
			via: fmt.Sprintf("the kubeconfig in Secret %s/%s of ReplicationPeer %s at %s", ref.Namespace, ref.Name, p.Name, first.name),
		}
		out = append(out, s)
		secret := &corev1.Secret{}
		if err := first.client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
			s.err = fmt.Errorf("cannot read its kubeconfig, Secret %s/%s at %s (%s): pass --peer-context with a context for %s",
				ref.Namespace, ref.Name, first.name, describeAccessError(err), p.Spec.Site)
			continue
		}
		data, ok := secret.Data[key]
		if !ok {
			s.err = fmt.Errorf("secret %s/%s at %s has no key %q", ref.Namespace, ref.Name, first.name, key)
			continue
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			s.err = fmt.Errorf("the kubeconfig in Secret %s/%s at %s cannot be used: %w", ref.Namespace, ref.Name, first.name, err)
			continue
		}
		cfg.Timeout = base.Timeout
		s.connect(cfg)
	}
	return out, ""
}

// describeAccessError says briefly why an object could not be read.
func describeAccessError(err error) string {
	switch {
	case apierrors.IsNotFound(err):
		return "not found"
	case apierrors.IsForbidden(err):
		return "forbidden"
	}
	return describeSiteError(err)
}

// dedupe drops a site that another one already reaches under the same name, with a warning.
func dedupe(sites []*site, warnings *[]string) []*site {
	seen := map[string]*site{}
	var out []*site
	for _, s := range sites {
		if first, ok := seen[s.name]; ok {
			*warnings = append(*warnings, fmt.Sprintf("%s and %s both reach site %s; using %s", first.via, s.via, s.name, first.via))
			continue
		}
		seen[s.name] = s
		out = append(out, s)
	}
	return out
}

// nameEvidence is what a cluster's objects say about which site it is.
type nameEvidence struct {
	// configMap is the value of the manager's site ConfigMap.
	configMap string
	// services are SharedServices of the cluster, whose status says which role this site
	// plays and which site is active.
	services []deichv1alpha1.SharedService
	// partners are the sites this cluster's partner ReplicationPeers name: not this site.
	partners []string
	// context is the kubeconfig context, the last resort.
	context string
}

// resolveSiteName decides a cluster's site name from what its objects say, most direct
// first: the manager's site ConfigMap (what its --site is set from); the SharedServices'
// status (a site that reports role Active is the activeSite it names, one that reports
// Standby the other site of the service); the sites of the services that the cluster's
// ReplicationPeers do not name (a site has no ReplicationPeer for itself); and last the
// kubeconfig context's name.
func resolveSiteName(ev nameEvidence) (name, from string) {
	if ev.configMap != "" {
		return ev.configMap, nameFromConfigMap
	}
	votes := map[string]int{}
	for _, svc := range ev.services {
		st, spec := svc.Status, svc.Spec
		if st.ActiveSite == "" || (st.ActiveSite != spec.PrimarySite && st.ActiveSite != spec.StandbySite) {
			continue
		}
		switch st.Role {
		case deichv1alpha1.RoleActive:
			votes[st.ActiveSite]++
		case deichv1alpha1.RoleStandby:
			other := spec.PrimarySite
			if other == st.ActiveSite {
				other = spec.StandbySite
			}
			votes[other]++
		}
	}
	if best := mostVoted(votes); best != "" {
		return best, nameFromStatus
	}
	if len(ev.partners) > 0 {
		candidates := map[string]int{}
		for _, svc := range ev.services {
			for _, s := range []string{svc.Spec.PrimarySite, svc.Spec.StandbySite} {
				if s != "" && !slices.Contains(ev.partners, s) {
					candidates[s]++
				}
			}
		}
		if len(candidates) == 1 {
			return mostVoted(candidates), nameFromPeers
		}
	}
	return ev.context, nameFromContext
}

// mostVoted returns the key with the most votes, the lowest name on a tie; empty for none.
func mostVoted(votes map[string]int) string {
	best := ""
	for name, n := range votes {
		if best == "" || n > votes[best] || n == votes[best] && name < best {
			best = name
		}
	}
	return best
}
