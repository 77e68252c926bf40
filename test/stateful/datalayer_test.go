package stateful

import (
	"context"
	"encoding/base64"
	"encoding/json"
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
	"k8s.io/client-go/rest"
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
	// volumeName names the VolumeReplication of the service's files and the
	// PersistentVolumeClaim it replicates.
	volumeName = "buergerkonto-files"
	// dataLayerDelay is how long the fake data layer takes to report an object's new state after
	// it first saw the spec that asks for it: long enough that a stage which did not wait for
	// readiness would show up in the order of the writes. CloudNativePG writes a demoted
	// primary's status.demotionToken this long after the spec demoted it.
	dataLayerDelay = 300 * time.Millisecond
	// syncInterval is how often the fake volume driver completes a sync to the partner while its
	// volume is primary, and the csi-addons controller refreshes status.lastSyncTime.
	syncInterval = 200 * time.Millisecond
)

// The kinds the service is made of, by the resources watches and status writes use.
var (
	clusterGVR    = schema.GroupVersionResource{Group: "postgresql.cnpg.io", Version: "v1", Resource: "clusters"}
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	dnsGVR        = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}
	volumeGVR     = schema.GroupVersionResource{Group: "replication.storage.openshift.io", Version: "v1alpha1", Resource: "volumereplications"}

	clusterGVK = schema.GroupVersionKind{Group: "postgresql.cnpg.io", Version: "v1", Kind: "Cluster"}
	dnsGVK     = schema.GroupVersionKind{Group: "externaldns.k8s.io", Version: "v1alpha1", Kind: "DNSEndpoint"}
	webGVK     = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	volumeGVK  = schema.GroupVersionKind{Group: "replication.storage.openshift.io", Version: "v1alpha1", Kind: "VolumeReplication"}
	pvcGVK     = schema.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"}
)

// serviceObjects are the service's objects; the PersistentVolumeClaim is the same in both
// forms (no override treats it differently by role).
var serviceObjects = []struct {
	gvk             schema.GroupVersionKind
	name            string
	sameInBothForms bool
}{{volumeGVK, volumeName, false}, {pvcGVK, volumeName, true}, {clusterGVK, clusterName, false}, {webGVK, webName, false}, {dnsGVK, dnsName, false}}

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

// promotionToken is a Cluster's spec.replica.promotionToken; found is false when it is absent.
func promotionToken(u *unstructured.Unstructured) (token string, found bool) {
	token, found, _ = unstructured.NestedString(u.Object, "spec", "replica", "promotionToken")
	return token, found
}

// volumePrimary reports whether a VolumeReplication's spec makes its volume the primary.
func volumePrimary(u *unstructured.Unstructured) bool {
	return replicationState(u) == "primary"
}

func replicationState(u *unstructured.Unstructured) string {
	s, _, _ := unstructured.NestedString(u.Object, "spec", "replicationState")
	return s
}

// pgToken is the content of a CloudNativePG demotion token: what pg_controldata says of the
// demoted primary's shutdown checkpoint (PgControldataTokenContent in CloudNativePG's
// pkg/utils), JSON in base64.
type pgToken struct {
	LatestCheckpointTimelineID   string `json:"latestCheckpointTimelineID,omitempty"`
	REDOWALFile                  string `json:"redoWalFile,omitempty"`
	DatabaseSystemIdentifier     string `json:"databaseSystemIdentifier,omitempty"`
	LatestCheckpointREDOLocation string `json:"latestCheckpointREDOLocation,omitempty"`
	TimeOfLatestCheckpoint       string `json:"timeOfLatestCheckpoint,omitempty"`
	OperatorVersion              string `json:"operatorVersion,omitempty"`
}

func (t pgToken) encode() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // a struct of strings always marshals
	}
	return base64.StdEncoding.EncodeToString(b)
}

func decodeToken(s string) (pgToken, error) {
	var t pgToken
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return t, fmt.Errorf("token is not base64: %w", err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("token is not JSON: %w", err)
	}
	if t.DatabaseSystemIdentifier == "" || t.LatestCheckpointTimelineID == "" || t.LatestCheckpointREDOLocation == "" {
		return t, fmt.Errorf("token lacks the system identifier, timeline or REDO location: %+v", t)
	}
	return t, nil
}

func (t pgToken) String() string {
	return fmt.Sprintf("timeline %s, REDO location %s", t.LatestCheckpointTimelineID, t.LatestCheckpointREDOLocation)
}

// database is what the two sites' Clusters share as one PostgreSQL database in the distributed
// topology: its system identifier, the timeline the primary writes on, and how far its WAL
// has come. Each site's fake CloudNativePG reads and advances it.
type database struct {
	mu       sync.Mutex
	systemID string
	timeline int64
	lsn      uint64
}

func newDatabase() *database {
	return &database{systemID: "7398427816231478293", timeline: 1, lsn: 0x3000000}
}

// checkpoint is the shutdown checkpoint of a primary on timeline that is being demoted: the
// WAL moves on a segment, and the token says where.
func (db *database) checkpoint(timeline int64) pgToken {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.lsn += 0x2000000
	return pgToken{
		LatestCheckpointTimelineID:   strconv.FormatInt(timeline, 10),
		REDOWALFile:                  fmt.Sprintf("%08X%08X%08X", timeline, db.lsn>>32, (db.lsn&0xffffffff)>>24),
		DatabaseSystemIdentifier:     db.systemID,
		LatestCheckpointREDOLocation: fmt.Sprintf("%X/%X", db.lsn>>32, db.lsn&0xffffffff),
		TimeOfLatestCheckpoint:       time.Now().UTC().Format("Mon 02 Jan 2006 15:04:05 UTC"),
		OperatorVersion:              "1.29.0",
	}
}

// promote starts a new timeline for a cluster being promoted. With a token it checks, as
// CloudNativePG does, that the token is of this database and of the timeline the primary
// wrote last, so that the replica can replay up to its REDO location and switch timelines
// without a rebuild of the former primary.
func (db *database) promote(token string) (timeline int64, err error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if token != "" {
		t, err := decodeToken(token)
		if err != nil {
			return 0, err
		}
		if t.DatabaseSystemIdentifier != db.systemID {
			return 0, fmt.Errorf("token of database system %s, not %s", t.DatabaseSystemIdentifier, db.systemID)
		}
		if t.LatestCheckpointTimelineID != strconv.FormatInt(db.timeline, 10) {
			return 0, fmt.Errorf("token of timeline %s, but the primary wrote timeline %d last", t.LatestCheckpointTimelineID, db.timeline)
		}
	}
	db.timeline++
	return db.timeline, nil
}

func (db *database) currentTimeline() int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.timeline
}

// volumes is what the two sites' volume drivers know of each other: the state each site's
// VolumeReplication reports. rbd-mirror syncs a primary image only to a peer whose image is
// secondary; while both are primary (a failover with the old primary out of reach, or not yet
// demoted) neither syncs.
type volumes struct {
	mu    sync.Mutex
	state map[string]string
}

func (v *volumes) set(site, state string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state[site] = state
}

// peerSecondary reports whether every other site's volume reports itself Secondary.
func (v *volumes) peerSecondary(site string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	peers := 0
	for s, state := range v.state {
		if s == site {
			continue
		}
		peers++
		if state != "Secondary" {
			return false
		}
	}
	return peers > 0
}

// dataWorld is what both sites' data layers share.
type dataWorld struct {
	db      *database
	volumes *volumes
}

func newDataWorld() *dataWorld {
	return &dataWorld{db: newDatabase(), volumes: &volumes{state: map[string]string{}}}
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
	// what is "primary" or "replica" for the Cluster, "ready" or "scaled down" for web,
	// "volume primary" or "volume secondary" for the VolumeReplication.
	what string
	// at is when the write was sent; rv the resourceVersion it produced. Resource versions
	// of one API server are the revisions of its etcd, so they order writes to different
	// objects of a site exactly.
	at time.Time
	rv int64
	// token is, for "primary", the promotion token the Cluster was promoted with (empty for a
	// first start or a failover), and for "replica" the demotion token it wrote (empty when
	// it was no primary before).
	token string
	// how says how a Cluster became primary: "bootstrap", "promotion token" or "failover";
	// rebuild names, for a failover, the former primary that must be rebuilt.
	how     string
	rebuild string
}

// How a fake CloudNativePG Cluster became primary.
const (
	promotedAtBootstrap = "bootstrap"
	promotedWithToken   = "promotion token"
	promotedByFailover  = "failover"
)

// dataLayer plays, at one site, what CloudNativePG, the Deployment controller and the
// csi-addons controller with its volume driver do with the service's objects, each
// dataLayerDelay after it first saw the spec asking for a change:
//   - CloudNativePG (replica clusters, distributed topology): a Cluster whose spec names itself
//     primary is reported a healthy primary, any other a replica. A primary that is demoted
//     writes status.demotionToken (the shutdown checkpoint, base64 JSON). A replica promoted
//     with spec.replica.promotionToken checks the token and records it in
//     status.lastPromotionToken; promoted without one it fails over to a new timeline, and the
//     former primary would have to be rebuilt. A primary has no demotion token.
//   - the Deployment controller: reports the replicas ready.
//   - csi-addons: reports status.state Primary or Secondary after spec.replicationState
//     changes; while primary, and while the partner's volume is secondary, the driver syncs
//     every syncInterval and status.lastSyncTime follows, to the second as the csi-addons
//     controller stores it; a secondary's lastSyncTime is cleared.
type dataLayer struct {
	site  *testenv.Site
	ns    string
	world *dataWorld

	mu      sync.Mutex
	pending map[string]pendingState // by kind: the state waited for and since when
	events  []dataEvent
	// pgTimeline is the timeline this site's Cluster last wrote WAL on as a primary.
	pgTimeline int64
	// syncPaused stops the volume driver's syncs to the partner (a broken replication link).
	syncPaused bool
	lastSync   time.Time
}

type pendingState struct {
	want  string
	since time.Time
}

func runDataLayer(ctx context.Context, t *testing.T, site *testenv.Site, ns string, world *dataWorld) *dataLayer {
	t.Helper()
	d := &dataLayer{site: site, ns: ns, world: world, pending: map[string]pendingState{}}
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
			d.reconcileVolume(ctx)
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
	source, _, _ := unstructured.NestedString(u.Object, "spec", "replica", "source")
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	current, _, _ := unstructured.NestedString(u.Object, "status", "currentPrimary")
	lastToken, _, _ := unstructured.NestedString(u.Object, "status", "lastPromotionToken")
	token, _ := promotionToken(u)
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
	started := phase == ""
	wasPrimary := !started && current != ""
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	status["phase"] = "Cluster in healthy state"
	status["currentPrimary"] = want
	status["instances"] = int64(1)
	status["readyInstances"] = int64(1)
	e := dataEvent{what: what}
	switch {
	case what == "primary" && started:
		e.how = promotedAtBootstrap
		d.setTimeline(d.world.db.currentTimeline())
	case what == "primary":
		// A token already used for an earlier promotion is no token for this one.
		use := token
		if use == lastToken {
			use = ""
		}
		timeline, err := d.world.db.promote(use)
		if err != nil {
			// CloudNativePG does not promote with a token that does not fit; it waits.
			d.note("Cluster", fmt.Sprintf("refused promotion token: %v", err))
			return
		}
		d.setTimeline(timeline)
		e.token = use
		if use != "" {
			e.how = promotedWithToken
			status["lastPromotionToken"] = use
		} else {
			e.how, e.rebuild = promotedByFailover, source
		}
		// A primary has no demotion token.
		delete(status, "demotionToken")
	case wasPrimary:
		// Demoted: the shutdown checkpoint of the timeline it wrote becomes its token.
		e.token = d.world.db.checkpoint(d.timelineNow()).encode()
		status["demotionToken"] = e.token
	}
	if token == "" {
		delete(status, "lastPromotionToken")
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return
	}
	e.at = time.Now()
	if err := d.site.Client.Status().Update(ctx, u); err != nil {
		return
	}
	e.rv = resourceVersion(u)
	d.done("Cluster", e)
}

func (d *dataLayer) setTimeline(tl int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pgTimeline = tl
}

// timelineNow is the timeline this site's Cluster last wrote WAL on as a primary.
func (d *dataLayer) timelineNow() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pgTimeline
}

// history describes every state change the data layer wrote, relative to t0.
func (d *dataLayer) history(t0 time.Time) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, e := range d.events {
		fmt.Fprintf(&b, "\n  %s %9s rv=%-5d %s", d.site.Name, e.at.Sub(t0).Round(time.Millisecond), e.rv, e.what)
		if e.how != "" {
			fmt.Fprintf(&b, " (%s)", e.how)
		}
		if e.token != "" {
			if t, err := decodeToken(e.token); err == nil {
				fmt.Fprintf(&b, ", token: %s", t)
			} else {
				fmt.Fprintf(&b, ", token: %v", err)
			}
		}
		if e.rebuild != "" {
			fmt.Fprintf(&b, ", %s must be rebuilt", e.rebuild)
		}
	}
	return b.String()
}

// note records something the data layer did not do, for the test's log.
func (d *dataLayer) note(kind, what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.events); n > 0 && d.events[n-1].what == kind+": "+what {
		return
	}
	d.events = append(d.events, dataEvent{what: kind + ": " + what, at: time.Now()})
}

// reconcileVolume plays the csi-addons controller and the volume driver for the service's
// VolumeReplication at this site.
func (d *dataLayer) reconcileVolume(ctx context.Context) {
	u, err := get(ctx, d.site, volumeGVK, d.ns, volumeName)
	if err != nil {
		return
	}
	want := "Secondary"
	if volumePrimary(u) {
		want = "Primary"
	}
	state, _, _ := unstructured.NestedString(u.Object, "status", "state")
	status, _, _ := unstructured.NestedMap(u.Object, "status")
	if status == nil {
		status = map[string]any{}
	}
	now := time.Now()
	syncing := want == "Primary" && d.world.volumes.peerSecondary(d.site.Name) && !d.paused()
	e := dataEvent{}
	switch {
	case state != want:
		if !d.due("VolumeReplication", want) {
			return
		}
		status["state"] = want
		status["observedGeneration"] = u.GetGeneration()
		status["lastCompletionTime"] = now.UTC().Format(time.RFC3339)
		if want == "Primary" {
			status["message"] = "volume is promoted"
		} else {
			status["message"] = "volume is demoted"
			delete(status, "lastSyncTime")
		}
		e.what = "volume " + strings.ToLower(want)
		if syncing {
			status["lastSyncTime"] = now.UTC().Format(time.RFC3339)
		}
	case syncing:
		d.mu.Lock()
		due := now.Sub(d.lastSync) >= syncInterval
		d.mu.Unlock()
		if !due {
			return
		}
		synced := now.UTC().Format(time.RFC3339)
		if last, _, _ := unstructured.NestedString(u.Object, "status", "lastSyncTime"); last == synced {
			d.synced(now)
			return
		}
		status["lastSyncTime"] = synced
	default:
		return
	}
	if err := unstructured.SetNestedMap(u.Object, status, "status"); err != nil {
		return
	}
	e.at = time.Now()
	if err := d.site.Client.Status().Update(ctx, u); err != nil {
		return
	}
	if syncing {
		d.synced(now)
	}
	if e.what != "" {
		d.world.volumes.set(d.site.Name, want)
		e.rv = resourceVersion(u)
		d.done("VolumeReplication", e)
	}
}

func (d *dataLayer) synced(at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastSync = at
}

// pauseSync stops (true) or resumes (false) the volume driver's syncs to the partner.
func (d *dataLayer) pauseSync(paused bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncPaused = paused
}

func (d *dataLayer) paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncPaused
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
	// obj is the object as the watch delivered it.
	obj *unstructured.Unstructured
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
	{kind: "VolumeReplication", gvr: volumeGVR, name: volumeName, active: volumePrimary,
		detail: func(u *unstructured.Unstructured) string { return "replicationState=" + replicationState(u) }},
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
	// Five objects, a list and a watch each, and their restarts: more than client-go's default
	// of five requests a second would let through at once.
	cfg := rest.CopyConfig(site.Config)
	cfg.QPS, cfg.Burst = 100, 200
	dyn, err := dynamic.NewForConfig(cfg)
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
	if token, ok := promotionToken(u); ok {
		detail += fmt.Sprintf(", promotionToken of %d bytes", len(token))
	}
	l.changes = append(l.changes, sighting{kind: o.kind, active: active, at: time.Now(), rv: resourceVersion(u), detail: detail, obj: u.DeepCopy()})
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
		fmt.Fprintf(&b, "\n  %s %9s %-17s %-7s rv=%d %s", l.site.Name, s.at.Sub(t0).Round(time.Millisecond), s.kind, s.form(), s.rv, s.detail)
	}
	return b.String()
}

// invariant samples both sites every few tens of milliseconds and remembers every sample in
// which both published the DNS record, both ran a primary database or both asked for a primary
// volume. A site marked dark counts as serving nothing: a data centre that lost power publishes
// no record and runs no database or volume, whatever its API server, kept running here so the
// test can look, says.
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

// served is what one site serves at one instant.
type served struct {
	// targets are the DNS targets it publishes.
	targets []string
	// primary is set when its database is primary; detail describes the Cluster's spec.
	primary bool
	detail  string
	// volume is set when its VolumeReplication asks for a primary volume.
	volume bool
}

// serving reads what site serves. An object that cannot be read serves nothing.
func (inv *invariant) serving(ctx context.Context, site *testenv.Site) served {
	inv.mu.Lock()
	dark := inv.dark[site.Name]
	inv.mu.Unlock()
	if dark {
		return served{detail: "dark"}
	}
	var s served
	if u, err := get(ctx, site, dnsGVK, inv.ns, dnsName); err == nil {
		s.targets = dnsTargets(u)
	}
	if u, err := get(ctx, site, clusterGVK, inv.ns, clusterName); err == nil {
		s.primary = clusterPrimary(u)
		s.detail = clusterDetail(u)
	}
	if u, err := get(ctx, site, volumeGVK, inv.ns, volumeName); err == nil {
		s.volume = volumePrimary(u)
	}
	return s
}

func (inv *invariant) sample(ctx context.Context) {
	k := inv.serving(ctx, kiel)
	m := inv.serving(ctx, schwerin)
	now := time.Now().Format("15:04:05.000")
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.samples++
	if inv.dark[kiel.Name] || inv.dark[schwerin.Name] {
		inv.darkened++
	}
	if len(k.targets) > 0 && len(m.targets) > 0 {
		inv.violations = append(inv.violations, fmt.Sprintf("%s: both publish %s: sh-kiel %v, mv-schwerin %v", now, hostname, k.targets, m.targets))
	}
	if k.primary && m.primary {
		inv.violations = append(inv.violations, fmt.Sprintf("%s: both databases primary: sh-kiel %s, mv-schwerin %s", now, k.detail, m.detail))
	}
	if k.volume && m.volume {
		inv.violations = append(inv.violations, fmt.Sprintf("%s: both VolumeReplications %s ask for replicationState primary", now, volumeName))
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
