package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childStopTimeout is how long a child may take to stop after SIGTERM before it is killed.
const childStopTimeout = 20 * time.Second

// child is a process this program started for one site, with its output in a log file.
type child struct {
	component string
	site      string
	log       string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited

	mu       sync.Mutex
	err      error // from Wait, once done
	intended bool  // the process was told to stop
	reported bool  // an unexpected exit was reported
}

// startChild starts binary with args, its output appended to logPath.
func startChild(component, site, binary, logPath string, args ...string) (*child, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // G304: the demo chooses where its logs go.
	if err != nil {
		return nil, fmt.Errorf("create log of %s at %s: %w", component, site, err)
	}
	cmd := exec.Command(binary, args...) //nolint:gosec // G204: the demo runs the binaries it built.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s for site %s: %w", component, site, err)
	}
	c := &child{component: component, site: site, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exitedUnexpectedly reports, once, that the process exited without being told to.
func (c *child) exitedUnexpectedly() bool {
	if !c.exited() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.intended || c.reported {
		return false
	}
	c.reported = true
	return true
}

// status describes how the process exited.
func (c *child) status() string {
	if !c.exited() {
		return "running"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// stop sends SIGTERM and waits for the process to exit, killing it after childStopTimeout.
func (c *child) stop() error {
	c.mu.Lock()
	c.intended = true
	c.mu.Unlock()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s of site %s: %w", c.component, c.site, err)
	}
	select {
	case <-c.done:
		return nil
	case <-time.After(childStopTimeout):
		slog.Warn("did not stop in time; killing it", "component", c.component, "site", c.site, "timeout", childStopTimeout)
		return c.kill()
	}
}

// kill ends the process at once with SIGKILL and waits for it to exit.
func (c *child) kill() error {
	c.mu.Lock()
	c.intended = true
	c.mu.Unlock()
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s of site %s: %w", c.component, c.site, err)
	}
	<-c.done
	return nil
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
