package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/peer"
)

// accessScope is the scope of a reconcile of a service in namespace register-b mirroring
// ConfigMaps and Deployments to mv-schwerin, whose rules there review answers.
func accessScope(review peer.RulesReviewer) *serviceScope {
	return &serviceScope{
		svc: &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: "register-b", Name: "register"}},
		kinds: []*mirroredKind{
			{gk: schema.GroupKind{Kind: "ConfigMap"}, resource: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
			{gk: schema.GroupKind{Group: "apps", Kind: "Deployment"}, resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
		},
		conn: &peer.Connection{Site: "mv-schwerin", Access: peer.NewAccess(review)},
	}
}

// grants returns a reviewer that answers with rules, counting its reviews in n.
func grants(n *int, rules ...authorizationv1.ResourceRule) peer.RulesReviewer {
	return func(context.Context, string) (authorizationv1.SubjectRulesReviewStatus, error) {
		*n++
		return authorizationv1.SubjectRulesReviewStatus{ResourceRules: rules}, nil
	}
}

var everything = authorizationv1.ResourceRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}

func TestPeerPermissionsAreWhatARoundDoesWithEachKindAndTheSharedService(t *testing.T) {
	var n int
	got := peerPermissions(accessScope(grants(&n)))
	if diff := cmp.Diff(
		"get, list, watch, create, patch, delete configmaps; get, list, watch, create, patch, delete deployments.apps; get, create, patch, delete sharedservices.resilience.deich.io",
		peer.DescribePermissions(got)); diff != "" {
		t.Errorf("peerPermissions() (-want +got):\n%s", diff)
	}
}

func TestPeerAcceptsARoundOnlyWhenTheStandbyGrantsAllOfIt(t *testing.T) {
	ctx := context.Background()
	r := &SharedServiceReconciler{}

	t.Run("a standby that grants everything accepts the round, and nothing is reported", func(t *testing.T) {
		var n int
		s := accessScope(grants(&n, everything))
		if !r.peerAccepts(ctx, s) {
			t.Fatalf("peerAccepts() = false, Synced %+v", s.synced)
		}
		if s.synced.Type != "" {
			t.Errorf("Synced = %+v, want nothing reported", s.synced)
		}
	})

	t.Run("a standby that refuses part of the round refuses it, naming the peer, the namespace and what it refuses", func(t *testing.T) {
		var n int
		s := accessScope(grants(&n, authorizationv1.ResourceRule{APIGroups: []string{"", "resilience.deich.io"}, Resources: []string{"configmaps", "sharedservices"}, Verbs: []string{"*"}}))
		if r.peerAccepts(ctx, s) {
			t.Fatal("peerAccepts() = true, want false")
		}
		if s.synced.Status != metav1.ConditionFalse || s.synced.Reason != deichv1alpha1.ServiceReasonPeerForbidden || s.terminal {
			t.Errorf("Synced = %s/%s (terminal %v), want False/%s, not terminal", s.synced.Status, s.synced.Reason, s.terminal, deichv1alpha1.ServiceReasonPeerForbidden)
		}
		for _, want := range []string{"peer mv-schwerin", "namespace register-b", "get, list, watch, create, patch, delete deployments.apps", "nothing of the service was written", "config/peer/namespaced"} {
			if !strings.Contains(s.synced.Message, want) {
				t.Errorf("Synced message %q lacks %q", s.synced.Message, want)
			}
		}
		if strings.Contains(s.synced.Message, "configmaps") {
			t.Errorf("Synced message %q names ConfigMaps, which the standby grants", s.synced.Message)
		}
	})

	t.Run("rules that cannot be reviewed let the round try", func(t *testing.T) {
		s := accessScope(func(context.Context, string) (authorizationv1.SubjectRulesReviewStatus, error) {
			return authorizationv1.SubjectRulesReviewStatus{}, errors.New("connection refused")
		})
		if !r.peerAccepts(ctx, s) || s.synced.Type != "" {
			t.Fatalf("peerAccepts() refused, Synced %+v; want the round to go ahead", s.synced)
		}
	})
}

func TestPeerRefusedReportsA403AndForgetsTheReview(t *testing.T) {
	ctx := context.Background()
	r := &SharedServiceReconciler{}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "settings",
		errors.New(`User "system:serviceaccount:deich-system:deich-peer" cannot patch resource "configmaps" in API group "" in the namespace "register-b"`))

	t.Run("errors that are not 403 are left to the caller", func(t *testing.T) {
		var n int
		s := accessScope(grants(&n, everything))
		if r.peerRefused(s, errors.New("i/o timeout"), apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "settings", errors.New("changed"))) {
			t.Fatalf("peerRefused() = true, Synced %+v", s.synced)
		}
		if r.peerRefused(s) || s.synced.Type != "" {
			t.Fatalf("peerRefused() without errors reported %+v", s.synced)
		}
	})

	t.Run("a 403 among the errors is reported with the server's message, and the next round reviews the rules again", func(t *testing.T) {
		var n int
		s := accessScope(grants(&n, everything))
		if !r.peerAccepts(ctx, s) || n != 1 {
			t.Fatalf("first check: accepted %v after %d reviews", s.synced, n)
		}
		if !r.peerRefused(s, errors.New("i/o timeout"), fmt.Errorf("apply: %w", forbidden), forbidden) {
			t.Fatal("peerRefused() = false, want the 403 reported")
		}
		if s.synced.Reason != deichv1alpha1.ServiceReasonPeerForbidden {
			t.Errorf("Synced reason = %s, want %s", s.synced.Reason, deichv1alpha1.ServiceReasonPeerForbidden)
		}
		for _, want := range []string{"peer mv-schwerin forbids writes to namespace register-b", `cannot patch resource "configmaps"`, "and 1 more"} {
			if !strings.Contains(s.synced.Message, want) {
				t.Errorf("Synced message %q lacks %q", s.synced.Message, want)
			}
		}
		r.peerAccepts(ctx, s)
		if n != 2 {
			t.Errorf("reviews after the 403 = %d, want 2 (the review was forgotten)", n)
		}
	})
}
