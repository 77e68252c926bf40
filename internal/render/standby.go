package render

import (
	"errors"
	"strconv"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// defaultsToOneReplica are the kinds whose spec.replicas the API server defaults to 1 when it
// is missing.
func defaultsToOneReplica(id identity) bool {
	switch id.gk.Group {
	case "apps":
		return id.gk.Kind == "Deployment" || id.gk.Kind == "StatefulSet" || id.gk.Kind == "ReplicaSet"
	case "":
		return id.gk.Kind == "ReplicationController"
	}
	return false
}

// replicas returns the object's replica count, and whether it has one: the kinds that default
// to 1 always have one; any other kind has one when its spec.replicas is an integer.
func replicas(obj map[string]any, id identity) (int64, bool, error) {
	spec, _ := obj["spec"].(map[string]any)
	v, present := spec["replicas"]
	if !present || v == nil {
		return 1, defaultsToOneReplica(id), nil
	}
	n, ok := asInt64(v)
	if !ok {
		if defaultsToOneReplica(id) {
			return 0, false, errors.New("spec.replicas is not an integer")
		}
		// A custom resource's replicas may mean something else; leave it alone.
		return 0, false, nil
	}
	return n, true, nil
}

func isKind(id identity, group, kind string) bool {
	return id.gk.Group == group && id.gk.Kind == kind
}

// standbyForm turns a copy into its standby form for mode and returns the annotations that
// record what it changed. They are set after the overrides, so no override can forge them.
func standbyForm(obj map[string]any, id identity, mode deichv1alpha1.StandbyMode) (map[string]string, error) {
	if mode == "" {
		mode = deichv1alpha1.StandbyCold
	}
	record := map[string]string{}

	n, ok, err := replicas(obj, id)
	if err != nil {
		return nil, err
	}
	if ok {
		record[AnnotationSourceReplicas] = strconv.FormatInt(n, 10)
		standby := n
		switch mode {
		case deichv1alpha1.StandbyCold:
			standby = 0
		case deichv1alpha1.StandbyWarm:
			standby = min(1, n)
		}
		spec, err := ensureMap(obj, "spec")
		if err != nil {
			return nil, err
		}
		spec["replicas"] = standby
	}

	if isKind(id, "apps", "DaemonSet") && mode != deichv1alpha1.StandbyHot {
		nodeSelector, err := ensureMap(obj, "spec", "template", "spec", "nodeSelector")
		if err != nil {
			return nil, err
		}
		nodeSelector[NodeSelectorStandby] = "true"
		record[AnnotationStandbyNodeSelector] = "true"
	}

	// A HorizontalPodAutoscaler at the standby would scale its target up from the standby form
	// by the standby's own metrics, or scale a target Deich does not scale (a custom resource
	// with a scale subresource): in Cold and Warm form it may keep one replica at most. Its
	// range comes back with the active form (AnnotationActivePatch).
	if isKind(id, "autoscaling", "HorizontalPodAutoscaler") && mode != deichv1alpha1.StandbyHot {
		spec, err := ensureMap(obj, "spec")
		if err != nil {
			return nil, err
		}
		spec["minReplicas"] = int64(1)
		spec["maxReplicas"] = int64(1)
	}

	// A Job or CronJob would do its work a second time at the standby (send the letters,
	// bill the accounts), whatever the mode: it is suspended until promotion.
	if isKind(id, "batch", "Job") || isKind(id, "batch", "CronJob") {
		spec, err := ensureMap(obj, "spec")
		if err != nil {
			return nil, err
		}
		if suspended, _ := spec["suspend"].(bool); !suspended {
			spec["suspend"] = true
			record[AnnotationStandbySuspended] = "true"
		}
	}
	return record, nil
}

// undoStandbyForm restores the serving form of an object that is in standby form (a fenced
// object, or a copy rendered again) but has no AnnotationActivePatch, as Deich rendered
// objects before that annotation existed: as far as its standby-form annotations record it.
// Overrides for the Standby role stay. Without this, a second rendering would record the
// standby replica count as the source's and promotion could not restore the real one. It
// runs before the annotations are stripped.
func undoStandbyForm(obj map[string]any, id identity) {
	meta, _ := obj["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	spec, _ := obj["spec"].(map[string]any)
	if spec == nil {
		return
	}
	if n, ok := parseReplicas(annotations[AnnotationSourceReplicas]); ok {
		if _, has, err := replicas(obj, id); has && err == nil {
			spec["replicas"] = n
		}
	}
	// The node selector key is Deich's; drop it even when the annotation got lost.
	if podSpec, ok := nestedMap(spec, "template", "spec"); ok {
		if nodeSelector, ok := podSpec["nodeSelector"].(map[string]any); ok {
			delete(nodeSelector, NodeSelectorStandby)
			if len(nodeSelector) == 0 {
				delete(podSpec, "nodeSelector")
			}
		}
	}
	if annotations[AnnotationStandbySuspended] == "true" && (isKind(id, "batch", "Job") || isKind(id, "batch", "CronJob")) {
		spec["suspend"] = false
	}
}

func parseReplicas(v any) (int64, bool) {
	s, ok := v.(string)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// SourceReplicas returns the replica count the source had when obj, a copy in standby form,
// was rendered, and whether obj records one. Promotion sets spec.replicas to it.
// (Rendering a copy in standby form for the Active role restores it too.)
func SourceReplicas(obj *unstructured.Unstructured) (int64, bool) {
	if obj == nil {
		return 0, false
	}
	return parseReplicas(obj.GetAnnotations()[AnnotationSourceReplicas])
}
