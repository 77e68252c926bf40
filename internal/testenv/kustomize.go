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

// KustomizeBinary returns the kustomize the tests use: $KUSTOMIZE (set by `make test-all`),
// else <repo>/bin/kustomize-<KUSTOMIZE_VERSION>, the binary `make tools` builds for the
// version the Makefile pins.
func KustomizeBinary() (string, error) {
	return pinnedTool("KUSTOMIZE", "kustomize")
}

// HelmBinary returns the helm the tests use: $HELM (set by `make test-all`), else
// <repo>/bin/helm-<HELM_VERSION>, the binary `make helm` builds for the version the Makefile
// pins.
func HelmBinary() (string, error) {
	return pinnedTool("HELM", "helm")
}

// pinnedTool returns $envVar, else <repo>/bin/<name>-<version>, with the version the Makefile
// pins as <envVar>_VERSION.
func pinnedTool(envVar, name string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile")) //nolint:gosec // G304: the repository's own Makefile.
	if err != nil {
		return "", fmt.Errorf("find the pinned %s: %w", name, err)
	}
	pin := regexp.MustCompile(`(?m)^` + envVar + `_VERSION \?= (\S+)$`)
	m := pin.FindSubmatch(makefile)
	if m == nil {
		return "", fmt.Errorf("find the pinned %s: the Makefile pins no %s_VERSION", name, envVar)
	}
	return filepath.Join(root, "bin", name+"-"+string(m[1])), nil
}

// KustomizeBuild runs `kustomize build dir` with [KustomizeBinary], as a platform engineer
// would before applying a tree of config/, and returns the objects in the order kustomize
// printed them (namespaces first).
func KustomizeBuild(dir string) ([]*unstructured.Unstructured, error) {
	return kustomizeBuild(dir)
}

// KustomizeBuildWithHelm is [KustomizeBuild] for a tree that renders a Helm chart
// (config/peer/namespaced): kustomize runs with --enable-helm and [HelmBinary].
func KustomizeBuildWithHelm(dir string) ([]*unstructured.Unstructured, error) {
	helm, err := HelmBinary()
	if err != nil {
		return nil, err
	}
	return kustomizeBuild(dir, "--enable-helm", "--helm-command", helm)
}

func kustomizeBuild(dir string, flags ...string) ([]*unstructured.Unstructured, error) {
	bin, err := KustomizeBinary()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"build", dir}, flags...)...) //nolint:gosec // G204: the pinned kustomize, run on a directory the test names.
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
