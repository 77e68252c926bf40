// Package e2e holds end-to-end tests that drive Deich the way a user does: through the
// Makefile's scripts, built binaries and kubectl.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deich-io/deich/internal/testenv"
)

const (
	// demoUpTimeout bounds `hack/demo.sh up`, including building the sites program.
	demoUpTimeout = 5 * time.Minute
	// demoDownTimeout bounds `hack/demo.sh down`.
	demoDownTimeout = 2 * time.Minute
)

// TestDemoUpDown runs `hack/demo.sh up` as `make demo` does, checks that both sites show their
// peer Ready, then runs `hack/demo.sh down` and checks that nothing of the demo is left: no
// process and no files.
func TestDemoUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two control planes and two managers")
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("the demo needs kubectl on PATH")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	localBin := filepath.Join(root, "bin")
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(localBin, bin)); err != nil {
			t.Fatalf("control-plane binary missing (run `make control-plane`): %v", err)
		}
	}

	tmp := t.TempDir()
	manager := filepath.Join(tmp, "manager")
	build := exec.Command("go", "build", "-o", manager, ".")
	build.Dir = root
	build.Env = goEnv()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build manager: %v\n%s", err, out)
	}

	demoDir := filepath.Join(tmp, "demo")
	env := append(goEnv(),
		"DEMO_DIR="+demoDir,
		"LOCALBIN="+localBin,
		"MANAGER="+manager,
		"DEMO_SITES_BIN="+filepath.Join(tmp, "deich-demo-sites"),
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
	for _, peer := range []string{testenv.SiteSchwerin, testenv.SiteKiel} {
		if got := peerColumn(out, peer, "READY"); got != "True" {
			dumpLogs(t, demoDir)
			t.Errorf("output shows ReplicationPeer %s with READY %q, want True", peer, got)
		}
	}
	for _, site := range testenv.DefaultSiteNames() {
		if want := "export KUBECONFIG=" + filepath.Join(demoDir, site+".kubeconfig"); !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	pidText, err := os.ReadFile(filepath.Join(demoDir, "sites.pid"))
	if err != nil {
		t.Fatalf("read sites.pid: %v", err)
	}
	sitesPID, err := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if err != nil {
		t.Fatalf("sites.pid: %v", err)
	}
	if procs := processesMentioning(demoDir); len(procs) < 7 {
		t.Errorf("expected the sites program, 2 etcd, 2 kube-apiserver and 2 managers naming %s, found:\n%s",
			demoDir, strings.Join(procs, "\n"))
	}

	// A second `make demo` finds the running demo and only shows its status.
	out, err = demo(time.Minute, "up")
	if err != nil {
		t.Fatalf("second hack/demo.sh up: %v\n%s", err, out)
	}
	if !strings.Contains(out, "already running") || peerColumn(out, testenv.SiteSchwerin, "READY") != "True" {
		t.Errorf("second hack/demo.sh up did not report the running demo:\n%s", out)
	}

	out, err = demo(demoDownTimeout, "down")
	if err != nil {
		t.Fatalf("hack/demo.sh down: %v\n%s", err, out)
	}
	t.Logf("hack/demo.sh down:\n%s", out)

	// The sites program was started detached (setsid), so it is not our child: whoever
	// adopted it reaps it, possibly a moment later.
	waitFor(t, 10*time.Second, "sites program exits", func() bool { return !processAlive(sitesPID) })
	waitFor(t, 10*time.Second, "no process names the demo directory", func() bool {
		return len(processesMentioning(demoDir)) == 0
	})
	if procs := processesMentioning(demoDir); len(procs) > 0 {
		t.Errorf("processes left after down:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(demoDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("demo directory still there after down (stat: %v)", err)
	}

	// down with nothing running is fine.
	if out, err := demo(demoDownTimeout, "down"); err != nil {
		t.Errorf("second hack/demo.sh down: %v\n%s", err, out)
	}
}

// goEnv is the test's environment with GOTOOLCHAIN=local unless it is set.
func goEnv() []string {
	env := os.Environ()
	if _, ok := os.LookupEnv("GOTOOLCHAIN"); !ok {
		env = append(env, "GOTOOLCHAIN=local")
	}
	return env
}

// peerColumn finds, in the output of `kubectl get replicationpeers`, the row for name and
// returns its value in column; "" if there is none.
func peerColumn(output, name, column string) string {
	col := -1
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] == "NAME" {
			col = -1
			for i, f := range fields {
				if f == column {
					col = i
				}
			}
			continue
		}
		if col >= 0 && len(fields) > col && fields[0] == name {
			return fields[col]
		}
	}
	return ""
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
