package main

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// whyWidth bounds the WHY column: the full message is in -o json and in `kubectl describe`.
const whyWidth = 90

// whyLine says in one line why a service is not Protected at the site whose status svc is:
// the Ready condition's reason (unless the PHASE column already says it) and the first
// clause of its message. It is empty for a Protected service.
func whyLine(svc *deichv1alpha1.SharedService) string {
	st := svc.Status
	ready := meta.FindStatusCondition(st.Conditions, deichv1alpha1.ConditionReady)
	switch {
	case st.Phase == deichv1alpha1.PhaseProtected && (ready == nil || ready.Status == metav1.ConditionTrue):
		return ""
	case ready == nil && st.Phase == "":
		return "not reconciled at this site yet: is Deich's manager running here?"
	case ready == nil:
		return "no Ready condition yet"
	}
	msg := firstClause(ready.Message)
	var line string
	switch {
	case msg == "":
		line = ready.Reason
	case ready.Reason == "" || ready.Reason == string(st.Phase):
		line = msg
	default:
		line = ready.Reason + ": " + msg
	}
	if ready.ObservedGeneration != 0 && ready.ObservedGeneration < svc.Generation {
		line = fmt.Sprintf("(status of generation %d, spec is at %d) %s", ready.ObservedGeneration, svc.Generation, line)
	}
	return shorten(line, whyWidth)
}

// firstClause returns a message up to the end of its first sentence or its first clause
// after a semicolon: the part that says what is wrong, before what to do about it.
func firstClause(msg string) string {
	msg = strings.TrimSpace(msg)
	end := len(msg)
	for _, sep := range []string{"; ", ". "} {
		if i := strings.Index(msg, sep); i >= 0 && i < end {
			end = i
		}
	}
	return strings.TrimSuffix(strings.TrimSpace(msg[:end]), ".")
}
