package testenv

import (
	"errors"
	"os"
	"sync"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/internal/operator"
)

// SetTestLogger makes controller-runtime log to stderr as Deich's test packages want it: errors
// only, or everything down to debug level when DEICH_TEST_VERBOSE is set.
func SetTestLogger() {
	level := zapcore.Level(2)
	if os.Getenv("DEICH_TEST_VERBOSE") != "" {
		level = -1
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(level), zap.StacktraceLevel(zapcore.PanicLevel)))
}

// Managers runs at most one in-process manager per site, all with the same options, for fault
// tests that stop a site's manager and start it again. It is safe for concurrent use.
type Managers struct {
	opts operator.Options

	mu      sync.Mutex
	running map[string]*Manager
}

// NewManagers returns a Managers that starts managers with opts (see [StartManager]).
func NewManagers(opts operator.Options) *Managers {
	return &Managers{opts: opts, running: map[string]*Manager{}}
}

// Start starts the manager of site.
func (ms *Managers) Start(site *Site) error {
	mgr, err := StartManager(site, ms.opts)
	if err != nil {
		return err
	}
	ms.mu.Lock()
	ms.running[site.Name] = mgr
	ms.mu.Unlock()
	return nil
}

// Stop stops the manager of site, if it runs. From the lease's point of view it is a crash: the
// manager neither fences nor releases anything on the way out.
func (ms *Managers) Stop(site *Site) error {
	ms.mu.Lock()
	mgr := ms.running[site.Name]
	delete(ms.running, site.Name)
	ms.mu.Unlock()
	if mgr == nil {
		return nil
	}
	return mgr.Stop()
}

// Running reports whether the manager of site runs.
func (ms *Managers) Running(site *Site) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	_, ok := ms.running[site.Name]
	return ok
}

// StopAll stops every manager.
func (ms *Managers) StopAll() error {
	ms.mu.Lock()
	running := ms.running
	ms.running = map[string]*Manager{}
	ms.mu.Unlock()
	var errs []error
	for _, mgr := range running {
		errs = append(errs, mgr.Stop())
	}
	return errors.Join(errs...)
}
