package peer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/utils/clock"
)

// How long an Access trusts a review of a namespace's rules. A review that grants what was
// asked is trusted for DefaultAccessTTL, or until a request into the namespace is answered 403
// (Forget); one that refuses something only for DefaultRefusedTTL, so that a grant the peer's
// administrators add is seen within seconds.
const (
	DefaultAccessTTL  = 10 * time.Minute
	DefaultRefusedTTL = 5 * time.Second
)

// Permission is one thing Deich does at a peer in a namespace: a verb on a resource of an API
// group ("" for the core group).
type Permission struct {
	Group, Resource, Verb string
}

// String is the permission as RBAC writes it, e.g. "patch deployments.apps".
func (p Permission) String() string {
	return p.Verb + " " + qualifiedResource(p.Group, p.Resource)
}

func qualifiedResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// Permissions returns the permissions to use the resource of group with each verb.
func Permissions(group, resource string, verbs ...string) []Permission {
	out := make([]Permission, 0, len(verbs))
	for _, v := range verbs {
		out = append(out, Permission{Group: group, Resource: resource, Verb: v})
	}
	return out
}

// DescribePermissions lists perms by resource, in the order they first appear, e.g.
// "create, patch configmaps; delete secrets".
func DescribePermissions(perms []Permission) string {
	var order []string
	verbs := map[string][]string{}
	for _, p := range perms {
		r := qualifiedResource(p.Group, p.Resource)
		if _, seen := verbs[r]; !seen {
			order = append(order, r)
		}
		if !slices.Contains(verbs[r], p.Verb) {
			verbs[r] = append(verbs[r], p.Verb)
		}
	}
	parts := make([]string, 0, len(order))
	for _, r := range order {
		parts = append(parts, strings.Join(verbs[r], ", ")+" "+r)
	}
	return strings.Join(parts, "; ")
}

// Verdict is what a peer's rules say of the permissions a caller needs in one namespace.
type Verdict struct {
	// Refused are the needed permissions no rule grants, in the order they were asked for.
	Refused []Permission
	// Undecided is set when the rules cannot settle every refusal in advance: the peer's
	// authorizers could not list all of them (a webhook or another authorizer besides RBAC),
	// or only rules limited to named objects cover a permission. The requests are then tried,
	// and a refusal shows as a 403 answer.
	Undecided bool
}

// Allowed reports whether the caller may go ahead: nothing is known to be refused.
func (v Verdict) Allowed() bool { return len(v.Refused) == 0 || v.Undecided }

// RulesReviewer asks a peer's API server which rules its identity has in namespace (a
// SelfSubjectRulesReview).
type RulesReviewer func(ctx context.Context, namespace string) (authorizationv1.SubjectRulesReviewStatus, error)

// ReviewRulesWith returns a RulesReviewer that asks with c.
func ReviewRulesWith(c authorizationv1client.SelfSubjectRulesReviewsGetter) RulesReviewer {
	return func(ctx context.Context, namespace string) (authorizationv1.SubjectRulesReviewStatus, error) {
		review := &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: namespace}}
		got, err := c.SelfSubjectRulesReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return authorizationv1.SubjectRulesReviewStatus{}, fmt.Errorf("review the rules of namespace %s: %w", namespace, err)
		}
		return got.Status, nil
	}
}

// Access tells, before a round of requests into a namespace at a peer, whether the peer lets
// the connection's identity make every one of them, so that a round the peer would refuse in
// part is not started at all. It reviews each namespace's rules at most once per TTL (and
// once at a time), and judges every caller's permissions against that one review. It is safe
// for concurrent use; a nil *Access allows everything.
type Access struct {
	review     RulesReviewer
	clock      clock.PassiveClock
	ttl        time.Duration
	refusedTTL time.Duration

	flight  singleflight.Group
	mu      sync.Mutex
	reviews map[string]rulesReview // by namespace
}

// rulesReview is one namespace's rules, as reviewed at a time.
type rulesReview struct {
	status authorizationv1.SubjectRulesReviewStatus
	at     time.Time
}

// AccessOption configures an Access.
type AccessOption func(*Access)

// WithAccessClock sets the clock the reviews' ages are measured with.
func WithAccessClock(c clock.PassiveClock) AccessOption {
	return func(a *Access) { a.clock = c }
}

// WithAccessTTL sets how long a review is trusted when it grants what was asked (ttl) and
// when it refuses something (refused).
func WithAccessTTL(ttl, refused time.Duration) AccessOption {
	return func(a *Access) { a.ttl, a.refusedTTL = ttl, refused }
}

// NewAccess returns an Access that reviews rules with review.
func NewAccess(review RulesReviewer, opts ...AccessOption) *Access {
	a := &Access{
		review:     review,
		clock:      clock.RealClock{},
		ttl:        DefaultAccessTTL,
		refusedTTL: DefaultRefusedTTL,
		reviews:    map[string]rulesReview{},
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Check judges needs, permissions in namespace, against the namespace's rules at the peer,
// reviewing them when the last review is too old. An error means the rules could not be
// reviewed; the verdict is then unknown.
func (a *Access) Check(ctx context.Context, namespace string, needs []Permission) (Verdict, error) {
	if a == nil || len(needs) == 0 {
		return Verdict{}, nil
	}
	rv, ok := a.cached(namespace)
	reviewed := !ok || a.clock.Since(rv.at) >= a.ttl
	if reviewed {
		var err error
		if rv, err = a.reviewNamespace(ctx, namespace); err != nil {
			return Verdict{}, err
		}
	}
	v := judge(rv.status, needs)
	if v.Allowed() || reviewed || a.clock.Since(rv.at) < a.refusedTTL {
		return v, nil
	}
	// A refusal is never older than refusedTTL: the grant may have been added since.
	rv, err := a.reviewNamespace(ctx, namespace)
	if err != nil {
		return Verdict{}, err
	}
	return judge(rv.status, needs), nil
}

// Forget drops the review of namespace, so the next Check reviews it again. Call it when the
// peer refused a request into the namespace (403): its rules changed since they were reviewed.
func (a *Access) Forget(namespace string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.reviews, namespace)
}

func (a *Access) cached(namespace string) (rulesReview, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rv, ok := a.reviews[namespace]
	return rv, ok
}

// reviewNamespace reviews the rules of namespace, once for every caller that asks meanwhile,
// and keeps the result.
func (a *Access) reviewNamespace(ctx context.Context, namespace string) (rulesReview, error) {
	ch := a.flight.DoChan(namespace, func() (any, error) {
		status, err := a.review(ctx, namespace)
		if err != nil {
			return rulesReview{}, err
		}
		rv := rulesReview{status: status, at: a.clock.Now()}
		a.mu.Lock()
		a.reviews[namespace] = rv
		a.mu.Unlock()
		return rv, nil
	})
	select {
	case <-ctx.Done():
		return rulesReview{}, fmt.Errorf("review the rules of namespace %s: %w", namespace, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return rulesReview{}, res.Err
		}
		rv, _ := res.Val.(rulesReview) // the function above returns nothing else
		return rv, nil
	}
}

// judge decides needs against the rules of a review, as the RBAC authorizer would decide each
// request: a permission is granted by a rule that names (or matches with "*") its API group,
// resource and verb. A rule limited to named objects (resourceNames) grants requests for
// those objects only, which the rules alone cannot match against the requests to come.
func judge(status authorizationv1.SubjectRulesReviewStatus, needs []Permission) Verdict {
	var v Verdict
	v.Undecided = status.Incomplete
	for _, p := range needs {
		granted, byName := false, false
		for _, rule := range status.ResourceRules {
			if !matches(rule.Verbs, p.Verb) || !matches(rule.APIGroups, p.Group) || !matches(rule.Resources, p.Resource) {
				continue
			}
			if len(rule.ResourceNames) > 0 {
				byName = true
				continue
			}
			granted = true
			break
		}
		if !granted {
			v.Refused = append(v.Refused, p)
			v.Undecided = v.Undecided || byName
		}
	}
	return v
}

// matches reports whether a rule's list of values covers want.
func matches(values []string, want string) bool {
	for _, v := range values {
		if v == want || v == rbacv1.ResourceAll {
			return true
		}
	}
	return false
}
