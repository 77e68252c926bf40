// Package scale holds Deich's tests of a state's catalogue rather than one service: many
// SharedServices applied at once on two real control planes with a manager per site, watched
// for a healthy service that is ever fenced, and failed over together when a site is lost.
package scale

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// The two sites and their managers.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site

	managersMu sync.Mutex
	managers   = map[string]*testenv.Manager{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	level := zapcore.Level(2)
	if os.Getenv("DEICH_TEST_VERBOSE") != "" {
		level = -1
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(level), zap.StacktraceLevel(zapcore.PanicLevel)))
	var err error
	env, err = testenv.StartDeich()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		for _, site := range []*testenv.Site{kiel, schwerin} {
			if err := stopManager(site); err != nil {
				fmt.Fprintln(os.Stderr, "stop manager:", err)
			}
		}
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
	}()
	kiel, schwerin = env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)
	ctx := context.Background()
	for _, pair := range [][2]*testenv.Site{{kiel, schwerin}, {schwerin, kiel}} {
		on, peer := pair[0], pair[1]
		if err := on.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operator.DefaultNamespace}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := env.CreatePeerSecret(ctx, on, peer, operator.DefaultNamespace, "peer-"+peer.Name); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := on.Client.Create(ctx, testobjects.MakeReplicationPeer(peer.Name).Heartbeat(time.Second).Obj()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := startManager(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// startManager starts an in-process manager for site with the defaults a new user gets.
func startManager(site *testenv.Site) error {
	mgr, err := testenv.StartManager(site, operator.Options{MaxClockSkew: operator.DefaultMaxClockSkew})
	if err != nil {
		return err
	}
	managersMu.Lock()
	managers[site.Name] = mgr
	managersMu.Unlock()
	return nil
}

// stopManager stops site's manager, if it runs.
func stopManager(site *testenv.Site) error {
	managersMu.Lock()
	mgr := managers[site.Name]
	delete(managers, site.Name)
	managersMu.Unlock()
	if mgr == nil {
		return nil
	}
	return mgr.Stop()
}

// requireSites skips a test when the sites are not running (go test -short).
func requireSites(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("scale test: needs real API servers (not run with -short)")
	}
}
