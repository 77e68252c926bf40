package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// NotMirrorableError says that an object, or every object of a kind, must never be copied to
// another cluster, and why. It is a lasting property of the object, not a transient failure:
// retrying does not help, the SharedService's selection must change.
type NotMirrorableError struct {
	// GroupKind is the kind of the refused object.
	GroupKind schema.GroupKind
	// Namespace and Name identify the refused object; both are empty when a whole kind is
	// refused (Mirrorable).
	Namespace, Name string
	// Reason says why, as a clause that completes "… is never mirrored: ".
	Reason string
}

func (e *NotMirrorableError) Error() string {
	kind := e.GroupKind.Kind
	if e.GroupKind.Group != "" {
		kind += "." + e.GroupKind.Group
	}
	switch {
	case e.Name == "":
		return fmt.Sprintf("kind %s is never mirrored: %s", kind, e.Reason)
	case e.Namespace == "":
		return fmt.Sprintf("%s %s is never mirrored: %s", kind, e.Name, e.Reason)
	default:
		return fmt.Sprintf("%s %s/%s is never mirrored: %s", kind, e.Namespace, e.Name, e.Reason)
	}
}

// refusedGroups are API groups whose objects are cluster-local or grant permissions. The list
// matches the CEL rule on SharedService spec.resources, so objects the API server lets a user
// select are refused here only for object-level reasons, plus the group-moved twins of
// refused core kinds (events.k8s.io, discovery.k8s.io).
var refusedGroups = map[string]string{
	"rbac.authorization.k8s.io":    "RBAC grants permissions in the cluster that holds it; grant them at each site on purpose",
	"apiextensions.k8s.io":         "CustomResourceDefinitions are cluster-wide API definitions; install them at each site",
	"admissionregistration.k8s.io": "admission webhooks and policies are cluster-wide; install them at each site",
	"apiregistration.k8s.io":       "APIServices are cluster-wide; install them at each site",
	"certificates.k8s.io":          "certificate signing requests are approved by one cluster's signers",
	"authentication.k8s.io":        "token and authentication reviews are requests to one API server, not stored objects",
	"authorization.k8s.io":         "access reviews are requests to one API server, not stored objects",
	"coordination.k8s.io":          "Leases belong to one cluster's leader elections",
	"resilience.deich.io":          "Deich's own objects are applied at each site, never copied between them",
	"events.k8s.io":                "events record what happened in one cluster",
	"discovery.k8s.io":             "EndpointSlices list one cluster's pod addresses; the peer's Services build their own",
}

// refusedCoreKinds are kinds of the core group that describe one cluster.
var refusedCoreKinds = map[string]string{
	"Pod":              "pods are created by their workload; mirror the Deployment, StatefulSet or Job instead",
	"Event":            "events record what happened in one cluster",
	"Node":             "nodes are machines of one cluster",
	"Namespace":        "namespaces are cluster-wide; create the namespace at each site",
	"PersistentVolume": "persistent volumes are storage of one cluster; mirror the PersistentVolumeClaim and replicate the data with the storage layer",
	"Endpoints":        "endpoints list one cluster's pod addresses; the peer's Services build their own",
	"ComponentStatus":  "component statuses describe one cluster's control plane",
	"Binding":          "bindings assign pods to nodes of one cluster",
}

// refusedNamespaces hold the cluster's own machinery.
var refusedNamespaces = map[string]string{
	"kube-system":     "kube-system holds the cluster's own control plane and add-ons",
	"kube-public":     "kube-public holds the cluster's own public information",
	"kube-node-lease": "kube-node-lease holds the heartbeats of the cluster's nodes",
}

// Mirrorable returns a *NotMirrorableError when objects of kind gk must never be copied to
// another cluster, and nil otherwise. The controller can check spec.resources with it before
// it lists anything; Render refuses such objects too, together with object-level reasons
// (service-account token Secrets, system namespaces, objects controlled by another object).
func Mirrorable(gk schema.GroupKind) error {
	if reason, refused := kindRefused(gk); refused {
		return &NotMirrorableError{GroupKind: gk, Reason: reason}
	}
	return nil
}

func kindRefused(gk schema.GroupKind) (reason string, refused bool) {
	if reason, ok := refusedGroups[gk.Group]; ok {
		return reason, true
	}
	if gk.Group == "" {
		if reason, ok := refusedCoreKinds[gk.Kind]; ok {
			return reason, true
		}
	}
	return "", false
}

// refuse returns a *NotMirrorableError when the object obj (the source, or the copy after
// overrides) must not be mirrored.
func refuse(obj map[string]any, id identity) error {
	refused := func(reason string) error {
		return &NotMirrorableError{GroupKind: id.gk, Namespace: id.namespace, Name: id.name, Reason: reason}
	}
	if reason, ok := kindRefused(id.gk); ok {
		return refused(reason)
	}
	if reason, ok := refusedNamespaces[id.namespace]; ok {
		return refused(reason)
	}
	if id.gk.Group == "" && id.gk.Kind == "Secret" && obj["type"] == string(corev1.SecretTypeServiceAccountToken) {
		return refused("service-account tokens are signed by one cluster and bound to its service accounts; the peer issues its own")
	}
	if owner, ok := controllerOf(obj); ok {
		return refused(fmt.Sprintf("it is controlled by %s, which creates it; mirror %s instead and the peer's controller creates its own", owner, owner))
	}
	return nil
}

// controllerOf returns "Kind/name" of the owner reference marked controller: true, if any.
func controllerOf(obj map[string]any) (string, bool) {
	meta, _ := obj["metadata"].(map[string]any)
	refs, _ := meta["ownerReferences"].([]any)
	for _, r := range refs {
		ref, ok := r.(map[string]any)
		if !ok {
			continue
		}
		if c, _ := ref["controller"].(bool); c {
			kind, _ := ref["kind"].(string)
			name, _ := ref["name"].(string)
			return kind + "/" + name, true
		}
	}
	return "", false
}
