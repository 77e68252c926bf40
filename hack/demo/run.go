package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/deich-io/deich/internal/testenv"
)

// run is the process `up` starts detached: it owns the sites, tells the story to fd 3 (the pipe
// `up` relays) and to logs/story.log, and keeps the sites running until SIGTERM.
func run(cfg config) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stdout, nil)))
	storyLog, err := os.Create(cfg.logPath("story.log"))
	if err != nil {
		slog.Error("create story log", "err", err)
		return 1
	}
	defer func() { _ = storyLog.Close() }()
	var pipe io.WriteCloser = nopCloser{io.Discard}
	if f := os.NewFile(3, "story"); f != nil {
		// The processes this one starts must not inherit the pipe: `up` waits until every
		// writer has closed it.
		syscall.CloseOnExec(3)
		pipe = f
	}
	out := newTeller(pipe, storyLog)
	// end tells `up` how the story ended and lets it go: it closes the pipe.
	end := func(result string) {
		if err := writeFileAtomic(cfg.path("result"), result+"\n"); err != nil {
			slog.Error("write result", "err", err)
		}
		out.drop(pipe)
		_ = pipe.Close()
	}

	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	if err := prepareEnvironment(&cfg); err != nil {
		out.say("%v", err)
		end("failed: " + err.Error())
		return 1
	}

	s := &sites{cfg: cfg, dark: map[string]bool{}, managerKubeconfig: map[string]string{}, addrs: map[string][2]string{}}
	st := &story{cfg: cfg, sites: s, out: out}
	if err := st.tell(ctx); err != nil {
		if ctx.Err() != nil {
			out.say("Interrupted; stopping everything this run started")
		} else {
			out.say("The demo failed: %v", err)
			st.diagnose()
			out.say("Stopping everything this run started")
		}
		if err := s.shutdown(); err != nil {
			out.say("Stopping: %v", err)
		}
		end("failed: " + err.Error())
		return 1
	}
	if cur, err := readState(cfg); err == nil {
		out.println("")
		printStatus(out, cfg, cur)
	}
	end(resultOK)

	slog.Info("story told; the sites keep running until SIGTERM")
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			slog.Info("signal received; stopping managers and sites")
			if err := s.shutdown(); err != nil {
				slog.Error("stop", "err", err)
				return 1
			}
			slog.Info("stopped")
			return 0
		case <-ticker.C:
			s.reportExits()
		}
	}
}

// prepareEnvironment points the control planes' temporary files into the demo directory and
// fills in the defaults that need the repository.
func prepareEnvironment(cfg *config) error {
	tmp := cfg.path("tmp")
	if err := os.MkdirAll(tmp, 0o750); err != nil {
		return err
	}
	// envtest creates the control planes' data and certificate directories with
	// os.MkdirTemp, which puts the demo directory into their command lines.
	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return err
	}
	if cfg.kustomize != "" {
		if err := os.Setenv("KUSTOMIZE", cfg.kustomize); err != nil {
			return err
		}
	}
	if cfg.kwokStages == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return err
		}
		cfg.kwokStages = filepath.Join(root, "hack", "demo", "kwok-stages.yaml")
	}
	return nil
}

// nopCloser is an io.WriteCloser whose Close does nothing.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
