package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// TestKubeStoreOnARealAPIServer: the Store's compare-and-swap is the API server's, by
// resourceVersion, for creating and for updating a copy.
func TestKubeStoreOnARealAPIServer(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	if err := site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "deich-witness"}}); err != nil {
		t.Fatal(err)
	}
	svc := types.NamespacedName{Namespace: "buergerkonto", Name: "buergerkonto"}
	s := lease.KubeStore{Client: site.Client, Key: client.ObjectKey{Namespace: "deich-witness", Name: "deich-" + svc.Namespace + "." + svc.Name},
		Labels: map[string]string{"app.kubernetes.io/managed-by": "deich"}}

	rec, err := s.Read(ctx)
	if err != nil || rec.Exists() {
		t.Fatalf("Read() of a missing copy = %+v, %v; want the zero record", rec, err)
	}
	now := time.Now().Truncate(time.Microsecond)
	want := failover.LeaseRecord{Holder: testenv.SiteKiel, Duration: 30 * time.Second, AcquireTime: now, RenewTime: now, Epoch: 3,
		Configs: []failover.Config{failover.QuorumConfig("sh-kiel", "mv-schwerin", "hh-hamburg")}}
	created, err := s.Write(ctx, want)
	if err != nil || !created.HeldBy(testenv.SiteKiel) || created.Epoch != 3 || len(created.Configs) != 1 {
		t.Fatalf("creating the copy: %+v, %v", created, err)
	}
	if _, err := s.Write(ctx, want); !errors.Is(err, lease.ErrConflict) {
		t.Errorf("creating an existing copy: %v, want ErrConflict", err)
	}
	renewed := created
	renewed.RenewTime = now.Add(10 * time.Second)
	got, err := s.Write(ctx, renewed)
	if err != nil || got.ResourceVersion == created.ResourceVersion {
		t.Fatalf("renewing on the current resourceVersion: %+v, %v", got, err)
	}
	// A write decided on the record before the renewal must fail and return the current one.
	stale := created
	stale.Holder = testenv.SiteSchwerin
	cur, err := s.Write(ctx, stale)
	if !errors.Is(err, lease.ErrConflict) || cur.ResourceVersion != got.ResourceVersion || !cur.HeldBy(testenv.SiteKiel) {
		t.Errorf("a write on a stale resourceVersion: %+v, %v; want ErrConflict and the current copy", cur, err)
	}
	read, err := s.Read(ctx)
	if err != nil || read.ResourceVersion != got.ResourceVersion || read.Epoch != 3 || !read.RenewTime.Equal(renewed.RenewTime) {
		t.Errorf("Read() = %+v, %v; want the renewed copy", read, err)
	}
}

// A partner's copy may be the first object of its namespace there: CreateNamespace lets the
// first write create the namespace, and only then.
func TestKubeStoreCreatesAMissingNamespaceOnlyWhenAllowed(t *testing.T) {
	site := startSite(t)
	ctx := context.Background()
	svc := types.NamespacedName{Namespace: "kita-portal", Name: "kita-portal"}
	now := time.Now().Truncate(time.Microsecond)
	rec := failover.LeaseRecord{Holder: testenv.SiteKiel, Duration: 30 * time.Second, AcquireTime: now, RenewTime: now, Epoch: 1}

	witness := lease.KubeStore{Client: site.Client, Key: client.ObjectKey{Namespace: "no-such-namespace", Name: "deich-" + svc.Name}}
	if _, err := witness.Write(ctx, rec); err == nil || errors.Is(err, lease.ErrConflict) {
		t.Errorf("writing into a missing namespace without CreateNamespace: %v, want an error", err)
	}
	partner := lease.KubeStore{Client: site.Client, Key: client.ObjectKey{Namespace: svc.Namespace, Name: "deich-" + svc.Name}, CreateNamespace: true}
	got, err := partner.Write(ctx, rec)
	if err != nil || !got.HeldBy(testenv.SiteKiel) {
		t.Fatalf("writing with CreateNamespace: %+v, %v", got, err)
	}
	ns := &corev1.Namespace{}
	if err := site.Client.Get(ctx, types.NamespacedName{Name: svc.Namespace}, ns); err != nil {
		t.Fatalf("namespace %s was not created: %v", svc.Namespace, err)
	}
	if ns.Labels[render.LabelManagedBy] != render.ManagedByDeich {
		t.Errorf("namespace labels = %v, want managed-by deich", ns.Labels)
	}
}

// startSite starts one real API server for the test; in -short mode, which runs only the
// tests that need none, the test is skipped.
func startSite(t *testing.T) *testenv.Site {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env, err := testenv.Start(testenv.Options{}, testenv.SiteKiel)
	if err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env.Site(testenv.SiteKiel)
}
