// Package quorum holds the fault matrix of the quorum lease: three real control planes — the
// partners sh-kiel and mv-schwerin, each with a manager, and the witness hh-hamburg, which runs
// none — and one fault per test: the standby site lost, the witness lost, the witness cut off,
// either partner's link to the witness cut, the link between the partners cut, the active site
// cut off from both others, and the active site lost whole twice in turn, each time after the
// other partner had taken over. Every
// connection from one site to another goes through the testenv link between them, so a test
// cuts exactly the pair it names. Throughout each test an invariant checker samples both
// partners for an instant in which both hold the service's Deployment in its active form.
package quorum

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
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

// The three sites and the partners' managers.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site
	witness  *testenv.Witness

	managersMu sync.Mutex
	managers   = map[string][]*replica{}
	// replicaCount is how many manager binaries run per partner; 0 runs one in-process
	// manager without leader election instead.
	replicaCount int
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
	if workDir, err = os.MkdirTemp("", "deich-quorum-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := 1
	defer func() {
		if code == 0 {
			_ = os.RemoveAll(workDir) // best effort: a temporary directory
		} else {
			fmt.Fprintln(os.Stderr, "manager binaries' kubeconfigs and logs kept in", workDir)
		}
	}()
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
	ctx := context.Background()
	if witness, err = env.StartWitness(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := env.Link(kiel.Name, schwerin.Name).Connect(ctx, managerNamespace, time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := startManager(site); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code = m.Run()
	return code
}

// startManager starts what runs at site as its manager: one in-process manager, or, while a
// test runs with replicas (useReplicas), that many manager binaries electing a leader.
func startManager(site *testenv.Site) error {
	managersMu.Lock()
	n := replicaCount
	managersMu.Unlock()
	if n == 0 {
		mgr, err := testenv.StartManager(site, operator.Options{MaxClockSkew: maxClockSkew})
		if err != nil {
			return err
		}
		managersMu.Lock()
		managers[site.Name] = []*replica{{Manager: mgr}}
		managersMu.Unlock()
		return nil
	}
	for range n {
		if err := startReplica(site); err != nil {
			return err
		}
	}
	return nil
}

// stopManager stops every manager of site, if any runs.
func stopManager(site *testenv.Site) error {
	managersMu.Lock()
	running := managers[site.Name]
	delete(managers, site.Name)
	managersMu.Unlock()
	var errs []error
	for _, r := range running {
		errs = append(errs, r.Stop())
	}
	return errors.Join(errs...)
}

// managerRunning reports whether a manager runs at site.
func managerRunning(site *testenv.Site) bool {
	managersMu.Lock()
	defer managersMu.Unlock()
	return len(managers[site.Name]) > 0
}

func stopManagers() {
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := stopManager(site); err != nil {
			fmt.Fprintln(os.Stderr, "stop manager:", err)
		}
	}
}

// loseSite takes site's data centre down: its manager and its API server stop. The returned
// function brings both back; it is also registered as a cleanup, and does nothing the second
// time.
func loseSite(t testing.TB, site *testenv.Site) (bringBack func() error) {
	t.Helper()
	if err := stopManager(site); err != nil {
		t.Fatalf("stop the manager of %s: %v", site.Name, err)
	}
	if err := site.StopAPIServer(); err != nil {
		t.Fatalf("stop the API server of %s: %v", site.Name, err)
	}
	var once sync.Once
	var err error
	bringBack = func() error {
		once.Do(func() {
			err = site.StartAPIServer()
			if err == nil && !managerRunning(site) {
				err = startManager(site)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := bringBack(); err != nil {
			t.Errorf("bring %s back: %v", site.Name, err)
		}
	})
	return bringBack
}

// loseWitness takes the witness's data centre down: its API server stops. The returned
// function brings it back; it is also registered as a cleanup, and does nothing the second
// time.
func loseWitness(t testing.TB) (bringBack func() error) {
	t.Helper()
	if err := witness.Site.StopAPIServer(); err != nil {
		t.Fatalf("stop the API server of %s: %v", witness.Site.Name, err)
	}
	var once sync.Once
	var err error
	bringBack = func() error {
		once.Do(func() { err = witness.Site.StartAPIServer() })
		return err
	}
	t.Cleanup(func() {
		if err := bringBack(); err != nil {
			t.Errorf("bring %s back: %v", witness.Site.Name, err)
		}
	})
	return bringBack
}

// cut cuts the links between from and each of the others. The returned function restores
// them; it is also registered as a cleanup.
func cut(t testing.TB, from string, others ...string) (restore func()) {
	t.Helper()
	links := make([]*testenv.Link, 0, len(others))
	for _, o := range others {
		l := env.Link(from, o)
		if l == nil {
			t.Fatalf("no link between %s and %s", from, o)
		}
		links = append(links, l)
	}
	for _, l := range links {
		l.Cut()
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			for _, l := range links {
				l.Restore()
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// requireSites skips a test when the sites are not running (go test -short).
func requireSites(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("fault test: needs real API servers (not run with -short)")
	}
}
