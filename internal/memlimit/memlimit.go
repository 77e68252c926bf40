// Package memlimit tunes how much memory the Go runtime lets the manager's heap take. It
// gives the runtime a soft memory limit below the container's: the garbage collector then
// works harder as the heap nears it, instead of letting the heap grow to twice the live data
// (GOGC=100) and the kernel kill the manager when that crosses the container's limit. A
// catalogue of services that grows past what the limit was sized for then costs CPU in the
// collector before it costs a restart, and a restart costs a leader election. And it lets the
// heap grow to 1.5 times the live data between collections (GOGC=50) instead of twice:
// the manager's live data are its watches, long-lived and small next to what a collection
// costs, so the lower peak comes at little CPU.
package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Share is the part of the container's memory limit the Go heap may use; the rest is left to
// the runtime's own memory, the binary and the stacks.
const Share = 0.9

// The files that hold the container's memory limit: cgroup v2 first, then v1.
var limitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// Set sets the runtime's soft memory limit to Share of the container's memory limit and
// returns it. It does nothing, and returns 0, when GOMEMLIMIT is set (the operator's choice
// wins) or when the container has no memory limit.
func Set() (int64, error) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	for _, f := range limitFiles {
		data, err := os.ReadFile(f) //nolint:gosec // G304: f is one of the fixed cgroup paths above.
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read the memory limit from %s: %w", f, err)
		}
		limit, ok, err := Parse(string(data))
		if err != nil {
			return 0, fmt.Errorf("read the memory limit from %s: %w", f, err)
		}
		if !ok {
			return 0, nil
		}
		soft := SoftLimit(limit)
		debug.SetMemoryLimit(soft)
		return soft, nil
	}
	return 0, nil
}

// Parse reads a cgroup memory limit file: "max" (v2) or a number of bytes. ok is false when
// there is no limit: "max", or v1's "unlimited" value (anything at or above 2^62).
func Parse(content string) (limit int64, ok bool, err error) {
	s := strings.TrimSpace(content)
	if s == "max" {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("not a number of bytes: %q", s)
	}
	if v == 0 || v >= 1<<62 {
		return 0, false, nil
	}
	return int64(v), true, nil
}

// GCPercent is the manager's GOGC unless its environment sets one.
const GCPercent = 50

// SetGCPercent sets the collector's target percentage to GCPercent and returns it. It does
// nothing, and returns 0, when GOGC is set (the operator's choice wins).
func SetGCPercent() int {
	if os.Getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent
}

// SoftLimit is Share of limit, in bytes.
func SoftLimit(limit int64) int64 {
	return int64(math.Floor(float64(limit) * Share))
}
