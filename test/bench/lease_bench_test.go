package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/controllers"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/testenv"
)

// leaseCountingClient counts the lease keeper's requests to one site and times its writes.
type leaseCountingClient struct {
	client.Client
	reads, writes atomic.Int64
	mu            sync.Mutex
	latencies     []time.Duration
}

func (c *leaseCountingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.reads.Add(1)
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *leaseCountingClient) timed(f func() error) error {
	c.writes.Add(1)
	start := time.Now()
	err := f()
	c.mu.Lock()
	c.latencies = append(c.latencies, time.Since(start))
	c.mu.Unlock()
	return err
}

func (c *leaseCountingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	return c.timed(func() error { return c.Client.Create(ctx, obj, opts...) })
}

func (c *leaseCountingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	return c.timed(func() error { return c.Client.Update(ctx, obj, opts...) })
}

func (c *leaseCountingClient) reset() {
	c.reads.Store(0)
	c.writes.Store(0)
	c.mu.Lock()
	c.latencies = nil
	c.mu.Unlock()
}

type flagFencer struct {
	serving atomic.Bool
	fences  atomic.Int64
}

func (f *flagFencer) Serve(context.Context, int64) (lease.Progress, error) {
	f.serving.Store(true)
	return lease.Progress{Done: true}, nil
}

func (f *flagFencer) Fence(context.Context) (bool, error) {
	if f.serving.Swap(false) {
		f.fences.Add(1)
	}
	return true, nil
}

// leaseRecordsPerCluster is how many shared records the benchmark spreads the services'
// entries over, at each cluster.
const leaseRecordsPerCluster = 8

// BenchmarkLeaseTraffic measures what the lease costs a site that serves many services in
// two-site mode (a copy at its own cluster and one at the partner's, leaseDuration 15s,
// --max-clock-skew 2s): the requests its lease keeper sends per second, how long its writes
// take, and the CPU it and the API servers use, with a Lease per service and with the
// services' copies as entries of shared records. DEICH_BENCH_LEASE_SERVICES sets how many
// services (default 1,000). The keeper runs in this process, as it does in the manager.
func BenchmarkLeaseTraffic(b *testing.B) {
	s := requireSites(b)
	services := 1000
	if v := os.Getenv("DEICH_BENCH_LEASE_SERVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("DEICH_BENCH_LEASE_SERVICES=%q: want a positive number", v)
		}
		services = n
	}
	p := failover.Policy{Mode: deichv1alpha1.FailoverAutomatic, FailureThreshold: 3, ProbeInterval: 2 * time.Second,
		LeaseDuration: 15 * time.Second, MaxClockSkew: 2 * time.Second}
	type layout struct {
		name    string
		records int // copies per cluster that are written: services, or shared records
		stores  func(i int, own, partner client.Client) map[string]lease.Store
	}
	const ns = "lease-bench"
	for _, site := range []*testenv.Site{s.active, s.standby} {
		if err := createNamespace(context.Background(), site, ns); err != nil {
			b.Fatal(err)
		}
	}
	var rs *lease.Records
	layouts := []layout{
		{name: "a Lease per service", records: services, stores: func(i int, own, partner client.Client) map[string]lease.Store {
			key := client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("%sservice-%d", failover.LeaseNamePrefix, i)}
			return map[string]lease.Store{
				testenv.SiteKiel:     lease.KubeStore{Client: own, Key: key},
				testenv.SiteSchwerin: lease.KubeStore{Client: partner, Key: key},
			}
		}},
		{name: fmt.Sprintf("shared records (%d per cluster)", leaseRecordsPerCluster), records: min(services, leaseRecordsPerCluster),
			stores: func(i int, own, partner client.Client) map[string]lease.Store {
				entry := fmt.Sprintf("%s/service-%d", ns, i)
				h := fnv.New32a()
				_, _ = h.Write([]byte(entry))
				key := client.ObjectKey{Namespace: ns, Name: fmt.Sprintf("deich-leases-%d", h.Sum32()%leaseRecordsPerCluster)}
				return map[string]lease.Store{
					testenv.SiteKiel:     rs.Entry(lease.RecordRef{Arbiter: testenv.SiteKiel, Client: own, Key: key}, entry),
					testenv.SiteSchwerin: rs.Entry(lease.RecordRef{Arbiter: testenv.SiteSchwerin, Client: partner, Key: key}, entry),
				}
			}},
	}
	type row struct {
		layout                       string
		toServe                      time.Duration
		writes, reads, formula       float64
		p50, p99                     time.Duration
		fences                       int64
		bench, apiActive, apiStandby float64
	}
	var rows []row
	for range b.N {
		rows = rows[:0]
		for _, l := range layouts {
			own := &leaseCountingClient{Client: leaseClient(b, s.active)}
			partner := &leaseCountingClient{Client: leaseClient(b, s.standby)}
			rs = lease.NewRecords(clock.RealClock{}, lease.RecordOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			keeper := lease.New(clock.RealClock{}, lease.Options{})
			go func() { _ = keeper.Start(ctx) }()
			fencers := make([]*flagFencer, services)
			start := time.Now()
			for i := range services {
				fencers[i] = &flagFencer{}
				keeper.Update(types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("service-%d", i)}, lease.Inputs{
					Policy: p,
					State: failover.ServiceState{Site: testenv.SiteKiel, Partner: testenv.SiteSchwerin, Primary: true, Unclaimed: true,
						Target: failover.TwoSiteConfig(testenv.SiteSchwerin), PartnerReady: true, CopyWithinRPO: true, Fenced: true},
					Stores: l.stores(i, own, partner),
					Fencer: fencers[i],
				})
			}
			deadline := time.Now().Add(5 * time.Minute)
			for _, f := range fencers {
				for !f.serving.Load() && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}
			toServe := time.Since(start)
			serving := 0
			for _, f := range fencers {
				if f.serving.Load() {
					serving++
				}
			}
			if serving < services {
				b.Errorf("%s: %d of %d services serve after 5 minutes", l.name, serving, services)
			}
			time.Sleep(2 * p.RenewInterval()) // renewals settle (and, with shared records, align)
			own.reset()
			partner.reset()
			for _, f := range fencers {
				f.fences.Store(0)
			}
			window := s.procs.startCPU()
			time.Sleep(3 * p.RenewInterval())
			use := window.stop()
			secs := use.wall.Seconds()
			lat := percentiles(append(own.latencies, partner.latencies...))
			var fences int64
			for _, f := range fencers {
				fences += f.fences.Load()
			}
			rows = append(rows, row{
				layout: l.name, toServe: toServe,
				writes:  float64(own.writes.Load()+partner.writes.Load()) / secs,
				reads:   float64(own.reads.Load()+partner.reads.Load()) / secs,
				formula: float64(l.records*2*3) / p.LeaseDuration.Seconds(),
				p50:     lat.p50, p99: lat.p99, fences: fences,
				bench: use.byProcess["bench (this process)"], apiActive: use.byProcess["kube-apiserver "+testenv.SiteKiel],
				apiStandby: use.byProcess["kube-apiserver "+testenv.SiteSchwerin],
			})
			cancel()
			for _, site := range []*testenv.Site{s.active, s.standby} {
				if err := site.Client.DeleteAllOf(context.Background(), &coordinationv1.Lease{}, client.InNamespace(ns)); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	fmt.Printf("\nLease traffic of one site serving %d services in two-site mode (leaseDuration %s, skew %s):\n\n%s\n", services, p.LeaseDuration, p.MaxClockSkew, s.machine.table())
	fmt.Println("| copies | all serving after | writes/s | formula (copies written × 2 arbiters × 3 / D) | reads/s | write p50 | write p99 | fences while healthy | cores: keeper (this process), kube-apiserver sh-kiel, kube-apiserver mv-schwerin |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %.1f | %.1f | %.1f | %s | %s | %d | %.2f, %.2f, %.2f |\n", r.layout, r.toServe.Round(100*time.Millisecond),
			r.writes, r.formula, r.reads, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond), r.fences, r.bench, r.apiActive, r.apiStandby)
	}
	if len(rows) == 2 {
		b.ReportMetric(rows[0].writes, "writes/s-per-service-leases")
		b.ReportMetric(rows[1].writes, "writes/s-shared-records")
	}
}

// leaseClient is a client for site rate-limited as the manager's lease keeper is.
func leaseClient(b *testing.B, site *testenv.Site) client.Client {
	b.Helper()
	cfg := unlimited(site)
	cfg.QPS, cfg.Burst = controllers.DefaultLeaseQPS, controllers.DefaultLeaseBurst
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return c
}
