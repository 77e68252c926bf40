package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// Bounds of the waits; they end a broken run, they are not performance targets.
const (
	connectTimeout = 2 * time.Minute
	mirrorTimeout  = 10 * time.Minute
	settleTimeout  = 2 * time.Minute
)

// unlimited returns a client config for site without client-side rate limiting.
func unlimited(site *testenv.Site) *rest.Config {
	cfg := rest.CopyConfig(site.Config)
	cfg.QPS, cfg.Burst = -1, -1
	return cfg
}

// clientset returns an unthrottled typed client for site.
func clientset(b *testing.B, site *testenv.Site) *kubernetes.Clientset {
	b.Helper()
	cs, err := kubernetes.NewForConfig(unlimited(site))
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// runningManager is a manager binary running for one site.
type runningManager struct {
	*testenv.Manager
	pid         int
	metricsAddr string
	logPath     string
	stopOnce    sync.Once
}

// stop stops the manager unless it was stopped before.
func (m *runningManager) stop(b *testing.B) {
	m.stopOnce.Do(func() {
		if err := m.Stop(); err != nil {
			b.Errorf("stop manager of %s: %v", m.Site.Name, err)
		}
	})
}

// managers are the two managers of one benchmark.
type managers struct {
	active, standby *runningManager
}

// startManagers runs a fresh manager per site and waits until each has connected to its peer:
// a heartbeat written after the start proves the new manager's connection is up (a Ready
// condition could still be the previous manager's). They are stopped when b ends.
func startManagers(ctx context.Context, b *testing.B, s *sites) *managers {
	b.Helper()
	dir, err := os.MkdirTemp(s.workDir, "managers-")
	if err != nil {
		b.Fatal(err)
	}
	started := time.Now()
	ms := &managers{}
	for _, site := range []*testenv.Site{s.active, s.standby} {
		rm := startManager(b, s, site, dir)
		if site == s.active {
			ms.active = rm
		} else {
			ms.standby = rm
		}
	}
	for _, pair := range [][2]*testenv.Site{{s.active, s.standby}, {s.standby, s.active}} {
		on, peerSite := pair[0], pair[1]
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, connectTimeout, true, func(ctx context.Context) (bool, error) {
			p := &deichv1alpha1.ReplicationPeer{}
			if err := on.Client.Get(ctx, client.ObjectKey{Name: peerSite.Name}, p); err != nil {
				return false, nil //nolint:nilerr // keep polling until the timeout
			}
			hb := p.Status.LastHeartbeatTime
			return hb != nil && hb.After(started) && meta.IsStatusConditionTrue(p.Status.Conditions, deichv1alpha1.ConditionReady), nil
		})
		if err != nil {
			b.Fatalf("manager of %s did not connect to %s (logs in %s): %v", on.Name, peerSite.Name, dir, err)
		}
	}
	return ms
}

// reconciles counts a manager's SharedService reconciles and the time they took, from its
// metrics endpoint.
type reconciles struct {
	count   float64
	seconds float64
}

// reconcileStats reads the counters; ok is false when the manager serves no metrics (it runs
// in-process).
func (m *runningManager) reconcileStats(ctx context.Context, b *testing.B) (reconciles, bool) {
	b.Helper()
	if m.metricsAddr == "" {
		return reconciles{}, false
	}
	const sharedService = `controller="sharedservice"`
	count, err := testenv.ScrapeSum(ctx, m.metricsAddr, "controller_runtime_reconcile_total", sharedService)
	if err != nil {
		b.Fatal(err)
	}
	secs, err := testenv.ScrapeSum(ctx, m.metricsAddr, "controller_runtime_reconcile_time_seconds_sum", sharedService)
	if err != nil {
		b.Fatal(err)
	}
	return reconciles{count: count, seconds: secs}, true
}

// stop stops both managers.
func (ms *managers) stop(b *testing.B) {
	ms.active.stop(b)
	ms.standby.stop(b)
}

// inProcess reports whether the managers run inside this process (DEICH_BENCH_MANAGERS=
// in-process), built by operator.New exactly as main.go builds them, so that
// `go test -cpuprofile` profiles them. Their memory cannot be told apart from the benchmark's
// then; BenchmarkManagerMemory skips.
func inProcess() bool { return os.Getenv("DEICH_BENCH_MANAGERS") == "in-process" }

// startManager runs the manager of site, as a process with its kubeconfig and log in dir, or
// in this process (see inProcess). It is stopped when b ends.
func startManager(b *testing.B, s *sites, site *testenv.Site, dir string) *runningManager {
	b.Helper()
	if inProcess() {
		m, err := testenv.StartManager(site, operator.Options{
			PeerQPS: peerQPS, PeerBurst: peerBurst, ApplyParallelism: applyParallelism, MaxClockSkew: operator.DefaultMaxClockSkew,
		})
		if err != nil {
			b.Fatal(err)
		}
		rm := &runningManager{Manager: m, logPath: "stderr"}
		b.Cleanup(func() { rm.stop(b) })
		return rm
	}
	addr, err := testenv.FreeAddr()
	if err != nil {
		b.Fatal(err)
	}
	logPath := filepath.Join(dir, site.Name+".log")
	flags := append(managerFlags(), "--metrics-bind-address="+addr)
	if pprof := os.Getenv("DEICH_BENCH_PPROF"); pprof != "" && site == s.active {
		flags = append(flags, "--pprof-bind-address="+pprof)
	}
	m, err := testenv.StartManagerBinary(site, s.binary, dir, logPath, flags...)
	if err != nil {
		b.Fatal(err)
	}
	rm := &runningManager{Manager: m, metricsAddr: addr, logPath: logPath}
	b.Cleanup(func() { rm.stop(b) })
	// testenv.Manager keeps its process to itself; the kubeconfig path it passed is unique to
	// this start.
	if rm.pid, err = findChild("--kubeconfig=" + filepath.Join(dir, site.Name+".kubeconfig")); err != nil {
		b.Fatal(err)
	}
	return rm
}

// cpuProcesses adds the managers to the processes whose CPU time is accounted for.
func (ms *managers) cpuProcesses(s *sites) *processes {
	if inProcess() {
		return s.procs.with(map[string]int{"bench (this process, with both managers)": os.Getpid()}).without("bench (this process)")
	}
	return s.procs.with(map[string]int{
		"manager " + s.active.Name:  ms.active.pid,
		"manager " + s.standby.Name: ms.standby.pid,
	})
}

// sourceConfigMap is a small, realistic ConfigMap of service svc: a few settings and a
// properties file, about 0.7 KiB.
func sourceConfigMap(ns, svc string, i int) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns,
			Name:      fmt.Sprintf("%s-settings-%05d", svc, i),
			Labels: map[string]string{
				"app.kubernetes.io/part-of":   svc,
				"app.kubernetes.io/name":      svc,
				"app.kubernetes.io/component": fmt.Sprintf("module-%02d", i%20),
			},
			Annotations: map[string]string{"buergerdienste.example.de/owner": "team-buergerkonto@example.de"},
		},
		Data: map[string]string{
			"LOG_LEVEL": "info",
			"TZ":        "Europe/Berlin",
			"revision":  "0",
			"application.properties": fmt.Sprintf("server.port=8080\n"+
				"spring.datasource.url=jdbc:postgresql://db-%02d.%s.svc:5432/konto\n"+
				"spring.datasource.hikari.maximum-pool-size=20\n"+
				"feature.eid.enabled=true\nfeature.bundid.enabled=true\n"+
				"mail.smtp.host=smtp.example.de\nmail.smtp.port=587\n"+
				"session.timeout=30m\n", i%20, svc),
		},
	}
}

// createConfigMaps creates n source ConfigMaps of the benchmark service in ns at site (ns is
// created too) and returns them as stored.
func createConfigMaps(ctx context.Context, b *testing.B, site *testenv.Site, ns string, n int) []*corev1.ConfigMap {
	b.Helper()
	if err := createNamespace(ctx, site, ns); err != nil {
		b.Fatal(err)
	}
	cs := clientset(b, site)
	out := make([]*corev1.ConfigMap, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range n {
		g.Go(func() error {
			cm, err := cs.CoreV1().ConfigMaps(ns).Create(gctx, sourceConfigMap(ns, serviceName, i), metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("create ConfigMap %d in %s at %s: %w", i, ns, site.Name, err)
			}
			out[i] = cm
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return out
}

// createService creates the benchmark's SharedService in ns at the active site; it mirrors the
// ConfigMaps labelled part-of=buergerkonto. Its copies are retained when it is deleted, so
// that cleaning up between benchmarks does not cost thousands of deletes.
func createService(ctx context.Context, b *testing.B, s *sites, ns string) {
	b.Helper()
	svc := testobjects.MakeSharedService(serviceName, ns).
		Primary(s.active.Name).Standby(s.standby.Name).Objective(objectiveName).
		Resources(deichv1alpha1.ResourceKind{Kind: "ConfigMap"}).
		DeletionPolicy(deichv1alpha1.DeletionPolicyRetain).Obj()
	if err := s.active.Client.Create(ctx, svc); err != nil {
		b.Fatalf("create SharedService %s/%s: %v", ns, serviceName, err)
	}
}

// waitSynced waits until the active site reports the service Synced with n mirrored objects
// and the standby site holds its mirror and reports all n copies: the steady state after a
// first mirror.
func waitSynced(ctx context.Context, b *testing.B, s *sites, ms *managers, key types.NamespacedName, n int) {
	b.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, settleTimeout, true, func(ctx context.Context) (bool, error) {
		svc := &deichv1alpha1.SharedService{}
		if err := s.active.Client.Get(ctx, key, svc); err != nil {
			last = err.Error()
			return false, nil
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, deichv1alpha1.ServiceConditionSynced)
		if c != nil {
			last = fmt.Sprintf("Synced=%s %s: %s", c.Status, c.Reason, c.Message)
		}
		if c == nil || c.Status != metav1.ConditionTrue || svc.Status.MirroredResources == nil || int(svc.Status.MirroredResources.Count) != n {
			return false, nil
		}
		// The standby counts what it holds by listing its copies, in pages.
		mirror := &deichv1alpha1.SharedService{}
		if err := s.standby.Client.Get(ctx, key, mirror); err != nil {
			last = fmt.Sprintf("at the standby: %v", err)
			return false, nil
		}
		if held := mirror.Status.MirroredResources; held == nil || int(held.Count) != n {
			last = fmt.Sprintf("the standby reports %+v held", held)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		b.Fatalf("SharedService %s not synced with %d objects (last: %s; logs: %s): %v", key, n, last, ms.active.logPath, err)
	}
}

// deleteService deletes the service at the active site and its mirror at the standby, and
// waits until both are gone, so that the managers stop watching its objects.
func deleteService(ctx context.Context, b *testing.B, s *sites, key types.NamespacedName) {
	b.Helper()
	for _, site := range []*testenv.Site{s.active, s.standby} {
		svc := &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		if err := client.IgnoreNotFound(site.Client.Delete(ctx, svc)); err != nil {
			b.Fatalf("delete SharedService %s at %s: %v", key, site.Name, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, settleTimeout, true, func(ctx context.Context) (bool, error) {
			err := site.Client.Get(ctx, key, &deichv1alpha1.SharedService{})
			return client.IgnoreNotFound(err) == nil && err != nil, nil
		})
		if err != nil {
			b.Fatalf("SharedService %s not gone at %s: %v", key, site.Name, err)
		}
	}
}

// copyWatcher watches the copies in one namespace of the standby and notes when each first
// appeared and when it carried a value awaited by a latency measurement. Times are taken in
// the informer's event handler.
type copyWatcher struct {
	cancel context.CancelFunc

	mu       sync.Mutex
	first    map[string]time.Time
	want     int
	complete chan struct{}
	lastNew  time.Time
	waiters  map[string]waiter
}

type waiter struct {
	revision string
	arrived  chan time.Time
}

// watchCopies starts a copyWatcher for the Deich copies in ns at site and waits until its
// first list is done. It stops when b ends.
func watchCopies(ctx context.Context, b *testing.B, site *testenv.Site, ns string) *copyWatcher {
	b.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &copyWatcher{cancel: cancel, first: map[string]time.Time{}, waiters: map[string]waiter{}, complete: make(chan struct{})}
	b.Cleanup(cancel)
	factory := informers.NewSharedInformerFactoryWithOptions(clientset(b, site), 0,
		informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = render.LabelManagedBy + "=" + render.ManagedByDeich
		}))
	inf := factory.Core().V1().ConfigMaps().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.observe(obj) },
		UpdateFunc: func(_, obj any) { w.observe(obj) },
	}); err != nil {
		b.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		b.Fatalf("watch copies in %s at %s: not synced", ns, site.Name)
	}
	return w
}

func (w *copyWatcher) observe(obj any) {
	now := time.Now()
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, seen := w.first[cm.Name]; !seen {
		w.first[cm.Name] = now
		w.lastNew = now
		if w.want > 0 && len(w.first) == w.want {
			close(w.complete)
		}
	}
	if wt, ok := w.waiters[cm.Name]; ok && cm.Data["revision"] == wt.revision {
		wt.arrived <- now
		delete(w.waiters, cm.Name)
	}
}

// expect arms the watcher to signal when n distinct copies have appeared. Call it once,
// before the copies are created.
func (w *copyWatcher) expect(n int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.want = n
	if len(w.first) >= n {
		close(w.complete)
	}
	return w.complete
}

// appearance returns when the first and the last of the copies first appeared.
func (w *copyWatcher) appearance() (first, last time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.first {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, w.lastNew
}

// await returns a channel that receives the time the copy name carries data.revision=rev.
func (w *copyWatcher) await(name, rev string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	w.mu.Lock()
	w.waiters[name] = waiter{revision: rev, arrived: ch}
	w.mu.Unlock()
	return ch
}

// waitAll waits until want copies appeared, or fails b with what the service reports.
func waitAll(ctx context.Context, b *testing.B, s *sites, ms *managers, done <-chan struct{}, key types.NamespacedName, want int, w *copyWatcher) {
	b.Helper()
	select {
	case <-done:
	case <-time.After(mirrorTimeout):
		w.mu.Lock()
		got := len(w.first)
		w.mu.Unlock()
		svc := &deichv1alpha1.SharedService{}
		_ = s.active.Client.Get(ctx, key, svc)
		var conds []string
		for _, c := range svc.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
		b.Fatalf("only %d of %d copies at %s after %s; service status: %s; manager log: %s",
			got, want, s.standby.Name, mirrorTimeout, strings.Join(conds, "; "), ms.active.logPath)
	}
}
