// Package bench measures how fast and how frugally Deich mirrors: the throughput of a first
// mirror against a raw server-side-apply baseline, the latency from an edit at the active site
// to the copy at the standby, and the manager's memory with many mirrored objects.
//
// The benchmarks run two real control planes (internal/testenv) and one manager per site as
// the built binary, exactly as it ships. They print their results as tables and report them
// with b.ReportMetric; they never assert on timings. Each benchmark does its work once per
// b.N, so run them with -benchtime=1x:
//
//	KUBEBUILDER_ASSETS=bin go test -run='^$' -bench=. -benchtime=1x -timeout=30m ./test/bench/
//
// DEICH_BENCH_REF=<commit> builds the manager and takes the CRDs from that commit instead of
// the working tree. DEICH_BENCH_MANAGERS=in-process runs the managers inside the test binary
// (built by operator.New, as main.go does), so that -cpuprofile profiles the controllers.
//
// docs/benchmarks.md explains every number and holds the results of a run.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// Settings every benchmark shares. The manager runs with the same apply parallelism as the
// raw baseline and with a peer rate limit so high that it never throttles: --peer-qps must be
// positive (operator.Options.Validate refuses negative values and operator.New turns 0 into
// the default of 50), so "unlimited" is spelled as 100000.
const (
	applyParallelism = 16
	peerQPS          = 100000
	peerBurst        = 100000
	objectiveName    = "buergerdienste"
	managerNamespace = operator.DefaultNamespace
)

// managerFlags are the flags every benchmark manager runs with, besides those
// testenv.StartManagerBinary sets and the metrics address.
func managerFlags() []string {
	return []string{
		fmt.Sprintf("--peer-qps=%d", peerQPS),
		fmt.Sprintf("--peer-burst=%d", peerBurst),
		fmt.Sprintf("--apply-parallelism=%d", applyParallelism),
	}
}

var (
	fixtureOnce sync.Once
	fixture     *sites
	errFixture  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The clients, and in-process managers, log through controller-runtime's logger: errors
	// only.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	code := m.Run()
	// The sites start only when a benchmark asks for them, so `go test ./...` costs nothing.
	if fixture != nil {
		if err := fixture.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop sites:", err)
		}
	}
	os.Exit(code)
}

// sites are the two control planes all benchmarks share, connected as peers, and the manager
// binary they run.
type sites struct {
	env     *testenv.Env
	active  *testenv.Site // sh-kiel: primary of every benchmark service
	standby *testenv.Site // mv-schwerin
	root    string
	workDir string
	binary  string
	machine machineInfo
	procs   *processes
}

// requireSites returns the shared sites, starting them on first use. It skips the benchmark
// under -short.
func requireSites(b *testing.B) *sites {
	b.Helper()
	if testing.Short() {
		b.Skip("starts two control planes and two managers")
	}
	fixtureOnce.Do(func() { fixture, errFixture = startSites() })
	if errFixture != nil {
		b.Fatal(errFixture)
	}
	return fixture
}

// startSites builds the manager, starts both control planes with etcd on tmpfs when there is
// one, and connects the sites: peer Secrets, ReplicationPeers both ways and the objective.
func startSites() (*sites, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return nil, err
	}
	storage := "disk (" + os.TempDir() + ")"
	if useTmpfs() {
		storage = "tmpfs (/dev/shm)"
	}
	workDir, err := os.MkdirTemp("", "deich-bench-")
	if err != nil {
		return nil, err
	}
	s := &sites{root: root, workDir: workDir, binary: filepath.Join(workDir, "manager")}

	// The manager and the CRDs come from the working tree, or from a commit when
	// DEICH_BENCH_REF names one (results then belong to exactly that commit).
	src, commit := root, gitCommit(root)
	if ref := os.Getenv("DEICH_BENCH_REF"); ref != "" {
		if src, commit, err = exportRef(root, ref, filepath.Join(workDir, "src")); err != nil {
			return nil, err
		}
	}
	if err := testenv.BuildManager(src, s.binary); err != nil {
		return nil, err
	}

	s.env, err = testenv.Start(testenv.Options{
		CRDDirectoryPaths:     []string{filepath.Join(src, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                operator.NewScheme(),
	})
	if err != nil {
		return nil, fmt.Errorf("start sites: %w", err)
	}
	s.active, s.standby = s.env.Site(testenv.SiteKiel), s.env.Site(testenv.SiteSchwerin)
	if err := s.connect(context.Background()); err != nil {
		return nil, errorsJoinStop(s, err)
	}
	if s.procs, err = findControlPlanes(s.active, s.standby); err != nil {
		return nil, errorsJoinStop(s, err)
	}
	if s.machine, err = describeMachine(commit, s.active, storage); err != nil {
		return nil, errorsJoinStop(s, err)
	}
	fmt.Print("\n" + s.machine.table())
	return s, nil
}

func errorsJoinStop(s *sites, err error) error {
	if stopErr := s.stop(); stopErr != nil {
		return errors.Join(err, fmt.Errorf("stop the sites: %w", stopErr))
	}
	return err
}

// useTmpfs points the temporary directory, where envtest keeps etcd's data, at /dev/shm when
// it is writable: the benchmarks then measure Deich and the API servers, not the disk's
// fsync latency.
func useTmpfs() bool {
	dir, err := os.MkdirTemp("/dev/shm", "deich-bench-probe-")
	if err != nil {
		return false
	}
	_ = os.Remove(dir)
	return os.Setenv("TMPDIR", "/dev/shm") == nil
}

// connect makes each site a peer of the other and applies the objective at both, like
// connectSites in controllers/sharedservice_controller_test.go.
func (s *sites) connect(ctx context.Context) error {
	for _, pair := range [][2]*testenv.Site{{s.active, s.standby}, {s.standby, s.active}} {
		on, other := pair[0], pair[1]
		if _, err := s.env.CreatePeerSecret(ctx, on, other, managerNamespace, "peer-"+other.Name); err != nil {
			return err
		}
		if err := on.Client.Create(ctx, testobjects.MakeReplicationPeer(other.Name).Obj()); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("create ReplicationPeer %s at %s: %w", other.Name, on.Name, err)
		}
		if err := on.Client.Create(ctx, testobjects.MakeRecoveryObjective(objectiveName).Obj()); client.IgnoreAlreadyExists(err) != nil {
			return fmt.Errorf("create RecoveryObjective at %s: %w", on.Name, err)
		}
	}
	return nil
}

func (s *sites) stop() error {
	var err error
	if s.env != nil {
		err = s.env.Stop()
	}
	_ = os.RemoveAll(s.workDir)
	return err
}

// createNamespace creates ns at site unless it exists.
func createNamespace(ctx context.Context, site *testenv.Site, ns string) error {
	err := site.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	if client.IgnoreAlreadyExists(err) != nil {
		return fmt.Errorf("create namespace %s at %s: %w", ns, site.Name, err)
	}
	return nil
}

// machineInfo says where the numbers were measured.
type machineInfo struct {
	cpu, cores, memory, kernel, goVersion, apiServer, commit, storage, load string
}

func describeMachine(commit string, site *testenv.Site, storage string) (machineInfo, error) {
	m := machineInfo{
		cpu:       firstField("/proc/cpuinfo", "model name"),
		cores:     fmt.Sprint(runtime.NumCPU()),
		memory:    firstField("/proc/meminfo", "MemTotal"),
		goVersion: runtime.Version(),
		storage:   storage,
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	dc, err := discovery.NewDiscoveryClientForConfig(site.Config)
	if err != nil {
		return m, err
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return m, fmt.Errorf("read /version: %w", err)
	}
	m.apiServer = v.GitVersion
	m.commit = commit
	return m, nil
}

// gitCommit is the short commit of the working tree, marked when the tree differs from it.
func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(status))) > 0 {
		var files []string
		for _, line := range strings.Split(strings.TrimSpace(string(status)), "\n") {
			files = append(files, strings.TrimSpace(line[2:]))
		}
		if len(files) > 4 {
			files = append(files[:4], fmt.Sprintf("%d more", len(files)-4))
		}
		commit += " with uncommitted changes (" + strings.Join(files, ", ") + ")"
	}
	return commit
}

// exportRef writes the tree of ref to dir and returns dir and ref's short commit.
func exportRef(root, ref, dir string) (string, string, error) {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", ref+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("DEICH_BENCH_REF=%s: not a commit: %w", ref, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", "", err
	}
	tar := dir + ".tar"
	if out, err := exec.Command("git", "-C", root, "archive", "--format=tar", "-o", tar, ref).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("git archive %s: %w\n%s", ref, err, out)
	}
	if out, err := exec.Command("tar", "-xf", tar, "-C", dir).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("unpack %s: %w\n%s", tar, err, out)
	}
	return dir, strings.TrimSpace(string(out)), nil
}

// firstField returns the value of the first "key : value" line of a /proc file.
func firstField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func (m machineInfo) table() string {
	var t table
	t.header("machine", "")
	t.row("CPU", m.cpu)
	t.row("cores", m.cores)
	t.row("memory", m.memory)
	t.row("kernel", m.kernel)
	t.row("load average at start (1, 5, 15 min)", m.load)
	t.row("Go", m.goVersion)
	t.row("kube-apiserver", m.apiServer)
	t.row("etcd data", m.storage)
	t.row("Deich commit", m.commit)
	t.row("manager flags", strings.Join(managerFlags(), " "))
	t.row("recorded", time.Now().UTC().Format(time.RFC3339))
	return t.String()
}

// table is a Markdown table, so that printed results can go into docs/benchmarks.md as they
// are.
type table struct {
	rows [][]string
}

func (t *table) header(cols ...string) { t.rows = append(t.rows, cols) }
func (t *table) row(cols ...string)    { t.rows = append(t.rows, cols) }

func (t *table) String() string {
	if len(t.rows) == 0 {
		return ""
	}
	width := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	var sb strings.Builder
	line := func(r []string) {
		sb.WriteString("|")
		for i, c := range r {
			fmt.Fprintf(&sb, " %-*s |", width[i], c)
		}
		sb.WriteString("\n")
	}
	line(t.rows[0])
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", max(w, 3))
	}
	line(sep)
	for _, r := range t.rows[1:] {
		line(r)
	}
	return sb.String()
}
