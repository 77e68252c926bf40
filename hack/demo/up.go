package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// resultOK is what the run process writes to the result file when the story succeeded.
const resultOK = "ok"

// up starts the demo, or shows the status of the one running in cfg.dir.
func up(cfg config) int {
	if err := cfg.checkBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := newTeller(os.Stdout)
	if pid, ok := runningDemo(cfg); ok {
		out.say("A demo is already running in %s (pid %d)", cfg.dir, pid)
		if _, err := os.Stat(cfg.path("result")); err != nil {
			out.say("Its story is still being told (in the terminal that started it, and in %s)", cfg.logPath("story.log"))
		}
		st, err := readState(cfg)
		if err != nil {
			out.say("Cannot read its state: %v", err)
			return 1
		}
		printStatus(out, cfg, st)
		return 0
	}
	if _, err := os.Stat(cfg.dir); err == nil {
		out.say("Cleaning up a stale demo in %s", cfg.dir)
		stopAll(out, cfg)
		if err := removeDemoDir(cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := os.MkdirAll(cfg.path("logs"), 0o750); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	code, err := startAndRelay(out, cfg)
	if err != nil {
		out.say("%v", err)
	}
	return code
}

// startAndRelay starts the run process detached from the terminal, copies its story to stdout
// until it closes the pipe, and returns how the story ended. On Ctrl-C it asks the run process
// to stop everything and waits until it has.
func startAndRelay(out *teller, cfg config) (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 1, err
	}
	storyR, storyW, err := os.Pipe()
	if err != nil {
		return 1, err
	}
	logFile, err := os.Create(cfg.logPath("demo.log"))
	if err != nil {
		return 1, err
	}
	args := []string{"run", "--dir=" + cfg.dir, "--bin=" + cfg.bin, "--manager=" + cfg.manager, "--kwok=" + cfg.kwok,
		"--kubectl=" + cfg.kubectl, "--timeout=" + cfg.timeout.String()}
	if cfg.kustomize != "" {
		args = append(args, "--kustomize="+cfg.kustomize)
	}
	if cfg.kwokStages != "" {
		args = append(args, "--kwok-stages="+cfg.kwokStages)
	}
	cmd := exec.Command(self, args...) //nolint:gosec // G204: this program, started again as its run process.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// envtest notes the ports it hands out in the user's cache directory, which it finds once,
	// at start: the demo's go into the demo directory with everything else.
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(cfg.path("tmp"), "cache"))
	cmd.ExtraFiles = []*os.File{storyW} // fd 3 in the run process
	// Its own session: the sites keep running after this process and its terminal are gone,
	// and a Ctrl-C in the terminal reaches only this process, which forwards it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Signals are caught before the start, so that a Ctrl-C cannot leave a run process behind.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return 1, fmt.Errorf("start the demo: %w", err)
	}
	_ = storyW.Close()
	_ = logFile.Close()
	pid := cmd.Process.Pid
	if err := writeFileAtomic(cfg.path("demo.pid"), fmt.Sprintf("%d\n", pid)); err != nil {
		return 1, err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	interrupted := 0
	var copyErr error
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(os.Stdout, storyR)
		copied <- err
	}()
	for done := false; !done; {
		select {
		case sig := <-signals:
			if interrupted == 0 {
				interrupted = 130
				if sig == syscall.SIGTERM {
					interrupted = 143
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
		case copyErr = <-copied:
			done = true
		}
	}
	if copyErr != nil {
		out.say("Relaying the story stopped: %v (the whole story is in %s)", copyErr, cfg.logPath("story.log"))
	}
	result, _ := os.ReadFile(cfg.path("result"))
	if strings.TrimSpace(string(result)) == resultOK && interrupted == 0 {
		return 0, nil
	}
	// The run process stops everything before it closes the pipe on a failure; wait for it to
	// exit, and clean up after it if it was killed.
	select {
	case <-exited:
	case <-time.After(time.Minute):
	}
	if len(result) == 0 {
		out.say("The demo's run process ended without telling the end of the story; see %s", cfg.logPath("demo.log"))
		stopAll(out, cfg)
	}
	keepOnlyLogs(cfg)
	out.say("Logs kept in %s; `make demo-down` removes them", cfg.path("logs"))
	if interrupted != 0 {
		return interrupted, nil
	}
	return 1, nil
}

// keepOnlyLogs removes everything from the demo directory but the logs.
func keepOnlyLogs(cfg config) {
	entries, err := os.ReadDir(cfg.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			_ = os.RemoveAll(cfg.path(e.Name()))
		}
	}
}

// runningDemo returns the PID of the run process of cfg.dir if it runs.
func runningDemo(cfg config) (int, bool) {
	data, err := os.ReadFile(cfg.path("demo.pid"))
	if err != nil {
		return 0, false
	}
	var pid int
	if _, err := fmt.Sscanf(string(data), "%d", &pid); err != nil {
		return 0, false
	}
	return pid, namesDir(pid, cfg.dir)
}

// writeFileAtomic writes content to path through a temporary file, so that no reader ever sees
// half of it.
func writeFileAtomic(path, content string) error {
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return errors.Join(err, os.Remove(path+".tmp"))
	}
	return nil
}
