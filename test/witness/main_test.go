// Package witness proves that config/witness grants a witness's partners what they need and
// nothing more. One real API server stands in for the witness state's cluster, with Deich's
// CRDs installed, as at a site that is a partner for other services; config/witness is applied
// as it is, and once more through an overlay for a second pair of partner states; and every
// request under test is made with a kubeconfig that holds only a partner's token.
package witness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deich-io/deich/internal/testenv"
)

const (
	// witnessSite is the witness state's cluster.
	witnessSite = "hh-hamburg"
	// leaseNamespace is the namespace config/witness creates, and the default of a witness
	// peer's spec.leaseNamespace.
	leaseNamespace = "deich-witness"
	// otherPairNamespace is the namespace of a second pair of partner states, given to them
	// by an overlay of config/witness.
	otherPairNamespace = "deich-witness-ni-hb"
	// partnerA and partnerB are the ServiceAccounts config/witness creates, one per partner
	// state.
	partnerA = "deich-partner-a"
	partnerB = "deich-partner-b"
)

var (
	// witness is the witness state's cluster; nil with -short.
	witness *testenv.Site
	// tree is config/witness as kustomize builds it.
	tree []*unstructured.Unstructured
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tree, err = testenv.KustomizeBuild(filepath.Join(root, "config", "witness"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	otherPair, err := buildOverlay(filepath.Join(root, "config", "witness"), otherPairNamespace)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err := testenv.StartDeich(witnessSite)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop the witness:", err)
		}
	}()
	witness = env.Site(witnessSite)
	ctx := context.Background()
	for _, objs := range [][]*unstructured.Unstructured{tree, otherPair} {
		for _, obj := range objs {
			if err := witness.Client.Create(ctx, obj.DeepCopy()); err != nil {
				fmt.Fprintf(os.Stderr, "apply %s %s/%s at %s: %v\n", obj.GetKind(), obj.GetNamespace(), obj.GetName(), witnessSite, err)
				return 1
			}
		}
	}
	return m.Run()
}

// buildOverlay builds, as the witness's administrators would for a further pair of partner
// states, an overlay of base that only sets the namespace.
func buildOverlay(base, namespace string) ([]*unstructured.Unstructured, error) {
	dir, err := os.MkdirTemp("", "deich-witness-overlay-")
	if err != nil {
		return nil, fmt.Errorf("create the overlay's directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }() // a temporary directory; nothing to report
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return nil, fmt.Errorf("locate %s from the overlay: %w", base, err)
	}
	kustomization := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: %s\nresources:\n- %s\n", namespace, filepath.ToSlash(rel))
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o600); err != nil {
		return nil, fmt.Errorf("write the overlay: %w", err)
	}
	return testenv.KustomizeBuild(dir)
}

// requireWitness skips a test when the witness's API server is not running (go test -short).
func requireWitness(t testing.TB) {
	t.Helper()
	if witness == nil {
		t.Skip("envtest: needs a real API server (not run with -short)")
	}
}
