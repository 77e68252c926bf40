// Command deich-demo-sites runs the two local sites of `make demo` until it is told to stop.
//
// It starts one control plane per site, sh-kiel and mv-schwerin: etcd and kube-apiserver (via
// internal/testenv), kube-controller-manager, kube-scheduler and kwok, with one fake node that
// kwok keeps Ready, so that pods of a Deployment are scheduled and become Ready as on a real
// cluster (no container runs). It writes an admin kubeconfig per site and, once every site is
// up, <dir>/ready. Installing Deich is left to hack/demo.sh, which does it with kubectl as a
// user would and then asks this program, through request files in <dir>/control, to start a
// site's Deich manager (the built bin/manager) or to take a site dark.
//
// On SIGINT or SIGTERM it stops the managers, then the rest of each control plane, removes
// <dir>/ready and exits 0.
//
// Requests (hack/demo.sh writes them; this program answers within a fraction of a second):
//
//	control/start-manager.<site>  content: the kubeconfig the manager runs with. Starts the
//	                              site's manager and waits for its /readyz.
//	control/dark.<site>           takes the site dark as a power cut would: its manager, kwok,
//	                              kube-scheduler and kube-controller-manager are killed, its
//	                              kube-apiserver stopped. Its etcd keeps the data, unreachable.
//
// A request file is removed when it is taken up; the answer is control/<request>.done, with
// key=value lines (for dark.<site>: dark=<when the first process was killed, RFC 3339>), or
// control/<request>.failed with the reason.
//
// Other files in --dir:
//
//	sh-kiel.kubeconfig, mv-schwerin.kubeconfig  admin kubeconfigs for the sites (0600)
//	ports.env                                   the managers' metrics and health addresses
//	processes                                   "<pid> <name>" of every child process
//	ready                                       exists while everything is up
//	logs/sites.log                              this program's log (hack/demo.sh sends it there)
//	logs/control-plane.log                      output of etcd and kube-apiserver
//	logs/<component>-<site>.log                 output of kube-controller-manager,
//	                                            kube-scheduler, kwok and manager per site
//	tmp/                                        the control planes' data and certificates
//
// Every process it starts has --dir in its command line (TMPDIR points into --dir, and every
// other process gets a kubeconfig from --dir), so `hack/demo.sh down` can find and stop
// leftovers even after this program was killed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
	// pollInterval is how often requests are looked for and children checked for being alive.
	pollInterval = 100 * time.Millisecond
)

// Binaries besides etcd and kube-apiserver that each site runs, from --bin.
const (
	kubeControllerManager = "kube-controller-manager"
	kubeScheduler         = "kube-scheduler"
	kwok                  = "kwok"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.String(slog.TimeKey, a.Value.Time().Format("15:04:05.000"))
			}
			return a
		},
	})))
	if err := run(); err != nil {
		if !errors.Is(err, errLogged) {
			slog.Error("demo sites failed", "err", err)
		}
		os.Exit(1)
	}
}

// errLogged is returned by run for an error it has already logged.
var errLogged = errors.New("failed")

// config holds the command-line flags.
type config struct {
	dir        string // DEMO_DIR
	bin        string // LOCALBIN: the control-plane binaries
	manager    string // the manager binary
	kwok       string // the kwok binary
	kwokStages string // kwok's Stage definitions
}

func parseFlags() (config, error) {
	var c config
	flag.StringVar(&c.dir, "dir", "", "Demo directory (DEMO_DIR): kubeconfigs, logs and control-plane data go here. Required.")
	flag.StringVar(&c.bin, "bin", "", "Directory with the etcd, kube-apiserver, kube-controller-manager and kube-scheduler binaries (LOCALBIN). Required.")
	flag.StringVar(&c.kwok, "kwok", "", "The kwok binary. Defaults to <bin>/kwok.")
	flag.StringVar(&c.manager, "manager", "", "The Deich manager binary. Defaults to <bin>/manager.")
	flag.StringVar(&c.kwokStages, "kwok-stages", "", "kwok's Stage definitions. Defaults to <repo>/hack/demo/kwok-stages.yaml.")
	flag.Parse()
	if c.dir == "" || c.bin == "" {
		return c, errors.New("--dir and --bin are required")
	}
	if c.manager == "" {
		c.manager = filepath.Join(c.bin, "manager")
	}
	if c.kwok == "" {
		c.kwok = filepath.Join(c.bin, kwok)
	}
	if c.kwokStages == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return c, fmt.Errorf("default for --kwok-stages: %w", err)
		}
		c.kwokStages = filepath.Join(root, "hack", "demo", "kwok-stages.yaml")
	}
	for _, p := range []*string{&c.dir, &c.bin, &c.manager, &c.kwok, &c.kwokStages} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	if _, err := os.Stat(c.manager); err != nil {
		return c, fmt.Errorf("manager binary: %w (run `make build`)", err)
	}
	for _, path := range []string{filepath.Join(c.bin, kubeControllerManager), filepath.Join(c.bin, kubeScheduler), c.kwok} {
		if _, err := os.Stat(path); err != nil {
			return c, fmt.Errorf("%w (run `make demo-tools`)", err)
		}
	}
	if _, err := os.Stat(c.kwokStages); err != nil {
		return c, fmt.Errorf("kwok stages: %w", err)
	}
	return c, nil
}

func run() error {
	cfg, err := parseFlags()
	if err != nil {
		return err
	}
	// Stop on SIGINT/SIGTERM, also while still starting: the signal is only noticed between
	// steps, but nothing is left behind.
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	logDir := filepath.Join(cfg.dir, "logs")
	tmpDir := filepath.Join(cfg.dir, "tmp")
	controlDir := filepath.Join(cfg.dir, "control")
	for _, d := range []string{logDir, tmpDir, controlDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	readyFile := filepath.Join(cfg.dir, "ready")
	if err := os.Remove(readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// envtest and testenv create their data and certificate directories with os.MkdirTemp;
	// keeping them under --dir puts --dir into every control-plane command line.
	if err := os.Setenv("TMPDIR", tmpDir); err != nil {
		return err
	}

	d := &demo{cfg: cfg, ctx: ctx, controlDir: controlDir, dark: map[string]bool{}}
	defer func() {
		if err := os.Remove(readyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Error("remove ready file", "err", err)
		}
		if err := d.shutdown(); err != nil {
			slog.Error("stop", "err", err)
		}
		slog.Info("stopped")
	}()

	if err := d.start(); err != nil {
		if ctx.Err() != nil {
			slog.Info("signal received while starting; stopping")
			return nil
		}
		// Log before the deferred shutdown, so the cause comes first in the log.
		slog.Error("start failed; stopping", "err", err)
		return errLogged
	}
	if err := os.WriteFile(readyFile, []byte(time.Now().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return err
	}
	slog.Info("ready", "dir", cfg.dir)

	d.serve()
	slog.Info("signal received; stopping managers and sites")
	return nil
}

// demo is the running set of sites and their processes.
type demo struct {
	cfg        config
	ctx        context.Context
	controlDir string

	env *testenv.Env
	// children are the processes started besides the control planes' etcd and
	// kube-apiserver, in start order.
	children []*child
	// dark records the sites taken dark.
	dark map[string]bool
}

// start brings up the sites: control planes, kube-controller-manager, kube-scheduler, kwok and
// a fake node each. It returns ctx.Err() when a signal arrived between steps.
func (d *demo) start() error {
	cpLog, err := os.Create(filepath.Join(d.cfg.dir, "logs", "control-plane.log"))
	if err != nil {
		return err
	}
	defer func() { _ = cpLog.Close() }() // the child processes hold their own descriptors

	slog.Info("starting control planes", "sites", strings.Join(testenv.DefaultSiteNames(), ","), "bin", d.cfg.bin)
	began := time.Now()
	d.env, err = testenv.Start(testenv.Options{
		BinaryAssetsDirectory: d.cfg.bin,
		ControlPlaneOutput:    cpLog,
	})
	// Record the control-plane processes at once, so `hack/demo.sh down` finds them even if
	// this program is killed from here on.
	d.recordProcesses()
	if err != nil {
		return err
	}
	for _, name := range testenv.DefaultSiteNames() {
		slog.Info("API server ready", "site", name, "url", d.env.Site(name).URL())
	}
	slog.Info("control planes started", "took", time.Since(began).Round(100*time.Millisecond))
	if err := d.ctx.Err(); err != nil {
		return err
	}

	for _, name := range testenv.DefaultSiteNames() {
		kubeconfig, err := d.env.Site(name).Kubeconfig()
		if err != nil {
			return err
		}
		if err := os.WriteFile(d.adminKubeconfig(name), kubeconfig, 0o600); err != nil {
			return fmt.Errorf("write kubeconfig: %w", err)
		}
		slog.Info("kubeconfig written", "site", name, "path", d.adminKubeconfig(name))
	}

	for i, name := range testenv.DefaultSiteNames() {
		if err := d.startSiteComponents(name, i); err != nil {
			return err
		}
	}
	d.recordProcesses()

	var wg sync.WaitGroup
	errs := make([]error, len(testenv.DefaultSiteNames()))
	for i, name := range testenv.DefaultSiteNames() {
		wg.Go(func() { errs[i] = d.waitSiteReady(name) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	slog.Info("sites started", "took", time.Since(began).Round(100*time.Millisecond))
	return d.ctx.Err()
}

// adminKubeconfig is the path of the admin kubeconfig of site.
func (d *demo) adminKubeconfig(site string) string {
	return filepath.Join(d.cfg.dir, site+".kubeconfig")
}

// startSiteComponents starts kube-controller-manager, kube-scheduler and kwok for site, the
// i-th site, and creates its fake node.
func (d *demo) startSiteComponents(site string, i int) error {
	kubeconfig := "--kubeconfig=" + d.adminKubeconfig(site)
	// Ports 0 switch the components' own HTTPS endpoints off: both sites run on one machine,
	// and nothing in the demo reads them.
	if _, err := d.startChild(kubeControllerManager, site, filepath.Join(d.cfg.bin, kubeControllerManager),
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
	if _, err := d.startChild(kubeScheduler, site, filepath.Join(d.cfg.bin, kubeScheduler),
		kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
	); err != nil {
		return err
	}
	if err := createNode(d.ctx, d.env.Site(site), nodeName(site)); err != nil {
		return err
	}
	if _, err := d.startChild(kwok, site, d.cfg.kwok,
		kubeconfig,
		"--config="+d.cfg.kwokStages,
		"--manage-nodes-with-annotation-selector="+kwokNodeAnnotation+"="+kwokNodeValue,
		// Pod IPs are made up; distinct ranges per site keep them apart in `kubectl get pods -o wide`.
		fmt.Sprintf("--cidr=10.%d.0.0/16", 10+i),
		fmt.Sprintf("--node-ip=10.%d.255.1", 10+i),
	); err != nil {
		return err
	}
	return nil
}

// waitSiteReady waits until the site's node is Ready (kwok runs) and kube-controller-manager
// has created the default ServiceAccount (it runs).
func (d *demo) waitSiteReady(site string) error {
	ctx, cancel := context.WithTimeout(d.ctx, siteReadyTimeout)
	defer cancel()
	s := d.env.Site(site)
	if err := waitNodeReady(ctx, s, nodeName(site)); err != nil {
		return fmt.Errorf("site %s: node %s not Ready (see %s): %w", site, nodeName(site), d.logPath(kwok, site), err)
	}
	slog.Info("node ready", "site", site, "node", nodeName(site))
	if err := waitDefaultServiceAccount(ctx, s); err != nil {
		return fmt.Errorf("site %s: kube-controller-manager did not create the default ServiceAccount (see %s): %w",
			site, d.logPath(kubeControllerManager, site), err)
	}
	slog.Info("controllers running", "site", site)
	return nil
}

// logPath is the log file of component at site.
func (d *demo) logPath(component, site string) string {
	return filepath.Join(d.cfg.dir, "logs", component+"-"+site+".log")
}

// startChild starts binary as component of site, logging to logs/<component>-<site>.log.
func (d *demo) startChild(component, site, binary string, args ...string) (*child, error) {
	c, err := startChild(component, site, binary, d.logPath(component, site), args...)
	if err != nil {
		return nil, err
	}
	d.children = append(d.children, c)
	slog.Info("started", "component", component, "site", site, "pid", c.pid(), "log", c.log)
	return c, nil
}

// serve answers requests and reports children that exit, until a signal arrives.
func (d *demo) serve() {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-ticker.C:
			for _, c := range d.children {
				if c.exitedUnexpectedly() {
					slog.Error("exited", "component", c.component, "site", c.site, "pid", c.pid(), "status", c.status(), "log", c.log)
				}
			}
			d.handleRequests()
		}
	}
}

// handleRequests takes up the request files in the control directory.
func (d *demo) handleRequests() {
	entries, err := os.ReadDir(d.controlDir)
	if err != nil {
		slog.Error("read control directory", "err", err)
		return
	}
	for _, e := range entries {
		verb, site, ok := strings.Cut(e.Name(), ".")
		if !ok || strings.Contains(site, ".") {
			continue // an answer, or not ours
		}
		path := filepath.Join(d.controlDir, e.Name())
		content, err := os.ReadFile(path) //nolint:gosec // G304: a request file in the demo's own control directory.
		if err != nil {
			slog.Error("read request", "request", e.Name(), "err", err)
			continue
		}
		if err := os.Remove(path); err != nil {
			slog.Error("take up request", "request", e.Name(), "err", err)
			continue
		}
		slog.Info("request", "request", e.Name())
		var answer string
		switch {
		case d.env.Site(site) == nil:
			err = fmt.Errorf("no site %q", site)
		case verb == "start-manager":
			answer, err = d.startManager(site, strings.TrimSpace(string(content)))
		case verb == "dark":
			answer, err = d.takeDark(site)
		default:
			err = fmt.Errorf("unknown request %q", verb)
		}
		if err != nil {
			slog.Error("request failed", "request", e.Name(), "err", err)
			writeAnswer(path+".failed", err.Error()+"\n")
			continue
		}
		writeAnswer(path+".done", answer)
	}
}

// writeAnswer writes an answer file atomically, so hack/demo.sh never reads half of it.
func writeAnswer(path, content string) {
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		slog.Error("write answer", "path", path, "err", err)
		return
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		slog.Error("write answer", "path", path, "err", err)
	}
}

// startManager starts the Deich manager of site with the given kubeconfig, on free loopback
// ports, and waits until it is ready.
func (d *demo) startManager(site, kubeconfig string) (string, error) {
	if d.dark[site] {
		return "", fmt.Errorf("site %s is dark", site)
	}
	for _, c := range d.children {
		if c.component == "manager" && c.site == site && !c.exited() {
			return "", fmt.Errorf("the manager of site %s runs already (pid %d)", site, c.pid())
		}
	}
	if kubeconfig == "" {
		return "", errors.New("no kubeconfig given")
	}
	ports, err := freePorts(2)
	if err != nil {
		return "", err
	}
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	health := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	c, err := d.startChild("manager", site, d.cfg.manager,
		"--site="+site,
		"--kubeconfig="+kubeconfig,
		"--namespace="+operator.DefaultNamespace,
		"--metrics-bind-address="+metrics,
		"--health-probe-bind-address="+health,
	)
	if err != nil {
		return "", err
	}
	c.addrs = map[string]string{"METRICS": metrics, "HEALTH": health}
	d.recordProcesses()
	if err := d.writePorts(); err != nil {
		return "", err
	}
	if err := d.waitManagerReady(c, health); err != nil {
		return "", err
	}
	slog.Info("manager ready", "site", site, "pid", c.pid(), "health", health)
	return fmt.Sprintf("pid=%d\nmetrics=%s\nhealth=%s\n", c.pid(), metrics, health), nil
}

// waitManagerReady polls the manager's /readyz until it answers 200 OK.
func (d *demo) waitManagerReady(c *child, health string) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + health + "/readyz"
	deadline := time.Now().Add(managerReadyTimeout)
	for {
		req, err := http.NewRequestWithContext(d.ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if c.exited() {
			return fmt.Errorf("manager of site %s exited while starting (%s); see %s", c.site, c.status(), c.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("manager of site %s not ready after %s; see %s", c.site, managerReadyTimeout, c.log)
		}
		select {
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// takeDark takes site dark as a power cut would: every process of the site is killed at once,
// except kube-apiserver, which is stopped (it is killed after a short grace period) and etcd,
// which keeps the data but is reachable only through the stopped API server.
func (d *demo) takeDark(site string) (string, error) {
	if d.dark[site] {
		return "", fmt.Errorf("site %s is dark already", site)
	}
	d.dark[site] = true
	dark := time.Now()
	var wg sync.WaitGroup
	for _, c := range d.children {
		if c.site == site && !c.exited() {
			wg.Go(func() {
				if err := c.kill(); err != nil {
					slog.Error("kill", "component", c.component, "site", site, "err", err)
				}
			})
		}
	}
	wg.Wait()
	if err := d.env.Site(site).StopAPIServer(); err != nil {
		return "", err
	}
	stopped := time.Now()
	slog.Info("site dark", "site", site, "took", stopped.Sub(dark).Round(time.Millisecond))
	return fmt.Sprintf("dark=%s\nstopped=%s\n", dark.UTC().Format(time.RFC3339Nano), stopped.UTC().Format(time.RFC3339Nano)), nil
}

// shutdown stops the managers, then the other components, then the control planes.
func (d *demo) shutdown() error {
	var (
		mu   sync.Mutex
		errs []error
	)
	stop := func(pick func(*child) bool) {
		var wg sync.WaitGroup
		for _, c := range d.children {
			if !pick(c) || c.exited() {
				continue
			}
			wg.Go(func() {
				if err := c.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				slog.Info("stopped", "component", c.component, "site", c.site)
			})
		}
		wg.Wait()
	}
	stop(func(c *child) bool { return c.component == "manager" })
	stop(func(c *child) bool { return c.component != "manager" })
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			errs = append(errs, err)
		} else {
			slog.Info("control planes stopped")
		}
	}
	return errors.Join(errs...)
}

// writePorts writes the managers' addresses to <dir>/ports.env, one KEY=VALUE a line.
func (d *demo) writePorts() error {
	var b strings.Builder
	b.WriteString("# The Deich managers' metrics and health-probe addresses, per site.\n")
	for _, c := range d.children {
		if c.component != "manager" {
			continue
		}
		key := strings.ToUpper(strings.ReplaceAll(c.site, "-", "_"))
		for _, k := range slices.Sorted(maps.Keys(c.addrs)) {
			fmt.Fprintf(&b, "%s_%s=%s\n", key, k, c.addrs[k])
		}
	}
	path := filepath.Join(d.cfg.dir, "ports.env")
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// recordProcesses writes "<pid> <name>" of every child process to <dir>/processes, for
// `hack/demo.sh down` should this program be killed. A failure is only logged: down also finds
// the processes by their command lines.
func (d *demo) recordProcesses() {
	children, err := childProcesses(os.Getpid())
	if err != nil {
		slog.Warn("record child processes", "err", err)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d deich-demo-sites\n", os.Getpid())
	for _, c := range children {
		fmt.Fprintf(&b, "%d %s\n", c.pid, c.name)
	}
	path := filepath.Join(d.cfg.dir, "processes")
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		slog.Warn("record child processes", "err", err)
		return
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		slog.Warn("record child processes", "err", err)
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1. They are free when returned;
// another process could take one before it is used, which is unlikely on a developer machine.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
