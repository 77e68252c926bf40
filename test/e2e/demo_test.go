// Package e2e holds end-to-end tests that drive Deich the way a user does: through the
// Makefile's scripts, built binaries and kubectl.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deich-io/deich/internal/testenv"
)

const (
	// demoUpTimeout bounds `hack/demo.sh up`: building the demo program, starting the three
	// sites, sharing the service, losing the standby and bringing it back, and the failover.
	demoUpTimeout = 8 * time.Minute
	// demoDownTimeout bounds `hack/demo.sh down`.
	demoDownTimeout = 2 * time.Minute
)

// TestDemoFailoverStory runs `hack/demo.sh up` as `make demo` does, non-interactively: two
// partner sites with running pods and the witness hh-hamburg, Deich installed from config/,
// the citizen service account with its database and hostname shared from sh-kiel, mv-schwerin
// taken dark (sh-kiel must serve throughout) and brought back, then sh-kiel taken dark,
// mv-schwerin taking over stage by stage, and the service moved home by a Switchover. It checks
// that the story says sh-kiel served throughout, that the summary shows mv-schwerin serving
// within the RTO and the copy within the RPO, that the stages ran and the move home handed the
// database's demotion token over, that every site's processes run at the end, then runs
// `hack/demo.sh down` and checks that nothing of the demo is left: no process, no files,
// nothing written to $HOME.
func TestDemoFailoverStory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes with their controllers, kwok and two managers")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	localBin := filepath.Join(root, "bin")
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(localBin, bin)); err != nil {
			t.Fatalf("binary missing (run `make demo-tools`): %v", err)
		}
	}
	kwok := kwokBinary(t, localBin)
	kubectl := kubectlBinary(t, localBin)

	tmp := t.TempDir()
	manager := filepath.Join(tmp, "manager")
	build := exec.Command("go", "build", "-o", manager, ".")
	build.Dir = root
	build.Env = goEnv()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build manager: %v\n%s", err, out)
	}

	// An empty HOME shows that the demo writes nothing outside its directory (kubectl's
	// cache, say). Go keeps using the real caches.
	home := filepath.Join(tmp, "home")
	if err := os.Mkdir(home, 0o750); err != nil {
		t.Fatal(err)
	}
	demoDir := filepath.Join(tmp, "demo")
	env := append(goEnv(), goDirs(t)...)
	env = append(env,
		"HOME="+home,
		"DEMO_DIR="+demoDir,
		"LOCALBIN="+localBin,
		"KWOK="+kwok,
		"KUBECTL="+kubectl,
		"MANAGER="+manager,
		"DEMO_BIN="+filepath.Join(tmp, "deich-demo"),
	)
	demo := func(timeout time.Duration, arg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "demo.sh"), arg)
		cmd.Dir = root
		cmd.Env = env
		cmd.WaitDelay = 10 * time.Second // kubectl may hold the output open after bash is killed
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("hack/demo.sh %s took %s", arg, time.Since(start).Round(100*time.Millisecond))
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return string(out), err
	}
	// Whatever happens, leave nothing running.
	t.Cleanup(func() {
		if _, err := os.Stat(demoDir); err == nil {
			if out, err := demo(demoDownTimeout, "down"); err != nil {
				t.Logf("cleanup: hack/demo.sh down: %v\n%s", err, out)
			}
		}
	})

	out, err := demo(demoUpTimeout, "up")
	if err != nil {
		dumpLogs(t, demoDir)
		t.Fatalf("hack/demo.sh up: %v\n%s", err, out)
	}
	t.Logf("hack/demo.sh up:\n%s", out)

	const served = "Result: " + testenv.SiteKiel + " served buergerkonto throughout"
	if lineWith(out, served) == "" {
		t.Errorf("the story does not say that %s served throughout while %s was dark; its result: %q",
			testenv.SiteKiel, testenv.SiteSchwerin, lineWith(out, "Result: "+testenv.SiteKiel))
	}
	const result = "Result: " + testenv.SiteSchwerin + " served buergerkonto "
	line := lineWith(out, result)
	if line == "" || !strings.Contains(line, "within the RTO of 2m") || strings.Contains(line, "NOT within") {
		t.Errorf("the summary does not say that %s served within the RTO; its result line: %q", testenv.SiteSchwerin, line)
	}
	if row := lineWith(out, "recovery time (dark -> promoted, pods Ready)"); !strings.Contains(row, "within the RTO") || strings.Contains(row, "NOT within") {
		t.Errorf("summary row for the recovery time: %q, want it within the RTO", row)
	}
	if row := lineWith(out, "data age of the copy"); !strings.Contains(row, "within the RPO") || strings.Contains(row, "NOT within") {
		t.Errorf("summary row for the data age: %q, want it within the RPO", row)
	}
	for _, step := range []string{"detects the failure", "promotes its copies", "pods Ready"} {
		if lineWith(out, testenv.SiteSchwerin+" "+step) == "" && lineWith(out, testenv.SiteSchwerin+"'s "+step) == "" {
			t.Errorf("the summary lacks the step %q", step)
		}
	}
	for _, site := range append(testenv.DefaultSiteNames(), testenv.SiteHamburg) {
		if want := "export KUBECONFIG=" + filepath.Join(demoDir, site+".kubeconfig"); !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// The failover went stage by stage, the database without a token (a failover), and the
	// move home handed the demotion token over.
	for _, want := range []string{
		"stage database switched to its active form",
		"none: a failover, not a planned move",
		"stage app switched to its active form",
		"stage dns switched to its active form",
		"self.status.demotionToken from " + testenv.SiteSchwerin,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if line := lineWith(out, "Result: "+testenv.SiteKiel+" serves buergerkonto again"); !strings.Contains(line, "demotion token") {
		t.Errorf("the story does not end with %s serving again after a move home with the demotion token; its result: %q", testenv.SiteKiel, line)
	}

	pidText, err := os.ReadFile(filepath.Join(demoDir, "demo.pid"))
	if err != nil {
		t.Fatalf("read demo.pid: %v", err)
	}
	demoPID, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatalf("demo.pid: %v", err)
	}
	// Both partners run everything again, the witness its control plane.
	wantRunning := map[string]int{
		"deich-demo": 1, "etcd": 3, "kube-apiserver": 3, "kube-controller-manager": 2,
		"kube-scheduler": 2, filepath.Base(kwok): 2, "manager": 2,
	}
	procs := processesMentioning(demoDir)
	if got := countByName(procs); !maps.Equal(got, wantRunning) {
		t.Errorf("processes naming %s: got %v, want %v:\n%s", demoDir, got, wantRunning, strings.Join(procs, "\n"))
	}

	// A second `make demo` finds the running demo and only shows its status.
	out, err = demo(time.Minute, "up")
	if err != nil {
		t.Fatalf("second hack/demo.sh up: %v\n%s", err, out)
	}
	if !strings.Contains(out, "already running") || !strings.Contains(lineWith(out, "buergerkonto   "+testenv.SiteKiel), "Protected") {
		t.Errorf("second hack/demo.sh up did not report the running demo with %s serving:\n%s", testenv.SiteKiel, out)
	}

	out, err = demo(demoDownTimeout, "down")
	if err != nil {
		t.Fatalf("hack/demo.sh down: %v\n%s", err, out)
	}
	t.Logf("hack/demo.sh down:\n%s", out)

	// The demo's run process was started detached (setsid), so it is not our child: whoever
	// adopted it reaps it, possibly a moment later.
	waitFor(t, 10*time.Second, "the demo's run process exits", func() bool { return !processAlive(demoPID) })
	waitFor(t, 10*time.Second, "no process names the demo directory", func() bool {
		return len(processesMentioning(demoDir)) == 0
	})
	if procs := processesMentioning(demoDir); len(procs) > 0 {
		t.Errorf("processes left after down:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(demoDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("demo directory still there after down (stat: %v)", err)
	}
	if written := filesUnder(t, home); len(written) > 0 {
		t.Errorf("the demo wrote to $HOME:\n%s", strings.Join(written, "\n"))
	}

	// down with nothing running is fine.
	if out, err := demo(demoDownTimeout, "down"); err != nil {
		t.Errorf("second hack/demo.sh down: %v\n%s", err, out)
	}
}

// kwokBinary returns the kwok binary the Makefile built: $KWOK, or else the newest
// bin/kwok-v*.
func kwokBinary(t *testing.T, localBin string) string {
	t.Helper()
	if kwok := os.Getenv("KWOK"); kwok != "" {
		if _, err := os.Stat(kwok); err != nil {
			t.Fatalf("KWOK: %v", err)
		}
		return kwok
	}
	found, _ := filepath.Glob(filepath.Join(localBin, "kwok-v*"))
	if len(found) == 0 {
		t.Fatalf("no %s/kwok-v* (run `make demo-tools`)", localBin)
	}
	slices.Sort(found)
	return found[len(found)-1]
}

// kubectlBinary returns the kubectl the Makefile built at the sites' Kubernetes version:
// $KUBECTL, or else bin/kubectl. A kubectl on PATH is never used: distributions ship old
// ones (Debian 12's v1.20 cannot read hack/demo/deich's kustomization). It fails the test,
// rather than skipping it, when the binary is missing, so that a run without it cannot pass.
func kubectlBinary(t *testing.T, localBin string) string {
	t.Helper()
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = filepath.Join(localBin, "kubectl")
	}
	// hack/demo.sh runs in the repository root, the test in its package directory.
	kubectl, err := filepath.Abs(kubectl)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(kubectl)
	if err != nil {
		t.Fatalf("the demo drives its sites with kubectl, and %s is missing (run `make demo-tools`, which builds it at the pinned Kubernetes version): %v", kubectl, err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		t.Fatalf("kubectl %s is not an executable file (run `make demo-tools`)", kubectl)
	}
	return kubectl
}

// goDirs pins Go's caches and configuration to where they are now, for a test that changes
// $HOME.
func goDirs(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV")
	cmd.Env = goEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	values := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(values) != 4 {
		t.Fatalf("go env printed %q", out)
	}
	return []string{"GOCACHE=" + values[0], "GOMODCACHE=" + values[1], "GOPATH=" + values[2], "GOENV=" + values[3]}
}

// filesUnder lists the files under dir, relative to it, except for the Go toolchain's own
// telemetry counters (in $HOME/.config/go), which the go command writes wherever it runs.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		if rel == filepath.Join(".config", "go") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", dir, err)
	}
	return files
}

// lineWith returns the first line of output that contains s, or "".
func lineWith(output, s string) string {
	for line := range strings.Lines(output) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// countByName counts the processes listed by processesMentioning by the base name of their
// executable.
func countByName(procs []string) map[string]int {
	counts := map[string]int{}
	for _, p := range procs {
		fields := strings.Fields(p)
		if len(fields) < 2 {
			continue
		}
		counts[filepath.Base(fields[1])]++
	}
	return counts
}

// goEnv is the test's environment with GOTOOLCHAIN=local unless it is set.
func goEnv() []string {
	env := os.Environ()
	if _, ok := os.LookupEnv("GOTOOLCHAIN"); !ok {
		env = append(env, "GOTOOLCHAIN=local")
	}
	return env
}

// processesMentioning lists "<pid> <command line>" of every process whose command line
// contains dir.
func processesMentioning(dir string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []string{"read /proc: " + err.Error()}
	}
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !processAlive(pid) {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := string(bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '}))
		if strings.Contains(args, dir) {
			out = append(out, e.Name()+" "+args)
		}
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || !bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z"))
}

// waitFor polls cond until it holds or timeout passes, then reports what did not happen.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("timed out after %s waiting until %s", timeout, what)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dumpLogs prints the end of every log of the demo.
func dumpLogs(t *testing.T, demoDir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(demoDir, "logs", "*.log"))
	for _, f := range logs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Logf("%s: %v", f, err)
			continue
		}
		const tail = 8000
		if len(data) > tail {
			data = data[len(data)-tail:]
		}
		t.Logf("--- %s (end):\n%s", f, data)
	}
}
