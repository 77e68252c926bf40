package peer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func rule(groups, resources, verbs []string, names ...string) authorizationv1.ResourceRule {
	return authorizationv1.ResourceRule{APIGroups: groups, Resources: resources, Verbs: verbs, ResourceNames: names}
}

var (
	applyAndPrune = []string{"create", "patch", "delete"}
	copyVerbs     = []string{"get", "list", "watch", "create", "patch", "delete"}
)

func TestJudgeDecidesAsRBACWould(t *testing.T) {
	configMaps := Permissions("", "configmaps", applyAndPrune...)
	deployments := Permissions("apps", "deployments", applyAndPrune...)
	for _, tc := range []struct {
		name   string
		status authorizationv1.SubjectRulesReviewStatus
		needs  []Permission
		want   Verdict
	}{{
		name:   "a rule naming the group, resource and verbs grants them",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{rule([]string{""}, []string{"configmaps"}, copyVerbs)}},
		needs:  configMaps,
		want:   Verdict{},
	}, {
		name:   "a rule of wildcards grants everything",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{rule([]string{"*"}, []string{"*"}, []string{"*"})}},
		needs:  append(configMaps, deployments...),
		want:   Verdict{},
	}, {
		name:   "a verb no rule names is refused",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{rule([]string{""}, []string{"configmaps"}, []string{"get", "list", "watch", "create", "patch"})}},
		needs:  configMaps,
		want:   Verdict{Refused: []Permission{{Resource: "configmaps", Verb: "delete"}}},
	}, {
		name: "a rule of another API group grants nothing of the resource",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{
			rule([]string{""}, []string{"deployments"}, copyVerbs),
		}},
		needs: deployments,
		want:  Verdict{Refused: deployments},
	}, {
		name: "a rule for a subresource grants nothing of the resource",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{
			rule([]string{"apps"}, []string{"deployments/scale", "*/status"}, copyVerbs),
		}},
		needs: deployments,
		want:  Verdict{Refused: deployments},
	}, {
		name:   "no rules in a namespace refuse everything, in the order asked",
		status: authorizationv1.SubjectRulesReviewStatus{},
		needs:  append(deployments, configMaps...),
		want:   Verdict{Refused: append(deployments, configMaps...)},
	}, {
		name: "a rule limited to named objects leaves the permission undecided",
		status: authorizationv1.SubjectRulesReviewStatus{ResourceRules: []authorizationv1.ResourceRule{
			rule([]string{""}, []string{"configmaps"}, copyVerbs, "settings"),
		}},
		needs: configMaps,
		want:  Verdict{Refused: configMaps, Undecided: true},
	}, {
		name: "an incomplete review leaves what it does not show undecided",
		status: authorizationv1.SubjectRulesReviewStatus{
			Incomplete:      true,
			EvaluationError: "webhook authorizer does not support user rule resolution",
		},
		needs: configMaps,
		want:  Verdict{Refused: configMaps, Undecided: true},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := judge(tc.status, tc.needs)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("judge() (-want +got):\n%s", diff)
			}
			if wantAllowed := len(tc.want.Refused) == 0 || tc.want.Undecided; got.Allowed() != wantAllowed {
				t.Errorf("Allowed() = %v, want %v", got.Allowed(), wantAllowed)
			}
		})
	}
}

func TestDescribePermissionsGroupsVerbsByResource(t *testing.T) {
	perms := append(Permissions("", "configmaps", "create", "patch"), Permissions("apps", "deployments", "delete")...)
	perms = append(perms, Permission{Resource: "configmaps", Verb: "create"}, Permission{Resource: "configmaps", Verb: "delete"})
	want := "create, patch, delete configmaps; delete deployments.apps"
	if got := DescribePermissions(perms); got != want {
		t.Errorf("DescribePermissions() = %q, want %q", got, want)
	}
}

// fakeReviewer answers reviews with the rules set per namespace and counts them.
type fakeReviewer struct {
	mu      sync.Mutex
	rules   map[string][]authorizationv1.ResourceRule
	err     error
	reviews map[string]int
}

func newFakeReviewer() *fakeReviewer {
	return &fakeReviewer{rules: map[string][]authorizationv1.ResourceRule{}, reviews: map[string]int{}}
}

func (f *fakeReviewer) review(_ context.Context, namespace string) (authorizationv1.SubjectRulesReviewStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reviews[namespace]++
	if f.err != nil {
		return authorizationv1.SubjectRulesReviewStatus{}, f.err
	}
	return authorizationv1.SubjectRulesReviewStatus{ResourceRules: f.rules[namespace]}, nil
}

func (f *fakeReviewer) grant(namespace string, rules ...authorizationv1.ResourceRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules[namespace] = rules
}

func (f *fakeReviewer) count(namespace string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reviews[namespace]
}

func TestAccessReviewsEachNamespaceOncePerTTL(t *testing.T) {
	ctx := context.Background()
	needs := Permissions("", "configmaps", applyAndPrune...)
	configMapRule := rule([]string{""}, []string{"configmaps"}, copyVerbs)
	check := func(t *testing.T, a *Access, namespace string, wantAllowed bool) {
		t.Helper()
		v, err := a.Check(ctx, namespace, needs)
		if err != nil {
			t.Fatalf("Check(%s) failed: %v", namespace, err)
		}
		if v.Allowed() != wantAllowed {
			t.Fatalf("Check(%s) = %+v, want allowed %v", namespace, v, wantAllowed)
		}
	}
	setUp := func() (*fakeReviewer, *clocktesting.FakePassiveClock, *Access) {
		f := newFakeReviewer()
		clk := clocktesting.NewFakePassiveClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
		return f, clk, NewAccess(f.review, WithAccessClock(clk), WithAccessTTL(time.Minute, 5*time.Second))
	}

	t.Run("a review that grants what is needed is trusted until the TTL has passed", func(t *testing.T) {
		f, clk, a := setUp()
		f.grant("register-a", configMapRule)
		check(t, a, "register-a", true)
		clk.SetTime(clk.Now().Add(59 * time.Second))
		check(t, a, "register-a", true)
		if got := f.count("register-a"); got != 1 {
			t.Fatalf("reviews within the TTL = %d, want 1", got)
		}
		clk.SetTime(clk.Now().Add(time.Second))
		check(t, a, "register-a", true)
		if got := f.count("register-a"); got != 2 {
			t.Fatalf("reviews after the TTL = %d, want 2", got)
		}
	})

	t.Run("each namespace has its own review", func(t *testing.T) {
		f, _, a := setUp()
		f.grant("register-a", configMapRule)
		check(t, a, "register-a", true)
		check(t, a, "register-b", false)
		if a, b := f.count("register-a"), f.count("register-b"); a != 1 || b != 1 {
			t.Fatalf("reviews = %d of register-a and %d of register-b, want 1 each", a, b)
		}
	})

	t.Run("a refusal is reviewed again once it is older than the refused TTL, so a new grant is seen", func(t *testing.T) {
		f, clk, a := setUp()
		check(t, a, "register-b", false)
		clk.SetTime(clk.Now().Add(4 * time.Second))
		check(t, a, "register-b", false)
		if got := f.count("register-b"); got != 1 {
			t.Fatalf("reviews within the refused TTL = %d, want 1", got)
		}
		f.grant("register-b", configMapRule)
		clk.SetTime(clk.Now().Add(time.Second))
		check(t, a, "register-b", true)
		if got := f.count("register-b"); got != 2 {
			t.Fatalf("reviews after the refused TTL = %d, want 2", got)
		}
	})

	t.Run("Forget drops the review, so a revoked grant is seen at the next check", func(t *testing.T) {
		f, _, a := setUp()
		f.grant("register-a", configMapRule)
		check(t, a, "register-a", true)
		f.grant("register-a")
		check(t, a, "register-a", true)
		a.Forget("register-a")
		check(t, a, "register-a", false)
		if got := f.count("register-a"); got != 2 {
			t.Fatalf("reviews = %d, want 2", got)
		}
	})

	t.Run("a review that fails is returned and not kept", func(t *testing.T) {
		f, _, a := setUp()
		f.err = errors.New("connection refused")
		if _, err := a.Check(ctx, "register-a", needs); err == nil || err.Error() != "connection refused" {
			t.Fatalf("Check() error = %v, want the reviewer's", err)
		}
		f.err = nil
		f.grant("register-a", configMapRule)
		check(t, a, "register-a", true)
		if got := f.count("register-a"); got != 2 {
			t.Fatalf("reviews = %d, want 2", got)
		}
	})

	t.Run("nothing needed asks nothing, and a nil Access allows everything", func(t *testing.T) {
		f, _, a := setUp()
		if v, err := a.Check(ctx, "register-a", nil); err != nil || !v.Allowed() {
			t.Fatalf("Check(nothing) = %+v, %v; want allowed", v, err)
		}
		if got := f.count("register-a"); got != 0 {
			t.Fatalf("reviews = %d, want 0", got)
		}
		var none *Access
		if v, err := none.Check(ctx, "register-a", needs); err != nil || !v.Allowed() {
			t.Fatalf("nil Access: Check() = %+v, %v; want allowed", v, err)
		}
		none.Forget("register-a")
	})
}
