// Package scale holds Deich's tests of a state's catalogue rather than one service: many
// SharedServices applied at once on two real control planes with a manager per site, watched
// for a healthy service that is ever fenced, and failed over together when a site is lost.
package scale

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// The two sites and their managers, which run with the defaults a new user gets.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site
	managers = testenv.NewManagers(operator.Options{MaxClockSkew: operator.DefaultMaxClockSkew})
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
		if err := managers.StopAll(); err != nil {
			fmt.Fprintln(os.Stderr, "stop managers:", err)
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
		if err := managers.Start(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// requireSites skips a test when the sites are not running (go test -short).
func requireSites(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("scale test: needs real API servers (not run with -short)")
	}
}
