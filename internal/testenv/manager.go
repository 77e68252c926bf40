package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/deich-io/deich/internal/operator"
)

// Manager is a Deich manager running for one site, in-process or as a child process.
type Manager struct {
	// Site is the site the manager runs for.
	Site *Site

	cancel context.CancelFunc
	cmd    *exec.Cmd
	// exited is closed once the manager has returned or the process has exited, with err
	// what it returned.
	exited chan struct{}
	err    error
}

// StartManager runs an in-process Deich manager for site, built by operator.New exactly as
// main.go builds it. opts.Site defaults to the site's name and opts.Namespace to
// operator.DefaultNamespace; metrics and health endpoints are off unless set. Stop it with
// Manager.Stop.
func StartManager(site *Site, opts operator.Options) (*Manager, error) {
	if opts.Site == "" {
		opts.Site = site.Name
	}
	if opts.Namespace == "" {
		opts.Namespace = operator.DefaultNamespace
	}
	if opts.MetricsBindAddress == "" {
		opts.MetricsBindAddress = "0"
	}
	// Tests run one manager per site in one process; controller names repeat.
	opts.SkipControllerNameValidation = true

	ctx, cancel := context.WithCancel(context.Background())
	mgr, err := operator.New(ctx, site.Config, opts)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("testenv: build manager for site %s: %w", site.Name, err)
	}
	m := &Manager{Site: site, cancel: cancel, exited: make(chan struct{})}
	go func() {
		m.err = mgr.Start(ctx)
		close(m.exited)
	}()
	return m, nil
}

// StartManagerBinary runs the built manager binary (bin/manager, see `make build`) for site as
// a child process, with an admin kubeconfig for the site written to dir, and the given extra
// flags (for example "--max-clock-skew=1s"). Its output goes to logPath. Stop it with
// Manager.Stop, which sends SIGTERM as a kubelet would, or Manager.Kill, which does not let it
// clean up.
func StartManagerBinary(site *Site, binary, dir, logPath string, flags ...string) (*Manager, error) {
	kubeconfig, err := site.Kubeconfig()
	if err != nil {
		return nil, err
	}
	return startManagerBinary(site, kubeconfig, filepath.Join(dir, site.Name+".kubeconfig"), binary, logPath, flags...)
}

// StartManagerBinaryWithKubeconfig is like [StartManagerBinary], but the manager reaches its
// own site with kubeconfig — through a [Proxy] that a test cuts, say, with one from
// [Site.KubeconfigFor]. The kubeconfig is written to dir, named after the log file.
func StartManagerBinaryWithKubeconfig(site *Site, kubeconfig []byte, binary, dir, logPath string, flags ...string) (*Manager, error) {
	name := strings.TrimSuffix(filepath.Base(logPath), filepath.Ext(logPath)) + ".kubeconfig"
	return startManagerBinary(site, kubeconfig, filepath.Join(dir, name), binary, logPath, flags...)
}

func startManagerBinary(site *Site, kubeconfig []byte, kcPath, binary, logPath string, flags ...string) (*Manager, error) {
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("testenv: write kubeconfig for site %s: %w", site.Name, err)
	}
	logFile, err := os.Create(logPath) //nolint:gosec // G304: the caller chooses where test logs go.
	if err != nil {
		return nil, fmt.Errorf("testenv: create manager log: %w", err)
	}
	args := append([]string{
		"--site=" + site.Name,
		"--kubeconfig=" + kcPath,
		"--namespace=" + operator.DefaultNamespace,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
	}, flags...)
	cmd := exec.Command(binary, args...) //nolint:gosec // G204: tests run the binary they built.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("testenv: start %s for site %s: %w", binary, site.Name, err)
	}
	m := &Manager{Site: site, cmd: cmd, exited: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		_ = logFile.Close()
		close(m.exited)
	}()
	return m, nil
}

// Exited reports whether the manager has stopped, by itself or told to, and what it returned
// (for a child process, how it exited).
func (m *Manager) Exited() (bool, error) {
	select {
	case <-m.exited:
		return true, m.err
	default:
		return false, nil
	}
}

// Stop stops the manager gracefully and waits for it to exit. Stopping a manager that has
// exited by itself returns what it returned.
func (m *Manager) Stop() error {
	if done, err := m.Exited(); done {
		return err
	}
	if m.cmd != nil {
		if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("testenv: stop manager of site %s: %w", m.Site.Name, err)
		}
	} else {
		m.cancel()
	}
	select {
	case <-m.exited:
		var exitErr *exec.ExitError
		if errors.As(m.err, &exitErr) && exitErr.ExitCode() == -1 {
			return nil // ended by the signal
		}
		return m.err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("testenv: manager of site %s did not stop within 30s", m.Site.Name)
	}
}

// Kill ends the manager at once, as a crash or a lost machine would: a child process gets
// SIGKILL. An in-process manager cannot be killed; Kill stops it like Stop.
func (m *Manager) Kill() error {
	if m.cmd == nil {
		return m.Stop()
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("testenv: kill manager of site %s: %w", m.Site.Name, err)
	}
	// A killed process exits with an error by design; anything else is news.
	<-m.exited
	var exitErr *exec.ExitError
	if m.err != nil && !errors.As(m.err, &exitErr) {
		return fmt.Errorf("testenv: wait for killed manager of site %s: %w", m.Site.Name, m.err)
	}
	return nil
}
