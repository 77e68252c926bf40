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

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
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
	link := env.Link(kiel.Name, schwerin.Name)
	toKiel, toSchwerin = link.Proxy(schwerin.Name), link.Proxy(kiel.Name)
	if err := link.Connect(context.Background(), managerNamespace, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
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
