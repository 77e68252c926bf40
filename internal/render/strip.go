package render

import (
	"strings"
)

// clusterLocalMetadata are metadata fields the API server or controllers of one cluster set.
// finalizers are among them: each finalizer names a controller of the source's cluster, and
// the peer's controllers add their own.
var clusterLocalMetadata = []string{
	"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
	"deletionGracePeriodSeconds", "managedFields", "ownerReferences", "selfLink", "finalizers",
}

// clusterLocalAnnotations are annotations that tools or controllers of the source's cluster
// set, which would be wrong or misleading at the peer.
var clusterLocalAnnotations = map[string]bool{
	"kubectl.kubernetes.io/last-applied-configuration": true, // kubectl apply at the source
	"deployment.kubernetes.io/revision":                true, // the Deployment controller
	"deprecated.daemonset.template.generation":         true, // the DaemonSet controller
	"control-plane.alpha.kubernetes.io/leader":         true, // old leader elections
	"argocd.argoproj.io/tracking-id":                   true, // Argo CD at the source owns the source, not the copy
	"resilience.deich.io/epoch":                        true, // the claim the source's site serves on; a copy serves on none
}

// clusterLocalAnnotationPrefixes are annotation prefixes of volume binding and provisioning,
// which name one cluster's volumes, nodes and provisioners.
var clusterLocalAnnotationPrefixes = []string{
	"pv.kubernetes.io/",
	"volume.kubernetes.io/",
	"volume.beta.kubernetes.io/",
}

// clusterLocalLabels are labels controllers add to the objects they create.
var clusterLocalLabels = map[string]bool{
	"pod-template-hash":                  true,
	"controller-revision-hash":           true,
	"statefulset.kubernetes.io/pod-name": true,
	"batch.kubernetes.io/controller-uid": true,
	"controller-uid":                     true,
}

// clusterLocalLabelPrefixes mark objects as owned by Flux at the source; at the peer they would
// make Flux treat the copy as its own.
var clusterLocalLabelPrefixes = []string{
	"kustomize.toolkit.fluxcd.io/",
	"helm.toolkit.fluxcd.io/",
}

func dropAnnotation(k string) bool {
	if clusterLocalAnnotations[k] || deichKeys[k] {
		return true
	}
	for _, p := range clusterLocalAnnotationPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func dropLabel(k string) bool {
	if clusterLocalLabels[k] || deichKeys[k] {
		return true
	}
	for _, p := range clusterLocalLabelPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// stripMetadata removes cluster-local fields, labels and annotations, and Deich's own keys, from
// an object's metadata.
func stripMetadata(meta map[string]any) {
	for _, f := range clusterLocalMetadata {
		delete(meta, f)
	}
	deleteKeys(meta, "annotations", dropAnnotation)
	deleteKeys(meta, "labels", dropLabel)
}

// stripTemplateMetadata cleans the metadata of an embedded template (a pod template, a job
// template, a volume claim template): the labels controllers add, and the creationTimestamp
// (null) the API server writes into templates.
func stripTemplateMetadata(tmpl map[string]any) {
	meta, ok := tmpl["metadata"].(map[string]any)
	if !ok {
		return
	}
	delete(meta, "creationTimestamp")
	deleteKeys(meta, "labels", func(k string) bool { return clusterLocalLabels[k] })
	if len(meta) == 0 {
		delete(tmpl, "metadata")
	}
}

// strip removes from obj (a copy) everything that belongs to the source's cluster, Deich's
// labels and annotations included. A standby form must have been undone before (see
// servingForm), as the annotations that record it go too.
func strip(obj map[string]any, id identity) {
	delete(obj, "status")
	if meta, ok := obj["metadata"].(map[string]any); ok {
		stripMetadata(meta)
	}

	spec, _ := obj["spec"].(map[string]any)
	if spec != nil {
		// Pod templates of workloads, and of custom resources that embed one the same way.
		if tmpl, ok := spec["template"].(map[string]any); ok {
			stripTemplateMetadata(tmpl)
		}
	}

	switch id.gk.Group {
	case "":
		switch id.gk.Kind {
		case "Service":
			stripService(spec)
		case "PersistentVolumeClaim":
			if spec != nil {
				delete(spec, "volumeName") // the PersistentVolume it is bound to
			}
		case "ServiceAccount":
			delete(obj, "secrets") // references to token Secrets of this cluster
		}
	case "apps":
		if id.gk.Kind == "StatefulSet" && spec != nil {
			if vcts, ok := spec["volumeClaimTemplates"].([]any); ok {
				for _, v := range vcts {
					if vct, ok := v.(map[string]any); ok {
						delete(vct, "status")
						stripTemplateMetadata(vct)
					}
				}
			}
		}
	case "batch":
		switch id.gk.Kind {
		case "Job":
			// The API server generates the selector from the Job's uid, unless the user
			// chose it (manualSelector: true).
			if spec != nil {
				if manual, _ := spec["manualSelector"].(bool); !manual {
					delete(spec, "selector")
				}
			}
		case "CronJob":
			if jt, ok := nestedMap(obj, "spec", "jobTemplate"); ok {
				stripTemplateMetadata(jt)
				if tmpl, ok := nestedMap(jt, "spec", "template"); ok {
					stripTemplateMetadata(tmpl)
				}
			}
		}
	}
}

// stripService removes the addresses and ports the source's cluster allocated. A headless
// Service keeps clusterIP "None": that is a choice, not an allocation.
//
// ipFamilies are dropped too: the cluster fills them in from its own IP families, and a copy
// that insisted on the source's (say IPv4) would be rejected by a single-stack IPv6 peer. The
// ipFamilyPolicy is dropped only when it is SingleStack, the default; PreferDualStack and
// RequireDualStack are choices and stay.
func stripService(spec map[string]any) {
	if spec == nil {
		return
	}
	if spec["clusterIP"] != "None" {
		delete(spec, "clusterIP")
		delete(spec, "clusterIPs")
	}
	delete(spec, "healthCheckNodePort")
	delete(spec, "ipFamilies")
	if spec["ipFamilyPolicy"] == "SingleStack" {
		delete(spec, "ipFamilyPolicy")
	}
	if ports, ok := spec["ports"].([]any); ok {
		for _, p := range ports {
			if port, ok := p.(map[string]any); ok {
				delete(port, "nodePort")
			}
		}
	}
}

// TrimSource removes from a source object, in place, what Render never reads and always
// strips: status, metadata.managedFields and the last-applied-configuration annotation of
// client-side kubectl apply, which is often as large as the object itself. A cache of source
// objects that trims them holds each one at about the size of its copy, and Render returns
// the same copy for the trimmed object as for the whole one.
func TrimSource(obj map[string]any) {
	delete(obj, "status")
	meta, ok := obj["metadata"].(map[string]any)
	if !ok {
		return
	}
	delete(meta, "managedFields")
	if a, ok := meta["annotations"].(map[string]any); ok {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
		if len(a) == 0 {
			delete(meta, "annotations")
		}
	}
}
