package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
)

// env holds the two sites every test in this package shares, each with a running manager.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site
)

const (
	managerNamespace = operator.DefaultNamespace
	// testMaxClockSkew is the --max-clock-skew the test managers run with.
	testMaxClockSkew = 2 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Only the unit tests run; the two-site tests skip themselves.
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr), zap.Level(zapcore.Level(zapLevel())), zap.StacktraceLevel(zapcore.PanicLevel)))
	var err error
	env, err = testenv.StartDeich()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
	}()
	kiel, schwerin = env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)

	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := site.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
			fmt.Fprintln(os.Stderr, "create manager namespace:", err)
			return 1
		}
		mgr, err := testenv.StartManager(site, operator.Options{MaxClockSkew: testMaxClockSkew, EgressInventoryInterval: 2 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			if err := mgr.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop manager:", err)
			}
		}()
	}
	return m.Run()
}

// zapLevel keeps test output quiet unless DEICH_TEST_VERBOSE is set.
func zapLevel() int8 {
	if os.Getenv("DEICH_TEST_VERBOSE") != "" {
		return -1
	}
	return 2 // errors only
}

// eventReasons lists the reasons of the events recorded at site about the named object.
func eventReasons(ctx context.Context, site *testenv.Site, kind, name string) ([]string, error) {
	var list eventsv1.EventList
	if err := site.Client.List(ctx, &list); err != nil {
		return nil, err
	}
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons, nil
}

// cleanup deletes obj from site when the test ends.
func cleanup(t *testing.T, site *testenv.Site, obj client.Object) {
	t.Helper()
	t.Cleanup(func() {
		_ = client.IgnoreNotFound(site.Client.Delete(context.Background(), obj))
	})
}

// newG returns a Gomega for a two-site test, with polling tuned for controllers. It skips the
// test when the sites are not running (go test -short).
func newG(t *testing.T) Gomega {
	t.Helper()
	requireSites(t)
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	return g
}

// requireSites skips a two-site test when the sites are not running (go test -short).
func requireSites(t *testing.T) {
	t.Helper()
	if env == nil {
		t.Skip("two-site test: needs real API servers (not run with -short)")
	}
}
