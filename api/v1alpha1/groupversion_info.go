// Package v1alpha1 contains the resilience.deich.io/v1alpha1 API: the partner sites
// (ReplicationPeer), the disaster-recovery standards (RecoveryObjective), the services shared
// between sites (SharedService) and the requests to move them (Switchover).
//
// +kubebuilder:object:generate=true
// +groupName=resilience.deich.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every Deich kind.
	GroupVersion = schema.GroupVersion{Group: "resilience.deich.io", Version: "v1alpha1"}

	// SchemeBuilder registers the Deich kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Deich kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
