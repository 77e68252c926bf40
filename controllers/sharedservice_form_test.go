package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
)

// TestFormActionIsDecidedFromMetadataAlone decides each object's part of a switch from an
// object that has only metadata: the decision reads nothing else.
func TestFormActionIsDecidedFromMetadataAlone(t *testing.T) {
	f := formSpec{svc: &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Name: "buergerkonto"}}}
	meta := func(labels, annotations map[string]string) *unstructured.Unstructured {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&metav1.PartialObjectMetadata{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Labels: labels, Annotations: annotations},
		})
		if err != nil {
			t.Fatal(err)
		}
		return &unstructured.Unstructured{Object: m}
	}
	inStandbyForm := map[string]string{render.AnnotationSourceReplicas: "3"}
	sameInBothForms := map[string]string{render.AnnotationActivePatch: "{}"}
	stamped := func(epoch string) map[string]string { return map[string]string{failover.EpochAnnotation: epoch} }
	other := map[string]string{render.LabelSharedService: "other"}

	for _, tc := range []struct {
		name     string
		obj      *unstructured.Unstructured
		active   bool
		adjusted bool
		epoch    int64
		want     formAction
	}{
		{"active form, first claim", meta(nil, nil), true, false, 1, formKeep},
		{"active form, later claim, not stamped", meta(nil, nil), true, false, 3, formStamp},
		{"active form, later claim, stamped with an earlier epoch", meta(nil, stamped("2")), true, false, 3, formStamp},
		{"active form, later claim, stamped", meta(nil, stamped("3")), true, false, 3, formKeep},
		{"standby form, promoted", meta(nil, inStandbyForm), true, false, 1, formSwitch},
		{"standby form, fenced", meta(nil, inStandbyForm), false, false, 0, formKeep},
		{"active form, fenced", meta(nil, stamped("3")), false, false, 0, formSwitch},
		{"the same in both forms, promoted", meta(nil, sameInBothForms), true, false, 1, formKeep},
		{"the same in both forms, promoted by a later claim", meta(nil, sameInBothForms), true, false, 3, formKeep},
		{"the same in both forms, promoted with a handoff", meta(nil, sameInBothForms), true, true, 3, formSwitch},
		{"the same in both forms, fenced", meta(nil, sameInBothForms), false, false, 0, formKeep},
		{"another service's object, promoted", meta(other, inStandbyForm), true, false, 2, formKeep},
		{"another service's object, fenced", meta(other, nil), false, false, 0, formKeep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formActionFor(f, tc.obj, tc.active, tc.adjusted, tc.epoch); got != tc.want {
				t.Errorf("formActionFor() = %d, want %d", got, tc.want)
			}
		})
	}
}
