package render

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func TestStandbyFormScalesWorkloads(t *testing.T) {
	const (
		cold = deichv1alpha1.StandbyCold
		warm = deichv1alpha1.StandbyWarm
		hot  = deichv1alpha1.StandbyHot
	)
	deployment := func(replicas string) string {
		y := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: buergerkonto}\nspec:\n  selector: {matchLabels: {app: web}}\n"
		if replicas != "" {
			y += "  replicas: " + replicas + "\n"
		}
		return y
	}
	tests := []struct {
		name         string
		src          string
		mode         deichv1alpha1.StandbyMode
		wantReplicas int64
		wantSource   int64
	}{
		{"a Cold standby runs no replica of a Deployment with 3", deployment("3"), cold, 0, 3},
		{"a Warm standby runs one replica of a Deployment with 3", deployment("3"), warm, 1, 3},
		{"a Hot standby runs as many replicas as the source", deployment("3"), hot, 3, 3},
		{"an empty standby mode is Cold, the API's default", deployment("3"), "", 0, 3},
		{"a Warm standby of a Deployment scaled to zero stays at zero", deployment("0"), warm, 0, 0},
		{"a Deployment without replicas counts as 1, as Kubernetes defaults it, and Hot keeps 1", deployment(""), hot, 1, 1},
		{"a Deployment without replicas is recorded as 1 and Cold runs none", deployment(""), cold, 0, 1},
		{"a StatefulSet is scaled like a Deployment", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec: {replicas: 5}\n", warm, 1, 5},
		{"a ReplicaSet is scaled like a Deployment", "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs}\nspec: {replicas: 2}\n", cold, 0, 2},
		{"a custom resource with an integer spec.replicas is scaled", "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: register}\nspec: {replicas: 3, instances: 3}\n", cold, 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, fromYAML(t, tt.src), standbyFor(tt.mode))

			replicas, _ := field(got, "spec", "replicas")
			if diff := cmp.Diff(tt.wantReplicas, replicas); diff != "" {
				t.Errorf("spec.replicas mismatch (-want +got):\n%s", diff)
			}
			if n, ok := SourceReplicas(got); !ok || n != tt.wantSource {
				t.Errorf("SourceReplicas() = %d, %v, want %d, true", n, ok, tt.wantSource)
			}
			if got.GetAnnotations()[AnnotationSourceReplicas] != strconv.FormatInt(tt.wantSource, 10) {
				t.Errorf("annotations = %v, want %s: %d", got.GetAnnotations(), AnnotationSourceReplicas, tt.wantSource)
			}
		})
	}
}

func TestStandbyFormLeavesObjectsWithoutReplicasAlone(t *testing.T) {
	for _, tt := range []struct{ name, src string }{
		{"a custom resource without spec.replicas", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n"},
		{"a custom resource whose spec.replicas is not an integer", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {replicas: auto}\n"},
		{"a ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"},
	} {
		t.Run(tt.name+" is not changed and records no source replicas", func(t *testing.T) {
			src := fromYAML(t, tt.src)
			active := mustRender(t, src, activeFor())
			standby := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold))

			if _, ok := SourceReplicas(standby); ok {
				t.Errorf("SourceReplicas() reports a count on %v", standby.GetAnnotations())
			}
			if diff := cmp.Diff(active.Object["spec"], standby.Object["spec"]); diff != "" {
				t.Errorf("standby spec differs from active spec (-active +standby):\n%s", diff)
			}
		})
	}
}

func TestActiveRoleKeepsTheSourceForm(t *testing.T) {
	for _, file := range []string{"deployment.yaml", "statefulset.yaml", "daemonset.yaml", "job.yaml", "customresource.yaml"} {
		t.Run(file+" keeps its replicas, node selectors and suspend, and gets no standby annotations", func(t *testing.T) {
			src := fromFile(t, filepath.Join("testdata", "strip", file))
			got := mustRender(t, src, activeFor())

			for _, path := range [][]string{{"spec", "replicas"}, {"spec", "template", "spec", "nodeSelector"}, {"spec", "suspend"}} {
				want, _ := field(src, path...)
				have, _ := field(got, path...)
				if diff := cmp.Diff(want, have); diff != "" {
					t.Errorf("%v mismatch (-source +copy):\n%s", path, diff)
				}
			}
			for _, key := range []string{AnnotationSourceReplicas, AnnotationStandbyNodeSelector, AnnotationStandbySuspended} {
				if v, ok := got.GetAnnotations()[key]; ok {
					t.Errorf("annotation %s = %q on an active copy", key, v)
				}
			}
		})
	}
}

func TestStandbyFormOfDaemonSets(t *testing.T) {
	src := fromFile(t, filepath.Join("testdata", "strip", "daemonset.yaml"))
	tests := []struct {
		name             string
		mode             deichv1alpha1.StandbyMode
		wantNodeSelector map[string]any
		wantAnnotation   bool
	}{
		{"a Cold DaemonSet selects a node label no node has, besides its own", deichv1alpha1.StandbyCold,
			map[string]any{"kubernetes.io/os": "linux", NodeSelectorStandby: "true"}, true},
		{"a Warm DaemonSet runs nowhere either: it has no replica count to lower to 1", deichv1alpha1.StandbyWarm,
			map[string]any{"kubernetes.io/os": "linux", NodeSelectorStandby: "true"}, true},
		{"a Hot DaemonSet runs as at the source", deichv1alpha1.StandbyHot,
			map[string]any{"kubernetes.io/os": "linux"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, src, standbyFor(tt.mode))
			nodeSelector, _ := field(got, "spec", "template", "spec", "nodeSelector")
			if diff := cmp.Diff(tt.wantNodeSelector, nodeSelector); diff != "" {
				t.Errorf("nodeSelector mismatch (-want +got):\n%s", diff)
			}
			if _, ok := got.GetAnnotations()[AnnotationStandbyNodeSelector]; ok != tt.wantAnnotation {
				t.Errorf("annotation %s present = %v, want %v", AnnotationStandbyNodeSelector, ok, tt.wantAnnotation)
			}
			if _, ok := SourceReplicas(got); ok {
				t.Error("a DaemonSet records source replicas")
			}
		})
	}
}

func TestStandbyFormSuspendsBatchWork(t *testing.T) {
	cronJob := "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: letters}\nspec:\n  schedule: '0 6 * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: send, image: letters:1}]\n"
	tests := []struct {
		name           string
		src            string
		mode           deichv1alpha1.StandbyMode
		wantAnnotation bool
	}{
		{"a CronJob is suspended at a Cold standby", cronJob, deichv1alpha1.StandbyCold, true},
		{"a CronJob is suspended at a Hot standby too, so its work is not done twice", cronJob, deichv1alpha1.StandbyHot, true},
		{"a Job is suspended at a Warm standby", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec: {suspend: false, template: {spec: {restartPolicy: Never}}}\n", deichv1alpha1.StandbyWarm, true},
		{"a suspended CronJob stays suspended and records nothing to undo", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: letters}\nspec: {suspend: true, schedule: '@daily'}\n", deichv1alpha1.StandbyCold, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustRender(t, fromYAML(t, tt.src), standbyFor(tt.mode))
			if suspend, _ := field(got, "spec", "suspend"); suspend != true {
				t.Errorf("spec.suspend = %v, want true", suspend)
			}
			if _, ok := got.GetAnnotations()[AnnotationStandbySuspended]; ok != tt.wantAnnotation {
				t.Errorf("annotation %s present = %v, want %v", AnnotationStandbySuspended, ok, tt.wantAnnotation)
			}
		})
	}
}

func TestRenderingAStandbyFormAgain(t *testing.T) {
	// A fenced object, or a copy mirrored onwards, is in standby form already; its recorded
	// source form must survive another rendering, or promotion could not restore it.
	for _, file := range []string{"deployment.yaml", "daemonset.yaml", "job.yaml"} {
		src := fromFile(t, filepath.Join("testdata", "strip", file))
		original := mustRender(t, src, activeFor())
		once := mustRender(t, src, standbyFor(deichv1alpha1.StandbyCold))

		t.Run(file+" in standby form renders the same standby copy again", func(t *testing.T) {
			twice := mustRender(t, once, standbyFor(deichv1alpha1.StandbyCold))
			// The copy has no resourceVersion, so only that annotation may differ.
			delete(once.Object["metadata"].(map[string]any)["annotations"].(map[string]any), AnnotationSourceResourceVersion)
			if diff := cmp.Diff(once.Object, twice.Object); diff != "" {
				t.Errorf("second rendering differs (-once +twice):\n%s", diff)
			}
		})
		t.Run(file+" in standby form renders the source's form for the Active role", func(t *testing.T) {
			promoted := mustRender(t, once, activeFor())
			delete(original.Object["metadata"].(map[string]any)["annotations"].(map[string]any), AnnotationSourceResourceVersion)
			if diff := cmp.Diff(original.Object, promoted.Object); diff != "" {
				t.Errorf("active rendering of the standby copy differs from the source's (-source +promoted):\n%s", diff)
			}
		})
	}
}

func TestSourceReplicas(t *testing.T) {
	for _, tt := range []struct {
		name       string
		annotation string
		want       int64
		wantOK     bool
	}{
		{"reads a recorded count", "4", 4, true},
		{"reads a recorded zero", "0", 0, true},
		{"rejects a negative count", "-1", 0, false},
		{"rejects text", "three", 0, false},
		{"reports nothing without the annotation", "", 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obj := fromYAML(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
			if tt.annotation != "" {
				obj.SetAnnotations(map[string]string{AnnotationSourceReplicas: tt.annotation})
			}
			got, ok := SourceReplicas(obj)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("SourceReplicas() = %d, %v, want %d, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
