package stateful

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// The service's objects, named as in docs/stateful.md.
const (
	clusterName = "buergerkonto-db"
	webName     = "web"
	dnsName     = "buergerkonto"
	hostname    = "buergerkonto.example.de"
	// kielTarget and schwerinTarget are the addresses of each site's ingress.
	kielTarget     = "192.0.2.10"
	schwerinTarget = "198.51.100.20"
	// dbKiel and dbSchwerin name each site's database cluster in the distributed topology.
	dbKiel     = "db-sh-kiel"
	dbSchwerin = "db-mv-schwerin"
	// webReplicas is the replica count of the Deployment web at the site that serves.
	webReplicas = 3
	// dataLayerDelay is how long the fake data layer takes to report an object's new state after
	// it first saw the spec that asks for it: long enough that a stage which did not wait for
	// readiness would show up in the order of the writes.
	dataLayerDelay = 300 * time.Millisecond
)

// The kinds the service is made of, by the resources watches and status writes use.
var (
	clusterGVR    = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	dnsGVR        = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

	clusterGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	dnsGVK     = schema.GroupVersionKind{Group: "externaldns.k8s.io", Version: "v1alpha1", Kind: "DNSEndpoint"}
	webGVK     = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
)

// serviceObjects are the service's objects.
var serviceObjects = []struct {
	gvk  schema.GroupVersionKind
	name string
}{{clusterGVK, clusterName}, {webGVK, webName}, {dnsGVK, dnsName}}

// get reads one of the service's objects at site.
func get(ctx context.Context, site *testenv.Site, gvk schema.GroupVersionKind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
}

// clusterPrimary reports whether a Cluster's spec makes it the primary of the distributed
// topology: CloudNativePG promotes a cluster whose spec.replica.primary is its own name.
func clusterPrimary(u *unstructured.Unstructured) bool {
	self, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "self")
	primary, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "primary")
	return self != "" && primary == self
}

func clusterDetail(u *unstructured.Unstructured) string {
	self, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "self")
	primary, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "primary")
	return fmt.Sprintf("self=%s primary=%s", self, primary)
}

// dnsTargets lists the targets of every endpoint of a DNSEndpoint: what external-dns would
// publish.
func dnsTargets(u *unstructured.Unstructured) []string {
	endpoints, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	var targets []string
	for _, e := range endpoints {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		ts, _, _ := unstructured.NestedStringSlice(m, "targets")
		targets = append(targets, ts...)
	}
	return targets
}

// specReplicas is a Deployment's spec.replicas (1 when unset, as the API server defaults it).
func specReplicas(u *unstructured.Unstructured) int64 {
	n, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
	if !found {
		return 1
	}
	return n
}

func resourceVersion(u *unstructured.Unstructured) int64 {
	rv, _ := strconv.ParseInt(u.GetResourceVersion(), 10, 64)
	return rv
}

// dataEvent is one status write of the fake data layer.
type dataEvent struct {
	// what is "primary" or "replica" for the Cluster, "ready" or "scaled down" for web.
	what string
	// at is when the write was sent; rv the resourceVersion it produced. Resource versions
	// of one API server are the revisions of its etcd, so they order writes to different
	// objects of a site exactly.
	at time.Time
	rv int64
}

// dataLayer plays, at one site, what CloudNativePG and the Deployment controller do with the
// service's objects: it reports a Cluster whose spec names itself primary as a healthy primary
// and any other as a replica, and a Deployment's replicas as ready, each dataLayerDelay after it
// first saw the spec asking for it.
type dataLayer struct {
	site *testenv.Site
	ns   string

	mu      sync.Mutex
	pending map[string]pendingState // by kind: the state waited for and since when
	events  []dataEvent
}

type pendingState struct {
	want  string
	since time.Time
}

func runDataLayer(ctx context.Context, t *testing.T, site *testenv.Site, ns string) *dataLayer {
	t.Helper()
	d := &dataLayer{site: site, ns: ns, pending: map[string]pendingState{}}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			d.reconcileCluster(ctx)
			d.reconcileWeb(ctx)
		}
	}()
	return d
}

// due reports whether the state want of kind has been asked for long enough to be reported.
func (d *dataLayer) due(kind, want string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pending[kind]
	if !ok || p.want != want {
		d.pending[kind] = pendingState{want: want, since: time.Now()}
		return false
	}
	return time.Since(p.since) >= dataLayerDelay
}

func (d *dataLayer) done(kind string, e dataEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.pending, kind)
	d.events = append(d.events, e)
}

func (d *dataLayer) reconcileCluster(ctx context.Context) {
	u, err := get(ctx, d.site, clusterGVK, d.ns, clusterName)
	if err != nil {
		return
	}
	self, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "self")
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	current, _, _ := unstructured.NestedString(u.Object, "status", "currentPrimary")
	what, want := "replica", ""
	if clusterPrimary(u) {
		what, want = "primary", self+"-1"
	}
	if phase == "Cluster in healthy state" && current == want {
		return
	}
	if !d.due("Cluster", what+"/"+want) {
		return
	}
	status := map[string]any{
		"phase":          "Cluster in healthy state",
		"currentPrimary": want,
		"instances":      int64(1),
		"readyInstances": int64(1),
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return
	}
	at := time.Now()
	if err := d.site.Client.Status().Update(ctx, u); err != nil {
		return
	}
	d.done("Cluster", dataEvent{what: what, at: at, rv: resourceVersion(u)})
}

func (d *dataLayer) reconcileWeb(ctx context.Context) {
	u, err := get(ctx, d.site, webGVK, d.ns, webName)
	if err != nil {
		return
	}
	want := specReplicas(u)
	ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
	if ready == want {
		return
	}
	if !d.due("Deployment", strconv.FormatInt(want, 10)) {
		return
	}
	status := map[string]any{
		"observedGeneration": u.GetGeneration(),
		"replicas":           want,
		"updatedReplicas":    want,
		"readyReplicas":      want,
		"availableReplicas":  want,
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return
	}
	at := time.Now()
	if err := d.site.Client.Status().Update(ctx, u); err != nil {
		return
	}
	what := "ready"
	if want == 0 {
		what = "scaled down"
	}
	d.done("Deployment", dataEvent{what: what, at: at, rv: resourceVersion(u)})
}

// first returns the first event what the data layer wrote at or after since.
func (d *dataLayer) first(what string, since time.Time) (dataEvent, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.events {
		if e.what == what && !e.at.Before(since) {
			return e, true
		}
	}
	return dataEvent{}, false
}

// sighting is one object seen in a new form, as a watch delivered it.
type sighting struct {
	kind   string
	active bool
	// at is when the watch delivered it, rv the resourceVersion of the write.
	at     time.Time
	rv     int64
	detail string
}

func (s sighting) form() string {
	if s.active {
		return "active"
	}
	return "standby"
}

// tracked is one of the service's objects and what its active form is.
type tracked struct {
	kind   string
	gvr    schema.GroupVersionResource
	name   string
	active func(*unstructured.Unstructured) bool
	detail func(*unstructured.Unstructured) string
}

var trackedObjects = []tracked{
	{kind: "Cluster", gvr: clusterGVR, name: clusterName, active: clusterPrimary, detail: clusterDetail},
	{kind: "Deployment", gvr: deploymentGVR, name: webName,
		active: func(u *unstructured.Unstructured) bool { return specReplicas(u) > 0 },
		detail: func(u *unstructured.Unstructured) string { return fmt.Sprintf("replicas=%d", specReplicas(u)) }},
	{kind: "DNSEndpoint", gvr: dnsGVR, name: dnsName,
		active: func(u *unstructured.Unstructured) bool { return len(dnsTargets(u)) > 0 },
		detail: func(u *unstructured.Unstructured) string { return fmt.Sprintf("targets=%v", dnsTargets(u)) }},
}

// formLog watches the service's objects at one site and records every change of form: when
// each was first seen in its active or standby form, and by which write. A watch delivers
// every write, so unlike polling it tells apart switches that follow each other within
// milliseconds, as a fence's stages do.
type formLog struct {
	site *testenv.Site

	mu      sync.Mutex
	last    map[string]bool
	changes []sighting
}

func watchForms(ctx context.Context, t *testing.T, site *testenv.Site, ns string) *formLog {
	t.Helper()
	dyn, err := dynamic.NewForConfig(site.Config)
	if err != nil {
		t.Fatalf("dynamic client for %s: %v", site.Name, err)
	}
	l := &formLog{site: site, last: map[string]bool{}}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for _, o := range trackedObjects {
		wg.Go(func() { l.follow(ctx, dyn.Resource(o.gvr).Namespace(ns), o) })
	}
	return l
}

// follow lists and then watches one object, picking up where it left off when a watch ends.
func (l *formLog) follow(ctx context.Context, res dynamic.ResourceInterface, o tracked) {
	selector := "metadata.name=" + o.name
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			list, err := res.List(ctx, metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			for i := range list.Items {
				l.see(o, &list.Items[i])
			}
			rv = list.GetResourceVersion()
		}
		w, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			switch ev.Type {
			case watch.Error:
				if apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) || apierrors.IsGone(apierrors.FromObject(ev.Object)) {
					rv = ""
				}
			case watch.Added, watch.Modified, watch.Bookmark:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				rv = u.GetResourceVersion()
				if ev.Type != watch.Bookmark {
					l.see(o, u)
				}
			}
		}
		w.Stop()
	}
}

func (l *formLog) see(o tracked, u *unstructured.Unstructured) {
	active := o.active(u)
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[o.kind]; ok && last == active {
		return
	}
	l.last[o.kind] = active
	detail := o.detail(u)
	if from := u.GetLabels()[render.LabelSourceSite]; from != "" {
		detail += ", a copy from " + from
	}
	l.changes = append(l.changes, sighting{kind: o.kind, active: active, at: time.Now(), rv: resourceVersion(u), detail: detail})
}

// first returns when kind was first seen in the given form at or after since.
func (l *formLog) first(kind string, active bool, since time.Time) (sighting, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.changes {
		if s.kind == kind && s.active == active && !s.at.Before(since) {
			return s, true
		}
	}
	return sighting{}, false
}

// timeline describes every change of form, relative to t0.
func (l *formLog) timeline(t0 time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.changes {
		fmt.Fprintf(&b, "\n  %s %9s %-11s %-7s rv=%d %s", l.site.Name, s.at.Sub(t0).Round(time.Millisecond), s.kind, s.form(), s.rv, s.detail)
	}
	return b.String()
}

// invariant samples both sites every few tens of milliseconds and remembers every sample in
// which both published the DNS record or both ran a primary database. A site marked dark
// counts as serving nothing: a data centre that lost power publishes no record and runs no
// database, whatever its API server, kept running here so the test can look, says.
type invariant struct {
	ns   string
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	dark       map[string]bool
	samples    int
	darkened   int
	violations []string
}

func watchInvariant(ctx context.Context, ns string) *invariant {
	inv := &invariant{ns: ns, stop: make(chan struct{}), done: make(chan struct{}), dark: map[string]bool{}}
	go func() {
		defer close(inv.done)
		for {
			select {
			case <-inv.stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			inv.sample(ctx)
		}
	}()
	return inv
}

// serving reads what site serves: the DNS targets it publishes and whether its database is
// primary. An object that cannot be read serves nothing.
func (inv *invariant) serving(ctx context.Context, site *testenv.Site) (targets []string, primary bool, detail string) {
	inv.mu.Lock()
	dark := inv.dark[site.Name]
	inv.mu.Unlock()
	if dark {
		return nil, false, "dark"
	}
	if u, err := get(ctx, site, dnsGVK, inv.ns, dnsName); err == nil {
		targets = dnsTargets(u)
	}
	if u, err := get(ctx, site, clusterGVK, inv.ns, clusterName); err == nil {
		primary = clusterPrimary(u)
		detail = clusterDetail(u)
	}
	return targets, primary, detail
}

func (inv *invariant) sample(ctx context.Context) {
	kt, kp, kd := inv.serving(ctx, kiel)
	st, sp, sd := inv.serving(ctx, schwerin)
	now := time.Now().Format("15:04:05.000")
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.samples++
	if inv.dark[kiel.Name] || inv.dark[schwerin.Name] {
		inv.darkened++
	}
	if len(kt) > 0 && len(st) > 0 {
		inv.violations = append(inv.violations, fmt.Sprintf("%s: both publish %s: sh-kiel %v, mv-schwerin %v", now, hostname, kt, st))
	}
	if kp && sp {
		inv.violations = append(inv.violations, fmt.Sprintf("%s: both databases primary: sh-kiel %s, mv-schwerin %s", now, kd, sd))
	}
}

// setDark marks site as dark (serving nothing) or back.
func (inv *invariant) setDark(site *testenv.Site, dark bool) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.dark[site.Name] = dark
}

// check stops sampling and fails the test for every sample in which both sites served. Only
// the first call checks.
func (inv *invariant) check(t *testing.T) {
	t.Helper()
	select {
	case <-inv.stop:
		return
	default:
	}
	close(inv.stop)
	<-inv.done
	inv.mu.Lock()
	defer inv.mu.Unlock()
	t.Logf("invariant: %d samples of both sites, %d of them while a site was dark", inv.samples, inv.darkened)
	if inv.samples < 100 {
		t.Errorf("invariant: only %d samples", inv.samples)
	}
	if len(inv.violations) > 0 {
		shown := inv.violations[:min(len(inv.violations), 5)]
		t.Errorf("both sites served at once in %d samples; the first:\n  %s", len(inv.violations), strings.Join(shown, "\n  "))
	}
}
