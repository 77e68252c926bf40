// Package v1alpha1 contains the resilience.deich.io/v1alpha1 API: the partner sites
// (ReplicationPeer), the disaster-recovery standards (RecoveryObjective), the services shared
// between sites (SharedService), the requests to move them (Switchover) and the drills
// rehearsed on a schedule (DrillSchedule).
//
// +kubebuilder:object:generate=true
// +groupName=resilience.deich.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every Deich kind.
	GroupVersion = schema.GroupVersion{Group: "resilience.deich.io", Version: "v1alpha1"}

	// SchemeBuilder registers the Deich kinds with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Deich kinds to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers every kind of this group version and its list.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ReplicationPeer{}, &ReplicationPeerList{},
		&RecoveryObjective{}, &RecoveryObjectiveList{},
		&SharedService{}, &SharedServiceList{},
		&Switchover{}, &SwitchoverList{},
		&DrillSchedule{}, &DrillScheduleList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
