// Package peer proves that the identity config/peer creates is enough for Deich: two real
// control planes, a manager per site, and each manager reaching the other site only as the
// ServiceAccount deich-peer, bound to the ClusterRole config/peer grants. It proves as well
// that the identity config/peer/namespaced creates, confined to named namespaces, is enough
// there and refused elsewhere, and that Deich reports a refusal without writing anything.
package peer

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

const (
	managerNamespace = operator.DefaultNamespace
	// peerServiceAccount is the ServiceAccount config/peer creates for the other site's manager.
	peerServiceAccount = "deich-peer"
)

// The two sites and their managers.
var (
	env      *testenv.Env
	kiel     *testenv.Site
	schwerin *testenv.Site
	managers []*testenv.Manager
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// The managers log at debug level into forbiddenLog, which keeps every line that reports a
	// forbidden request (some peer errors, such as a lease that cannot be read, are only
	// logged) and passes lines to stderr only with DEICH_TEST_VERBOSE.
	forbiddenLog.verbose = os.Getenv("DEICH_TEST_VERBOSE") != ""
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(forbiddenLog), zap.Level(zapcore.DebugLevel), zap.StacktraceLevel(zapcore.PanicLevel)))
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// config/peer, built with the pinned kustomize as a platform engineer would before
	// applying it.
	manifests, err := testenv.KustomizeBuild(filepath.Join(root, "config", "peer"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.StartDeich()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		for _, mgr := range managers {
			if err := mgr.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "stop manager:", err)
			}
		}
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
	}()
	kiel, schwerin = env.Site(testenv.SiteKiel), env.Site(testenv.SiteSchwerin)
	if err := connect(context.Background(), manifests); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		mgr, err := testenv.StartManager(site, operator.Options{MaxClockSkew: time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		managers = append(managers, mgr)
	}
	return m.Run()
}

// connect applies config/peer at each site and gives the other site's manager a kubeconfig
// with a token of deich-peer, and a ReplicationPeer that uses it.
func connect(ctx context.Context, manifests []*unstructured.Unstructured) error {
	for _, site := range []*testenv.Site{kiel, schwerin} {
		if err := site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
			return fmt.Errorf("create manager namespace at %s: %w", site.Name, err)
		}
		for _, obj := range manifests {
			if err := site.Client.Create(ctx, obj.DeepCopy()); err != nil {
				return fmt.Errorf("apply config/peer %s %s at %s: %w", obj.GetKind(), obj.GetName(), site.Name, err)
			}
		}
	}
	for _, link := range []struct{ on, peer *testenv.Site }{{kiel, schwerin}, {schwerin, kiel}} {
		kubeconfig, err := link.peer.ServiceAccountKubeconfig(ctx, managerNamespace, peerServiceAccount, time.Hour)
		if err != nil {
			return err
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: "peer-" + link.peer.Name},
			Data:       map[string][]byte{testenv.PeerSecretKey: kubeconfig},
		}
		if err := link.on.Client.Create(ctx, secret); err != nil {
			return fmt.Errorf("create peer Secret at %s: %w", link.on.Name, err)
		}
		peer := testobjects.MakeReplicationPeer(link.peer.Name).Heartbeat(time.Second).Obj()
		if err := link.on.Client.Create(ctx, peer); err != nil {
			return fmt.Errorf("create ReplicationPeer at %s: %w", link.on.Name, err)
		}
	}
	return nil
}

// forbiddenLog is where the managers log.
var forbiddenLog = &logScanner{}

// logScanner keeps the log lines that report a forbidden request: apart, those that name one
// of the expected strings (a namespace or identity a test refuses on purpose).
type logScanner struct {
	verbose  bool
	mu       sync.Mutex
	lines    []string
	expected []string
	refused  []string
}

func (s *logScanner) Write(p []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(p), []byte("forbidden")) {
		line := string(bytes.TrimSpace(p))
		s.mu.Lock()
		if slices.ContainsFunc(s.expected, func(e string) bool { return strings.Contains(line, e) }) {
			s.refused = append(s.refused, line)
		} else {
			s.lines = append(s.lines, line)
		}
		s.mu.Unlock()
	}
	if s.verbose {
		return os.Stderr.Write(p)
	}
	return len(p), nil
}

// expect sets apart, from now on, the forbidden lines that contain one of names.
func (s *logScanner) expect(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expected = append(s.expected, names...)
}

// forbidden returns the lines kept so far, but for those expect set apart.
func (s *logScanner) forbidden() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// expectedRefusals returns the lines expect set apart so far.
func (s *logScanner) expectedRefusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

// requireSites skips a test when the sites are not running (go test -short).
func requireSites(t testing.TB) {
	t.Helper()
	if env == nil {
		t.Skip("envtest: needs real API servers (not run with -short)")
	}
}
