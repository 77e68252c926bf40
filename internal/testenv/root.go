package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ModulePath is the Go module path of the Deich repository.
const ModulePath = "github.com/deich-io/deich"

// RepoRoot returns the root directory of the Deich repository: the nearest
// directory at or above the working directory containing a go.mod for
// module [ModulePath]. go.mod files of other modules (e.g. tool modules under
// hack/) are skipped.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: get working directory: %w", err)
	}
	for dir := wd; ; {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod")) //nolint:gosec // G304: reads go.mod files while walking up to the repository root.
		switch {
		case err == nil:
			if modulePath(data) == ModulePath {
				return dir, nil
			}
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("find repo root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repo root: no go.mod for module %s at or above %s", ModulePath, wd)
		}
		dir = parent
	}
}

// modulePath extracts the module path from the contents of a go.mod file,
// or returns "" if there is no module directive.
func modulePath(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		rest = strings.TrimSpace(rest)
		if unq, err := strconv.Unquote(rest); err == nil {
			return unq
		}
		return rest
	}
	return ""
}
