// Package stateful tests a stateful service across a site loss and back: two real control
// planes with the CustomResourceDefinitions of CloudNativePG, external-dns and csi-addons
// installed beside Deich's, a manager per site, TCP proxies between the sites so a link can be
// cut, and the test playing the data layer (CloudNativePG, the csi-addons controller and its
// volume driver, the Deployment controller) by writing the objects' status. It checks what
// docs/stateful.md promises: the standby promotes the volume first, the database once the
// volume reports itself primary, the application only once the database reports itself
// primary, DNS only once the application is ready, fences in the reverse order; a planned move
// hands the demoted primary's token to the promoted Cluster, a failover none; the volume's
// lastSyncTime counts against the RPO; and at no instant do both sites publish the record, run
// a primary database or ask for a primary volume.
package stateful

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	managerNamespace = operator.DefaultNamespace
	// maxClockSkew is the --max-clock-skew the managers run with.
	maxClockSkew = time.Second
)

// The two sites, the proxies each manager reaches its peer through, and the managers.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site
	// toKiel carries mv-schwerin's manager to sh-kiel's API server, toSchwerin the other way.
	toKiel, toSchwerin *testenv.Proxy
	managers           = testenv.NewManagers(operator.Options{MaxClockSkew: maxClockSkew})
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	testenv.SetTestLogger()
	var err error
	env, err = startSites()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		stopManagers()
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
	}()
	kiel, schwerin = env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)
	if err := connect(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = toKiel.Close() }()
	defer func() { _ = toSchwerin.Close() }()
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := managers.Start(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// startSites starts sh-kiel and mv-schwerin as testenv.StartDeich does, with the data layer's
// CustomResourceDefinitions (test/stateful/testdata/crds) installed as well: the service's
// Cluster and DNSEndpoint must be real kinds at both API servers, so that Deich maps, mirrors,
// fences and promotes them as it would in a real cluster.
func startSites() (*testenv.Env, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	e, err := testenv.Start(testenv.Options{
		CRDDirectoryPaths: []string{
			filepath.Join(root, "config", "crd", "bases"),
			filepath.Join(root, "test", "stateful", "testdata", "crds"),
		},
		ErrorIfCRDPathMissing: true,
		Scheme:                operator.NewScheme(),
	})
	if err != nil {
		return nil, fmt.Errorf("start sites: %w", err)
	}
	return e, nil
}

// connect puts a proxy in front of each API server and gives each site a ReplicationPeer for
// the other whose kubeconfig points at the proxy, so a test can cut the link.
func connect() error {
	ctx := context.Background()
	var err error
	if toKiel, err = testenv.NewProxy(hostPort(kiel)); err != nil {
		return err
	}
	if toSchwerin, err = testenv.NewProxy(hostPort(schwerin)); err != nil {
		return err
	}
	for _, link := range []struct {
		on, peer *testenv.Site
		proxy    *testenv.Proxy
	}{{kiel, schwerin, toSchwerin}, {schwerin, kiel, toKiel}} {
		kubeconfig, err := link.peer.KubeconfigFor(link.proxy.URL())
		if err != nil {
			return err
		}
		if err := link.on.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
			return fmt.Errorf("create manager namespace at %s: %w", link.on.Name, err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: "peer-" + link.peer.Name},
			Data:       map[string][]byte{testenv.PeerSecretKey: kubeconfig},
		}
		if err := link.on.Client.Create(ctx, secret); err != nil {
			return fmt.Errorf("create peer Secret at %s: %w", link.on.Name, err)
		}
		peer := testobjects.MakeReplicationPeer(link.peer.Name).Heartbeat(time.Second).Obj()
		if err := link.on.Client.Create(ctx, peer); err != nil {
			return fmt.Errorf("create ReplicationPeer at %s: %w", link.on.Name, err)
		}
	}
	return nil
}

// hostPort is the host:port of a site's API server.
func hostPort(s *testenv.Site) string {
	return s.URL()[len("https://"):]
}

func stopManagers() {
	if err := managers.StopAll(); err != nil {
		fmt.Fprintln(os.Stderr, "stop managers:", err)
	}
}

// requireSites skips a test when the sites are not running (go test -short).
func requireSites(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("fault test: needs real API servers (not run with -short)")
	}
}
