package quorum

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
)

// Leader election timings of the replicas: short enough for the services' 6s lease, so that
// a killed leader's successor renews it before the partner may take it over (the manager
// reports LeaderElectionTooSlow on the objective otherwise).
const (
	electionLease    = 2 * time.Second
	electionRenew    = 1500 * time.Millisecond
	electionRetry    = 250 * time.Millisecond
	electionLeaseTag = `name="` + operator.DefaultLeaderElectionID + `"`
)

// replica is one manager of a partner: the in-process manager, or one of several manager
// binaries that elect a leader, with its metrics endpoint and log. A binary reaches its own
// site's API server through a proxy of its own, so that a test can cut one replica off from
// it while the others and every other site still reach it.
type replica struct {
	*testenv.Manager
	metricsAddr string
	log         string
	// own is the replica's way to its own API server; nil for the in-process manager.
	own *testenv.Proxy
}

// Stop stops the replica and closes its proxy.
func (r *replica) Stop() error {
	err := r.Manager.Stop()
	if r.own != nil {
		err = errors.Join(err, r.own.Close())
	}
	return err
}

// Kill kills the replica and closes its proxy.
func (r *replica) Kill() error {
	err := r.Manager.Kill()
	if r.own != nil {
		err = errors.Join(err, r.own.Close())
	}
	return err
}

var (
	// workDir holds the manager binary and the replicas' kubeconfigs and logs.
	workDir string

	buildOnce     sync.Once
	managerBinary string
	buildErr      error
	replicaSeq    atomic.Int32
)

// buildManager builds the manager binary once per run of the package.
func buildManager() (string, error) {
	buildOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildErr = err
			return
		}
		managerBinary = filepath.Join(workDir, "manager")
		buildErr = testenv.BuildManager(root, managerBinary)
	})
	return managerBinary, buildErr
}

// startReplica starts one more manager binary at site, with leader election.
func startReplica(site *testenv.Site) error {
	binary, err := buildManager()
	if err != nil {
		return err
	}
	addr, err := testenv.FreeAddr()
	if err != nil {
		return err
	}
	dir := filepath.Join(workDir, site.Name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	log := filepath.Join(dir, fmt.Sprintf("manager-%d.log", replicaSeq.Add(1)))
	own, err := testenv.NewProxy(strings.TrimPrefix(site.URL(), "https://"))
	if err != nil {
		return err
	}
	kubeconfig, err := site.KubeconfigFor(own.URL())
	if err != nil {
		return errors.Join(err, own.Close())
	}
	m, err := testenv.StartManagerBinaryWithKubeconfig(site, kubeconfig, binary, dir, log,
		"--max-clock-skew="+maxClockSkew.String(),
		"--metrics-bind-address="+addr,
		"--leader-elect",
		"--leader-elect-lease-duration="+electionLease.String(),
		"--leader-elect-renew-deadline="+electionRenew.String(),
		"--leader-elect-retry-period="+electionRetry.String(),
	)
	if err != nil {
		return errors.Join(err, own.Close())
	}
	managersMu.Lock()
	managers[site.Name] = append(managers[site.Name], &replica{Manager: m, metricsAddr: addr, log: log, own: own})
	managersMu.Unlock()
	return nil
}

// useReplicas replaces both partners' in-process managers with n manager binaries each,
// electing a leader per site, until the test ends; then the in-process managers return.
func useReplicas(t *testing.T, g Gomega, n int) {
	t.Helper()
	stopManagers()
	managersMu.Lock()
	replicaCount = n
	managersMu.Unlock()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager replica logs:%s", replicaLogs())
		}
		stopManagers()
		managersMu.Lock()
		replicaCount = 0
		managersMu.Unlock()
		for _, site := range []*testenv.Site{kiel, schwerin} {
			if err := startManager(site); err != nil {
				t.Errorf("start the in-process manager of %s again: %v", site.Name, err)
			}
		}
	})
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Expect(startManager(site)).To(Succeed(), "start %d manager replicas at %s", n, site.Name)
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(func() (*replica, error) { return leader(context.Background(), site) }).WithTimeout(30*time.Second).
			ShouldNot(BeNil(), "one replica at %s is elected", site.Name)
	}
}

// leader returns the replica of site that reports itself leader of the election Lease
// (controller-runtime's leader_election_master_status), or nil when none does.
func leader(ctx context.Context, site *testenv.Site) (*replica, error) {
	managersMu.Lock()
	running := append([]*replica(nil), managers[site.Name]...)
	managersMu.Unlock()
	var found *replica
	for _, r := range running {
		ctx, cancel := context.WithTimeout(ctx, readTimeout)
		v, err := testenv.ScrapeSum(ctx, r.metricsAddr, "leader_election_master_status", electionLeaseTag)
		cancel()
		if err != nil || v != 1 {
			continue // starting, or not the leader
		}
		if found != nil {
			return nil, fmt.Errorf("two replicas at %s report themselves leader: %s and %s", site.Name, found.log, r.log)
		}
		found = r
	}
	return found, nil
}

// killLeader kills the elected replica of site with SIGKILL, as a crashed node would, and
// starts a new replica in its place, as its ReplicaSet would. It returns once a replica
// leads again.
func killLeader(ctx context.Context, t *testing.T, g Gomega, site *testenv.Site) {
	t.Helper()
	r := awaitLeader(ctx, g, site, "a replica leads")
	g.Expect(r.Kill()).To(Succeed(), "kill the leader at %s", site.Name)
	killed := time.Now()
	forget(site, r)
	t.Logf("killed the leader at %s (log %s)", site.Name, r.log)
	g.Expect(startReplica(site)).To(Succeed(), "start a replica in place of the killed leader at %s", site.Name)
	next := awaitLeader(ctx, g, site, "another replica is elected")
	t.Logf("a new leader at %s after %s (log %s)", site.Name, time.Since(killed).Round(time.Millisecond), next.log)
}

// awaitLeader waits up to 30s until a replica of site leads, and returns it; what says what the
// wait is for, in a failure.
func awaitLeader(ctx context.Context, g Gomega, site *testenv.Site, what string) *replica {
	var r *replica
	g.Eventually(func() (*replica, error) {
		var err error
		r, err = leader(ctx, site)
		return r, err
	}).WithTimeout(30*time.Second).ShouldNot(BeNil(), "%s at %s", what, site.Name)
	return r
}

// forget removes r from the replicas of site, once it has been killed or has exited.
func forget(site *testenv.Site, r *replica) {
	managersMu.Lock()
	defer managersMu.Unlock()
	rest := managers[site.Name][:0]
	for _, o := range managers[site.Name] {
		if o != r {
			rest = append(rest, o)
		}
	}
	managers[site.Name] = rest
}

// replicaLogs names the replicas' log files, for a failing test's output.
func replicaLogs() string {
	managersMu.Lock()
	defer managersMu.Unlock()
	var out string
	for site, rs := range managers {
		for _, r := range rs {
			if r.log != "" {
				out += " " + site + ":" + r.log
			}
		}
	}
	return out
}
