package scale

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

const (
	// steadyWindow is how long the steady state is watched for CPU and lease writes.
	steadyWindow = 30 * time.Second
	// rpo is the RPO of the catalogue's RecoveryObjective.
	rpo = 30 * time.Second
	// edits is the most edits spread over the services, one per service; editEvery paces them.
	edits     = 200
	editEvery = 50 * time.Millisecond
	// sharedRecords is how many shared lease records a pair of sites uses at most, and
	// arbiters how many copies each service's lease has in two-site mode (see
	// docs/operations.md, Sizing).
	sharedRecords = 16
	arbiters      = 2
)

// logSteadyState logs what the catalogue costs while nothing changes: the cores this process
// used (both managers run in it; the test itself only sleeps) and the writes of the lease
// copies of the active manager's services (deich_lease_write_duration_seconds counts each
// service's write, batched or not), against the formulas of docs/operations.md.
func logSteadyState(ctx context.Context, t *testing.T, services int) {
	t.Helper()
	kielReq0, schwerinReq0 := apiServerRequests(ctx, t, kiel), apiServerRequests(ctx, t, schwerin)
	cpu0, writes0, records0, rec0 := processCPU(t), leaseWrites(t, testenv.SiteKiel), recordWrites(t, testenv.SiteKiel), gatherReconcileStats(t)
	probes0 := siteMetric(t, "deich_health_probes_total", testenv.SiteKiel) + siteMetric(t, "deich_health_probes_total", testenv.SiteSchwerin)
	start := time.Now()
	stopProfile := profileCPU(t, "DEICH_SCALE_STEADY_CPUPROFILE")
	time.Sleep(steadyWindow / 2)
	dumpGoroutines(t)
	time.Sleep(steadyWindow - steadyWindow/2)
	stopProfile()
	elapsed := time.Since(start)
	rec := gatherReconcileStats(t)
	cores := (processCPU(t) - cpu0).Seconds() / elapsed.Seconds()
	writes := (leaseWrites(t, testenv.SiteKiel) - writes0) / elapsed.Seconds()
	records := (recordWrites(t, testenv.SiteKiel) - records0) / elapsed.Seconds()
	perService := float64(services*arbiters*3) / leaseDuration.Seconds()
	perRecord := float64(min(services, sharedRecords)*arbiters*3) / leaseDuration.Seconds()
	t.Logf("steady state of %d services over %s: both managers %.2f cores; sh-kiel's services wrote their lease copies %.1f times/s (services × arbiters × 3 / D = %.1f/s), which the shared records sent as %.1f writes/s (at most records × arbiters × 3 / D = %.1f/s)",
		services, elapsed.Round(time.Second), cores, writes, perService, records, perRecord)
	kielReq, schwerinReq := apiServerRequests(ctx, t, kiel), apiServerRequests(ctx, t, schwerin)
	logRequests(t, kiel.Name, "at steady state", kielReq0, kielReq, elapsed)
	logRequests(t, schwerin.Name, "at steady state", schwerinReq0, schwerinReq, elapsed)
	// While the objectives are met, a status in which only clocks moved is written once in five
	// minutes; stored every second resync, the clocks alone would cost services × 3 / (2 × RPO)
	// writes a second at each site. Half a write per service and RPO leaves room for the
	// services whose five minutes end in the window.
	limit := float64(services) * elapsed.Seconds() / (2 * rpo.Seconds())
	for _, req := range []struct {
		site          string
		before, after requestCounts
	}{{kiel.Name, kielReq0, kielReq}, {schwerin.Name, schwerinReq0, schwerinReq}} {
		if n := req.after.count(statusWrites) - req.before.count(statusWrites); n > limit {
			t.Errorf("%s's SharedService statuses were written %.0f times in %s at steady state, more than %.0f (services × window / (2 × RPO)): are clocks stored again while the objectives are met?",
				req.site, n, elapsed.Round(time.Second), limit)
		}
	}
	probes := (siteMetric(t, "deich_health_probes_total", testenv.SiteKiel) + siteMetric(t, "deich_health_probes_total", testenv.SiteSchwerin) - probes0) / elapsed.Seconds()
	t.Logf("health probes of both managers: %.1f/s; each service's check probed on its own would be services × sites / probeInterval = %.1f/s",
		probes, float64(services*2)/probeInterval.Seconds())
	reconciles := rec.reconciles - rec0.reconciles
	t.Logf("SharedService reconciles of both managers meanwhile: %.1f/s, %.1f ms each on average, after %.1f ms in the queue on average",
		reconciles/elapsed.Seconds(), 1000*(rec.reconcileSeconds-rec0.reconcileSeconds)/max(reconciles, 1),
		1000*(rec.queueSeconds-rec0.queueSeconds)/max(rec.queued-rec0.queued, 1))
}

// dumpGoroutines writes the stacks of this process's goroutines to the file
// DEICH_SCALE_GOROUTINES names, if it is set: where the managers' workers wait.
func dumpGoroutines(t *testing.T) {
	t.Helper()
	path := os.Getenv("DEICH_SCALE_GOROUTINES")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create the goroutine dump: %v", err)
	}
	defer func() { _ = f.Close() }()
	if err := pprof.Lookup("goroutine").WriteTo(f, 1); err != nil {
		t.Errorf("write the goroutine dump: %v", err)
	}
}

// processCPU is the CPU time this process used so far, from /proc/self/stat.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Logf("cannot read the process's CPU time: %v", err)
		return 0
	}
	// The fields after the command name, which ends with the last ")": utime and stime
	// are the 12th and 13th of them, in clock ticks (100 per second on Linux).
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// leaseWrites is how many writes of its services' lease copies the manager of site has
// made, batched or not, from its metrics.
func leaseWrites(t *testing.T, site string) float64 {
	t.Helper()
	return siteMetric(t, "deich_lease_write_duration_seconds", site)
}

// recordWrites is how many writes of shared lease records the manager of site has sent.
func recordWrites(t *testing.T, site string) float64 {
	t.Helper()
	return siteMetric(t, "deich_lease_record_writes_total", site)
}

// siteMetric sums a counter, or a histogram's count, over the series of site.
func siteMetric(t *testing.T, name, site string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Logf("cannot gather the managers' metrics: %v", err)
		return 0
	}
	var n float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "site" && l.GetValue() == site {
					n += float64(m.GetHistogram().GetSampleCount()) + m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// logPropagation edits one ConfigMap in each of up to edits services, spread over the
// catalogue and paced editEvery apart, and logs how long each edit took from its request to
// the copy at mv-schwerin, as a watch there sees it. Every edit must arrive.
func logPropagation(ctx context.Context, t *testing.T, names []string) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(schwerin.Config)
	if err != nil {
		t.Fatalf("client for mv-schwerin: %v", err)
	}
	sel := render.LabelManagedBy + "=" + render.ManagedByDeich
	list, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: 1})
	if err != nil {
		t.Fatalf("list the copies at mv-schwerin: %v", err)
	}
	w, err := cs.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatalf("watch the copies at mv-schwerin: %v", err)
	}
	defer w.Stop()

	n := min(edits, len(names))
	// What the API servers served meanwhile, with their latency: the edit's own write at
	// sh-kiel and its copy's at mv-schwerin are part of the time measured.
	kielReq0, schwerinReq0, start := apiServerRequests(ctx, t, kiel), apiServerRequests(ctx, t, schwerin), time.Now()
	propagation0 := changePropagation(t, schwerin.Name)
	defer func() {
		logRequests(t, kiel.Name, "during the edits", kielReq0, apiServerRequests(ctx, t, kiel), time.Since(start))
		logRequests(t, schwerin.Name, "during the edits", schwerinReq0, apiServerRequests(ctx, t, schwerin), time.Since(start))
		// Deich's part of the edits' way: from sh-kiel's watch event to the copy written.
		propagation := changePropagation(t, schwerin.Name)
		p50, p99 := propagation.quantilesSince(propagation0)
		t.Logf("rounds of changed objects meanwhile (deich_change_propagation_seconds): %.0f, from the watch event to the copy written p50 ≤ %gs, p99 ≤ %gs",
			propagation.n-propagation0.n, p50, p99)
	}()
	token := fmt.Sprintf("edit-%d", time.Now().UnixNano())
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var took []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || ev.Type != watch.Modified && ev.Type != watch.Added || cm.Data["revision"] != token {
				continue
			}
			mu.Lock()
			if at, ok := sent[cm.Namespace]; ok {
				took = append(took, time.Since(at))
				delete(sent, cm.Namespace)
			}
			left := len(took) < n
			mu.Unlock()
			if !left {
				return
			}
		}
	}()

	for i := range n {
		ns := names[i*len(names)/n]
		patch := client.RawPatch(client.Merge.Type(), fmt.Appendf(nil, `{"data":{"revision":%q}}`, token))
		mu.Lock()
		sent[ns] = time.Now()
		mu.Unlock()
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings-0"}}
		if err := kiel.Client.Patch(ctx, cm, patch); err != nil {
			t.Fatalf("edit %s/settings-0: %v", ns, err)
		}
		time.Sleep(editEvery)
	}
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		w.Stop()
		<-done
	}
	mu.Lock()
	defer mu.Unlock()
	if len(took) < n {
		t.Fatalf("%d of %d edits reached mv-schwerin within 2 minutes of the last", len(took), n)
	}
	slices.Sort(took)
	at := func(q float64) time.Duration {
		return took[min(int(q*float64(len(took))), len(took)-1)].Round(time.Millisecond)
	}
	t.Logf("%d edits, one per service spread over %d services, %s apart: reached mv-schwerin after p50 %s, p90 %s, p99 %s, max %s",
		n, len(names), editEvery, at(0.5), at(0.9), at(0.99), took[len(took)-1].Round(time.Millisecond))
}

// requestCounts is one scrape of an API server's apiserver_request_total and
// apiserver_request_duration_seconds, summed by verb and resource (and subresource).
type requestCounts map[string]*requestKind

// requestKind is how many requests of one verb and resource an API server has served, and of
// them how many within each bucket of its latency histogram (cumulative, by upper bound).
type requestKind struct {
	n       float64
	buckets map[float64]float64
}

// statusWrites is the request kind of requestCounts that writes a SharedService's status.
const statusWrites = "PATCH sharedservices/status"

// count is how many requests of kind (verb and resource, as logRequests names them) the API
// server served.
func (c requestCounts) count(kind string) float64 {
	if k := c[kind]; k != nil {
		return k.n
	}
	return 0
}

// quantilesSince is the upper bounds of the buckets within which half and 99 in a hundred of
// the observations since before fell (+Inf when none).
func (k *requestKind) quantilesSince(before *requestKind) (p50, p99 float64) {
	p50, p99 = math.Inf(1), math.Inf(1)
	d := k.n - before.n
	bounds := slices.Sorted(maps.Keys(k.buckets))
	for i := len(bounds) - 1; i >= 0; i-- {
		within := k.buckets[bounds[i]] - before.buckets[bounds[i]]
		if within >= 0.5*d {
			p50 = bounds[i]
		}
		if within >= 0.99*d {
			p99 = bounds[i]
		}
	}
	return p50, p99
}

// changePropagation is the managers' histogram deich_change_propagation_seconds towards
// peer: how long their rounds of changed objects took from the watch event to the write.
func changePropagation(t *testing.T, peer string) *requestKind {
	t.Helper()
	out := &requestKind{buckets: map[float64]float64{}}
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Logf("cannot gather the managers' metrics: %v", err)
		return out
	}
	for _, f := range families {
		if f.GetName() != "deich_change_propagation_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "peer" && l.GetValue() == peer }) {
				continue
			}
			out.n += float64(m.GetHistogram().GetSampleCount())
			for _, b := range m.GetHistogram().GetBucket() {
				out.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
	}
	return out
}

// apiServerRequests scrapes site's API server for the requests it has served so far.
func apiServerRequests(ctx context.Context, t *testing.T, site *testenv.Site) requestCounts {
	t.Helper()
	cs, err := kubernetes.NewForConfig(site.Config)
	if err != nil {
		t.Fatalf("client for %s: %v", site.Name, err)
	}
	body, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("scrape %s's API server: %v", site.Name, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the metrics of %s's API server: %v", site.Name, err)
	}
	out := requestCounts{}
	kind := func(m *dto.Metric) *requestKind {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		key := labels["verb"] + " " + labels["resource"]
		if sub := labels["subresource"]; sub != "" {
			key += "/" + sub
		}
		k, ok := out[key]
		if !ok {
			k = &requestKind{buckets: map[float64]float64{}}
			out[key] = k
		}
		return k
	}
	if mf, ok := families["apiserver_request_total"]; ok {
		for _, m := range mf.GetMetric() {
			kind(m).n += m.GetCounter().GetValue()
		}
	}
	if mf, ok := families["apiserver_request_duration_seconds"]; ok {
		for _, m := range mf.GetMetric() {
			k := kind(m)
			for _, b := range m.GetHistogram().GetBucket() {
				k.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
	}
	return out
}

// logRequests logs the requests site's API server served per second since before, the
// busiest first, with the latency within which half and 99 in a hundred of them were
// served (the upper bounds of the API server's histogram buckets).
func logRequests(t *testing.T, site string, what string, before, after requestCounts, elapsed time.Duration) {
	t.Helper()
	type rate struct {
		key      string
		n        float64
		p50, p99 float64
	}
	var rates []rate
	total := 0.0
	for k, v := range after {
		var b0 *requestKind
		if b0 = before[k]; b0 == nil {
			b0 = &requestKind{}
		}
		d := v.n - b0.n
		if d <= 0 {
			continue
		}
		r := rate{key: k, n: d}
		r.p50, r.p99 = v.quantilesSince(b0)
		rates = append(rates, r)
		total += d
	}
	slices.SortFunc(rates, func(a, b rate) int { return cmp.Compare(b.n, a.n) })
	parts := make([]string, 0, len(rates))
	for _, r := range rates[:min(len(rates), 10)] {
		parts = append(parts, fmt.Sprintf("%s %.1f (p50 ≤ %gs, p99 ≤ %gs)", r.key, r.n/elapsed.Seconds(), r.p50, r.p99))
	}
	t.Logf("requests at %s's API server %s: %.0f (%.1f/s); per second: %s", site, what, total, total/elapsed.Seconds(), strings.Join(parts, ", "))
}

// logEvents logs the events site's manager recorded since a moment, per service and by reason,
// the most frequent first.
func logEvents(ctx context.Context, t *testing.T, site *testenv.Site, since time.Time, services int) {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := site.Client.List(ctx, list); err != nil {
		t.Logf("cannot list the events at %s: %v", site.Name, err)
		return
	}
	byReason := map[string]int{}
	total := 0
	for i := range list.Items {
		e := &list.Items[i]
		if e.ReportingController == "" || e.Regarding.Kind != "SharedService" {
			continue
		}
		at := e.EventTime.Time
		if e.Series != nil {
			at = e.Series.LastObservedTime.Time
		}
		if at.Before(since) {
			continue
		}
		n := 1
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		byReason[e.Reason] += n
		total += n
	}
	reasons := slices.SortedFunc(maps.Keys(byReason), func(a, b string) int { return cmp.Compare(byReason[b], byReason[a]) })
	parts := make([]string, 0, len(reasons))
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %.2f", r, float64(byReason[r])/float64(services)))
	}
	t.Logf("events about SharedServices at %s since: %d (%.1f per service); per service: %s", site.Name, total, float64(total)/float64(services), strings.Join(parts, ", "))
}
