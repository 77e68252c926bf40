package render

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func egressObject(apiVersion, kind, namespace, name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{"k": "v"}}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func TestEgressDeniesByEachRule(t *testing.T) {
	policy := EgressOf("mv-schwerin", &deichv1alpha1.EgressPolicy{
		Namespaces:            []string{"buergerkonto"},
		Kinds:                 []deichv1alpha1.ResourceKind{{Kind: "ConfigMap"}, {Kind: "Secret"}, {Group: "apps", Kind: "Deployment"}},
		Secrets:               deichv1alpha1.SecretsDeny,
		DeniedClassifications: []string{"vs-nfd"},
	})
	vsNfd := map[string]string{deichv1alpha1.LabelClassification: "vs-nfd"}
	open := map[string]string{deichv1alpha1.LabelClassification: "offen"}
	for _, tc := range []struct {
		name        string
		obj         *unstructured.Unstructured
		rule, value string
	}{
		{"an allowed ConfigMap", egressObject("v1", "ConfigMap", "buergerkonto", "settings", open), "", ""},
		{"an allowed Deployment", egressObject("apps/v1", "Deployment", "buergerkonto", "web", nil), "", ""},
		{"another namespace", egressObject("v1", "ConfigMap", "steuer", "settings", nil), EgressRuleNamespaces, "steuer"},
		{"a kind not listed", egressObject("v1", "Service", "buergerkonto", "web", nil), EgressRuleKinds, "Service"},
		{"a kind of a group not listed", egressObject("batch/v1", "Job", "buergerkonto", "import", nil), EgressRuleKinds, "Job.batch"},
		{"a Secret, though listed among the kinds", egressObject("v1", "Secret", "buergerkonto", "db", nil), EgressRuleSecrets, "Secret"},
		{"a denied classification", egressObject("v1", "ConfigMap", "buergerkonto", "akte", vsNfd), EgressRuleDeniedClassifications, "vs-nfd"},
		{"the namespace before the classification", egressObject("v1", "ConfigMap", "steuer", "akte", vsNfd), EgressRuleNamespaces, "steuer"},
		{"a SharedService, not listed among the kinds", egressObject("resilience.deich.io/v1alpha1", "SharedService", "buergerkonto", "buergerkonto", nil), "", ""},
		{"a classified Switchover", egressObject("resilience.deich.io/v1alpha1", "Switchover", "buergerkonto", "move", vsNfd), EgressRuleDeniedClassifications, "vs-nfd"},
		{"a SharedService of another namespace", egressObject("resilience.deich.io/v1alpha1", "SharedService", "steuer", "steuer", nil), EgressRuleNamespaces, "steuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := policy.Check(tc.obj)
			if tc.rule == "" {
				if err != nil {
					t.Fatalf("Check() = %v, want the object allowed", err)
				}
				return
			}
			var denied *EgressDeniedError
			if !errors.As(err, &denied) {
				t.Fatalf("Check() = %v, want an *EgressDeniedError", err)
			}
			if denied.Rule != tc.rule || denied.Value != tc.value || denied.Peer != "mv-schwerin" || denied.Name != tc.obj.GetName() {
				t.Errorf("Check() = %+v, want rule %s, value %s", denied, tc.rule, tc.value)
			}
			if !strings.Contains(err.Error(), "egress."+tc.rule) || !strings.Contains(err.Error(), "ReplicationPeer mv-schwerin") {
				t.Errorf("the message does not name the rule and the peer: %q", err)
			}
		})
	}
}

func TestNoPolicyAllowsWhatRenderAccepts(t *testing.T) {
	var none *Egress
	if err := none.Check(egressObject("v1", "Secret", "any", "db", map[string]string{deichv1alpha1.LabelClassification: "vs-nfd"})); err != nil {
		t.Errorf("a nil policy denied: %v", err)
	}
	if EgressOf("mv-schwerin", nil) != nil {
		t.Error("EgressOf(nil) is a policy")
	}
	// Unset rules of a set policy allow everything; Allow lets Secrets go.
	some := EgressOf("mv-schwerin", &deichv1alpha1.EgressPolicy{Secrets: deichv1alpha1.SecretsAllow})
	if err := some.Check(egressObject("v1", "Secret", "any", "db", nil)); err != nil {
		t.Errorf("a policy without rules denied: %v", err)
	}
}

func TestRenderRefusesWhatEgressDeniesWhateverTheOverrides(t *testing.T) {
	target := Target{
		SourceSite: "sh-kiel", Site: "mv-schwerin", Role: deichv1alpha1.RoleStandby, Service: "buergerkonto",
		Egress: EgressOf("mv-schwerin", &deichv1alpha1.EgressPolicy{DeniedClassifications: []string{"vs-nfd"}}),
		// An override that removes the label from the copy does not let the object out.
		Overrides: []deichv1alpha1.Override{{Patches: []deichv1alpha1.Patch{{
			Patch: "- op: remove\n  path: /metadata/labels\n", Target: &deichv1alpha1.PatchTarget{Kind: "ConfigMap"},
		}}}},
	}
	src := egressObject("v1", "ConfigMap", "buergerkonto", "akte", map[string]string{deichv1alpha1.LabelClassification: "vs-nfd"})
	cp, err := Render(src, target)
	var denied *EgressDeniedError
	if !errors.As(err, &denied) || cp != nil {
		t.Fatalf("Render() = %v, %v; want no copy and an *EgressDeniedError", cp, err)
	}
	src.SetLabels(map[string]string{deichv1alpha1.LabelClassification: "offen"})
	if _, err := Render(src, target); err != nil {
		t.Errorf("Render() of an allowed object = %v", err)
	}
}

// FuzzEgress renders fuzzed objects under a fuzzed policy and checks that Render sends only
// what every rule of the policy allows, judged here independently from the object as this
// site holds it, and that a denial names a rule the object breaks.
func FuzzEgress(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":"buergerkonto"},"data":{"p":"eA=="}}`), "buergerkonto", "ConfigMap,Secret", "vs-nfd", byte(1), "")
	f.Add([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"akte","namespace":"buergerkonto","labels":{"resilience.deich.io/classification":"vs-nfd"}}}`), "buergerkonto", "", "vs-nfd", byte(0), "- op: remove\n  path: /metadata/labels\n")
	f.Add([]byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"steuer"},"spec":{"replicas":2}}`), "buergerkonto,steuer", "Deployment.apps", "", byte(2), "")
	f.Add([]byte(`{"apiVersion":"resilience.deich.io/v1alpha1","kind":"SharedService","metadata":{"name":"s","namespace":"a","labels":{"resilience.deich.io/classification":"x"}}}`), "a", "ConfigMap", "x,y", byte(3), "")

	f.Fuzz(func(t *testing.T, objJSON []byte, namespaces, kinds, classifications string, flags byte, patch string) {
		var m map[string]any
		if err := utiljson.Unmarshal(objJSON, &m); err != nil || m == nil {
			return
		}
		src := &unstructured.Unstructured{Object: m}
		policy := &Egress{Peer: "mv-schwerin", DenySecrets: flags&1 != 0, DeniedClassifications: split(classifications)}
		if flags&2 != 0 {
			policy.Namespaces = split(namespaces)
		}
		if flags&4 != 0 {
			for _, k := range split(kinds) {
				kind, group, _ := strings.Cut(k, ".")
				policy.Kinds = append(policy.Kinds, schema.GroupKind{Group: group, Kind: kind})
			}
			if policy.Kinds == nil {
				policy.Kinds = []schema.GroupKind{}
			}
		}
		target := Target{SourceSite: "sh-kiel", Site: "mv-schwerin", Role: deichv1alpha1.RoleStandby, Service: "svc", Egress: policy}
		if patch != "" {
			target.Overrides = []deichv1alpha1.Override{{Patches: []deichv1alpha1.Patch{{Patch: patch}}}}
		}
		id, idErr := identify(src.DeepCopy().Object)
		cp, err := Render(src, target)
		var denied *EgressDeniedError
		if errors.As(err, &denied) {
			if cp != nil {
				t.Fatal("a denied object was rendered")
			}
			if idErr != nil {
				t.Fatalf("a malformed object was denied by a rule: %v", err)
			}
			if broken := brokenRules(policy, src, id); !slices.Contains(broken, denied.Rule) {
				t.Fatalf("denied by %s, but the object breaks %v", denied.Rule, broken)
			}
			return
		}
		if err != nil {
			return
		}
		if broken := brokenRules(policy, src, id); len(broken) > 0 {
			t.Fatalf("rendered an object that breaks %v of the policy %+v", broken, policy)
		}
		if cp.GetNamespace() != id.namespace || cp.GetKind() != id.gk.Kind {
			t.Fatalf("the copy %s %s/%s is not the object %s it was rendered from", cp.GetKind(), cp.GetNamespace(), cp.GetName(), id)
		}
	})
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// brokenRules judges obj against every rule of p on its own.
func brokenRules(p *Egress, obj *unstructured.Unstructured, id identity) []string {
	var broken []string
	own := id.gk.Group == deichv1alpha1.GroupVersion.Group
	if p.Namespaces != nil && !slices.Contains(p.Namespaces, id.namespace) {
		broken = append(broken, EgressRuleNamespaces)
	}
	if c, ok := obj.GetLabels()[deichv1alpha1.LabelClassification]; ok && slices.Contains(p.DeniedClassifications, c) {
		broken = append(broken, EgressRuleDeniedClassifications)
	}
	if !own && p.DenySecrets && id.gk.Group == "" && id.gk.Kind == "Secret" {
		broken = append(broken, EgressRuleSecrets)
	}
	if !own && p.Kinds != nil && !slices.Contains(p.Kinds, id.gk) {
		broken = append(broken, EgressRuleKinds)
	}
	return broken
}
