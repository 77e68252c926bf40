// Command deich-demo tells Deich's three-state story on local sites; `make demo` runs
// `deich-demo up` and `make demo-down` runs `deich-demo down` (through hack/demo.sh).
//
//	deich-demo up    start three local sites — sh-kiel and mv-schwerin, which share the citizen
//	                 service account buergerkonto with its database and hostname, and the
//	                 witness hh-hamburg — install Deich, share the service from sh-kiel, then
//	                 take mv-schwerin's data centre dark (sh-kiel serves on), bring it back,
//	                 take sh-kiel's dark (mv-schwerin takes over within the RTO: database,
//	                 application, DNS, in that order), bring it back and move the service home
//	                 with a Switchover. The sites keep running afterwards; a second `up` shows
//	                 their status.
//	deich-demo down  stop everything `up` started and remove the demo directory.
//
// `up` starts this program once more, detached from the terminal, as `deich-demo run`: that
// process owns the sites (internal/testenv control planes, plus kube-controller-manager,
// kube-scheduler, kwok and the built Deich manager per partner site), tells the story and keeps
// the sites running until `down` sends it SIGTERM. `up` relays the story to the terminal
// through a pipe and returns when the story is told; Ctrl-C stops everything it started and
// keeps the logs.
//
// The story changes the sites with Go clients as a platform engineer would with
// `kubectl apply --server-side` (the same manifests: config/, config/witness, config/samples,
// hack/demo) and shows what an SRE would see with kubectl. No database operator runs: the
// program plays CloudNativePG for the service's Cluster at each partner (datalayer.go). Files in
// the demo directory:
//
//	<site>.kubeconfig          admin kubeconfigs of the three sites (0600)
//	<site>-manager.kubeconfig  the managers' kubeconfigs: a token of deich-system/deich-manager
//	state.json                 the sites, which are dark, and the managers' addresses
//	demo.pid, processes        the run process and every process it started, for `down`
//	result                     how the story ended ("ok" or the reason it failed)
//	logs/                      story.log, demo.log (the run process), control-plane.log and
//	                           <component>-<site>.log per process
//	tmp/                       the control planes' data and certificates
//
// Every process the demo starts names the demo directory in its command line, so `down` finds
// leftovers even after the run process was killed.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// config holds the command-line flags.
type config struct {
	dir        string // DEMO_DIR
	bin        string // LOCALBIN: the control-plane binaries
	manager    string // the manager binary
	kwok       string // the kwok binary
	kwokStages string // kwok's Stage definitions
	kubectl    string // the kubectl binary
	kustomize  string // the kustomize binary
	timeout    time.Duration
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	cfg, err := parseFlags(cmd, os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "deich-demo:", err)
		os.Exit(2)
	}
	var code int
	switch cmd {
	case "up":
		code = up(cfg)
	case "down":
		code = down(cfg)
	case "run":
		code = run(cfg)
	default:
		usage()
	}
	os.Exit(code)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: deich-demo up|down --dir=DEMO_DIR --bin=LOCALBIN [flags]")
	os.Exit(2)
}

func parseFlags(cmd string, args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("deich-demo "+cmd, flag.ContinueOnError)
	fs.StringVar(&c.dir, "dir", "", "Demo directory (DEMO_DIR): kubeconfigs, logs and control-plane data go here. Required.")
	fs.StringVar(&c.bin, "bin", "", "Directory with etcd, kube-apiserver, kube-controller-manager and kube-scheduler (LOCALBIN). Required.")
	fs.StringVar(&c.kwok, "kwok", "", "The kwok binary. Defaults to <bin>/kwok.")
	fs.StringVar(&c.manager, "manager", "", "The Deich manager binary. Defaults to <bin>/manager.")
	fs.StringVar(&c.kubectl, "kubectl", "", "The kubectl binary. Defaults to <bin>/kubectl.")
	fs.StringVar(&c.kustomize, "kustomize", "", "The kustomize binary. Defaults to the version the Makefile pins, in <bin>.")
	fs.StringVar(&c.kwokStages, "kwok-stages", "", "kwok's Stage definitions. Defaults to <repo>/hack/demo/kwok-stages.yaml.")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "How long the sites may take to come up.")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.dir == "" || c.bin == "" {
		return c, errors.New("--dir and --bin are required")
	}
	defaults := map[*string]string{
		&c.manager: filepath.Join(c.bin, "manager"),
		&c.kwok:    filepath.Join(c.bin, "kwok"),
		&c.kubectl: filepath.Join(c.bin, "kubectl"),
	}
	for p, def := range defaults {
		if *p == "" {
			*p = def
		}
	}
	for _, p := range []*string{&c.dir, &c.bin, &c.manager, &c.kwok, &c.kubectl} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, err
		}
		*p = abs
	}
	// The demo directory ends up in kubeconfig paths and command lines, and `down` deletes
	// it: never a directory that holds anything else.
	home, _ := os.UserHomeDir()
	for _, refused := range []string{"/", home, c.bin} {
		if c.dir == refused {
			return c, fmt.Errorf("refusing --dir=%s: `down` deletes it", c.dir)
		}
	}
	return c, nil
}

// checkBinaries reports the first binary `up` needs that is missing.
func (c config) checkBinaries() error {
	for _, p := range []struct{ path, how string }{
		{filepath.Join(c.bin, "etcd"), "make demo-tools"},
		{filepath.Join(c.bin, "kube-apiserver"), "make demo-tools"},
		{filepath.Join(c.bin, kubeControllerManager), "make demo-tools"},
		{filepath.Join(c.bin, kubeScheduler), "make demo-tools"},
		{c.kwok, "make demo-tools"},
		{c.kubectl, "make demo-tools"},
		{c.manager, "make build"},
	} {
		if _, err := os.Stat(p.path); err != nil {
			return fmt.Errorf("missing %s: run `%s` (or `make demo`)", p.path, p.how)
		}
	}
	return nil
}

// The files of the demo directory.
func (c config) path(name string) string { return filepath.Join(c.dir, name) }

func (c config) logPath(name string) string { return filepath.Join(c.dir, "logs", name) }
