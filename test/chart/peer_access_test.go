package chart

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/testenv"
)

// namespacedPeerTree is the kustomize tree of the identity confined to named namespaces; its
// chart's template is the one the deich chart renders for peerAccess.
var namespacedPeerTree = filepath.Join("config", "peer", "namespaced")

// peerAccessValues switch peerAccess on with the namespaces config/peer/namespaced lists as it
// is checked in.
var peerAccessValues = []string{"--set", "site=" + site, "--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={buergerkonto}"}

func TestPeerAccessTemplateIsTheOneOfConfigPeerNamespaced(t *testing.T) {
	want := readFile(t, filepath.Join(root, namespacedPeerTree, "charts", "deich-peer-access", "templates", "peer-access.yaml"))
	got := readFile(t, filepath.Join(root, "charts", "deich", "templates", "peer-access.yaml"))
	if !bytes.Equal(want, got) {
		t.Fatalf("charts/deich/templates/peer-access.yaml differs from %s's template; run `make manifests`", namespacedPeerTree)
	}
}

// TestPeerAccessGrantsWhatConfigPeerNamespacedGrants renders the chart's peerAccess with the
// namespaces config/peer/namespaced lists and compares it with the kustomize build of that
// tree: the same objects, rules, role references and subjects.
func TestPeerAccessGrantsWhatConfigPeerNamespacedGrants(t *testing.T) {
	requireHelm(t)
	built, err := testenv.KustomizeBuildWithHelm(filepath.Join(root, namespacedPeerTree))
	if err != nil {
		t.Fatal(err)
	}
	want := rbacObjects(t, built)
	got := rbacObjects(t, peerObjects(render(t, peerAccessValues...)))
	if len(want) == 0 {
		t.Fatalf("%s has no RBAC objects", namespacedPeerTree)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart peerAccess differs from %s (-want +got):\n%s", namespacedPeerTree, diff)
	}
}

// TestPeerAccessGrantsInTheListedNamespacesWhatConfigPeerGrantsEverywhere checks the
// namespaced identity against config/peer's: in each listed namespace the same rules as
// config/peer's ClusterRole deich-peer (but for namespaces and Leases), bound by a RoleBinding
// there; cluster-wide, only get on namespaces; Leases in deich-leases only.
func TestPeerAccessGrantsInTheListedNamespacesWhatConfigPeerGrantsEverywhere(t *testing.T) {
	requireHelm(t)
	clusterWide := rbacObjects(t, kustomizeBuild(t, filepath.Join(root, "config", "peer")))
	var everywhere []rbacv1.PolicyRule
	for _, r := range clusterWide["ClusterRole/deich-peer"].Rules {
		if slices.Contains(r.Resources, "namespaces") || slices.Contains(r.Resources, "leases") {
			continue
		}
		everywhere = append(everywhere, r)
	}
	if len(everywhere) == 0 {
		t.Fatal("config/peer has no ClusterRole deich-peer with rules")
	}

	objs := render(t, "--set", "site="+site, "--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={buergerkonto,kfz-zulassung}")
	got := rbacObjects(t, peerObjects(objs))
	if diff := cmp.Diff(everywhere, got["ClusterRole/deich-peer-namespaced"].Rules); diff != "" {
		t.Errorf("rules in a listed namespace differ from config/peer's ClusterRole deich-peer (-want +got):\n%s", diff)
	}

	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deich-peer", Namespace: releaseNamespace}}
	wantBindings := map[string]rbacv1.RoleRef{
		"ClusterRoleBinding/deich-peer-namespaces":    {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "deich-peer-namespaces"},
		"RoleBinding/deich-leases/deich-peer-leases":  {APIGroup: rbacv1.GroupName, Kind: "Role", Name: "deich-peer-leases"},
		"RoleBinding/buergerkonto/deich-peer":         {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "deich-peer-namespaced"},
		"RoleBinding/buergerkonto/deich-peer-mirror":  {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "deich-peer-namespaced-mirror"},
		"RoleBinding/kfz-zulassung/deich-peer":        {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "deich-peer-namespaced"},
		"RoleBinding/kfz-zulassung/deich-peer-mirror": {APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "deich-peer-namespaced-mirror"},
	}
	gotBindings := map[string]rbacv1.RoleRef{}
	for key, o := range got {
		if !strings.Contains(key, "Binding/") {
			continue
		}
		gotBindings[key] = o.RoleRef
		if diff := cmp.Diff(subject, o.Subjects); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", key, diff)
		}
	}
	if diff := cmp.Diff(wantBindings, gotBindings); diff != "" {
		t.Errorf("bindings (-want +got):\n%s", diff)
	}
	wantReadNamespaces := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}}}
	if diff := cmp.Diff(wantReadNamespaces, got["ClusterRole/deich-peer-namespaces"].Rules); diff != "" {
		t.Errorf("the cluster-wide grant (-want +got):\n%s", diff)
	}

	t.Run("acceptSecrets false drops the rule for Secrets", func(t *testing.T) {
		objs := render(t, append(peerAccessValues, "--set", "peerAccess.acceptSecrets=false")...)
		for _, r := range rbacObjects(t, objs)["ClusterRole/deich-peer-namespaced"].Rules {
			if slices.Contains(r.Resources, "secrets") {
				t.Errorf("a rule grants Secrets: %+v", r)
			}
		}
	})
	t.Run("serviceAccountName names the identity and its roles", func(t *testing.T) {
		objs := render(t, append(peerAccessValues, "--set", "peerAccess.serviceAccountName=deich-peer-hh")...)
		for _, o := range peerObjects(objs) {
			if o.GetKind() != "Namespace" && !strings.HasPrefix(o.GetName(), "deich-peer-hh") {
				t.Errorf("%s is not named after the identity", objectKey(o))
			}
		}
	})
}

func TestPeerAccessRenderingFailsWithAMessageSayingWhatToSet(t *testing.T) {
	requireHelm(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{{
		name: "without namespaces",
		args: []string{"--set", "peerAccess.enabled=true"},
		want: "peerAccess.namespaces is empty",
	}, {
		name: "with a namespace Deich never mirrors into",
		args: []string{"--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={buergerkonto,kube-system}"},
		want: "peerAccess.namespaces[1] is kube-system, which holds no services",
	}, {
		name: "with the release namespace",
		args: []string{"--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={" + releaseNamespace + "}"},
		want: "peerAccess.namespaces[0] is " + releaseNamespace,
	}, {
		name: "with a name that is no namespace",
		args: []string{"--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={Buergerkonto}"},
		want: "at '/peerAccess/namespaces/0': 'Buergerkonto' does not match pattern",
	}, {
		name: "with a namespace listed twice",
		args: []string{"--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={buergerkonto,buergerkonto}"},
		want: "at '/peerAccess/namespaces': items at 0 and 1 are equal",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			expectTemplateError(t, tc.want, append([]string{"--set", "site=" + site}, tc.args...)...)
		})
	}
}

// TestPeerAccessObjectsAreAcceptedByTheAPIServer applies what peerAccess renders with
// server-side apply as a dry run, in a cluster where the listed namespaces exist.
func TestPeerAccessObjectsAreAcceptedByTheAPIServer(t *testing.T) {
	requireHelm(t)
	objs := peerObjects(render(t, "--set", "site="+site, "--set", "peerAccess.enabled=true", "--set", "peerAccess.namespaces={buergerkonto,kfz-zulassung}"))
	c, warnings := apiServer(t)
	ctx := t.Context()
	for _, ns := range []string{"buergerkonto", "kfz-zulassung", "deich-leases"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}
	var got []string
	for _, o := range objs {
		got = append(got, objectKey(o))
		t.Run(objectKey(o), func(t *testing.T) {
			warnings.reset()
			err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
				client.FieldOwner("deich-chart-test"), client.ForceOwnership, client.DryRunAll)
			if err != nil {
				t.Fatalf("server-side apply (dry run): %v", err)
			}
			if w := warnings.get(); len(w) > 0 {
				t.Errorf("the API server warned: %q", w)
			}
		})
	}
	want := []string{
		"Namespace/deich-leases",
		"ServiceAccount/deich-system/deich-peer",
		"Secret/deich-system/deich-peer-token",
		"ClusterRole/deich-peer-namespaces",
		"ClusterRoleBinding/deich-peer-namespaces",
		"ClusterRole/deich-peer-namespaced",
		"ClusterRole/deich-peer-namespaced-mirror",
		"Role/deich-leases/deich-peer-leases",
		"RoleBinding/deich-leases/deich-peer-leases",
		"RoleBinding/buergerkonto/deich-peer",
		"RoleBinding/buergerkonto/deich-peer-mirror",
		"RoleBinding/kfz-zulassung/deich-peer",
		"RoleBinding/kfz-zulassung/deich-peer-mirror",
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rendered objects (-want +got):\n%s", diff)
	}
}

// peerObjects are the objects of the peer identity among objs (label
// app.kubernetes.io/component=peer).
func peerObjects(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetLabels()["app.kubernetes.io/component"] == "peer" {
			out = append(out, o)
		}
	}
	return out
}
