package peer

import (
	"errors"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// registryKubeconfig returns a valid kubeconfig for a server that need not exist: building a
// connection does not contact the server.
func registryKubeconfig(server, token string) []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: peer
  cluster:
    server: %s
contexts:
- name: peer
  context: {cluster: peer, user: deich}
current-context: peer
users:
- name: deich
  user:
    token: %s
`, server, token)
}

func TestRegistryReusesRebuildsAndRemovesConnections(t *testing.T) {
	r := NewRegistry(runtime.NewScheme())
	t.Cleanup(func() { r.Remove("mv-schwerin") })
	first := registryKubeconfig("https://127.0.0.1:1", "token-a")

	conn, rebuilt, err := r.Ensure("mv-schwerin", "mv-schwerin", first)
	if err != nil || rebuilt {
		t.Fatalf("first Ensure() = rebuilt %v, err %v; want a new connection", rebuilt, err)
	}
	if got, ok := r.Get("mv-schwerin"); !ok || got != conn {
		t.Fatalf("Get() after Ensure() = %v, %v; want the connection", got, ok)
	}

	t.Run("reuses the connection while the kubeconfig is unchanged", func(t *testing.T) {
		again, rebuilt, err := r.Ensure("mv-schwerin", "mv-schwerin", first)
		if err != nil || rebuilt || again != conn {
			t.Fatalf("Ensure() = %p rebuilt %v err %v; want the same connection %p", again, rebuilt, err, conn)
		}
	})

	t.Run("rebuilds the connection when the kubeconfig changes", func(t *testing.T) {
		next, rebuilt, err := r.Ensure("mv-schwerin", "mv-schwerin", registryKubeconfig("https://127.0.0.1:1", "token-b"))
		if err != nil || !rebuilt || next == conn {
			t.Fatalf("Ensure() = rebuilt %v err %v same %v; want a rebuilt connection", rebuilt, err, next == conn)
		}
		select {
		case <-conn.done:
		default:
			t.Fatal("the replaced connection is still running")
		}
		conn = next
	})

	t.Run("refuses a second peer for the same site", func(t *testing.T) {
		_, _, err := r.Ensure("other-name", "mv-schwerin", first)
		if !errors.Is(err, ErrSiteTaken) {
			t.Fatalf("Ensure() error = %v, want ErrSiteTaken", err)
		}
	})

	t.Run("drops the connection when the credentials become unacceptable", func(t *testing.T) {
		_, _, err := r.Ensure("mv-schwerin", "mv-schwerin", registryKubeconfig("http://127.0.0.1:1", "token-c"))
		var credErr *CredentialError
		if !errors.As(err, &credErr) || credErr.Reason != ReasonPlainHTTPNotAllowed {
			t.Fatalf("Ensure() error = %v, want a CredentialError with reason %s", err, ReasonPlainHTTPNotAllowed)
		}
		if _, ok := r.Get("mv-schwerin"); ok {
			t.Fatal("a connection built from earlier credentials is still registered")
		}
		select {
		case <-conn.done:
		default:
			t.Fatal("the connection with the old credentials is still running")
		}
	})

	t.Run("closes the connection on Remove", func(t *testing.T) {
		c, _, err := r.Ensure("mv-schwerin", "mv-schwerin", first)
		if err != nil {
			t.Fatal(err)
		}
		r.Remove("mv-schwerin")
		<-c.done
		if _, ok := r.Get("mv-schwerin"); ok {
			t.Fatal("Get() still finds a removed connection")
		}
	})
}

func TestFingerprintNeverContainsTheKubeconfig(t *testing.T) {
	kc := registryKubeconfig("https://127.0.0.1:1", "s3cr3t-token")
	fp := Fingerprint(kc)
	if fp == "" || len(fp) != 16 {
		t.Fatalf("Fingerprint() = %q, want 16 hex characters", fp)
	}
	if Fingerprint(registryKubeconfig("https://127.0.0.1:1", "other")) == fp {
		t.Fatal("different kubeconfigs share a fingerprint")
	}
}
