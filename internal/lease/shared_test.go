package lease_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// countingClient counts the writes that reach the API server, and of them those of Leases.
type countingClient struct {
	client.Client
	writes, leaseWrites atomic.Int64
}

func (c *countingClient) count(obj client.Object) {
	c.writes.Add(1)
	if _, ok := obj.(*coordinationv1.Lease); ok {
		c.leaseWrites.Add(1)
	}
}

func (c *countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.count(obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.count(obj)
	return c.Client.Update(ctx, obj, opts...)
}

func sharedRef(c client.Client) lease.RecordRef {
	return lease.RecordRef{Arbiter: testenv.SiteKiel, Client: c, Key: client.ObjectKey{Namespace: "deich-leases", Name: "deich-shared-0"}, CreateNamespace: true}
}

// TestSharedRecordEntriesAreCompareAndSwapped: an entry of a shared record behaves as a copy
// stored on its own — created only when missing, updated only on the version it was decided
// on — while other entries of the record change under it.
func TestSharedRecordEntriesAreCompareAndSwapped(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	rs := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{})
	s := rs.Entry(sharedRef(site.Client), "buergerkonto/buergerkonto")
	other := rs.Entry(sharedRef(site.Client), "kfz/zulassung")

	rec, err := s.Read(ctx)
	if err != nil || rec.Exists() {
		t.Fatalf("Read() of a missing record = %+v, %v; want the zero record", rec, err)
	}
	now := time.Now().Truncate(time.Microsecond)
	want := failover.LeaseRecord{Holder: testenv.SiteKiel, Duration: 15 * time.Second, AcquireTime: now, RenewTime: now, Epoch: 2,
		Configs: []failover.Config{failover.QuorumConfig("sh-kiel", "mv-schwerin", "hh-hamburg")}}
	created, err := s.Write(ctx, want)
	if err != nil || !created.HeldBy(testenv.SiteKiel) || created.Epoch != 2 || !created.Exists() {
		t.Fatalf("creating the entry (and the record's namespace) = %+v, %v", created, err)
	}
	if _, err := s.Write(ctx, want); !errors.Is(err, lease.ErrConflict) {
		t.Errorf("creating an entry that exists: err = %v, want ErrConflict", err)
	}
	if _, err := other.Write(ctx, failover.LeaseRecord{Holder: testenv.SiteSchwerin, Duration: 15 * time.Second}); err != nil {
		t.Fatalf("writing another entry: %v", err)
	}
	renewed := created
	renewed.RenewTime = now.Add(5 * time.Second)
	got, err := s.Write(ctx, renewed)
	if err != nil || got.ResourceVersion == created.ResourceVersion || !got.RenewTime.Equal(renewed.RenewTime) {
		t.Fatalf("renewing on the entry's version after another entry changed = %+v, %v", got, err)
	}
	stale, err := s.Write(ctx, failover.ReleasedRecord(created, now))
	if !errors.Is(err, lease.ErrConflict) || stale.ResourceVersion != got.ResourceVersion {
		t.Errorf("a write on an older version = %+v, %v; want ErrConflict with the current entry", stale, err)
	}

	// Another process sees the same entries in the Lease.
	var l coordinationv1.Lease
	if err := site.Client.Get(ctx, sharedRef(nil).Key, &l); err != nil {
		t.Fatal(err)
	}
	entries, err := failover.EntriesFromLease(&l)
	if err != nil || len(entries) != 2 || entries["buergerkonto/buergerkonto"].ResourceVersion != got.ResourceVersion {
		t.Errorf("the record's entries = %+v, %v", entries, err)
	}
	if err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if rec, err := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{}).Entry(sharedRef(site.Client), "buergerkonto/buergerkonto").Read(ctx); err != nil || rec.Exists() {
		t.Errorf("a deleted entry reads as %+v, %v", rec, err)
	}
}

// TestSharedRecordKeepsEachEntryLinearizable: two manager processes race for one entry with
// compare-and-swap writes while a dozen other services write their entries of the same
// record. Every write that succeeded must have been decided on the entry as the previous
// successful write left it: the successes form one chain.
func TestSharedRecordKeepsEachEntryLinearizable(t *testing.T) {
	site := startSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	procs := []*lease.Records{
		lease.NewRecords(clock.RealClock{}, lease.RecordOptions{Linger: 5 * time.Millisecond, MaxAge: time.Millisecond}),
		lease.NewRecords(clock.RealClock{}, lease.RecordOptions{Linger: 5 * time.Millisecond, MaxAge: time.Millisecond}),
	}
	const contested = "buergerkonto/buergerkonto"
	var (
		mu        sync.Mutex
		successes = map[string]string{} // base version → new version
		conflicts int
	)
	var wg sync.WaitGroup
	for i, rs := range procs {
		holder := []string{testenv.SiteKiel, testenv.SiteSchwerin}[i]
		wg.Go(func() {
			s := rs.Entry(sharedRef(site.Client), contested)
			for range 60 {
				cur, err := s.Read(ctx)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				next := failover.AcquiredRecord(cur, holder, failover.Policy{LeaseDuration: 15 * time.Second}, time.Now())
				got, err := s.Write(ctx, next)
				mu.Lock()
				switch {
				case err == nil:
					if prev, dup := successes[cur.ResourceVersion]; dup {
						t.Errorf("two writes succeeded on version %q: %q and %q", cur.ResourceVersion, prev, got.ResourceVersion)
					}
					successes[cur.ResourceVersion] = got.ResourceVersion
				case errors.Is(err, lease.ErrConflict):
					conflicts++
				default:
					t.Errorf("write: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	for i := range 12 {
		rs := procs[i%2]
		wg.Go(func() {
			s := rs.Entry(sharedRef(site.Client), fmt.Sprintf("noise/service-%d", i))
			for range 30 {
				cur, err := s.Read(ctx)
				if err == nil {
					_, err = s.Write(ctx, failover.RenewedRecord(cur, testenv.SiteKiel, failover.Policy{LeaseDuration: 15 * time.Second}, time.Now()))
				}
				if err != nil && !errors.Is(err, lease.ErrConflict) {
					t.Errorf("noise write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()

	// Walk the chain from the entry's creation: it must cover every success.
	v, n := "", 0
	for {
		next, ok := successes[v]
		if !ok {
			break
		}
		v, n = next, n+1
	}
	if n != len(successes) {
		t.Errorf("the %d successful writes do not form one chain (the walk from creation covers %d)", len(successes), n)
	}
	final, err := procs[0].Entry(sharedRef(site.Client), contested).Read(ctx)
	if err == nil && final.ResourceVersion != v {
		t.Errorf("the entry stands at version %q, but the chain of successes ends at %q", final.ResourceVersion, v)
	}
	if len(successes) < 2 || conflicts == 0 {
		t.Errorf("vacuous: %d successes, %d conflicts", len(successes), conflicts)
	}
	t.Logf("%d successes in one chain, %d conflicts", len(successes), conflicts)
}

// TestSharedRecordBatchesTheWritesOfManyServices: forty services' writes that arrive
// together reach the API server in a few writes of the record, and a Read of another
// service is answered from the record as written.
func TestSharedRecordBatchesTheWritesOfManyServices(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	c := &countingClient{Client: site.Client}
	var observed, observedOK atomic.Int64
	rs := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{Linger: 200 * time.Millisecond, MaxAge: time.Minute,
		ObserveRecordWrite: func(arbiter string, err error) {
			if arbiter != sharedRef(nil).Arbiter {
				t.Errorf("a write observed for arbiter %q, want %q", arbiter, sharedRef(nil).Arbiter)
			}
			observed.Add(1)
			if err == nil {
				observedOK.Add(1)
			}
		}})
	const services = 40
	var wg sync.WaitGroup
	for i := range services {
		wg.Go(func() {
			s := rs.Entry(sharedRef(c), fmt.Sprintf("ns-%d/service", i))
			if _, err := s.Write(ctx, failover.LeaseRecord{Holder: testenv.SiteKiel, Duration: 15 * time.Second, Epoch: 1}); err != nil {
				t.Errorf("service %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	writes := c.writes.Load()
	t.Logf("%d services' writes took %d writes of the record", services, writes)
	if observed.Load() != c.leaseWrites.Load() || observedOK.Load() == 0 {
		t.Errorf("ObserveRecordWrite saw %d writes (%d ok), the API server %d of the record", observed.Load(), observedOK.Load(), c.leaseWrites.Load())
	}
	if writes > services/4 {
		t.Errorf("%d services' writes took %d writes of the record; they were not batched", services, writes)
	}
	var l coordinationv1.Lease
	if err := site.Client.Get(ctx, sharedRef(nil).Key, &l); err != nil {
		t.Fatal(err)
	}
	if got := l.Annotations[failover.EntryCountAnnotation]; got != fmt.Sprint(services) {
		t.Errorf("the record holds %s entries, want %d", got, services)
	}
	before := c.writes.Load()
	rec, err := rs.Entry(sharedRef(c), "ns-7/service").Read(ctx)
	if err != nil || !rec.HeldBy(testenv.SiteKiel) {
		t.Errorf("Read() = %+v, %v", rec, err)
	}
	if c.writes.Load() != before {
		t.Error("a Read wrote the record")
	}
}

// TestSharedRecordThatCannotBeParsedIsNeverOverwritten: a record someone edited into
// something Deich cannot read stays as it is, and every write reports why.
func TestSharedRecordThatCannotBeParsedIsNeverOverwritten(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	key := sharedRef(nil).Key
	if err := site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: key.Namespace}}); err != nil {
		t.Fatal(err)
	}
	broken := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
		Annotations: map[string]string{failover.EntriesAnnotation: `{"buergerkonto/buergerkonto": {"holderIdentity": "sh-kiel"`}}}
	if err := site.Client.Create(ctx, broken); err != nil {
		t.Fatal(err)
	}
	s := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{}).Entry(sharedRef(site.Client), "buergerkonto/buergerkonto")
	if _, err := s.Write(ctx, failover.LeaseRecord{Holder: testenv.SiteKiel}); err == nil || errors.Is(err, lease.ErrConflict) {
		t.Errorf("writing an entry of an unreadable record: err = %v, want an error that says why", err)
	}
	if _, err := s.Read(ctx); err == nil {
		t.Error("reading an entry of an unreadable record gave no error")
	}
	var l coordinationv1.Lease
	if err := site.Client.Get(ctx, key, &l); err != nil || l.ResourceVersion != broken.ResourceVersion {
		t.Errorf("the unreadable record was changed: %v, resourceVersion %s → %s", err, broken.ResourceVersion, l.ResourceVersion)
	}
}

type servingFencer struct{ serving atomic.Bool }

func (f *servingFencer) Serve(context.Context, int64) (lease.Progress, error) {
	f.serving.Store(true)
	return lease.Progress{Done: true}, nil
}
func (f *servingFencer) Fence(context.Context) (bool, error) {
	f.serving.Store(false)
	return true, nil
}

// TestServicesThatShareRecordsRenewTogether: twenty services whose copies are entries of the
// same two records, started a twentieth of a second apart, all serve, and their renewals
// come to join each other's writes: once they have, each record is written about once per
// renewal interval, not once per service.
func TestServicesThatShareRecordsRenewTogether(t *testing.T) {
	site := startSite(t)
	c := &countingClient{Client: site.Client}
	rs := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{})
	keeper := lease.New(clock.RealClock{}, lease.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = keeper.Start(ctx) }()

	p := failover.Policy{Mode: "Automatic", FailureThreshold: 3, ProbeInterval: time.Second, LeaseDuration: 3 * time.Second, MaxClockSkew: 500 * time.Millisecond}
	const services = 20
	fencers := make([]*servingFencer, services)
	for i := range services {
		entry := fmt.Sprintf("ns-%d/service", i)
		own := sharedRef(c)
		partner := sharedRef(c)
		partner.Arbiter, partner.Key.Name = testenv.SiteSchwerin, "deich-shared-1"
		fencers[i] = &servingFencer{}
		keeper.Update(types.NamespacedName{Namespace: fmt.Sprintf("ns-%d", i), Name: "service"}, lease.Inputs{
			Policy: p,
			State: failover.ServiceState{Site: testenv.SiteKiel, Partner: testenv.SiteSchwerin, Primary: true, Unclaimed: true,
				Target: failover.TwoSiteConfig(testenv.SiteSchwerin), PartnerReady: true, CopyWithinRPO: true, Fenced: true},
			Stores: map[string]lease.Store{testenv.SiteKiel: rs.Entry(own, entry), testenv.SiteSchwerin: rs.Entry(partner, entry)},
			Fencer: fencers[i],
		})
		time.Sleep(50 * time.Millisecond)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, f := range fencers {
		for !f.serving.Load() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if !f.serving.Load() {
			t.Fatal("not every service serves after 10s")
		}
	}
	time.Sleep(3 * time.Second) // renewals align
	before := c.writes.Load()
	const intervals = 4
	time.Sleep(intervals * p.RenewInterval())
	writes := int(c.writes.Load() - before)
	// Unbatched, each service writes each of its two copies once per interval.
	unbatched := services * 2 * intervals
	t.Logf("%d renewal intervals of %d services with copies in two records: %d writes of the records (%d without shared records)",
		intervals, services, writes, unbatched)
	if writes > unbatched/4 {
		t.Errorf("%d writes in %d renewal intervals, more than a quarter of the %d writes without sharing: renewals do not join", writes, intervals, unbatched)
	}
	for _, f := range fencers {
		if !f.serving.Load() {
			t.Error("a service stopped serving")
		}
	}
}

// TestSharedRecordCreatesAMissingNamespaceOnlyWhenAllowed: a partner's cluster may lack the
// namespace of the shared records before the first write; CreateNamespace lets that write
// create it, and only then. A record whose last entry is deleted goes too.
func TestSharedRecordCreatesAMissingNamespaceOnlyWhenAllowed(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	rec := failover.LeaseRecord{Holder: testenv.SiteKiel, Duration: 30 * time.Second, Epoch: 1}
	rs := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{})

	witness := rs.Entry(lease.RecordRef{Arbiter: testenv.SiteHamburg, Client: site.Client, Key: client.ObjectKey{Namespace: "no-such-namespace", Name: "deich-0"}}, "kita/kita")
	if _, err := witness.Write(ctx, rec); err == nil || errors.Is(err, lease.ErrConflict) {
		t.Errorf("writing into a missing namespace without CreateNamespace: %v, want an error", err)
	}
	key := lease.RecordKey(lease.PartnerLeaseNamespace, testenv.SiteSchwerin, testenv.SiteKiel, types.NamespacedName{Namespace: "kita", Name: "kita"})
	partner := rs.Entry(lease.RecordRef{Arbiter: testenv.SiteKiel, Client: site.Client, Key: key, CreateNamespace: true}, "kita/kita")
	if got, err := partner.Write(ctx, rec); err != nil || !got.HeldBy(testenv.SiteKiel) {
		t.Fatalf("writing with CreateNamespace: %+v, %v", got, err)
	}
	ns := &corev1.Namespace{}
	if err := site.Client.Get(ctx, client.ObjectKey{Name: lease.PartnerLeaseNamespace}, ns); err != nil {
		t.Fatalf("namespace %s was not created: %v", lease.PartnerLeaseNamespace, err)
	}
	if ns.Labels[render.LabelManagedBy] != render.ManagedByDeich {
		t.Errorf("namespace labels = %v, want managed-by deich", ns.Labels)
	}
	l := &coordinationv1.Lease{}
	if err := site.Client.Get(ctx, key, l); err != nil || l.Labels[render.LabelManagedBy] != render.ManagedByDeich {
		t.Errorf("record %s: labels %v, %v; want managed-by deich", key, l.Labels, err)
	}
	if err := partner.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := site.Client.Get(ctx, key, l); !apierrors.IsNotFound(err) {
		t.Errorf("the record of a deleted last entry: %v, want it gone", err)
	}
	if err := partner.Delete(ctx); err != nil {
		t.Errorf("deleting an entry of a record that is gone: %v", err)
	}
}

// readCountingClient counts the reads that reach the API server.
type readCountingClient struct {
	client.Client
	gets atomic.Int64
}

func (c *readCountingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.Client.Get(ctx, key, obj, opts...)
}

// TestSharedRecordTakesALaterVersionAWatchDelivered: a version of a record that a watch
// delivers is taken as a read answered then, if it is later than the one held: the entries
// it changed are named, and the services' reads find it without asking the API server. An
// earlier version delivered late changes nothing.
func TestSharedRecordTakesALaterVersionAWatchDelivered(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	const key = "buergerkonto/buergerkonto"
	holder := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{}).Entry(sharedRef(site.Client), key)
	reads := &readCountingClient{Client: site.Client}
	standby := lease.NewRecords(clock.RealClock{}, lease.RecordOptions{MaxAge: time.Minute})
	s := standby.Entry(sharedRef(reads), key)

	now := time.Now().Truncate(time.Microsecond)
	first, err := holder.Write(ctx, failover.LeaseRecord{Holder: testenv.SiteSchwerin, Duration: 15 * time.Second, AcquireTime: now, RenewTime: now, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx); err != nil || got.ResourceVersion != first.ResourceVersion {
		t.Fatalf("Read() = %+v, %v; want the entry as written", got, err)
	}
	var before coordinationv1.Lease
	if err := site.Client.Get(ctx, sharedRef(nil).Key, &before); err != nil {
		t.Fatal(err)
	}

	renewal := first
	renewal.RenewTime = now.Add(5 * time.Second)
	renewed, err := holder.Write(ctx, renewal)
	if err != nil {
		t.Fatal(err)
	}
	// Within MaxAge a read answers from the version held: the renewal is not seen yet.
	if got, _ := s.Read(ctx); got.ResourceVersion != first.ResourceVersion {
		t.Fatalf("Read() before the watch delivered the renewal = %+v; want the version held", got)
	}
	var after coordinationv1.Lease
	if err := site.Client.Get(ctx, sharedRef(nil).Key, &after); err != nil {
		t.Fatal(err)
	}
	gets := reads.gets.Load()
	if changed := standby.Seen(testenv.SiteKiel, &after); len(changed) != 1 || changed[0] != key {
		t.Errorf("Seen(the renewed record) = %v; want [%s]", changed, key)
	}
	if got, err := s.Read(ctx); err != nil || got.ResourceVersion != renewed.ResourceVersion || !got.RenewTime.Equal(renewal.RenewTime) {
		t.Errorf("Read() after the watch delivered the renewal = %+v, %v; want the renewal", got, err)
	}
	if n := reads.gets.Load() - gets; n != 0 {
		t.Errorf("%d reads reached the API server; the delivered version answers them", n)
	}

	// The earlier version, delivered late, and a record no service of the process uses.
	if changed := standby.Seen(testenv.SiteKiel, &before); changed != nil {
		t.Errorf("Seen(an earlier version) = %v; want nothing", changed)
	}
	if got, _ := s.Read(ctx); got.ResourceVersion != renewed.ResourceVersion {
		t.Errorf("Read() after an earlier version was delivered = %+v; want the renewal still", got)
	}
	other := after.DeepCopy()
	other.Name = "deich-shared-1"
	if changed := standby.Seen(testenv.SiteKiel, other); changed != nil {
		t.Errorf("Seen(a record no service uses) = %v; want nothing", changed)
	}
	if changed := standby.Seen(testenv.SiteSchwerin, &after); changed != nil {
		t.Errorf("Seen(the record at another arbiter) = %v; want nothing", changed)
	}
}
