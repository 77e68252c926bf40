package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

const serviceName = "buergerkonto"

var configMaps = corev1.SchemeGroupVersion.WithResource("configmaps")

// mirrorResult is one timed mirror of n objects.
type mirrorResult struct {
	n          int
	elapsed    time.Duration // from the start to the last copy seen at the standby
	firstAfter time.Duration // from the start to the first copy seen at the standby
	cpu        cpuUse
	reconciles string // SharedService reconciles during the run: active, standby
}

func (r mirrorResult) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

// BenchmarkInitialMirroring measures how fast a new SharedService gets its ConfigMaps to the
// standby, against the raw speed of the standby's API server: the same rendered copies applied
// with client-go's dynamic client, server-side apply, the manager's parallelism and no rate
// limit.
func BenchmarkInitialMirroring(b *testing.B) {
	s := requireSites(b)
	ctx := context.Background()
	ms := startManagers(ctx, b, s)
	var t, cpuTable table
	t.header("objects", "raw SSA (objects/s)", "Deich (objects/s)", "Deich/raw", "Deich: first copy after", "Deich: all copies after", "Deich: reconciles (active, standby)")
	sender, rawSender := "manager "+s.active.Name, "bench (this process)"
	if inProcess() {
		sender, rawSender = "bench (this process, with both managers)", "bench (this process, with both managers)"
	}
	cpuTable.header("run", "wall", "standby kube-apiserver", "standby etcd", "sender: client or active manager",
		"active kube-apiserver and etcd", "standby manager", "bench's watch", "other processes", "machine busy (of "+s.machine.cores+" cores)")
	defer func() {
		fmt.Print("\ninitial mirroring\n\n" + t.String() + "\nwhere the CPU went: cores used on average (CPU time per mirrored object)\n\n" + cpuTable.String())
	}()
	cpuRow := func(run string, r mirrorResult, sender string) {
		u := r.cpu
		standbyManager, watcher := "-", "-"
		if !inProcess() {
			standbyManager, watcher = u.perObject(r.n, "manager "+s.standby.Name), u.perObject(r.n, "bench (this process)")
		}
		cpuTable.row(run, u.wall.Round(10*time.Millisecond).String(),
			u.perObject(r.n, "kube-apiserver "+s.standby.Name), u.perObject(r.n, "etcd "+s.standby.Name), u.perObject(r.n, sender),
			u.perObject(r.n, "kube-apiserver "+s.active.Name, "etcd "+s.active.Name), standbyManager, watcher,
			fmt.Sprintf("%.2f", u.others), fmt.Sprintf("%.2f", u.machine))
	}

	// runs numbers the namespaces of every mirror, across the calls the testing package makes
	// of each sub-benchmark (one with b.N = 1 first, then one with -benchtime=Nx).
	runs := 0
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			var raw, deich mirrorResult
			for range b.N {
				runs++
				ns := fmt.Sprintf("mirror-%d-%d", n, runs)
				sources := createConfigMaps(ctx, b, s.active, ns, n)
				// Every other pair runs Deich first, so that neither gains from going first
				// (the standby's store grows with every mirror).
				pair := []func(){
					func() {
						r := measureRaw(ctx, b, s, ms, sources, fmt.Sprintf("raw-%d-%d", n, runs))
						raw.n, raw.elapsed, raw.cpu = raw.n+r.n, raw.elapsed+r.elapsed, r.cpu
						cpuRow(fmt.Sprintf("raw SSA, %d objects", n), r, rawSender)
					},
					func() {
						d := measureMirror(ctx, b, s, ms, ns, n)
						deich.n, deich.elapsed, deich.firstAfter, deich.cpu, deich.reconciles = deich.n+d.n, deich.elapsed+d.elapsed, d.firstAfter, d.cpu, d.reconciles
						cpuRow(fmt.Sprintf("Deich, %d objects", n), d, sender)
					},
				}
				if runs%2 == 0 {
					pair[0], pair[1] = pair[1], pair[0]
				}
				for _, measure := range pair {
					measure()
				}
			}
			ratio := deich.perSecond() / raw.perSecond()
			b.ReportMetric(0, "ns/op") // the iteration's wall time includes set-up; meaningless
			b.ReportMetric(deich.perSecond(), "objects/s")
			b.ReportMetric(raw.perSecond(), "raw-objects/s")
			b.ReportMetric(ratio, "deich/raw")
			t.row(strconv.Itoa(n), fmt.Sprintf("%.0f", raw.perSecond()), fmt.Sprintf("%.0f", deich.perSecond()),
				fmt.Sprintf("%.2f", ratio), deich.firstAfter.Round(time.Millisecond).String(), (deich.elapsed / time.Duration(b.N)).Round(time.Millisecond).String(),
				deich.reconciles)
		})
	}
}

// measureRaw applies the copies Deich would render for sources to a fresh namespace of the
// standby, directly, and times it until the last apply returned and the last copy was seen by
// a watch, the same end point as measureMirror's.
func measureRaw(ctx context.Context, b *testing.B, s *sites, ms *managers, sources []*corev1.ConfigMap, ns string) mirrorResult {
	b.Helper()
	target := render.Target{
		SourceSite: s.active.Name,
		Site:       s.standby.Name,
		Role:       deichv1alpha1.RoleStandby,
		Standby:    deichv1alpha1.StandbyCold,
		Service:    serviceName,
	}
	copies := make([]*unstructured.Unstructured, len(sources))
	for i, cm := range sources {
		obj, err := apiruntime.DefaultUnstructuredConverter.ToUnstructured(cm)
		if err != nil {
			b.Fatal(err)
		}
		src := &unstructured.Unstructured{Object: obj}
		src.SetAPIVersion("v1")
		src.SetKind("ConfigMap")
		cp, err := render.Render(src, target)
		if err != nil {
			b.Fatalf("render %s: %v", cm.Name, err)
		}
		cp.SetNamespace(ns)
		copies[i] = cp
	}
	if err := createNamespace(ctx, s.standby, ns); err != nil {
		b.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(unlimited(s.standby))
	if err != nil {
		b.Fatal(err)
	}
	w := watchCopies(ctx, b, s.standby, ns)
	done := w.expect(len(copies))

	cpu := ms.cpuProcesses(s).startCPU()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(applyParallelism)
	for _, cp := range copies {
		g.Go(func() error {
			_, err := dyn.Resource(configMaps).Namespace(ns).Apply(gctx, cp.GetName(), cp, metav1.ApplyOptions{FieldManager: "bench-raw-baseline", Force: true})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("raw apply: %v", err)
	}
	applied := time.Now()
	<-done
	_, last := w.appearance()
	use := cpu.stop()
	end := last
	if applied.After(end) {
		end = applied
	}
	return mirrorResult{n: len(copies), elapsed: end.Sub(start), cpu: use}
}

// measureMirror creates a SharedService selecting the n ConfigMaps in ns and times it until
// the last copy was seen at the standby. It deletes the service afterwards (keeping the
// copies), so that the managers stop watching ns.
func measureMirror(ctx context.Context, b *testing.B, s *sites, ms *managers, ns string, n int) mirrorResult {
	b.Helper()
	key := types.NamespacedName{Namespace: ns, Name: serviceName}
	w := watchCopies(ctx, b, s.standby, ns)
	done := w.expect(n)

	activeBefore, metricsOK := ms.active.reconcileStats(ctx, b)
	standbyBefore, _ := ms.standby.reconcileStats(ctx, b)
	cpu := ms.cpuProcesses(s).startCPU()
	start := time.Now()
	createService(ctx, b, s, ns)
	waitAll(ctx, b, s, ms, done, key, n, w)
	first, last := w.appearance()
	use := cpu.stop()
	reconciled := "n/a"
	if metricsOK {
		activeAfter, _ := ms.active.reconcileStats(ctx, b)
		standbyAfter, _ := ms.standby.reconcileStats(ctx, b)
		reconciled = fmt.Sprintf("%.0f, %.0f", activeAfter.count-activeBefore.count, standbyAfter.count-standbyBefore.count)
	}

	waitSynced(ctx, b, s, ms, key, n)
	deleteService(ctx, b, s, key)
	return mirrorResult{n: n, elapsed: last.Sub(start), firstAfter: first.Sub(start), cpu: use, reconciles: reconciled}
}

// BenchmarkPropagationLatency measures, for a service in steady state, the time from an edit
// of one source ConfigMap (the update call returned) to the copy at the standby carrying the
// new value (seen by a watch). Edits go one at a time, each after the previous arrived: back
// to back, and spaced by a random pause that lets the manager go idle in between. The service
// mirrors 1,000 ConfigMaps, and 10,000 to show how latency grows with the service's size.
func BenchmarkPropagationLatency(b *testing.B) {
	s := requireSites(b)
	ctx := context.Background()
	ms := startManagers(ctx, b, s)
	cs := clientset(b, s.active)
	var t table
	t.header("objects", "edits", "p50", "p90", "p99", "max", "mean", "update call (p50)",
		"reconciles per edit (active, standby)", "mean reconcile (active, standby)",
		"cores: active manager, standby manager, other processes, machine (of "+s.machine.cores+")")
	defer func() {
		fmt.Printf("\npropagation latency (update call returned -> copy seen at the standby)\n\n%s", t.String())
	}()
	modes := []struct {
		name  string
		pause func() time.Duration
	}{
		{"back-to-back", func() time.Duration { return 0 }},
		{"spaced", func() time.Duration { return 250*time.Millisecond + rand.N(500*time.Millisecond) }},
	}
	revision := 0
	for _, size := range []struct{ objects, edits int }{{1000, 100}, {10000, 50}} {
		b.Run(fmt.Sprintf("objects=%d", size.objects), func(b *testing.B) {
			n := size.objects
			ns := fmt.Sprintf("latency-%d", n)
			key := types.NamespacedName{Namespace: ns, Name: serviceName}
			sources := createConfigMaps(ctx, b, s.active, ns, n)
			w := watchCopies(ctx, b, s.standby, ns)
			done := w.expect(n)
			createService(ctx, b, s, ns)
			waitAll(ctx, b, s, ms, done, key, n, w)
			waitSynced(ctx, b, s, ms, key, n)
			defer deleteService(ctx, b, s, key)

			for _, mode := range modes {
				b.Run("edits="+mode.name, func(b *testing.B) {
					var latencies, calls []time.Duration
					activeBefore, metricsOK := ms.active.reconcileStats(ctx, b)
					standbyBefore, _ := ms.standby.reconcileStats(ctx, b)
					cpu := ms.cpuProcesses(s).startCPU()
					for range b.N {
						for e := range size.edits {
							revision++
							cm := sources[(revision*7919+e)%n] // spread over the service's objects
							rev := strconv.Itoa(revision)
							arrived := w.await(cm.Name, rev)
							patch := fmt.Appendf(nil, `{"data":{"revision":%q}}`, rev)
							before := time.Now()
							if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, cm.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
								b.Fatalf("edit %s: %v", cm.Name, err)
							}
							returned := time.Now()
							select {
							case at := <-arrived:
								latencies = append(latencies, max(at.Sub(returned), 0))
								calls = append(calls, returned.Sub(before))
							case <-time.After(mirrorTimeout):
								b.Fatalf("revision %s of %s did not reach %s within %s; manager log: %s", rev, cm.Name, s.standby.Name, mirrorTimeout, ms.active.logPath)
							}
							time.Sleep(mode.pause()) // think time between edits, not synchronization
						}
					}
					use := cpu.stop()
					perEdit, meanReconcile := "n/a", "n/a"
					if metricsOK {
						activeAfter, _ := ms.active.reconcileStats(ctx, b)
						standbyAfter, _ := ms.standby.reconcileStats(ctx, b)
						da, ds := activeAfter.count-activeBefore.count, standbyAfter.count-standbyBefore.count
						perEdit = fmt.Sprintf("%.1f, %.1f", da/float64(len(latencies)), ds/float64(len(latencies)))
						meanReconcile = fmt.Sprintf("%.0f ms, %.0f ms", 1000*(activeAfter.seconds-activeBefore.seconds)/da, 1000*(standbyAfter.seconds-standbyBefore.seconds)/ds)
					}
					cores := fmt.Sprintf("%.2f, %.2f, %.2f, %.2f", use.byProcess["manager "+s.active.Name], use.byProcess["manager "+s.standby.Name], use.others, use.machine)
					if inProcess() {
						cores = fmt.Sprintf("%.2f (both, in-process), -, %.2f, %.2f", use.byProcess["bench (this process, with both managers)"], use.others, use.machine)
					}
					p := percentiles(latencies)
					b.ReportMetric(0, "ns/op")
					b.ReportMetric(millis(p.p50), "p50_ms")
					b.ReportMetric(millis(p.p90), "p90_ms")
					b.ReportMetric(millis(p.p99), "p99_ms")
					b.ReportMetric(millis(p.max), "max_ms")
					t.row(strconv.Itoa(n), fmt.Sprintf("%d %s", len(latencies), mode.name), fmtMs(p.p50), fmtMs(p.p90), fmtMs(p.p99), fmtMs(p.max), fmtMs(p.mean),
						fmtMs(percentiles(calls).p50), perEdit, meanReconcile, cores)
				})
			}
		})
	}
}

type latencySummary struct {
	p50, p90, p99, max, mean time.Duration
}

// percentiles summarizes samples with nearest-rank percentiles.
func percentiles(samples []time.Duration) latencySummary {
	if len(samples) == 0 {
		return latencySummary{}
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(q float64) time.Duration {
		return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return latencySummary{p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: s[len(s)-1], mean: sum / time.Duration(len(s))}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.1f ms", millis(d)) }

// BenchmarkManagerMemory measures the active site's manager with 10,000 mirrored ConfigMaps:
// its resident set (VmRSS) over a steady-state window that includes a full periodic resync,
// its peak (VmHWM, which includes the first mirror), and its Go heap in use as its own
// metrics endpoint reports it. Fresh managers run for it, so nothing else is in their memory.
func BenchmarkManagerMemory(b *testing.B) {
	const window = 15 * time.Second // longer than the resync period (RPO/3 = 10s) of the objective
	n := 10000
	if v := os.Getenv("DEICH_BENCH_MEMORY_OBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("DEICH_BENCH_MEMORY_OBJECTS=%q: want a positive number", v)
		}
	}
	if inProcess() {
		b.Skip("the managers run in this process; their memory cannot be told apart from the benchmark's")
	}
	s := requireSites(b)
	ctx := context.Background()
	var t table
	t.header("manager", "idle RSS", "steady RSS (max)", "steady RSS (end)", "peak RSS (VmHWM)", "Go heap in use (max)", "per object", "copies rendered in the window")
	defer func() { fmt.Printf("\nmanager memory with %d mirrored ConfigMaps\n\n%s", n, t.String()) }()

	var rssMax, hwm, heapMax, idle float64
	for i := range b.N {
		ms := startManagers(ctx, b, s)
		idleAt := map[*runningManager]memory{}
		for _, m := range []*runningManager{ms.active, ms.standby} {
			mem, err := readMemory(m.pid)
			if err != nil {
				b.Fatal(err)
			}
			idleAt[m] = mem
		}
		ns := fmt.Sprintf("memory-%d", i)
		key := types.NamespacedName{Namespace: ns, Name: serviceName}
		createConfigMaps(ctx, b, s.active, ns, n)
		w := watchCopies(ctx, b, s.standby, ns)
		done := w.expect(n)
		cpu := ms.cpuProcesses(s).startCPU()
		leaseBefore := leaseWrites(ctx, b, ms.active)
		start := time.Now()
		createService(ctx, b, s, ns)
		waitAll(ctx, b, s, ms, done, key, n, w)
		_, last := w.appearance()
		use := cpu.stop()
		leaseDuring := leaseWrites(ctx, b, ms.active).minus(leaseBefore)
		waitSynced(ctx, b, s, ms, key, n)
		fmt.Printf("\nmirrored %d ConfigMaps in %s (%.0f objects/s); cores used: %s\n", n, last.Sub(start).Round(time.Millisecond), float64(n)/last.Sub(start).Seconds(), use)
		fmt.Printf("lease writes of the active manager meanwhile: %s\n", leaseDuring)

		for _, m := range []*runningManager{ms.active, ms.standby} {
			renderedBefore, err := testenv.ScrapeSum(ctx, m.metricsAddr, "deich_copies_rendered_total", "")
			if err != nil {
				b.Fatal(err)
			}
			steady, end, heap := sampleMemory(ctx, b, m, window)
			renderedAfter, err := testenv.ScrapeSum(ctx, m.metricsAddr, "deich_copies_rendered_total", "")
			if err != nil {
				b.Fatal(err)
			}
			mem, err := readMemory(m.pid)
			if err != nil {
				b.Fatal(err)
			}
			perObject := (float64(steady) - float64(idleAt[m].rss)) / float64(n)
			t.row(m.Site.Name, mibString(idleAt[m].rss), mibString(steady), mibString(end), mibString(mem.hwm),
				mibString(uint64(heap)), fmt.Sprintf("%.1f KiB RSS", perObject/1024), fmt.Sprintf("%.0f", renderedAfter-renderedBefore))
			if m == ms.active {
				rssMax = max(rssMax, float64(steady)/mib)
				hwm = max(hwm, float64(mem.hwm)/mib)
				heapMax = max(heapMax, heap/mib)
				idle = float64(idleAt[m].rss) / mib
			}
		}
		deleteService(ctx, b, s, key)
		ms.stop(b)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(rssMax, "rss_MiB")
	b.ReportMetric(hwm, "hwm_MiB")
	b.ReportMetric(heapMax, "heap_MiB")
	b.ReportMetric(idle, "idle_rss_MiB")
}

// sampleMemory watches m for the window: the largest and the last VmRSS, and the largest Go
// heap in use (go_memstats_heap_inuse_bytes from its metrics endpoint).
func sampleMemory(ctx context.Context, b *testing.B, m *runningManager, window time.Duration) (rssMax, rssEnd uint64, heapMax float64) {
	b.Helper()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(window)
	for i := 0; ; i++ {
		mem, err := readMemory(m.pid)
		if err != nil {
			b.Fatal(err)
		}
		rssMax, rssEnd = max(rssMax, mem.rss), mem.rss
		if i%4 == 0 {
			heap, err := scrapeGauge(ctx, m.metricsAddr, "go_memstats_heap_inuse_bytes")
			if err != nil {
				b.Fatal(err)
			}
			heapMax = max(heapMax, heap)
		}
		if time.Now().After(deadline) {
			return rssMax, rssEnd, heapMax
		}
		<-tick.C
	}
}

func mibString(bytes uint64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/mib) }

// BenchmarkManagerMemoryBreakdown explains BenchmarkManagerMemory. It measures, in this
// process, what one mirrored ConfigMap costs in each place the active manager keeps it: the
// watch of the sources and the watch of the copies at the peer (internal/informers holds
// unstructured objects, with or without metadata.managedFields), the rendered copy every
// reconcile builds, the garbage rendering leaves and the time it takes.
func BenchmarkManagerMemoryBreakdown(b *testing.B) {
	const n = 2000
	s := requireSites(b)
	ctx := context.Background()
	var t table
	t.header("what the active manager holds per mirrored ConfigMap", "heap")
	defer func() {
		fmt.Printf("\nmemory per mirrored ConfigMap, measured in-process (%d objects)\n\n%s", n, t.String())
	}()

	for i := range b.N {
		ns := fmt.Sprintf("breakdown-%d", i)
		createConfigMaps(ctx, b, s.active, ns, n)
		target := render.Target{SourceSite: s.active.Name, Site: s.standby.Name, Role: deichv1alpha1.RoleStandby, Standby: deichv1alpha1.StandbyCold, Service: serviceName}

		before := liveHeap()
		sources := listUnstructured(ctx, b, s.active, ns)
		sourceSize := float64(liveHeap()-before) / n

		var renderAlloc uint64
		var renderTime time.Duration
		var copies []*unstructured.Unstructured
		before = liveHeap()
		for pass := range 2 { // the first pass warms up; the second is measured
			copies = make([]*unstructured.Unstructured, 0, n)
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			start := time.Now()
			for _, src := range sources {
				cp, err := render.Render(src, target)
				if err != nil {
					b.Fatal(err)
				}
				copies = append(copies, cp)
			}
			renderTime = time.Since(start)
			runtime.ReadMemStats(&m1)
			renderAlloc = m1.TotalAlloc - m0.TotalAlloc
			if pass == 0 {
				copies = nil
				before = liveHeap()
			}
		}
		renderedSize := float64(liveHeap()-before) / n

		// The copies as the manager writes them: server-side apply with field manager deich.
		if err := createNamespace(ctx, s.standby, ns); err != nil {
			b.Fatal(err)
		}
		dyn, err := dynamic.NewForConfig(unlimited(s.standby))
		if err != nil {
			b.Fatal(err)
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(applyParallelism)
		for _, cp := range copies {
			g.Go(func() error {
				_, err := dyn.Resource(configMaps).Namespace(ns).Apply(gctx, cp.GetName(), cp, metav1.ApplyOptions{FieldManager: "deich", Force: true})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		copies = nil
		before = liveHeap()
		atPeer := listUnstructured(ctx, b, s.standby, ns)
		copySize := float64(liveHeap()-before) / n

		strippedSize := func(objs []*unstructured.Unstructured, size float64) float64 {
			before := liveHeap()
			for _, o := range objs {
				o.SetManagedFields(nil)
			}
			return size - float64(before-liveHeap())/n
		}
		strippedSources := strippedSize(sources, sourceSize)
		strippedCopies := strippedSize(atPeer, copySize)
		runtime.KeepAlive(sources)
		runtime.KeepAlive(atPeer)

		kib := func(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }
		t.row("a source as listed (with managedFields)", kib(sourceSize))
		t.row("a source without managedFields", kib(strippedSources))
		t.row("a copy as listed from the peer (with managedFields)", kib(copySize))
		t.row("a copy without managedFields", kib(strippedCopies))
		t.row("the rendered copy, held while a reconcile runs", kib(renderedSize))
		t.row("allocated by rendering it, every reconcile", kib(float64(renderAlloc)/n))
		t.row("render time, every reconcile", fmt.Sprintf("%.1f µs", float64(renderTime.Nanoseconds())/n/1000))
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(sourceSize/1024, "source_KiB")
		b.ReportMetric(copySize/1024, "copy_KiB")
		b.ReportMetric(float64(renderTime.Nanoseconds())/n/1000, "render_µs")
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// listUnstructured lists the ConfigMaps in ns at site as a dynamic informer would hold them.
func listUnstructured(ctx context.Context, b *testing.B, site *testenv.Site, ns string) []*unstructured.Unstructured {
	b.Helper()
	dyn, err := dynamic.NewForConfig(unlimited(site))
	if err != nil {
		b.Fatal(err)
	}
	list, err := dyn.Resource(configMaps).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	out := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		out[i] = list.Items[i].DeepCopy() // one allocation per object, as a watch decodes them
	}
	return out
}

// leaseWriteStats counts the lease keeper's writes of lease copies (deich_lease_write_duration_seconds).
type leaseWriteStats struct {
	total, overSecond, failed float64
}

func (a leaseWriteStats) minus(b leaseWriteStats) leaseWriteStats {
	return leaseWriteStats{total: a.total - b.total, overSecond: a.overSecond - b.overSecond, failed: a.failed - b.failed}
}

func (a leaseWriteStats) String() string {
	return fmt.Sprintf("%.0f, of which %.0f took longer than 1 s and %.0f failed or timed out", a.total, a.overSecond, a.failed)
}

// leaseWrites scrapes m's counts of lease writes, of those slower than a second, and of those
// whose outcome is unknown.
func leaseWrites(ctx context.Context, b *testing.B, m *runningManager) leaseWriteStats {
	b.Helper()
	const metric = "deich_lease_write_duration_seconds"
	total, err := testenv.ScrapeSum(ctx, m.metricsAddr, metric+"_count", "")
	if err != nil {
		b.Fatal(err)
	}
	within, err := testenv.ScrapeSum(ctx, m.metricsAddr, metric+"_bucket", `le="1"`)
	if err != nil {
		b.Fatal(err)
	}
	failed, err := testenv.ScrapeSum(ctx, m.metricsAddr, metric+"_count", `outcome="error"`)
	if err != nil {
		b.Fatal(err)
	}
	return leaseWriteStats{total: total, overSecond: total - within, failed: failed}
}
