package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// patchStatus writes obj's status as one merge patch against before, and only when it changed
// semantically (oldStatus and newStatus are the two status structs). An object deleted in the
// meantime is not an error: there is nothing left to report on.
func patchStatus(ctx context.Context, c client.Client, kind string, before, obj client.Object, oldStatus, newStatus any) error {
	if equality.Semantic.DeepEqual(oldStatus, newStatus) {
		return nil
	}
	if err := c.Status().Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("patch status of %s %s: %w", kind, klog.KObj(obj), err)
	}
	return nil
}

// changed reports whether a condition moved to another status or reason: the transitions that
// deserve an event.
func changed(old, cur *metav1.Condition) bool {
	if cur == nil {
		return false
	}
	return old == nil || old.Status != cur.Status || old.Reason != cur.Reason
}
