package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// kustomizePin finds the kustomize version the Makefile pins.
var kustomizePin = regexp.MustCompile(`(?m)^KUSTOMIZE_VERSION \?= (\S+)$`)

// KustomizeBinary returns the kustomize the tests use: $KUSTOMIZE (set by `make test-all`),
// else <repo>/bin/kustomize-<KUSTOMIZE_VERSION>, the binary `make tools` builds for the
// version the Makefile pins.
func KustomizeBinary() (string, error) {
	if p := os.Getenv("KUSTOMIZE"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile")) //nolint:gosec // G304: the repository's own Makefile.
	if err != nil {
		return "", fmt.Errorf("find the pinned kustomize: %w", err)
	}
	m := kustomizePin.FindSubmatch(makefile)
	if m == nil {
		return "", errors.New("find the pinned kustomize: the Makefile pins no KUSTOMIZE_VERSION")
	}
	return filepath.Join(root, "bin", "kustomize-"+string(m[1])), nil
}

// KustomizeBuild runs `kustomize build dir` with [KustomizeBinary], as a platform engineer
// would before applying a tree of config/, and returns the objects in the order kustomize
// printed them (namespaces first).
func KustomizeBuild(dir string) ([]*unstructured.Unstructured, error) {
	bin, err := KustomizeBinary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "build", dir) //nolint:gosec // G204: the pinned kustomize, run on a directory the test names.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w: %s", dir, err, stderr.String())
	}
	objs, err := DecodeObjects(out)
	if err != nil {
		return nil, fmt.Errorf("decode the output of kustomize build %s: %w", dir, err)
	}
	return objs, nil
}

// DecodeObjects decodes the objects of a multi-document YAML (or JSON) manifest, skipping
// empty documents.
func DecodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}
