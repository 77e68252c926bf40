// Package failover holds Deich's fault tests: two real control planes, a manager per site,
// and faults made real — a site's API server and manager stopped, the link between the sites
// cut by TCP proxies — while an invariant checker samples both sites for an instant in which
// both serve.
package failover

import (
	"context"
	"flag"
	"fmt"
	"os"
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
	managers           = testenv.NewManagers(operator.Options{MaxClockSkew: maxClockSkew, EgressInventoryInterval: 2 * time.Second})
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
	env, err = testenv.StartDeich()
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
		if err := startManager(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// startManager starts an in-process manager for site.
func startManager(site *testenv.Site) error { return managers.Start(site) }

// stopManager stops site's manager, as a crash would from the lease's point of view: it
// neither fences nor releases anything on the way out.
func stopManager(site *testenv.Site) error { return managers.Stop(site) }

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
