package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deich-io/deich/internal/testenv"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc: 100 on every Linux architecture Go
// supports.
const clockTicks = 100

// processes names the processes whose CPU time a benchmark accounts for: the control planes
// of both sites, the managers, and this process.
type processes struct {
	pids map[string]int // by a name for tables, e.g. "kube-apiserver mv-schwerin"
}

// findControlPlanes finds the etcd and kube-apiserver of each site among this process's
// children (envtest starts them directly), matching each API server by its port and each
// etcd by the URL its API server talks to. Other engineers' test control planes on the same
// machine are not children of this process and are never mistaken for ours.
func findControlPlanes(sites ...*testenv.Site) (*processes, error) {
	p := &processes{pids: map[string]int{"bench (this process)": os.Getpid()}}
	children, err := childProcesses()
	if err != nil {
		return nil, err
	}
	etcdByURL := map[string]int{}
	type apiServer struct {
		pid          int
		port, etcdAt string
	}
	var apiServers []apiServer
	for pid, args := range children {
		switch filepath.Base(args[0]) {
		case "etcd":
			for _, u := range strings.Split(flagValue(args, "listen-client-urls"), ",") {
				etcdByURL[u] = pid
			}
		case "kube-apiserver":
			apiServers = append(apiServers, apiServer{pid: pid, port: flagValue(args, "secure-port"), etcdAt: flagValue(args, "etcd-servers")})
		}
	}
	for _, site := range sites {
		found := false
		for _, a := range apiServers {
			if !strings.HasSuffix(site.URL(), ":"+a.port) {
				continue
			}
			found = true
			p.pids["kube-apiserver "+site.Name] = a.pid
			if pid, ok := etcdByURL[a.etcdAt]; ok {
				p.pids["etcd "+site.Name] = pid
			}
		}
		if !found {
			return nil, fmt.Errorf("no kube-apiserver child process serves %s", site.URL())
		}
	}
	return p, nil
}

// with returns a copy of p that also accounts for the named processes.
func (p *processes) with(extra map[string]int) *processes {
	out := &processes{pids: make(map[string]int, len(p.pids)+len(extra))}
	for k, v := range p.pids {
		out.pids[k] = v
	}
	for k, v := range extra {
		out.pids[k] = v
	}
	return out
}

// without returns a copy of p that no longer accounts for the named process.
func (p *processes) without(name string) *processes {
	out := p.with(nil)
	delete(out.pids, name)
	return out
}

// childProcesses returns the argument vectors of this process's children, by PID.
func childProcesses() (map[int][]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	out := map[int][]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != self {
			continue
		}
		args, err := cmdline(pid)
		if err != nil || len(args) == 0 {
			continue
		}
		out[pid] = args
	}
	return out, nil
}

// findChild returns the PID of this process's child whose arguments include arg. The managers
// are found by their --kubeconfig flag, whose path is unique to each start.
func findChild(arg string) (int, error) {
	children, err := childProcesses()
	if err != nil {
		return 0, err
	}
	for pid, args := range children {
		for _, a := range args {
			if a == arg {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no child process has argument %s", arg)
}

func cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

type procStat struct {
	ppid  int
	ticks uint64 // utime + stime
}

// readStat reads the parent PID and the CPU time of pid from /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces; fields after it
	// start with the state (field 3).
	s := string(b)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 13 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(rest[1])
	utime, _ := strconv.ParseUint(rest[11], 10, 64)
	stime, _ := strconv.ParseUint(rest[12], 10, 64)
	return procStat{ppid: ppid, ticks: utime + stime}, nil
}

// machineTicks returns the CPU time all cores spent busy (user, nice, system, irq, softirq)
// and the time the hypervisor gave to other guests while this machine wanted to run (steal).
func machineTicks() (busy, steal uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest guest_nice
	for i, f := range fields[1:] {
		v, _ := strconv.ParseUint(f, 10, 64)
		switch i {
		case 0, 1, 2, 5, 6:
			busy += v
		case 7:
			steal += v
		}
	}
	return busy, steal
}

// cpuWindow measures how many cores each process used between start and stop.
type cpuWindow struct {
	procs   *processes
	started time.Time
	ticks   map[string]uint64
	machine uint64
	steal   uint64
}

func (p *processes) startCPU() *cpuWindow {
	w := &cpuWindow{procs: p, started: time.Now(), ticks: map[string]uint64{}}
	w.machine, w.steal = machineTicks()
	for name, pid := range p.pids {
		if st, err := readStat(pid); err == nil {
			w.ticks[name] = st.ticks
		}
	}
	return w
}

// cpuUse is the result of a cpuWindow: cores used per process, the rest of the machine and
// the whole machine.
type cpuUse struct {
	wall      time.Duration
	byProcess map[string]float64
	others    float64
	machine   float64
	steal     float64
}

func (w *cpuWindow) stop() cpuUse {
	elapsed := time.Since(w.started)
	wall := elapsed.Seconds()
	use := cpuUse{wall: elapsed, byProcess: map[string]float64{}}
	var ours uint64
	for name, pid := range w.procs.pids {
		st, err := readStat(pid)
		before, ok := w.ticks[name]
		if err != nil || !ok {
			continue
		}
		d := st.ticks - before
		ours += d
		use.byProcess[name] = float64(d) / clockTicks / wall
	}
	busy, steal := machineTicks()
	machine := busy - w.machine
	use.machine = float64(machine) / clockTicks / wall
	use.steal = float64(steal-w.steal) / clockTicks / wall
	if machine > ours {
		use.others = float64(machine-ours) / clockTicks / wall
	}
	return use
}

// String lists the cores used, busiest first.
func (u cpuUse) String() string {
	names := make([]string, 0, len(u.byProcess))
	for n := range u.byProcess {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return u.byProcess[names[i]] > u.byProcess[names[j]] })
	parts := make([]string, 0, len(names)+2)
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, u.byProcess[n]))
	}
	parts = append(parts, fmt.Sprintf("other processes %.2f", u.others), fmt.Sprintf("machine total %.2f", u.machine), fmt.Sprintf("steal %.2f", u.steal))
	return strings.Join(parts, ", ")
}

// perObject renders the cores the named processes used together and their CPU time per
// object of n.
func (u cpuUse) perObject(n int, processes ...string) string {
	var cores float64
	for _, p := range processes {
		c, ok := u.byProcess[p]
		if !ok {
			return "n/a"
		}
		cores += c
	}
	return fmt.Sprintf("%.2f (%.2f ms/object)", cores, cores*u.wall.Seconds()/float64(n)*1000)
}

// memory is a process's resident set: now and at its peak (VmHWM), in bytes.
type memory struct {
	rss, hwm uint64
}

func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	defer func() { _ = f.Close() }()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch k {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("parse %s of %d: %w", k, pid, err)
		}
		*dst = kb * 1024
	}
	return m, sc.Err()
}

// scrapeGauge reads one unlabelled sample from a Prometheus text endpoint.
func scrapeGauge(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", http.NoBody)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not served at %s", name, addr)
}

const mib = 1 << 20
