package render

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestMirrorable(t *testing.T) {
	tests := []struct {
		name    string
		gk      schema.GroupKind
		refused bool
	}{
		{"RBAC Roles are refused", schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "Role"}, true},
		{"RBAC RoleBindings are refused", schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}, true},
		{"CustomResourceDefinitions are refused", schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}, true},
		{"admission webhooks are refused", schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}, true},
		{"APIServices are refused", schema.GroupKind{Group: "apiregistration.k8s.io", Kind: "APIService"}, true},
		{"Leases are refused", schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}, true},
		{"Deich's own SharedServices are refused", schema.GroupKind{Group: "resilience.deich.io", Kind: "SharedService"}, true},
		{"Pods are refused", schema.GroupKind{Kind: "Pod"}, true},
		{"Endpoints are refused", schema.GroupKind{Kind: "Endpoints"}, true},
		{"EndpointSlices are refused like Endpoints", schema.GroupKind{Group: "discovery.k8s.io", Kind: "EndpointSlice"}, true},
		{"Deployments are mirrorable", schema.GroupKind{Group: "apps", Kind: "Deployment"}, false},
		{"Secrets are mirrorable as a kind", schema.GroupKind{Kind: "Secret"}, false},
		{"Services are mirrorable", schema.GroupKind{Kind: "Service"}, false},
		{"a custom resource named Pod in another group is mirrorable", schema.GroupKind{Group: "example.com", Kind: "Pod"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Mirrorable(tt.gk)
			var nm *NotMirrorableError
			if got := errors.As(err, &nm); got != tt.refused {
				t.Fatalf("Mirrorable(%v) = %v, want refused %v", tt.gk, err, tt.refused)
			}
			if tt.refused && (nm.GroupKind != tt.gk || nm.Reason == "" || !strings.HasPrefix(err.Error(), "kind "+tt.gk.Kind)) {
				t.Errorf("Mirrorable(%v) = %#v (%q), want the kind and a reason", tt.gk, nm, err)
			}
		})
	}
}

func TestRenderRefusesWhatMustNotBeMirrored(t *testing.T) {
	tests := []struct {
		name        string
		src         string
		wantMessage string
	}{
		{
			name:        "a service-account token Secret is refused",
			src:         "apiVersion: v1\nkind: Secret\nmetadata: {name: web-token, namespace: buergerkonto, annotations: {kubernetes.io/service-account.name: web}}\ntype: kubernetes.io/service-account-token\ndata: {token: eHh4}\n",
			wantMessage: "Secret buergerkonto/web-token is never mirrored: service-account tokens are signed by one cluster",
		},
		{
			name:        "an RBAC RoleBinding is refused",
			src:         "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: admins, namespace: buergerkonto}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}\n",
			wantMessage: "RoleBinding.rbac.authorization.k8s.io buergerkonto/admins is never mirrored: RBAC grants permissions",
		},
		{
			name:        "a ConfigMap in kube-system is refused",
			src:         "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: coredns, namespace: kube-system}\ndata: {Corefile: x}\n",
			wantMessage: "ConfigMap kube-system/coredns is never mirrored: kube-system holds the cluster's own control plane",
		},
		{
			name:        "a Deployment in kube-public is refused",
			src:         "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: kube-public}\n",
			wantMessage: "Deployment.apps kube-public/x is never mirrored",
		},
		{
			name:        "a ReplicaSet controlled by its Deployment is refused: the peer's Deployment creates its own",
			src:         "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-7d9f\n  namespace: buergerkonto\n  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u1, controller: true}]\nspec: {replicas: 3}\n",
			wantMessage: "ReplicaSet.apps buergerkonto/web-7d9f is never mirrored: it is controlled by Deployment/web",
		},
		{
			name:        "a Pod is refused",
			src:         "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: buergerkonto}\n",
			wantMessage: "Pod buergerkonto/web-1 is never mirrored: pods are created by their workload",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(fromYAML(t, tt.src), standbyFor(deichv1alpha1.StandbyCold))
			if got != nil {
				t.Errorf("Render() returned a copy: %v", got.Object)
			}
			var nm *NotMirrorableError
			if !errors.As(err, &nm) {
				t.Fatalf("Render() error = %v, want a *NotMirrorableError", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantMessage) {
				t.Errorf("Render() error = %q, want it to start with %q", err, tt.wantMessage)
			}
		})
	}
}

func TestRenderMirrorsWhatIsOnlyOwnedWithoutController(t *testing.T) {
	// An owner reference without controller: true (say, for garbage collection with its
	// owner) does not make another controller create the object at the peer.
	src := fromFile(t, filepath.Join("testdata", "strip", "configmap.yaml"))
	src.Object["metadata"].(map[string]any)["ownerReferences"] = []any{
		map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": "u1"},
	}
	got := mustRender(t, src, activeFor())
	if diff := cmp.Diff(nil, got.Object["metadata"].(map[string]any)["ownerReferences"]); diff != "" {
		t.Errorf("ownerReferences mismatch (-want +got):\n%s", diff)
	}
}
