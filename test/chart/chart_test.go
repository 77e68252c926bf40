// Package chart tests the Helm chart in charts/deich: that it carries the generated CRDs and
// RBAC unchanged, renders the manager the way config/ does, refuses to render without a site,
// and that a real kube-apiserver accepts every object it renders.
//
// The tests render with the helm and kustomize binaries the Makefile builds (`make tools`;
// `make test` builds them first). The tests that need them or an API server are skipped under
// -short.
package chart

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/testenv"
)

const (
	// releaseName and releaseNamespace match config/default (namePrefix deich-, namespace
	// deich-system), so the chart's object names equal kustomize's.
	releaseName      = "deich"
	releaseNamespace = "deich-system"
	site             = testenv.SiteKiel
	// fullValues switches on every optional part of the chart; `make helm-lint` lints it too.
	fullValues = "test/chart/testdata/values-full.yaml"
	// helmTimeout bounds one helm or kustomize invocation.
	helmTimeout = 2 * time.Minute
)

var root string

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if root, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := stopAPIServer(); err != nil {
		fmt.Fprintln(os.Stderr, "stop API server:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func TestChartCRDsAreTheGeneratedOnes(t *testing.T) {
	want := readDir(t, filepath.Join(root, "config", "crd", "bases"))
	got := readDir(t, filepath.Join(root, "charts", "deich", "crds"))
	if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
		t.Fatalf("charts/deich/crds holds other files than config/crd/bases; run `make manifests` (-want +got):\n%s", diff)
	}
	for name, data := range want {
		if !bytes.Equal(data, got[name]) {
			t.Errorf("charts/deich/crds/%s differs from config/crd/bases/%s; run `make manifests`", name, name)
		}
	}
}

func TestChartManagerRBACFileIsTheGeneratedOne(t *testing.T) {
	want := readFile(t, filepath.Join(root, "config", "rbac", "role.yaml"))
	got := readFile(t, filepath.Join(root, "charts", "deich", "files", "role.yaml"))
	if !bytes.Equal(want, got) {
		t.Fatal("charts/deich/files/role.yaml differs from config/rbac/role.yaml; run `make manifests`")
	}
}

func TestRenderingFailsWithAMessageSayingWhatToSet(t *testing.T) {
	requireHelm(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{{
		name: "without a site",
		want: "site is required: set it to this cluster's site name, e.g. --set site=sh-kiel",
	}, {
		name: "with a site that is no DNS label",
		args: []string{"--set", "site=SH_Kiel"},
		want: `site "SH_Kiel" is not a DNS label`,
	}, {
		name: "with the own site as a peer",
		args: []string{"--set", "site=sh-kiel", "--set", "peers[0].site=sh-kiel"},
		want: `peers[0].site is "sh-kiel", this cluster's own site`,
	}, {
		name: "with an objective without rpo",
		args: []string{"--set", "site=sh-kiel", "--set", "objectives[0].name=buergerdienste", "--set", "objectives[0].rto=2m"},
		want: "missing property 'rpo'",
	}} {
		t.Run(tc.name, func(t *testing.T) { expectTemplateError(t, tc.want, tc.args...) })
	}
}

// expectTemplateError renders the chart with args and fails unless helm refuses with a
// message containing want.
func expectTemplateError(t *testing.T, want string, args ...string) {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err == nil {
		t.Fatalf("helm template succeeded, want an error containing %q; output:\n%s", want, out)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("helm template failed with\n%v\nwant a message containing %q", err, want)
	}
}

func TestChartManagerRolesHaveTheGeneratedRules(t *testing.T) {
	requireHelm(t)
	objs := render(t, "--set", "site="+site)
	generated := decodeAll(t, readFile(t, filepath.Join(root, "config", "rbac", "role.yaml")))

	for _, kind := range []string{"ClusterRole", "Role"} {
		t.Run(kind, func(t *testing.T) {
			var want rbacv1.ClusterRole // a Role's rules have the same shape
			fromUnstructured(t, findKind(t, generated, kind), &want)
			var got rbacv1.ClusterRole
			fromUnstructured(t, find(t, objs, kind, releaseName+"-manager-role"), &got)
			if diff := cmp.Diff(want.Rules, got.Rules); diff != "" {
				t.Errorf("chart %s %s-manager-role rules differ from config/rbac/role.yaml (-want +got):\n%s", kind, releaseName, diff)
			}
		})
	}
}

// TestChartRBACMatchesConfigDefault compares every RBAC object of the kustomize install
// (config/default) with the chart's: the same names, rules, aggregation, role references and
// subjects, so the two ways to install grant exactly the same.
func TestChartRBACMatchesConfigDefault(t *testing.T) {
	requireHelm(t)
	want := rbacObjects(t, kustomizeBuild(t, filepath.Join(root, "config", "default")))
	got := rbacObjects(t, render(t, "--set", "site="+site))
	if len(want) == 0 {
		t.Fatal("config/default has no RBAC objects")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart RBAC differs from config/default's (-want +got):\n%s", diff)
	}
}

// TestChartAdmissionPoliciesMatchConfigDefault compares the admission policies of the
// kustomize install with the chart's, names and specs, and checks that the chart renders
// none when they are switched off and trusts the peer identity it is given.
func TestChartAdmissionPoliciesMatchConfigDefault(t *testing.T) {
	requireHelm(t)
	want := admissionPolicies(t, kustomizeBuild(t, filepath.Join(root, "config", "default")))
	if len(want) != 4 {
		t.Fatalf("config/default has %d admission policies and bindings, want 4", len(want))
	}
	if diff := cmp.Diff(want, admissionPolicies(t, render(t, "--set", "site="+site))); diff != "" {
		t.Errorf("chart admission policies differ from config/default's (-want +got):\n%s", diff)
	}
	if got := admissionPolicies(t, render(t, "--set", "site="+site, "--set", "admissionPolicies.enabled=false")); len(got) != 0 {
		t.Errorf("admissionPolicies.enabled=false renders %d policies", len(got))
	}
	const other = "system:serviceaccount:deich-system:partner"
	for key, spec := range admissionPolicies(t, render(t, "--set", "site="+site, "--set", "admissionPolicies.peerUsername="+other)) {
		if strings.HasSuffix(key, "Binding/"+releaseName+"-switchover-requester") {
			continue
		}
		if !strings.Contains(spec, "'"+other+"'") || strings.Contains(spec, "deich-peer") {
			t.Errorf("%s does not trust %s alone:\n%s", key, other, spec)
		}
	}
}

// admissionPolicies returns the specs of the admission policies and their bindings, as YAML,
// by kind and name.
func admissionPolicies(t *testing.T, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		if !strings.HasSuffix(o.GetKind(), "AdmissionPolicy") && !strings.HasSuffix(o.GetKind(), "AdmissionPolicyBinding") {
			continue
		}
		spec, err := yaml.Marshal(o.Object["spec"])
		if err != nil {
			t.Fatal(err)
		}
		out[o.GetKind()+"/"+o.GetName()] = string(spec)
	}
	return out
}

func TestManagerDeploymentRunsRestrictedWithLeaderElection(t *testing.T) {
	requireHelm(t)
	objs := render(t, "--set", "site="+site)
	var d appsv1.Deployment
	fromUnstructured(t, find(t, objs, "Deployment", releaseName+"-manager"), &d)

	if got := ptr.Deref(d.Spec.Replicas, 0); got != 2 {
		t.Errorf("replicas = %d, want 2", got)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != releaseName+"-manager" {
		t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, releaseName+"-manager")
	}
	psc := pod.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext.seccompProfile.type is not RuntimeDefault")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("pod has %d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if !ptr.Deref(sc.ReadOnlyRootFilesystem, false) {
		t.Error("container readOnlyRootFilesystem is not true")
	}
	if ptr.Deref(sc.AllowPrivilegeEscalation, true) {
		t.Error("container allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("container capabilities = %+v, want drop [ALL] and no add", sc.Capabilities)
	}
	if ptr.Deref(sc.Privileged, false) {
		t.Error("container is privileged")
	}

	for _, arg := range []string{
		"--site=$(DEICH_SITE)",
		"--namespace=" + releaseNamespace,
		"--leader-elect",
		"--max-clock-skew=2s",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %q lack %q", c.Args, arg)
		}
	}
	siteEnv := corev1.EnvVar{Name: "DEICH_SITE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: releaseName + "-site"}, Key: "site",
	}}}
	if diff := cmp.Diff([]corev1.EnvVar{siteEnv}, c.Env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	var cm corev1.ConfigMap
	fromUnstructured(t, find(t, objs, "ConfigMap", releaseName+"-site"), &cm)
	if cm.Data["site"] != site {
		t.Errorf("site ConfigMap holds site %q, want %q", cm.Data["site"], site)
	}
	if !strings.HasSuffix(c.Image, ":"+appVersion(t)) {
		t.Errorf("image = %q, want the chart's appVersion %s as tag", c.Image, appVersion(t))
	}
	for name, probe := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Port.String() != "health" {
			t.Errorf("%s probe = %+v, want an HTTP probe on the health port", name, probe)
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if diff := cmp.Diff(map[string]int32{"metrics": 8080, "health": 8081}, ports); diff != "" {
		t.Errorf("container ports (-want +got):\n%s", diff)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
}

// TestManagerPodIsAdmittedUnderTheRestrictedProfile creates the Deployment's Pod (dry run) in a
// namespace that enforces the restricted Pod Security Standard, so the API server's own
// PodSecurity admission judges it. A Pod that escalates privileges must be refused there, which
// shows the check is in force.
func TestManagerPodIsAdmittedUnderTheRestrictedProfile(t *testing.T) {
	requireHelm(t)
	objs := render(t, "-f", filepath.Join(root, fullValues))
	var d appsv1.Deployment
	fromUnstructured(t, find(t, objs, "Deployment", releaseName+"-manager"), &d)

	c, _ := apiServer(t)
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "restricted-check", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	}}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "manager", Labels: d.Spec.Template.Labels},
		Spec:       *d.Spec.Template.Spec.DeepCopy(),
	}
	if err := c.Create(ctx, pod.DeepCopy(), client.DryRunAll); err != nil {
		t.Fatalf("the manager's Pod is refused under the restricted profile: %v", err)
	}

	escalating := pod.DeepCopy()
	escalating.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err := c.Create(ctx, escalating, client.DryRunAll)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Fatalf("a Pod allowing privilege escalation got %v, want a PodSecurity refusal", err)
	}
}

// TestRenderedObjectsAreAcceptedByTheAPIServer applies every object the chart renders with
// server-side apply as a dry run (validation, defaulting, CEL rules and admission, nothing
// stored), for the default values and for values that switch on every optional part.
func TestRenderedObjectsAreAcceptedByTheAPIServer(t *testing.T) {
	requireHelm(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{{
		name: "with only a site",
		args: []string{"--set", "site=" + site},
		want: baseObjects(),
	}, {
		name: "with every option",
		args: []string{"-f", filepath.Join(root, fullValues)},
		want: append(baseObjects(),
			"ReplicationPeer/mv-schwerin", "ReplicationPeer/hh-hamburg",
			"Secret/deich-system/hamburg-kubeconfig",
			"RecoveryObjective/buergerdienste", "RecoveryObjective/register",
			"ServiceMonitor/deich-system/deich-manager", "PrometheusRule/deich-system/deich",
			"ConfigMap/deich-system/deich-dashboard",
		),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, tc.args...)
			var got []string
			for _, o := range objs {
				got = append(got, objectKey(o))
			}
			slices.Sort(got)
			slices.Sort(tc.want)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rendered objects (-want +got):\n%s", diff)
			}

			c, warnings := apiServer(t)
			ctx := t.Context()
			for _, o := range objs {
				t.Run(objectKey(o), func(t *testing.T) {
					warnings.reset()
					err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
						client.FieldOwner("deich-chart-test"), client.ForceOwnership, client.DryRunAll)
					if err != nil {
						t.Fatalf("server-side apply (dry run): %v", err)
					}
					if w := warnings.get(); len(w) > 0 {
						t.Errorf("the API server warned: %q", w)
					}
				})
			}
		})
	}
}

func TestPeersRenderTheirRoleAndReferToSecretsInTheReleaseNamespace(t *testing.T) {
	requireHelm(t)
	objs := render(t, "-f", filepath.Join(root, fullValues))
	for _, tc := range []struct {
		peer, secret, key, heartbeat, role, leaseNamespace string
	}{
		{peer: "mv-schwerin", secret: "peer-mv-schwerin", key: "kubeconfig", heartbeat: "10s"},
		{peer: "hh-hamburg", secret: "hamburg-kubeconfig", key: "config", role: "Witness", leaseNamespace: "deich-witness-sh-mv"},
	} {
		t.Run(tc.peer, func(t *testing.T) {
			spec, _, _ := unstructured.NestedMap(find(t, objs, "ReplicationPeer", tc.peer).Object, "spec")
			want := map[string]any{
				"site":                tc.peer,
				"kubeconfigSecretRef": map[string]any{"namespace": releaseNamespace, "name": tc.secret, "key": tc.key},
			}
			if tc.heartbeat != "" {
				want["heartbeatInterval"] = tc.heartbeat
			}
			if tc.role != "" {
				want["role"] = tc.role
			}
			if tc.leaseNamespace != "" {
				want["leaseNamespace"] = tc.leaseNamespace
			}
			if diff := cmp.Diff(want, spec); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
	var secret corev1.Secret
	fromUnstructured(t, find(t, objs, "Secret", "hamburg-kubeconfig"), &secret)
	if !bytes.Contains(secret.Data["config"], []byte("server: https://hh-hamburg.example.de:6443")) {
		t.Errorf("Secret hamburg-kubeconfig does not hold the kubeconfig from the values: %q", secret.Data)
	}
}

func TestPrometheusRuleAlertsOnDeichMetrics(t *testing.T) {
	requireHelm(t)
	objs := render(t, "-f", filepath.Join(root, fullValues), "--set", "metrics.prometheusRule.alerts.replicationLag.thresholdSeconds=45")
	groups, _, _ := unstructured.NestedSlice(find(t, objs, "PrometheusRule", releaseName).Object, "spec", "groups")
	got := map[string]string{}
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			rule := r.(map[string]any)
			got[fmt.Sprint(rule["alert"])] = fmt.Sprint(rule["expr"])
			if labels, _ := rule["labels"].(map[string]any); labels["team"] != "platform" || labels["severity"] == nil {
				t.Errorf("alert %v labels = %v, want severity and the extra label team=platform", rule["alert"], labels)
			}
		}
	}
	want := map[string]string{
		"DeichPeerUnreachable":       "deich_peer_reachable == 0",
		"DeichReplicationLagHigh":    "deich_replication_lag_seconds > 45",
		"DeichFailover":              "increase(deich_failovers_total[10m]) > 0",
		"DeichRecoverySlowerThanRTO": "increase(deich_recovery_slower_than_rto_total[1h]) > 0",
		"DeichSiteFenced":            "deich_fenced == 1",
		"DeichServiceNotServed":      "sum by (namespace, service) (deich_serving) == 0",
		"DeichServiceNotServedHere":  "count by (namespace, service, site) (deich_health_check_up == 0)\n  and on (namespace, service, site)\n(deich_serving == 0)",
		"DeichHealthCheckFailing":    "(deich_health_check_up == 0)\n  and on (namespace, service, site)\n(deich_serving == 1)",
		"DeichDrillFailed":           "deich_drill_failed == 1",
		"DeichDrillOverdue":          "time() - deich_drill_last_run_timestamp_seconds > 31622400",
		// Two rules of this name, a warning at 7 days and a critical one at 1 day: the map keeps
		// the last.
		"DeichPeerCredentialsExpiring": "deich_peer_credentials_expiry_timestamp_seconds < time() + 86400",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alerts (-want +got):\n%s", diff)
	}
}

// baseObjects are the objects the chart renders with only a site set.
func baseObjects() []string {
	return []string{
		"ServiceAccount/deich-system/deich-manager",
		"ConfigMap/deich-system/deich-site",
		"ClusterRole/deich-manager-role",
		"ClusterRoleBinding/deich-manager-rolebinding",
		"Role/deich-system/deich-manager-role",
		"RoleBinding/deich-system/deich-manager-rolebinding",
		"Role/deich-system/deich-leader-election-role",
		"RoleBinding/deich-system/deich-leader-election-rolebinding",
		"ClusterRole/deich-mirror-sources",
		"ClusterRoleBinding/deich-mirror-sources-rolebinding",
		"ClusterRole/deich-secret-reader",
		"Deployment/deich-system/deich-manager",
		"PodDisruptionBudget/deich-system/deich-manager",
		"Service/deich-system/deich-metrics",
		"MutatingAdmissionPolicy/deich-switchover-requester",
		"MutatingAdmissionPolicyBinding/deich-switchover-requester",
		"ValidatingAdmissionPolicy/deich-switchover-requester",
		"ValidatingAdmissionPolicyBinding/deich-switchover-requester",
	}
}

// helmPath is the helm binary: $HELM (set by `make test-all`), else bin/helm-<HELM_VERSION>.
func helmPath(t *testing.T) string {
	t.Helper()
	return toolPath(t, "HELM", "helm")
}

// kustomizePath is the kustomize binary: $KUSTOMIZE (set by `make test-all`), else
// bin/kustomize-<KUSTOMIZE_VERSION>.
func kustomizePath(t *testing.T) string {
	t.Helper()
	return toolPath(t, "KUSTOMIZE", "kustomize")
}

// toolPath returns $envVar, else the binary the Makefile builds for the version it pins in
// <envVar>_VERSION.
func toolPath(t *testing.T, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		return p
	}
	pin := regexp.MustCompile(`(?m)^` + envVar + `_VERSION \?= (\S+)$`)
	m := pin.FindSubmatch(readFile(t, filepath.Join(root, "Makefile")))
	if m == nil {
		t.Fatalf("the Makefile pins no %s_VERSION", envVar)
	}
	return filepath.Join(root, "bin", name+"-"+string(m[1]))
}

// requireHelm skips the test under -short and fails it when helm has not been built.
func requireHelm(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("renders the chart with helm")
	}
	if _, err := os.Stat(helmPath(t)); err != nil {
		t.Fatalf("helm is missing (build it with `make helm`): %v", err)
	}
}

// helmTemplate renders the chart as release deich in deich-system with extra helm arguments.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), helmTimeout)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, helmPath(t), append([]string{
		"template", releaseName, filepath.Join(root, "charts", "deich"), "--namespace", releaseNamespace,
	}, args...)...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm template: %w: %s", err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// render renders the chart and decodes every object.
func render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, out)
}

// kustomizeBuild runs `kustomize build dir` with the pinned kustomize.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	bin := kustomizePath(t)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("kustomize is missing (build it with `make tools`): %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), helmTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "build", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kustomize build %s: %v: %s", dir, err, stderr.String())
	}
	return decodeAll(t, stdout.Bytes())
}

// rbacObject is what an RBAC object grants, without labels and comments.
type rbacObject struct {
	Rules           []rbacv1.PolicyRule
	AggregationRule *rbacv1.AggregationRule
	RoleRef         rbacv1.RoleRef
	Subjects        []rbacv1.Subject
}

// rbacObjects returns the RBAC objects and ServiceAccounts by kind/namespace/name.
func rbacObjects(t *testing.T, objs []*unstructured.Unstructured) map[string]rbacObject {
	t.Helper()
	out := map[string]rbacObject{}
	for _, o := range objs {
		var r rbacObject
		switch o.GetKind() {
		case "ClusterRole":
			var cr rbacv1.ClusterRole
			fromUnstructured(t, o, &cr)
			r.Rules, r.AggregationRule = cr.Rules, cr.AggregationRule
		case "Role":
			var role rbacv1.Role
			fromUnstructured(t, o, &role)
			r.Rules = role.Rules
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			fromUnstructured(t, o, &b)
			r.RoleRef, r.Subjects = b.RoleRef, b.Subjects
		case "RoleBinding":
			var b rbacv1.RoleBinding
			fromUnstructured(t, o, &b)
			r.RoleRef, r.Subjects = b.RoleRef, b.Subjects
		case "ServiceAccount":
		default:
			continue
		}
		// An empty and an absent rule list grant the same.
		if len(r.Rules) == 0 {
			r.Rules = nil
		}
		out[objectKey(o)] = r
	}
	return out
}

// decodeAll decodes a multi-document YAML stream, skipping empty documents.
func decodeAll(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode rendered YAML: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// objectKey is kind/name for cluster-scoped objects and kind/namespace/name otherwise.
func objectKey(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func findKind(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	t.Fatalf("no %s found", kind)
	return nil
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("convert %s: %v", objectKey(u), err)
	}
}

func appVersion(t *testing.T) string {
	t.Helper()
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "charts", "deich", "Chart.yaml")), &chart); err != nil {
		t.Fatalf("read Chart.yaml: %v", err)
	}
	return chart.AppVersion
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// readDir returns the YAML files of dir by name.
func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		out[filepath.Base(p)] = readFile(t, p)
	}
	return out
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The API server is started once, by the first test that needs it, with the chart's CRDs and
// stand-ins for the Prometheus Operator's, and stopped by TestMain.
var (
	apiOnce     sync.Once
	apiEnv      *testenv.Env
	apiClient   client.Client
	apiWarnings = &warningRecorder{}
	apiErr      error
)

// apiServer returns an admin client for the shared API server and the recorder of the
// warnings it answers with; the namespace releaseNamespace exists and enforces the restricted
// Pod Security Standard.
func apiServer(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	apiOnce.Do(func() {
		apiEnv, apiErr = testenv.Start(testenv.Options{
			CRDDirectoryPaths: []string{
				filepath.Join(root, "charts", "deich", "crds"),
				filepath.Join(root, "test", "chart", "testdata", "crds"),
			},
			ErrorIfCRDPathMissing: true,
			Scheme:                operator.NewScheme(),
		}, site)
		if apiErr != nil {
			return
		}
		cfg := rest.CopyConfig(apiEnv.Site(site).Config)
		cfg.WarningHandlerWithContext = apiWarnings
		if apiClient, apiErr = client.New(cfg, client.Options{Scheme: operator.NewScheme()}); apiErr != nil {
			return
		}
		// Labelled like config/manager's namespace; the warn label makes the API server warn
		// about a Deployment whose Pods the restricted profile would refuse.
		apiErr = apiClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: releaseNamespace,
			Labels: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted",
				"pod-security.kubernetes.io/warn":    "restricted",
			},
		}})
	})
	if apiErr != nil {
		t.Fatalf("start API server: %v", apiErr)
	}
	return apiClient, apiWarnings
}

func stopAPIServer() error {
	if apiEnv == nil {
		return nil
	}
	return apiEnv.Stop()
}

// warningRecorder keeps the warnings the API server sends (deprecated APIs, Pod Security
// violations of workloads, ...).
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, code int, _, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = nil
}

func (w *warningRecorder) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}
