package testenv

import (
	"fmt"
	"path/filepath"

	"github.com/deich-io/deich/internal/operator"
)

// StartDeich starts the sites (sh-kiel and mv-schwerin unless siteNames says otherwise) with
// Deich's CRDs from <repo>/config/crd/bases installed and clients that know Deich's API: what
// every two-site test package needs. Fault tests that need a witness as well call
// [Env.StartWitness] on the result.
func StartDeich(siteNames ...string) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env, err := Start(Options{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                operator.NewScheme(),
	}, siteNames...)
	if err != nil {
		return nil, fmt.Errorf("start sites: %w", err)
	}
	return env, nil
}
