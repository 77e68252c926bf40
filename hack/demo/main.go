// Command deich-demo-sites runs the two local sites of `make demo` until it is told to stop.
//
// It starts one control plane (etcd + kube-apiserver, via internal/testenv) per site, sh-kiel
// and mv-schwerin, installs Deich's CRDs, writes a kubeconfig per site, creates the namespace
// deich-system and runs one Deich manager (the built bin/manager) per site. When everything is
// up it writes <dir>/ready; on SIGINT or SIGTERM it stops the managers and the control planes,
// removes <dir>/ready and exits 0. hack/demo.sh starts it in the background and then connects
// the sites with kubectl, as a user would.
//
// Files in --dir:
//
//	sh-kiel.kubeconfig, mv-schwerin.kubeconfig  admin kubeconfigs for the sites (0600)
//	ports.env                                   the managers' metrics and health addresses
//	processes                                   "<pid> <name>" of every child process
//	ready                                       exists while everything is up
//	logs/control-plane.log                      output of etcd and kube-apiserver
//	logs/manager-<site>.log                     output of each manager
//	tmp/                                        the control planes' data and certificates
//
// Every process it starts has --dir in its command line (TMPDIR points into --dir), so
// `hack/demo.sh down` can find and stop leftovers even after this program was killed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
)

const (
	// managerReadyTimeout bounds the wait for a manager's /readyz after its start.
	managerReadyTimeout = 60 * time.Second
	// watchInterval is how often the managers are checked for being alive.
	watchInterval = time.Second
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
	dir     string // DEMO_DIR
	bin     string // LOCALBIN: etcd and kube-apiserver
	manager string // the manager binary
	crds    string // CRD manifests
}

func parseFlags() (config, error) {
	var c config
	flag.StringVar(&c.dir, "dir", "", "Demo directory (DEMO_DIR): kubeconfigs, logs and control-plane data go here. Required.")
	flag.StringVar(&c.bin, "bin", "", "Directory with the etcd and kube-apiserver binaries (LOCALBIN). Required.")
	flag.StringVar(&c.manager, "manager", "", "The Deich manager binary. Defaults to <bin>/manager.")
	flag.StringVar(&c.crds, "crds", "", "Directory with Deich's CRD manifests. Defaults to <repo>/config/crd/bases.")
	flag.Parse()
	if c.dir == "" || c.bin == "" {
		return c, errors.New("--dir and --bin are required")
	}
	if c.manager == "" {
		c.manager = filepath.Join(c.bin, "manager")
	}
	if c.crds == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return c, fmt.Errorf("default for --crds: %w", err)
		}
		c.crds = filepath.Join(root, "config", "crd", "bases")
	}
	for _, p := range []*string{&c.dir, &c.bin, &c.manager, &c.crds} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	if _, err := os.Stat(c.manager); err != nil {
		return c, fmt.Errorf("manager binary: %w (run `make build`)", err)
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
	for _, d := range []string{logDir, tmpDir} {
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

	d := &demo{cfg: cfg, ctx: ctx}
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

	d.watch()
	slog.Info("signal received; stopping managers and sites")
	return nil
}

// demo is the running set of sites and managers.
type demo struct {
	cfg config
	ctx context.Context

	env      *testenv.Env
	managers []*managerProc
}

// managerProc is one manager child process.
type managerProc struct {
	site    string
	m       *testenv.Manager
	pid     int
	log     string
	metrics string
	health  string
	exited  bool
}

// start brings up the sites and managers. It returns ctx.Err() when a signal arrived between
// steps.
func (d *demo) start() error {
	cpLog, err := os.Create(filepath.Join(d.cfg.dir, "logs", "control-plane.log"))
	if err != nil {
		return err
	}
	defer func() { _ = cpLog.Close() }() // the child processes hold their own descriptors

	slog.Info("starting sites", "sites", strings.Join(testenv.DefaultSiteNames(), ","), "bin", d.cfg.bin, "crds", d.cfg.crds)
	began := time.Now()
	d.env, err = testenv.Start(testenv.Options{
		CRDDirectoryPaths:     []string{d.cfg.crds},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: d.cfg.bin,
		ControlPlaneOutput:    cpLog,
	})
	// Record the control-plane processes at once, so `hack/demo.sh down` finds them even if
	// this program is killed from here on.
	if recErr := d.recordProcesses(); recErr != nil {
		slog.Warn("record child processes", "err", recErr)
	}
	if err != nil {
		return err
	}
	for _, name := range testenv.DefaultSiteNames() {
		slog.Info("site started", "site", name, "url", d.env.Site(name).URL())
	}
	slog.Info("sites started", "took", time.Since(began).Round(100*time.Millisecond))
	if err := d.ctx.Err(); err != nil {
		return err
	}

	for _, name := range testenv.DefaultSiteNames() {
		site := d.env.Site(name)
		kubeconfig, err := site.Kubeconfig()
		if err != nil {
			return err
		}
		path := filepath.Join(d.cfg.dir, name+".kubeconfig")
		if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
			return fmt.Errorf("write kubeconfig: %w", err)
		}
		if err := createNamespace(d.ctx, site, operator.DefaultNamespace); err != nil {
			return err
		}
		slog.Info("kubeconfig written", "site", name, "path", path, "namespace", operator.DefaultNamespace)
	}

	for _, name := range testenv.DefaultSiteNames() {
		if err := d.startManager(name); err != nil {
			return err
		}
	}
	if err := d.writePorts(); err != nil {
		return err
	}
	if err := d.recordProcesses(); err != nil {
		slog.Warn("record child processes", "err", err)
	}
	for _, mp := range d.managers {
		if err := d.waitManagerReady(mp); err != nil {
			return err
		}
		slog.Info("manager ready", "site", mp.site, "pid", mp.pid, "health", mp.health)
	}
	return nil
}

// startManager starts the manager binary for site name on free loopback ports.
func (d *demo) startManager(name string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	mp := &managerProc{
		site:    name,
		log:     filepath.Join(d.cfg.dir, "logs", "manager-"+name+".log"),
		metrics: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		health:  net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
	}
	before, err := childProcesses(os.Getpid())
	if err != nil {
		return err
	}
	mp.m, err = testenv.StartManagerBinary(d.env.Site(name), d.cfg.manager, d.cfg.dir, mp.log,
		"--metrics-bind-address="+mp.metrics,
		"--health-probe-bind-address="+mp.health,
	)
	if err != nil {
		return err
	}
	d.managers = append(d.managers, mp)
	// The manager is our only new child. cmd.Start returned after the exec succeeded, so a
	// manager that is not among our live children has already exited.
	if mp.pid = newChild(before); mp.pid == 0 {
		mp.exited = true
		return fmt.Errorf("manager of site %s exited at once (%s); see %s", name, exitStatus(mp.m.Stop()), mp.log)
	}
	slog.Info("manager started", "site", name, "pid", mp.pid, "metrics", mp.metrics, "health", mp.health, "log", mp.log)
	return nil
}

// waitManagerReady polls the manager's /readyz until it answers 200 OK.
func (d *demo) waitManagerReady(mp *managerProc) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + mp.health + "/readyz"
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
		if d.checkExited(mp) {
			return fmt.Errorf("manager of site %s exited while starting; see %s", mp.site, mp.log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("manager of site %s not ready after %s; see %s", mp.site, managerReadyTimeout, mp.log)
		}
		select {
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watch logs managers that exit, until a signal arrives.
func (d *demo) watch() {
	ticker := time.NewTicker(watchInterval)
	defer ticker.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-ticker.C:
			for _, mp := range d.managers {
				d.checkExited(mp)
			}
		}
	}
}

// checkExited reports whether the manager process has exited, logging it the first time.
func (d *demo) checkExited(mp *managerProc) bool {
	if mp.exited {
		return true
	}
	if mp.pid <= 0 || processAlive(mp.pid) {
		return false
	}
	mp.exited = true
	// The process is gone; Stop only collects its exit status.
	slog.Error("manager exited", "site", mp.site, "pid", mp.pid, "status", exitStatus(mp.m.Stop()), "log", mp.log)
	return true
}

// exitStatus describes the result of Manager.Stop for a manager that has exited by itself.
func exitStatus(err error) string {
	if err == nil {
		// Manager.Stop reports an exit by a signal like a clean exit.
		return "exit status 0 or killed by a signal"
	}
	return err.Error()
}

// shutdown stops the managers, then the sites.
func (d *demo) shutdown() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, mp := range d.managers {
		if mp.exited {
			continue
		}
		wg.Go(func() {
			err := mp.m.Stop()
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("stop manager of site %s: %w", mp.site, err))
				mu.Unlock()
				return
			}
			slog.Info("manager stopped", "site", mp.site, "pid", mp.pid)
		})
	}
	wg.Wait()
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			errs = append(errs, err)
		} else {
			slog.Info("sites stopped")
		}
	}
	return errors.Join(errs...)
}

// writePorts writes the managers' addresses to <dir>/ports.env, one KEY=VALUE a line.
func (d *demo) writePorts() error {
	var b strings.Builder
	b.WriteString("# The Deich managers' metrics and health-probe addresses, per site.\n")
	for _, mp := range d.managers {
		key := strings.ToUpper(strings.ReplaceAll(mp.site, "-", "_"))
		fmt.Fprintf(&b, "%s_METRICS=%s\n%s_HEALTH=%s\n", key, mp.metrics, key, mp.health)
	}
	return os.WriteFile(filepath.Join(d.cfg.dir, "ports.env"), []byte(b.String()), 0o600)
}

// recordProcesses writes "<pid> <name>" of every child process to <dir>/processes.
func (d *demo) recordProcesses() error {
	children, err := childProcesses(os.Getpid())
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d deich-demo-sites\n", os.Getpid())
	for _, c := range children {
		fmt.Fprintf(&b, "%d %s\n", c.pid, c.name)
	}
	path := filepath.Join(d.cfg.dir, "processes")
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// createNamespace creates namespace ns at site unless it exists.
func createNamespace(ctx context.Context, site *testenv.Site, ns string) error {
	err := site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s at %s: %w", ns, site.Name, err)
	}
	return nil
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

// proc is a process found in /proc.
type proc struct {
	pid  int
	name string // base name of argv[0]
}

// childProcesses lists the direct children of ppid from /proc (Linux).
func childProcesses(ppid int) ([]proc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesised command name: state, ppid, ...
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(ppid) || fields[0] == "Z" {
			continue
		}
		// The command name in stat is cut to 15 bytes; argv[0] is better, but it is empty
		// for a moment during an exec.
		name := string(stat[strings.IndexByte(string(stat), '(')+1 : i])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"); args[0] != "" {
			name = filepath.Base(args[0])
		}
		out = append(out, proc{pid: pid, name: name})
	}
	return out, nil
}

// newChild returns the PID of our one live child process that is not in before, or 0.
func newChild(before []proc) int {
	children, err := childProcesses(os.Getpid())
	if err != nil {
		slog.Warn("list child processes", "err", err)
		return 0
	}
	old := make(map[int]bool, len(before))
	for _, c := range before {
		old[c.pid] = true
	}
	for _, c := range children {
		if !old[c.pid] {
			return c.pid
		}
	}
	return 0
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}
