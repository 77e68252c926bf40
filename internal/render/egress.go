package render

import (
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// The rules of an egress policy, as an *EgressDeniedError names them: the fields of
// ReplicationPeer.spec.egress.
const (
	EgressRuleNamespaces            = "namespaces"
	EgressRuleKinds                 = "kinds"
	EgressRuleSecrets               = "secrets"
	EgressRuleDeniedClassifications = "deniedClassifications"
)

// Egress is what may leave this site for one peer: the peer's ReplicationPeer.spec.egress.
// A nil *Egress allows everything.
type Egress struct {
	// Peer names the ReplicationPeer the policy is of, for messages.
	Peer string
	// Namespaces, when not nil, are the only namespaces whose objects may leave.
	Namespaces []string
	// Kinds, when not nil, are the only kinds that may leave. Deich's own kinds are not
	// subject to it.
	Kinds []schema.GroupKind
	// DenySecrets keeps every Secret at this site.
	DenySecrets bool
	// DeniedClassifications are the values of deichv1alpha1.LabelClassification that never
	// leave.
	DeniedClassifications []string
}

// EgressOf returns the policy of the ReplicationPeer named peer; nil when it sets none.
func EgressOf(peer string, p *deichv1alpha1.EgressPolicy) *Egress {
	if p == nil {
		return nil
	}
	e := &Egress{
		Peer:                  peer,
		Namespaces:            p.Namespaces,
		DenySecrets:           p.Secrets == deichv1alpha1.SecretsDeny,
		DeniedClassifications: p.DeniedClassifications,
	}
	if p.Kinds != nil {
		e.Kinds = make([]schema.GroupKind, len(p.Kinds))
		for i, k := range p.Kinds {
			e.Kinds[i] = schema.GroupKind{Group: k.Group, Kind: k.Kind}
		}
	}
	return e
}

// EgressDeniedError says that an object may not leave for a peer, and which rule of the
// peer's egress policy keeps it.
type EgressDeniedError struct {
	// Object names the object, e.g. "Secret buergerkonto/db-password".
	Object string
	// GroupKind and Name identify the object in its namespace.
	GroupKind schema.GroupKind
	Name      string
	// Peer is the ReplicationPeer whose policy denies it.
	Peer string
	// Rule is the field of the policy that denies it (EgressRuleNamespaces, …), and Value
	// what of the object the rule denies: its namespace, kind or classification.
	Rule, Value string
}

func (e *EgressDeniedError) Error() string {
	var why string
	switch e.Rule {
	case EgressRuleNamespaces:
		why = fmt.Sprintf("namespace %s is not in egress.namespaces", e.Value)
	case EgressRuleKinds:
		why = fmt.Sprintf("kind %s is not in egress.kinds", e.Value)
	case EgressRuleSecrets:
		why = "egress.secrets is Deny"
	case EgressRuleDeniedClassifications:
		why = fmt.Sprintf("its classification %s is in egress.deniedClassifications", e.Value)
	default:
		why = "egress." + e.Rule
	}
	return fmt.Sprintf("%s may not leave for %s: %s of ReplicationPeer %s", e.Object, e.Peer, why, e.Peer)
}

// Check returns an *EgressDeniedError when obj, an object of this site, may not be sent to
// the peer, and nil when it may. Every rule is checked against the object as this site holds
// it; an override cannot change what the rules read (namespace, kind, classification label).
// Objects of Deich's own API group (SharedServices, Switchovers) are checked by namespace and
// classification only. A malformed object is denied by no rule: Render refuses it.
func (e *Egress) Check(obj *unstructured.Unstructured) error {
	if e == nil || obj == nil || obj.Object == nil {
		return nil
	}
	id, err := identify(obj.Object)
	if err != nil {
		return nil //nolint:nilerr // not the policy's to judge; Render refuses it
	}
	deny := func(rule, value string) error {
		return &EgressDeniedError{Object: id.String(), GroupKind: id.gk, Name: id.name, Peer: e.Peer, Rule: rule, Value: value}
	}
	if e.Namespaces != nil && !slices.Contains(e.Namespaces, id.namespace) {
		return deny(EgressRuleNamespaces, id.namespace)
	}
	if c, ok := obj.GetLabels()[deichv1alpha1.LabelClassification]; ok && slices.Contains(e.DeniedClassifications, c) {
		return deny(EgressRuleDeniedClassifications, c)
	}
	if id.gk.Group == deichv1alpha1.GroupVersion.Group {
		return nil
	}
	if e.DenySecrets && id.gk == (schema.GroupKind{Kind: "Secret"}) {
		return deny(EgressRuleSecrets, "Secret")
	}
	if e.Kinds != nil && !slices.Contains(e.Kinds, id.gk) {
		kind := id.gk.Kind
		if id.gk.Group != "" {
			kind += "." + id.gk.Group
		}
		return deny(EgressRuleKinds, kind)
	}
	return nil
}
