package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// BuildManager builds the manager binary of the module at src (a checkout of the Deich
// repository) into out, with the local Go toolchain, as `make build` does.
func BuildManager(src, out string) error {
	build := exec.Command("go", "build", "-trimpath", "-o", out, ".") //nolint:gosec // G204: tests build the manager where they choose.
	build.Dir = src
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	if output, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("testenv: build manager: %w\n%s", err, output)
	}
	return nil
}

// FreeAddr returns a loopback address with a port nothing listens on now, for a manager's
// metrics endpoint.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("testenv: find a free port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr, nil
}

// ScrapeSum reads the Prometheus endpoint at addr and returns the sum of the samples of the
// metric name whose label set contains match (for example `controller="sharedservice"`).
func ScrapeSum(ctx context.Context, addr, name, match string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", http.NoBody)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("testenv: scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("testenv: scrape %s: %w", addr, err)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		labels, ok := strings.CutPrefix(line, name+"{")
		if !ok || !strings.Contains(labels, match) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("testenv: parse %q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}
