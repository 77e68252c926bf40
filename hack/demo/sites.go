package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
)

const (
	// managerReadyTimeout bounds the wait for a manager's /readyz after its start.
	managerReadyTimeout = 60 * time.Second
	// siteReadyTimeout bounds the wait for a site's node to become Ready and for
	// kube-controller-manager to do its first work.
	siteReadyTimeout = 90 * time.Second
)

// Binaries besides etcd and kube-apiserver that each partner site runs, from --bin.
const (
	kubeControllerManager = "kube-controller-manager"
	kubeScheduler         = "kube-scheduler"
	kwok                  = "kwok"
	manager               = "manager"
)

// partners are the two sites that share the service; the witness is testenv.SiteHamburg.
var partners = []string{testenv.SiteKiel, testenv.SiteSchwerin}

// sites runs the demo's control planes and the processes of each partner site: a power cut
// takes a site dark, and it can come back.
type sites struct {
	cfg config
	env *testenv.Env

	mu sync.Mutex
	// children are the processes started besides the control planes, in start order.
	children []*child
	// dark records the sites taken dark.
	dark map[string]bool
	// managerKubeconfig is the kubeconfig each partner's manager runs with.
	managerKubeconfig map[string]string
	// addrs holds each manager's metrics and health addresses.
	addrs map[string][2]string
}

// start brings up the partner sites: control planes, kube-controller-manager, kube-scheduler,
// kwok and a fake node each. The witness comes later, with Deich's objects at the partners.
func (s *sites) start(ctx context.Context, out *teller) error {
	cpLog, err := os.Create(s.cfg.logPath("control-plane.log"))
	if err != nil {
		return err
	}
	defer func() { _ = cpLog.Close() }() // the child processes hold their own descriptors

	began := time.Now()
	s.env, err = testenv.Start(testenv.Options{
		BinaryAssetsDirectory: s.cfg.bin,
		ControlPlaneOutput:    cpLog,
		Scheme:                operator.NewScheme(),
	}, partners...)
	// Record the control-plane processes at once, so that `down` finds them even if this
	// process is killed from here on.
	s.recordProcesses()
	if err != nil {
		return err
	}
	out.say("API servers ready after %s: %s at %s, %s at %s", time.Since(began).Round(100*time.Millisecond),
		partners[0], s.env.Site(partners[0]).URL(), partners[1], s.env.Site(partners[1]).URL())
	for _, name := range partners {
		if err := s.writeAdminKubeconfig(name); err != nil {
			return err
		}
	}
	for i, name := range partners {
		if err := s.startComponents(ctx, name, i); err != nil {
			return err
		}
	}
	s.recordProcesses()
	var wg sync.WaitGroup
	errs := make([]error, len(partners))
	for i, name := range partners {
		wg.Go(func() { errs[i] = s.waitSiteReady(ctx, name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	out.say("Sites running after %s: nodes Ready, controllers and schedulers at work", time.Since(began).Round(100*time.Millisecond))
	return s.writeState()
}

// writeAdminKubeconfig writes the admin kubeconfig of site into the demo directory.
func (s *sites) writeAdminKubeconfig(site string) error {
	kubeconfig, err := s.env.Site(site).Kubeconfig()
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.adminKubeconfig(site), kubeconfig, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// adminKubeconfig is the path of the admin kubeconfig of site.
func (s *sites) adminKubeconfig(site string) string {
	return s.cfg.path(site + ".kubeconfig")
}

// startComponents starts kube-controller-manager, kube-scheduler and kwok for site, the i-th
// partner, and registers its fake node.
func (s *sites) startComponents(ctx context.Context, site string, i int) error {
	kubeconfig := "--kubeconfig=" + s.adminKubeconfig(site)
	// Ports 0 switch the components' own HTTPS endpoints off: the sites run on one machine,
	// and nothing in the demo reads them.
	if _, err := s.startChild(kubeControllerManager, site, filepath.Join(s.cfg.bin, kubeControllerManager),
		kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		// The built-in controllers act with the admin credentials; the token controller is
		// left out because it needs the API server's service-account signing key, and pods
		// get their tokens from the TokenRequest API anyway.
		"--use-service-account-credentials=false",
		"--controllers=*,-serviceaccount-token-controller",
		"--cluster-name="+site,
	); err != nil {
		return err
	}
	if _, err := s.startChild(kubeScheduler, site, filepath.Join(s.cfg.bin, kubeScheduler),
		kubeconfig, "--leader-elect=false", "--secure-port=0"); err != nil {
		return err
	}
	if err := createNode(ctx, s.env.Site(site), nodeName(site)); err != nil {
		return err
	}
	_, err := s.startChild(kwok, site, s.cfg.kwok,
		kubeconfig,
		"--config="+s.cfg.kwokStages,
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"="+kwokNodeValue,
		// The node's heartbeat is its Lease in kube-node-lease, as a kubelet's is; without one,
		// kube-controller-manager marks the node NotReady after its grace period, and with it
		// the pods.
		"--node-lease-duration-seconds=40",
		// Pod IPs are made up; distinct ranges per site keep them apart in `kubectl get pods -o wide`.
		fmt.Sprintf("--cidr=10.%d.0.0/16", 10+i),
		fmt.Sprintf("--node-ip=10.%d.255.1", 10+i),
	)
	return err
}

// waitSiteReady waits until the site's node is Ready (kwok runs) and kube-controller-manager
// has created the default ServiceAccount (it runs).
func (s *sites) waitSiteReady(ctx context.Context, site string) error {
	ctx, cancel := context.WithTimeout(ctx, siteReadyTimeout)
	defer cancel()
	if err := waitNodeReady(ctx, s.env.Site(site), nodeName(site)); err != nil {
		return fmt.Errorf("site %s: node %s not Ready (see %s): %w", site, nodeName(site), s.cfg.logPath(kwok+"-"+site+".log"), err)
	}
	if err := waitDefaultServiceAccount(ctx, s.env.Site(site)); err != nil {
		return fmt.Errorf("site %s: kube-controller-manager did not create the default ServiceAccount (see %s): %w",
			site, s.cfg.logPath(kubeControllerManager+"-"+site+".log"), err)
	}
	return nil
}

// startChild starts binary as component of site, logging to logs/<component>-<site>.log.
func (s *sites) startChild(component, site, binary string, args ...string) (*child, error) {
	c, err := startChild(component, site, binary, s.cfg.logPath(component+"-"+site+".log"), args...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	slog.Info("started", "component", component, "site", site, "pid", c.pid())
	return c, nil
}

// startManager starts the Deich manager of site with kubeconfig on free loopback ports and
// waits until it is ready.
func (s *sites) startManager(ctx context.Context, site, kubeconfig string) (*child, error) {
	metrics, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	health, err := testenv.FreeAddr()
	if err != nil {
		return nil, err
	}
	c, err := s.startChild(manager, site, s.cfg.manager,
		"--site="+site,
		"--kubeconfig="+kubeconfig,
		"--namespace="+operator.DefaultNamespace,
		"--metrics-bind-address="+metrics,
		"--health-probe-bind-address="+health,
	)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.managerKubeconfig[site] = kubeconfig
	s.addrs[site] = [2]string{metrics, health}
	s.mu.Unlock()
	s.recordProcesses()
	if err := s.writeState(); err != nil {
		return nil, err
	}
	return c, waitManagerReady(ctx, c, health)
}

// waitManagerReady polls the manager's /readyz until it answers 200 OK.
func waitManagerReady(ctx context.Context, c *child, health string) error {
	client := &http.Client{Timeout: time.Second}
	ctx, cancel := context.WithTimeout(ctx, managerReadyTimeout)
	defer cancel()
	return poll(ctx, func() (bool, error) {
		if c.exited() {
			return false, fmt.Errorf("%w: the manager of site %s exited while starting (%s); see %s", errGiveUp, c.site, c.status(), c.log)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+health+"/readyz", nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// takeDark takes site dark as a power cut would: every process of the site is killed at once,
// except kube-apiserver, which is stopped (it is killed after a short grace period), and etcd,
// which keeps the data but is reachable only through the stopped API server. It returns when
// the first process was killed and when the last had stopped.
func (s *sites) takeDark(site string) (time.Time, time.Time, error) {
	s.mu.Lock()
	if s.dark[site] {
		s.mu.Unlock()
		return time.Time{}, time.Time{}, fmt.Errorf("site %s is dark already", site)
	}
	s.dark[site] = true
	children := s.children
	s.mu.Unlock()
	dark := time.Now()
	var wg sync.WaitGroup
	for _, c := range children {
		if c.site == site && !c.exited() {
			wg.Go(func() {
				if err := c.kill(); err != nil {
					slog.Error("kill", "component", c.component, "site", site, "err", err)
				}
				slog.Info("killed", "component", c.component, "site", site, "after", time.Since(dark))
			})
		}
	}
	wg.Wait()
	if err := s.env.Site(site).StopAPIServer(); err != nil {
		return dark, time.Now(), err
	}
	slog.Info("stopped", "component", "kube-apiserver", "site", site, "after", time.Since(dark))
	return dark, time.Now(), s.writeState()
}

// bringBack powers site on again after takeDark: its API server starts on the same address with
// the data etcd kept, then its controllers, scheduler, kwok and (for a partner) its Deich
// manager, with the kubeconfig it ran with before.
func (s *sites) bringBack(ctx context.Context, site string) error {
	s.mu.Lock()
	wasDark := s.dark[site]
	kubeconfig := s.managerKubeconfig[site]
	s.mu.Unlock()
	if !wasDark {
		return fmt.Errorf("site %s is not dark", site)
	}
	if err := s.env.Site(site).StartAPIServer(); err != nil {
		return err
	}
	// The same pod IP range as before.
	if err := s.startComponents(ctx, site, slices.Index(partners, site)); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.dark, site)
	s.mu.Unlock()
	if err := s.waitSiteReady(ctx, site); err != nil {
		return err
	}
	if kubeconfig != "" {
		if _, err := s.startManager(ctx, site, kubeconfig); err != nil {
			return err
		}
	}
	s.recordProcesses()
	return s.writeState()
}

// isDark reports whether site is dark.
func (s *sites) isDark(site string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dark[site]
}

// reportExits logs, once each, the processes that exited without being told to.
func (s *sites) reportExits() {
	s.mu.Lock()
	children := s.children
	s.mu.Unlock()
	for _, c := range children {
		if c.exitedUnexpectedly() {
			slog.Error("exited", "component", c.component, "site", c.site, "pid", c.pid(), "status", c.status(), "log", c.log)
		}
	}
}

// shutdown stops the managers, then the other components, then the control planes.
func (s *sites) shutdown() error {
	var (
		mu   sync.Mutex
		errs []error
	)
	s.mu.Lock()
	children := s.children
	s.mu.Unlock()
	stop := func(pick func(*child) bool) {
		var wg sync.WaitGroup
		for _, c := range children {
			if !pick(c) || c.exited() {
				continue
			}
			wg.Go(func() {
				if err := c.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	stop(func(c *child) bool { return c.component == manager })
	stop(func(c *child) bool { return c.component != manager })
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// state is what state.json holds: what `up` shows of a running demo.
type state struct {
	Sites []siteState `json:"sites"`
}

// siteState is one site in state.json.
type siteState struct {
	Name    string `json:"name"`
	Witness bool   `json:"witness,omitempty"`
	Dark    bool   `json:"dark,omitempty"`
	Metrics string `json:"metrics,omitempty"`
	Health  string `json:"health,omitempty"`
}

// writeState writes state.json.
func (s *sites) writeState() error {
	s.mu.Lock()
	var st state
	names := append([]string(nil), partners...)
	if s.env != nil && s.env.Witness() != nil {
		names = append(names, testenv.SiteHamburg)
	}
	for _, name := range names {
		st.Sites = append(st.Sites, siteState{
			Name: name, Witness: name == testenv.SiteHamburg, Dark: s.dark[name],
			Metrics: s.addrs[name][0], Health: s.addrs[name][1],
		})
	}
	s.mu.Unlock()
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.cfg.path("state.json"), string(data)+"\n")
}

// readState reads state.json.
func readState(cfg config) (state, error) {
	var st state
	data, err := os.ReadFile(cfg.path("state.json"))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(data, &st)
}

// recordProcesses writes "<pid> <name>" of every child process to the processes file, for
// `down` should this process be killed. A failure is only logged: `down` also finds the
// processes by their command lines.
func (s *sites) recordProcesses() {
	children, err := childProcesses(os.Getpid())
	if err != nil {
		slog.Warn("record child processes", "err", err)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d deich-demo\n", os.Getpid())
	for _, c := range children {
		fmt.Fprintf(&b, "%d %s\n", c.pid, c.name)
	}
	if err := writeFileAtomic(s.cfg.path("processes"), b.String()); err != nil {
		slog.Warn("record child processes", "err", err)
	}
}
