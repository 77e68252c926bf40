package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runStopTimeout bounds how long the run process may take to stop the managers and the three
// control planes after SIGTERM.
const runStopTimeout = 90 * time.Second

// down stops the demo of cfg.dir and removes the directory.
func down(cfg config) int {
	out := newTeller(os.Stdout)
	out.say("Stopping the demo in %s", cfg.dir)
	stopAll(out, cfg)
	if _, err := os.Stat(cfg.dir); err != nil {
		out.say("Nothing to remove: %s does not exist", cfg.dir)
		return 0
	}
	if err := removeDemoDir(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out.say("Removed %s", cfg.dir)
	return 0
}

// stopAll stops the run process, which stops everything it started, then any process of the
// demo that is still left (after the run process was killed, say): the clients of the API
// servers first, then the API servers, then etcd.
func stopAll(out *teller, cfg config) {
	stopped := false
	if pid, ok := runningDemo(cfg); ok {
		out.say("Stopping the demo's run process (pid %d): managers first, then the control planes", pid)
		if !stopPID(pid, runStopTimeout) {
			out.say("It did not stop within %s; killed it", runStopTimeout)
		}
		stopped = true
	}
	left := demoProcesses(cfg.dir)
	for _, group := range []func(string) bool{
		func(name string) bool { return name != "etcd" && name != "kube-apiserver" },
		func(name string) bool { return name == "kube-apiserver" },
		func(name string) bool { return name == "etcd" },
	} {
		for _, p := range left {
			if !group(p.name) || !namesDir(p.pid, cfg.dir) {
				continue
			}
			out.say("Stopping leftover %s (pid %d)", p.name, p.pid)
			// kube-apiserver's graceful shutdown waits for open watches; don't wait long.
			timeout := 15 * time.Second
			if p.name == "kube-apiserver" {
				timeout = 5 * time.Second
			}
			stopPID(p.pid, timeout)
			stopped = true
		}
	}
	if !stopped {
		out.say("No demo processes were running")
	}
}

// stopPID sends SIGTERM to pid and waits up to timeout for it to exit, then kills it. It
// reports whether the process stopped on its own.
func stopPID(pid int, timeout time.Duration) bool {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for end := time.Now().Add(5 * time.Second); processAlive(pid) && time.Now().Before(end); {
				time.Sleep(100 * time.Millisecond)
			}
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// demoFiles are the names the demo creates in its directory; removeDemoDir refuses to delete a
// directory holding anything else, so that a mistyped DEMO_DIR (say, /tmp) is never wiped.
var demoFiles = []string{"logs", "tmp", "kube-cache", "state.json", "demo.pid", "processes", "result"}

// removeDemoDir deletes the demo directory if it holds only the demo's own files.
func removeDemoDir(cfg config) error {
	entries, err := os.ReadDir(cfg.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".tmp")
		if !slices.Contains(demoFiles, name) && !strings.HasSuffix(name, ".kubeconfig") {
			return fmt.Errorf("not removing %s: it holds %s, which the demo did not create", cfg.dir, e.Name())
		}
	}
	return os.RemoveAll(cfg.dir)
}

// demoProcesses lists the processes whose command line names dir: the demo's processes, even
// those whose parent was killed.
func demoProcesses(dir string) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !namesDir(pid, dir) {
			continue
		}
		args := cmdline(pid)
		if len(args) == 0 {
			continue
		}
		out = append(out, proc{pid: pid, name: filepath.Base(args[0])})
	}
	return out
}

// namesDir reports whether pid is alive and its command line names dir: as an argument, as a
// flag's value, or as a path under it.
func namesDir(pid int, dir string) bool {
	if !processAlive(pid) {
		return false
	}
	for _, arg := range cmdline(pid) {
		_, value, _ := strings.Cut(arg, "=")
		for _, s := range []string{arg, value} {
			if s == dir || strings.HasPrefix(s, dir+"/") {
				return true
			}
		}
	}
	return false
}

// cmdline returns the arguments of pid, or nil.
func cmdline(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
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
