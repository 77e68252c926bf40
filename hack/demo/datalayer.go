package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/testenv"
)

// The service's database and DNS record, as in buergerkonto.yaml.
const (
	database = "buergerkonto-db"
	hostname = "buergerkonto.example.de"
	// healthy is the status.phase CloudNativePG reports for a cluster that runs as asked.
	healthy = "Cluster in healthy state"
)

const (
	// cnpgInterval is how often the played CloudNativePG looks at its Cluster.
	cnpgInterval = 200 * time.Millisecond
	// cnpgPromotion is how long it takes to promote a cluster: a promotion is not instant, and
	// the wait makes the database stage visibly wait for it.
	cnpgPromotion = time.Second
)

var clusterGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}

// dataLayerCRDs are the CRDs of the service's data layer, relative to the repository: the
// stand-ins the stateful tests install, with the upstream shapes.
var dataLayerCRDs = []string{
	"test/stateful/testdata/crds/postgresql.cnpg.io_clusters.yaml",
	"test/stateful/testdata/crds/externaldns.k8s.io_dnsendpoints.yaml",
}

// dataLayerColumns show, for `kubectl get clusters...,dnsendpoints...`, which cluster a site's
// Cluster is and which it follows, which instance runs as primary, and where the record points.
const dataLayerColumns = "custom-columns=KIND:.kind,NAME:.metadata.name,SELF:.spec.replica.self," +
	"SPEC.PRIMARY:.spec.replica.primary,RUNNING.PRIMARY:.status.currentPrimary,HOST:.spec.endpoints[*].dnsName,TARGETS:.spec.endpoints[*].targets[*]"

// installDataLayer installs the CRDs of CloudNativePG's Cluster and external-dns's DNSEndpoint
// at site, and lets its Deich manager mirror, fence and promote them.
func (st *story) installDataLayer(ctx context.Context, site *testenv.Site) error {
	var crds []*unstructured.Unstructured
	for _, f := range dataLayerCRDs {
		o, err := decodeFile(filepath.Join(st.root, f), nil)
		if err != nil {
			return err
		}
		crds = append(crds, o...)
	}
	rbac, err := decodeFile(filepath.Join(st.root, "hack", "demo", "datalayer-rbac.yaml"), nil)
	if err != nil {
		return err
	}
	st.out.say("At %s: the CRDs of CloudNativePG's Cluster and external-dns's DNSEndpoint (test/stateful/testdata/crds), and a ClusterRole that lets Deich mirror, fence and promote them (hack/demo/datalayer-rbac.yaml, aggregated into deich-mirror-sources)",
		site.Name)
	if err := st.apply(ctx, site, append(crds, rbac...)); err != nil {
		return err
	}
	return waitEstablished(ctx, site, crds)
}

// cnpg plays CloudNativePG for the service's Cluster at one site: there is no database
// operator in the demo. Like CloudNativePG in distributed topology, it runs a cluster whose
// spec.replica.primary is its own name (spec.replica.self) as the primary, after cnpgPromotion,
// and any other as a replica cluster following it; demoting a primary, it writes the demotion
// token a planned promotion of the other site's cluster needs. It reports only status.
type cnpg struct {
	site   string
	client client.Client
	out    *teller
	// dark reports whether the site is dark: its CloudNativePG is as dead as its API server.
	dark func() bool
	// promoting is when the spec first asked for a primary that is not running yet.
	promoting time.Time
	// wal is the database's history, shared with the other site's CloudNativePG; timeline is
	// the one this cluster last ran on as the primary.
	wal      *wal
	timeline int
}

// wal is what the two sites' clusters share through WAL shipping: the timeline, which every
// promotion starts anew, and how far the WAL has got.
type wal struct {
	mu       sync.Mutex
	timeline int
	lsn      uint64
}

// promote starts a new timeline and returns it.
func (w *wal) promote() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timeline++
	return w.timeline
}

// checkpoint returns the LSN of a primary's shutdown checkpoint now: later each time.
func (w *wal) checkpoint() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lsn += 0x2000000
	return 0x3000000 + w.lsn
}

// runCNPG plays CloudNativePG at site until ctx ends.
func (st *story) runCNPG(ctx context.Context, site string) {
	p := &cnpg{site: site, client: st.site(site).Client, out: st.out, dark: func() bool { return st.sites.isDark(site) }, wal: &st.wal}
	go func() {
		tick := time.NewTicker(cnpgInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			p.step(ctx)
		}
	}()
}

// step looks at the Cluster once and reports what CloudNativePG would.
func (p *cnpg) step(ctx context.Context) {
	if p.dark() {
		p.promoting = time.Time{}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(clusterGVK)
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: database}, u); err != nil {
		return // not deployed yet, or the API server is restarting
	}
	c := readCluster(u)
	if c.self != "" && c.primary == c.self {
		p.runPrimary(ctx, u, c)
		return
	}
	p.promoting = time.Time{}
	p.runReplica(ctx, u, c)
}

// cluster is what the played CloudNativePG reads of a Cluster.
type cluster struct {
	self, primary, source, promotionToken string
	phase, currentPrimary                 string
}

func readCluster(u *unstructured.Unstructured) cluster {
	s := func(path ...string) string {
		v, _, _ := unstructured.NestedString(u.Object, path...)
		return v
	}
	return cluster{
		self: s("spec", "replica", "self"), primary: s("spec", "replica", "primary"), source: s("spec", "replica", "source"),
		promotionToken: s("spec", "replica", "promotionToken"),
		phase:          s("status", "phase"), currentPrimary: s("status", "currentPrimary"),
	}
}

// runPrimary promotes the cluster, or bootstraps it as the primary, once the spec has asked for
// it for cnpgPromotion.
func (p *cnpg) runPrimary(ctx context.Context, u *unstructured.Unstructured, c cluster) {
	instance := c.self + "-1"
	if c.phase == healthy && c.currentPrimary == instance {
		return
	}
	if p.promoting.IsZero() {
		p.promoting = time.Now()
	}
	if time.Since(p.promoting) < cnpgPromotion {
		return
	}
	// A primary has no demotion token: one left from an earlier demotion must never be handed
	// over again.
	if err := p.writeStatus(ctx, u, map[string]any{
		"phase": healthy, "currentPrimary": instance, "instances": 1, "readyInstances": 1, "demotionToken": nil,
	}); err != nil {
		return
	}
	p.promoting = time.Time{}
	p.timeline = p.wal.promote()
	switch {
	case c.phase == "":
		p.say("%s bootstrapped as the primary cluster %s, instance %s", database, c.self, instance)
	case c.promotionToken != "":
		p.say("%s promoted to primary (%s) with spec.replica.promotionToken %s: it replayed the WAL up to the demoted primary's last checkpoint, so %s follows on without a rebuild",
			database, instance, describeToken(c.promotionToken), c.source)
	default:
		p.say("%s promoted to primary (%s) without a promotion token: a failover, so the former primary %s will need a rebuild before it can follow",
			database, instance, c.source)
	}
}

// runReplica runs the cluster as a replica of the one spec.replica.primary names; a cluster
// that ran as the primary is demoted and gets a demotion token.
func (p *cnpg) runReplica(ctx context.Context, u *unstructured.Unstructured, c cluster) {
	if c.phase == healthy && c.currentPrimary == "" {
		return
	}
	status := map[string]any{"phase": healthy, "currentPrimary": "", "instances": 1, "readyInstances": 1}
	demoted := c.currentPrimary != ""
	token := ""
	if demoted {
		token = demotionToken(p.wal.checkpoint(), max(p.timeline, 1))
		status["demotionToken"] = token
	}
	if err := p.writeStatus(ctx, u, status); err != nil {
		return
	}
	if demoted {
		p.say("%s demoted: now a replica cluster following %s; status.demotionToken %s", database, c.primary, describeToken(token))
		return
	}
	p.say("%s runs as a replica cluster following %s", database, c.primary)
}

// writeStatus merges status into the Cluster's status.
func (p *cnpg) writeStatus(ctx context.Context, u *unstructured.Unstructured, status map[string]any) error {
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return err
	}
	return p.client.Status().Patch(ctx, u, client.RawPatch(types.MergePatchType, patch))
}

// say tells what the played CloudNativePG did.
func (p *cnpg) say(format string, args ...any) {
	p.out.say("CloudNativePG at %s (played by the demo): %s", p.site, fmt.Sprintf(format, args...))
}

// demotionToken is a token as CloudNativePG writes one: base64 of JSON that says where the
// demoted primary's WAL ends, and on which timeline.
func demotionToken(lsn uint64, timeline int) string {
	data, _ := json.Marshal(map[string]any{"lsn": fmt.Sprintf("0/%X", lsn), "timeline": timeline})
	return base64.StdEncoding.EncodeToString(data)
}

// describeToken shows a token and what it says.
func describeToken(token string) string {
	data, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return token
	}
	return fmt.Sprintf("%s (%s)", token, data)
}

// addDataLayer adds to the SharedService ss the database and the DNS record
// (hack/demo/sharedservice-datalayer.yaml): its resources and overrides after the sample's,
// and its promotion stages.
func (st *story) addDataLayer(ss *unstructured.Unstructured) error {
	path := filepath.Join(st.root, "hack", "demo", "sharedservice-datalayer.yaml")
	docs, err := decodeFile(path, nil)
	if err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("%s: want one document, found %d", path, len(docs))
	}
	add := docs[0].Object
	for _, field := range []string{"resources", "overrides"} {
		have, _, _ := unstructured.NestedSlice(ss.Object, "spec", field)
		more, _, err := unstructured.NestedSlice(add, "spec", field)
		if err != nil {
			return fmt.Errorf("%s: spec.%s: %w", path, field, err)
		}
		if err := unstructured.SetNestedSlice(ss.Object, append(have, more...), "spec", field); err != nil {
			return err
		}
	}
	promotion, _, err := unstructured.NestedMap(add, "spec", "promotion")
	if err != nil {
		return fmt.Errorf("%s: spec.promotion: %w", path, err)
	}
	return unstructured.SetNestedMap(ss.Object, promotion, "spec", "promotion")
}
