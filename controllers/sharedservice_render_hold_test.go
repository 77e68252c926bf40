package controllers

import (
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestHoldKeepsCopiesEncodedUpToTheRoundsBudget: a round holds its rendered copies encoded
// until the copies it holds reach renderHeldBytes; past that it holds none and renders each
// again where it is needed. Either way the copy written is the one rendered.
func TestHoldKeepsCopiesEncodedUpToTheRoundsBudget(t *testing.T) {
	kind := &mirroredKind{gk: schema.GroupKind{Kind: "ConfigMap"}}
	rendered := func() *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{"TZ": "Europe/Berlin"}}}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetNamespace("buergerkonto")
		u.SetName("settings")
		return u
	}
	rerenders := 0
	rerender := func() (*unstructured.Unstructured, error) { rerenders++; return rendered(), nil }

	var held atomic.Int64
	d := desiredCopy{kind: kind, name: "settings", obj: rendered()}
	if err := d.hold(&held, rerender); err != nil {
		t.Fatal(err)
	}
	if d.obj != nil || d.encoded == nil || d.rerender != nil || held.Load() != int64(len(d.encoded)) {
		t.Fatalf("within the budget: obj %v, %d bytes encoded, rerender set %t, %d bytes held; want the copy held encoded alone",
			d.obj, len(d.encoded), d.rerender != nil, held.Load())
	}
	got, err := d.object()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rendered().Object, got.Object); diff != "" {
		t.Errorf("the copy held encoded (-rendered +held):\n%s", diff)
	}

	held.Store(renderHeldBytes)
	d = desiredCopy{kind: kind, name: "settings", obj: rendered()}
	if err := d.hold(&held, rerender); err != nil {
		t.Fatal(err)
	}
	if d.obj != nil || d.encoded != nil || d.rerender == nil || held.Load() != renderHeldBytes {
		t.Fatalf("past the budget: obj %v, %d bytes encoded, rerender set %t, %d bytes held; want nothing held",
			d.obj, len(d.encoded), d.rerender != nil, held.Load())
	}
	if got, err = d.object(); err != nil || rerenders != 1 {
		t.Fatalf("object() past the budget: %v, rendered again %d times; want once", err, rerenders)
	}
	if diff := cmp.Diff(rendered().Object, got.Object); diff != "" {
		t.Errorf("the copy rendered again (-rendered +again):\n%s", diff)
	}
}
