package scale

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	// defaultServices is how many SharedServices the catalogue holds; DEICH_SCALE_SERVICES
	// sets another number.
	defaultServices = 200
	// configMaps is how many ConfigMaps each service has besides its Deployment.
	configMaps = 4
	// sourceReplicas is the replica count of each service's Deployment.
	sourceReplicas = 2
	// objectiveName is the RecoveryObjective every service of the catalogue refers to.
	objectiveName = "catalogue"
	// applyParallelism is how many objects are created at once, as `kubectl apply -f dir/`
	// with a GitOps tool's concurrency would.
	applyParallelism = 16
)

// The catalogue's objective, as the user tried it: RPO 30s, RTO 2m, lease 15s,
// probes every 2s.
var (
	leaseDuration = 15 * time.Second
	probeInterval = 2 * time.Second
	rto           = 2 * time.Minute
)

// TestCatalogueAppliedAtOnce applies a state's catalogue — 200 services (or
// DEICH_SCALE_SERVICES) of a Deployment and four ConfigMaps each, judged by one fast check of sh-kiel — at once, and watches every
// service at sh-kiel throughout: all must become Protected and none may ever be fenced or
// stop being active at the healthy primary. Then sh-kiel's data centre is lost, and every
// service must be served at mv-schwerin within the RTO.
func TestCatalogueAppliedAtOnce(t *testing.T) {
	requireSites(t)
	ctx := context.Background()
	g := NewWithT(t)
	g.SetDefaultEventuallyPollingInterval(time.Second)

	objective := testobjects.MakeRecoveryObjective(objectiveName).RPO(rpo).RTO(rto).
		Failover(3, probeInterval, leaseDuration).Obj()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Expect(site.Client.Create(ctx, objective.DeepCopy())).To(Succeed())
	}
	// One fast check, shared by every service: sh-kiel's API server accepts connections.
	check := deichv1alpha1.HealthCheck{Name: "kiel-front-door", Site: testenv.SiteKiel,
		TCP: &deichv1alpha1.TCPCheck{Address: strings.TrimPrefix(kiel.URL(), "https://")}}

	services := catalogueSize(t)
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("procedure-%04d", i)
	}
	began := time.Now()
	// Both sites' services are followed by watches from here on: listing a thousand services
	// to poll them would be work for the API servers the managers need.
	fences := newFenceCheck()
	atKiel := followServices(ctx, t, kiel, fences.observe)
	defer atKiel.stop()
	shown := newServingSeen()
	atSchwerin := followServices(ctx, t, schwerin, shown.observe)
	defer atSchwerin.stop()
	g.Expect(forEach(names, func(ns string) error { return applyService(ctx, ns, check) })).To(Succeed())
	t.Logf("applied %d services (a namespace, a Deployment, %d ConfigMaps and the SharedService each) in %s",
		services, configMaps, time.Since(began).Round(100*time.Millisecond))

	stopProgress := atKiel.logProgress(t, names, protected, "every service Protected at sh-kiel", 30*time.Second)
	g.Eventually(func() []string { return atKiel.notYet(names, protected) }).
		WithTimeout(10*time.Minute).Should(BeEmpty(), atKiel.whyNot(names, protected, "every service Protected at sh-kiel"))
	stopProgress()
	t.Logf("all %d services Protected at sh-kiel %s after the apply", services, time.Since(began).Round(100*time.Millisecond))
	g.Eventually(func() []string { return atSchwerin.notYet(names, standingBy) }).
		WithTimeout(2*time.Minute).Should(BeEmpty(), atSchwerin.whyNot(names, standingBy, "every service stands by at mv-schwerin"))
	// A little longer than a lease: renewals keep up at steady state too.
	time.Sleep(leaseDuration + 5*time.Second)
	logSteadyState(ctx, t, services)
	logPropagation(ctx, t, names)
	atKiel.stop()
	t.Logf("watch of sh-kiel: %d versions of its services seen", atKiel.versions)
	g.Expect(fences.found()).To(BeEmpty(), "no service fenced or left active at the healthy sh-kiel")

	t.Run("sh-kiel lost: every service fails over", func(t *testing.T) {
		g := NewWithT(t)
		stopProfile := profileCPU(t, "DEICH_SCALE_CPUPROFILE")
		requests := apiServerRequests(ctx, t, schwerin)
		lost := time.Now()
		before := gatherReconcileStats(t)
		g.Expect(managers.Stop(kiel)).To(Succeed())
		g.Expect(kiel.StopAPIServer()).To(Succeed())
		t.Cleanup(func() { _ = kiel.StartAPIServer() })
		floors := leaseFloors(ctx, t, schwerin)
		waitServerProfile := profileAPIServer(ctx, t, schwerin, "DEICH_SCALE_APISERVER_CPUPROFILE")
		var last time.Time
		g.Eventually(func() []string {
			left := atSchwerin.notYet(names, servingAtSchwerin)
			if len(left) == 0 {
				last = time.Now()
			}
			return left
		}).WithPolling(100*time.Millisecond).WithTimeout(rto+time.Minute).
			Should(BeEmpty(), atSchwerin.whyNot(names, servingAtSchwerin, "every service served at mv-schwerin"))
		stopProfile()
		t.Logf("all %d services seen serving at mv-schwerin %s after sh-kiel was lost (RTO %s)", services, last.Sub(lost).Round(100*time.Millisecond), rto)
		logRequests(t, schwerin.Name, "from the loss until every service was seen serving", requests, apiServerRequests(ctx, t, schwerin), last.Sub(lost))
		logFailoverTimes(ctx, t, schwerin, lost, floors)
		shown.log(t)
		logEvents(ctx, t, schwerin, lost, services)
		after := gatherReconcileStats(t)
		t.Logf("SharedService reconciles at mv-schwerin meanwhile: %.0f (%.1f per service), %.0f ms each on average, after %.0f ms in the queue on average",
			after.reconciles-before.reconciles, (after.reconciles-before.reconciles)/float64(services),
			1000*(after.reconcileSeconds-before.reconcileSeconds)/max(after.reconciles-before.reconciles, 1),
			1000*(after.queueSeconds-before.queueSeconds)/max(after.queued-before.queued, 1))
		waitServerProfile()
		g.Expect(last.Sub(lost)).To(BeNumerically("<=", rto), "every service within the RTO")
	})
}

// profileCPU profiles this process — both managers run in it — into the file the
// environment variable env names, until the returned function is called: the failover
// (DEICH_SCALE_CPUPROFILE, sh-kiel's manager is stopped then) or the steady state
// (DEICH_SCALE_STEADY_CPUPROFILE). It does nothing when the variable is not set.
func profileCPU(t *testing.T, env string) (stop func()) {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create the CPU profile: %v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatalf("start the CPU profile: %v", err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				t.Errorf("write the CPU profile: %v", err)
			}
			t.Logf("CPU profile written to %s", path)
		})
	}
	t.Cleanup(stop)
	return stop
}

// profileAPIServer profiles site's API server (its /debug/pprof/profile) for a minute from now
// into the file the environment variable env names; the returned function waits for the
// profile. It does nothing when the variable is not set.
func profileAPIServer(ctx context.Context, t *testing.T, site *testenv.Site, env string) (wait func()) {
	t.Helper()
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	cs, err := kubernetes.NewForConfig(site.Config)
	if err != nil {
		t.Fatalf("client for %s: %v", site.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "60").DoRaw(ctx)
		if err != nil {
			t.Logf("profile %s's API server: %v", site.Name, err)
			return
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Errorf("write the API server's CPU profile: %v", err)
			return
		}
		t.Logf("CPU profile of %s's API server written to %s", site.Name, path)
	}()
	return func() { <-done }
}

// reconcileStats are the SharedService controller's counters of the managers in this process
// (controller-runtime's metrics registry is shared by them).
type reconcileStats struct {
	reconciles, reconcileSeconds float64
	queued, queueSeconds         float64
}

// gatherReconcileStats reads the SharedService controller's reconcile and work-queue metrics.
func gatherReconcileStats(t *testing.T) reconcileStats {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Logf("cannot gather the managers' metrics: %v", err)
		return reconcileStats{}
	}
	var st reconcileStats
	label := func(m *dto.Metric, name string) string {
		for _, l := range m.GetLabel() {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case f.GetName() == "controller_runtime_reconcile_total" && label(m, "controller") == "sharedservice":
				st.reconciles += m.GetCounter().GetValue()
			case f.GetName() == "controller_runtime_reconcile_time_seconds" && label(m, "controller") == "sharedservice":
				st.reconcileSeconds += m.GetHistogram().GetSampleSum()
			case f.GetName() == "workqueue_queue_duration_seconds" && label(m, "name") == "sharedservice":
				st.queued += float64(m.GetHistogram().GetSampleCount())
				st.queueSeconds += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return st
}

// leaseFloors reads, at site, sh-kiel's last renewal of every service's lease from the shared
// records, and returns each service's floor: the earliest a standby may promote after the
// holder stopped renewing, its last renewal plus leaseDuration plus max-clock-skew. Read
// right after sh-kiel stopped, before any service's floor.
func leaseFloors(ctx context.Context, t *testing.T, site *testenv.Site) map[string]time.Time {
	t.Helper()
	list := &coordinationv1.LeaseList{}
	if err := site.Client.List(ctx, list, client.InNamespace(lease.PartnerLeaseNamespace)); err != nil {
		t.Logf("cannot list the shared lease records at %s: %v", site.Name, err)
		return nil
	}
	floors := map[string]time.Time{}
	for i := range list.Items {
		entries, err := failover.EntriesFromLease(&list.Items[i])
		if err != nil {
			t.Logf("cannot read lease record %s: %v", list.Items[i].Name, err)
			continue
		}
		for key, rec := range entries {
			if rec.Holder == testenv.SiteKiel && !rec.RenewTime.IsZero() {
				floors[key] = rec.RenewTime.Add(rec.Duration + operator.DefaultMaxClockSkew)
			}
		}
	}
	return floors
}

// logFailoverTimes logs, from the services' status.lastFailover at site, how long after lost
// the failovers were detected and completed, and how long after its floor (floors, by the
// service's lease entry key) each completed: the first, the median, the 90th percentile and
// the last.
func logFailoverTimes(ctx context.Context, t *testing.T, site *testenv.Site, lost time.Time, floors map[string]time.Time) {
	t.Helper()
	list := &deichv1alpha1.SharedServiceList{}
	if err := site.Client.List(ctx, list); err != nil {
		t.Logf("cannot list the services at %s: %v", site.Name, err)
		return
	}
	var detected, completed, afterFloor, floorAfterLoss []time.Duration
	for i := range list.Items {
		svc := &list.Items[i]
		lf := svc.Status.LastFailover
		if lf == nil || lf.DetectedAt == nil || lf.CompletedAt == nil {
			continue
		}
		detected = append(detected, lf.DetectedAt.Sub(lost))
		completed = append(completed, lf.CompletedAt.Sub(lost))
		if floor, ok := floors[lease.EntryKey(client.ObjectKeyFromObject(svc))]; ok {
			afterFloor = append(afterFloor, lf.CompletedAt.Sub(floor))
			floorAfterLoss = append(floorAfterLoss, floor.Sub(lost))
		}
	}
	spread := func(d []time.Duration) string {
		if len(d) == 0 {
			return "none"
		}
		slices.Sort(d)
		at := func(q float64) time.Duration { return d[int(q*float64(len(d)-1))].Round(100 * time.Millisecond) }
		return fmt.Sprintf("first %s, median %s, 90th percentile %s, last %s", at(0), at(0.5), at(0.9), at(1))
	}
	t.Logf("promotions after sh-kiel was lost, by status.lastFailover of %d services: detected %s; completed %s",
		len(completed), spread(detected), spread(completed))
	t.Logf("lease floors (sh-kiel's last renewal + leaseDuration + max-clock-skew) of %d services after the loss: %s; promotions completed after their floor: %s",
		len(afterFloor), spread(floorAfterLoss), spread(afterFloor))
}

// servingSeen remembers, per service, when the test's watch first saw its status report it
// served at mv-schwerin after a failover, and the promotion's completedAt it reported then.
type servingSeen struct {
	mu        sync.Mutex
	seen      map[string]time.Time
	completed map[string]time.Time
}

func newServingSeen() *servingSeen {
	return &servingSeen{seen: map[string]time.Time{}, completed: map[string]time.Time{}}
}

func (s *servingSeen) observe(svc *deichv1alpha1.SharedService) {
	if !servingAtSchwerin(svc) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[svc.Namespace]; !ok {
		s.seen[svc.Namespace] = time.Now()
		s.completed[svc.Namespace] = svc.Status.LastFailover.CompletedAt.Time
	}
}

// log logs how long after its promotion completed each service's status showed it: the
// status lag an SRE watching the services sees. completedAt is stored in whole seconds, so
// each lag reads up to a second long.
func (s *servingSeen) log(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	lags := make([]time.Duration, 0, len(s.seen))
	for ns, at := range s.seen {
		lags = append(lags, at.Sub(s.completed[ns]))
	}
	if len(lags) == 0 {
		return
	}
	slices.Sort(lags)
	at := func(q float64) time.Duration { return lags[int(q*float64(len(lags)-1))].Round(100 * time.Millisecond) }
	t.Logf("statuses showed the %d promotions after they completed (completedAt in whole seconds): median %s, 90th percentile %s, last %s",
		len(lags), at(0.5), at(0.9), at(1))
}

// catalogueSize is how many services the catalogue holds: DEICH_SCALE_SERVICES, or
// defaultServices.
func catalogueSize(t *testing.T) int {
	v := os.Getenv("DEICH_SCALE_SERVICES")
	if v == "" {
		return defaultServices
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 9999 {
		t.Fatalf("DEICH_SCALE_SERVICES=%q: want a number of services from 1 to 9999", v)
	}
	return n
}

// applyService creates namespace ns at sh-kiel with a Deployment and ConfigMaps, and the
// SharedService that shares them with mv-schwerin.
func applyService(ctx context.Context, ns string, check deichv1alpha1.HealthCheck) error {
	labels := map[string]string{"app.kubernetes.io/part-of": ns, "app": "web"}
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(sourceReplicas)),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/" + ns + ":1.0"}}},
				},
			},
		},
	}
	for i := range configMaps {
		objs = append(objs, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("settings-%d", i), Labels: labels},
			Data:       map[string]string{"procedure": ns, "part": fmt.Sprint(i)},
		})
	}
	objs = append(objs, testobjects.MakeSharedService(ns, ns).Objective(objectiveName).HealthCheck(check).Obj())
	for _, obj := range objs {
		if err := kiel.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// forEach runs f for every name, applyParallelism at a time, and returns the first error.
func forEach(names []string, f func(string) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, applyParallelism)
	for _, n := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(n); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// describe says where a service stands, for a failure message: phase, role, active site and
// the conditions that are not True.
func describe(svc *deichv1alpha1.SharedService) string {
	st := svc.Status
	parts := []string{fmt.Sprintf("phase %s, role %s, active %s", st.Phase, st.Role, st.ActiveSite)}
	for _, c := range st.Conditions {
		if c.Status != metav1.ConditionTrue {
			parts = append(parts, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	if m := leaseMessage(svc); m != "" {
		parts = append(parts, "lease: "+m)
	}
	return strings.Join(parts, "; ")
}

// protected: the service is Protected with sh-kiel active.
func protected(svc *deichv1alpha1.SharedService) bool {
	return svc.Status.Phase == deichv1alpha1.PhaseProtected && svc.Status.ActiveSite == testenv.SiteKiel
}

// standingBy: mv-schwerin stands by for sh-kiel.
func standingBy(svc *deichv1alpha1.SharedService) bool {
	return svc.Status.Role == deichv1alpha1.RoleStandby && svc.Status.ActiveSite == testenv.SiteKiel
}

// servingAtSchwerin: mv-schwerin serves the service after a completed failover.
func servingAtSchwerin(svc *deichv1alpha1.SharedService) bool {
	lf := svc.Status.LastFailover
	return svc.Status.Role == deichv1alpha1.RoleActive && svc.Status.ActiveSite == testenv.SiteSchwerin &&
		lf != nil && lf.CompletedAt != nil
}

// leaseMessage is the lease's message in status, if any.
func leaseMessage(svc *deichv1alpha1.SharedService) string {
	if svc.Status.Lease == nil {
		return ""
	}
	return svc.Status.Lease.Message
}
