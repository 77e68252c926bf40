package v1alpha1_test

// These tests prove that the API server itself enforces Deich's API contract: the samples
// under config/samples are accepted, invalid specs are rejected with a message a user can act
// on (the CEL x-kubernetes-validations and OpenAPI rules of the generated CRDs), immutable
// fields stay immutable, and omitted fields get their documented defaults. They run against a
// real kube-apiserver (envtest) with the CRDs from config/crd/bases, started once in TestMain.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/deich-io/deich/api/v1alpha1"
)

// testNamespace holds the namespaced objects of the table tests.
const testNamespace = "validation"

var (
	// scheme knows the built-in kinds and Deich's kinds.
	scheme = newScheme()

	// k8sClient talks to the test API server; nil in -short mode.
	k8sClient client.Client

	// repoRoot is the directory holding go.mod, config/ and bin/.
	repoRoot string

	// nameSeq makes object names unique across cases.
	nameSeq atomic.Int64
)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

// runTests starts one control plane for all tests (unless -short), runs them and stops it.
// It is separate from TestMain so that the deferred Stop runs before os.Exit.
func runTests(m *testing.M) int {
	if testing.Short() {
		return m.Run() // every test skips itself
	}
	// envtest logs through controller-runtime's logger; keep it quiet.
	ctrllog.SetLogger(logr.Discard())

	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root

	start := time.Now()
	env := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Join(root, "bin"),
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-apiserver (binaries from %s): %v\n", env.BinaryAssetsDirectory, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop kube-apiserver: %v\n", err)
		}
	}()
	fmt.Printf("validation: kube-apiserver started in %s\n", time.Since(start).Round(time.Millisecond))

	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "build client: %v\n", err)
		return 1
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}
	if err := k8sClient.Create(context.Background(), ns); err != nil {
		fmt.Fprintf(os.Stderr, "create namespace %s: %v\n", testNamespace, err)
		return 1
	}
	return m.Run()
}

// findRepoRoot walks up from the working directory to the directory holding go.mod.
func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repo root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("find repo root: no go.mod at or above %s", wd)
		}
	}
}

// needAPIServer skips t in -short mode, where no API server runs.
func needAPIServer(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a kube-apiserver; skipped in -short mode")
	}
}

// ---------------------------------------------------------------------------------------------
// Samples

func TestSamplesAreAccepted(t *testing.T) {
	needAPIServer(t)
	dir := filepath.Join(repoRoot, "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}

	var samples []string
	kinds := map[string]bool{}
	for _, file := range files {
		base := filepath.Base(file)
		if base == "kustomization.yaml" {
			continue
		}
		samples = append(samples, base)
		t.Run("accepts "+base, func(t *testing.T) {
			objs := decodeYAMLFile(t, file)
			if len(objs) == 0 {
				t.Fatalf("%s holds no object", file)
			}
			for _, obj := range objs {
				kinds[obj.GetKind()] = true
				ensureNamespace(t, obj)
				// Strict field validation: a misspelled field in a sample is an error, not
				// silently dropped.
				if err := k8sClient.Create(t.Context(), obj, client.FieldValidation("Strict")); err != nil {
					t.Fatalf("the API server rejected %s %s from %s:\n%v", obj.GetKind(), client.ObjectKeyFromObject(obj), base, err)
				}
			}
		})
	}

	t.Run("has a sample for every kind", func(t *testing.T) {
		for _, kind := range []string{"ReplicationPeer", "RecoveryObjective", "SharedService", "Switchover"} {
			if !kinds[kind] {
				t.Errorf("no sample in %s is a %s", dir, kind)
			}
		}
	})

	t.Run("lists every sample in kustomization.yaml", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k struct {
			Resources []string `json:"resources"`
		}
		if err := yaml.Unmarshal(data, &k); err != nil {
			t.Fatal(err)
		}
		got, want := slices.Sorted(slices.Values(k.Resources)), slices.Sorted(slices.Values(samples))
		if !slices.Equal(got, want) {
			t.Errorf("kustomization.yaml lists %v, want the sample files %v", got, want)
		}
	})
}

// decodeYAMLFile decodes every document of a (multi-document) YAML file.
func decodeYAMLFile(t *testing.T, file string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decode %s: %v", file, err)
		}
		if m == nil {
			continue // an empty document, e.g. after a trailing ---
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// ensureNamespace creates the namespace of a namespaced object if it does not exist yet.
func ensureNamespace(t *testing.T, obj client.Object) {
	t.Helper()
	namespaced, err := k8sClient.IsObjectNamespaced(obj)
	if err != nil {
		t.Fatalf("is %s namespaced: %v", obj.GetObjectKind().GroupVersionKind(), err)
	}
	if !namespaced {
		return
	}
	if obj.GetNamespace() == "" {
		t.Fatalf("namespaced sample %s %s has no metadata.namespace", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName())
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}}
	if err := k8sClient.Create(t.Context(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", ns.Name, err)
	}
}

// ---------------------------------------------------------------------------------------------
// Builders: valid base objects, changed by mutation funcs per case.

// d parses a duration literal of a test case.
func d(s string) metav1.Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("bad duration literal %q in test: %v", s, err))
	}
	return metav1.Duration{Duration: v}
}

// objective is a valid RecoveryObjective like the "buergerdienste" sample, with every field
// set (a Go client sends zero durations as "0s", which the API rejects).
func objective(mutate ...func(*v1alpha1.RecoveryObjective)) *v1alpha1.RecoveryObjective {
	o := &v1alpha1.RecoveryObjective{
		Spec: v1alpha1.RecoveryObjectiveSpec{
			RPO: d("30s"),
			RTO: d("2m"),
			Failover: v1alpha1.FailoverPolicy{
				Mode:             v1alpha1.FailoverAutomatic,
				FailureThreshold: 3,
				ProbeInterval:    d("5s"),
				LeaseDuration:    d("15s"),
			},
			Standby:                     v1alpha1.StandbyCold,
			Failback:                    v1alpha1.FailbackManual,
			FailbackStabilizationWindow: d("5m"),
		},
	}
	for _, m := range mutate {
		m(o)
	}
	return o
}

// peer is a valid ReplicationPeer for mv-schwerin.
func peer(mutate ...func(*v1alpha1.ReplicationPeer)) *v1alpha1.ReplicationPeer {
	p := &v1alpha1.ReplicationPeer{
		Spec: v1alpha1.ReplicationPeerSpec{
			Site: "mv-schwerin",
			KubeconfigSecretRef: v1alpha1.SecretKeyReference{
				Namespace: "deich-system",
				Name:      "peer-mv-schwerin",
				Key:       "kubeconfig",
			},
			HeartbeatInterval: d("5s"),
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// witnessPeer is a valid ReplicationPeer for the witness hh-hamburg.
func witnessPeer(mutate ...func(*v1alpha1.ReplicationPeer)) *v1alpha1.ReplicationPeer {
	p := peer(func(p *v1alpha1.ReplicationPeer) {
		p.Spec.Site = "hh-hamburg"
		p.Spec.Role = v1alpha1.PeerRoleWitness
		p.Spec.KubeconfigSecretRef.Name = "peer-hh-hamburg"
	})
	for _, m := range mutate {
		m(p)
	}
	return p
}

// sharedService is a valid SharedService shared by sh-kiel (primary) and mv-schwerin, with one
// check of each kind and one override per site and role. Its resources are all of named API
// groups; cases with core kinds set them (a Go client omits the empty group) or use
// withResources to choose how the group is written.
func sharedService(mutate ...func(*v1alpha1.SharedService)) *v1alpha1.SharedService {
	s := &v1alpha1.SharedService{
		Spec: v1alpha1.SharedServiceSpec{
			PrimarySite:          "sh-kiel",
			StandbySite:          "mv-schwerin",
			RecoveryObjectiveRef: v1alpha1.ObjectiveReference{Name: "buergerdienste"},
			Selector: metav1.LabelSelector{
				MatchLabels: map[string]string{"app.kubernetes.io/part-of": "buergerkonto"},
			},
			Resources: []v1alpha1.ResourceKind{
				{Group: "apps", Kind: "Deployment"},
				{Group: "networking.k8s.io", Kind: "Ingress"},
			},
			HealthChecks: []v1alpha1.HealthCheck{
				{Name: "public", HTTP: httpCheck("https://buergerkonto.example.de/healthz")},
				{Name: "database", TCP: tcpCheck("db.buergerkonto.svc:5432")},
				{Name: "workload-sh-kiel", Site: "sh-kiel", Workload: workloadCheck()},
			},
			Overrides: []v1alpha1.Override{
				{Site: "mv-schwerin", Patches: []v1alpha1.Patch{ingressHostPatch()}},
				{Role: v1alpha1.RoleStandby, Patches: []v1alpha1.Patch{readOnlyPatch()}},
			},
			DeletionPolicy: v1alpha1.DeletionPolicyDelete,
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func httpCheck(url string) *v1alpha1.HTTPCheck {
	return &v1alpha1.HTTPCheck{URL: url, ExpectedStatus: 200, Timeout: d("2s")}
}

func tcpCheck(address string) *v1alpha1.TCPCheck {
	return &v1alpha1.TCPCheck{Address: address, Timeout: d("2s")}
}

func workloadCheck() *v1alpha1.WorkloadCheck {
	return &v1alpha1.WorkloadCheck{Kind: "Deployment", Name: "buergerkonto", MinReady: 1}
}

func ingressHostPatch() v1alpha1.Patch {
	return v1alpha1.Patch{
		Target: &v1alpha1.PatchTarget{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress", Name: "buergerkonto"},
		Patch:  "spec:\n  rules:\n  - host: buergerkonto.mv-schwerin.example.de\n",
	}
}

func readOnlyPatch() v1alpha1.Patch {
	return v1alpha1.Patch{
		Target: &v1alpha1.PatchTarget{Version: "v1", Kind: "ConfigMap", Name: "buergerkonto-config"},
		Patch:  `[{"op": "add", "path": "/data/READ_ONLY", "value": "true"}]`,
	}
}

// switchover is a valid drill of buergerkonto to mv-schwerin.
func switchover(mutate ...func(*v1alpha1.Switchover)) *v1alpha1.Switchover {
	s := &v1alpha1.Switchover{
		Spec: v1alpha1.SwitchoverSpec{
			SharedServiceName: "buergerkonto",
			TargetSite:        "mv-schwerin",
			Reason:            "DR drill, change ticket CHG-0815",
			Drill:             true,
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// raw turns obj into the JSON a Go client would send, then lets mutate change it, for cases a
// typed object cannot express: an unparseable duration, an explicit zero that omitempty would
// drop, a missing required field.
func raw(obj client.Object, mutate func(o map[string]any)) *unstructured.Unstructured {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		panic(err)
	}
	data, err := utiljson.Marshal(obj)
	if err != nil {
		panic(err)
	}
	u := &unstructured.Unstructured{}
	if err := utiljson.Unmarshal(data, &u.Object); err != nil {
		panic(err)
	}
	u.SetGroupVersionKind(gvk)
	mutate(u.Object)
	return u
}

// withResources is a raw mutation that replaces spec.resources of a SharedService. An entry
// "Kind" has no group field, "/Kind" an explicit empty group, "group/Kind" that group.
func withResources(entries ...string) func(map[string]any) {
	return func(o map[string]any) {
		var list []any
		for _, e := range entries {
			r := map[string]any{"kind": e}
			if group, kind, ok := strings.Cut(e, "/"); ok {
				r = map[string]any{"group": group, "kind": kind}
			}
			list = append(list, r)
		}
		set(o, list, "spec", "resources")
	}
}

// set sets a field of an unstructured object, by path.
func set(o map[string]any, value any, path ...string) {
	utilruntime.Must(unstructured.SetNestedField(o, value, path...))
}

// ---------------------------------------------------------------------------------------------
// Running cases

// validationCase is one object the API server must accept (want == "") or reject with an
// error containing want.
type validationCase struct {
	name string
	obj  client.Object
	want string
}

func runCases(t *testing.T, cases []validationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := create(t, tc.obj)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("the API server rejected a valid object:\n%v\nobject: %s", err, dump(tc.obj))
				}
				return
			}
			expectInvalid(t, err, tc.want, tc.obj)
		})
	}
}

// expectInvalid fails t unless err is the API server's Invalid error and contains want.
func expectInvalid(t *testing.T, err error, want string, obj client.Object) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("the API server accepted the object, want it rejected with %q\nobject: %s", want, dump(obj))
	case !apierrors.IsInvalid(err):
		t.Fatalf("want an Invalid error containing %q, got %s: %v\nobject: %s", want, apierrors.ReasonForError(err), err, dump(obj))
	case !strings.Contains(err.Error(), want):
		t.Fatalf("the API server rejected the object, but its error does not contain %q:\n%v\nobject: %s", want, err, dump(obj))
	}
	t.Logf("rejected as expected: %v", err) // shown with -v: the message users will read
}

// create names obj after the running test, places it in testNamespace if it is namespaced and
// creates it with strict field validation.
func create(t *testing.T, obj client.Object) error {
	t.Helper()
	obj.SetName(uniqueName(t))
	namespaced, err := k8sClient.IsObjectNamespaced(obj)
	if err != nil {
		t.Fatalf("is %T namespaced: %v", obj, err)
	}
	if namespaced {
		obj.SetNamespace(testNamespace)
	}
	return k8sClient.Create(t.Context(), obj, client.FieldValidation("Strict"))
}

var nonNameChars = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueName derives a valid object name from the running test's name, unique per call.
func uniqueName(t *testing.T) string {
	name := t.Name()
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Trim(nonNameChars.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	return fmt.Sprintf("%s-%d", name, nameSeq.Add(1))
}

// dump renders obj as JSON for failure messages.
func dump(obj client.Object) string {
	data, err := utiljson.Marshal(obj)
	if err != nil {
		return fmt.Sprintf("%#v", obj)
	}
	return string(data)
}

// ---------------------------------------------------------------------------------------------
// Rejections

func TestRecoveryObjectiveValidation(t *testing.T) {
	needAPIServer(t)
	type o = v1alpha1.RecoveryObjective
	runCases(t, []validationCase{
		{name: "accepts the base objective", obj: objective()},
		{name: "accepts an rto exactly leaseDuration plus failureThreshold probe intervals",
			obj: objective(func(o *o) { o.Spec.RTO = d("30s") })},
		{name: "accepts automatic failback after a window as long as the lease",
			obj: objective(func(o *o) {
				o.Spec.Failback = v1alpha1.FailbackAutomatic
				o.Spec.FailbackStabilizationWindow = d("1m")
				o.Spec.Failover.LeaseDuration = d("1m")
			})},

		{name: "rejects an rpo of zero", want: "rpo must be greater than zero",
			obj: objective(func(o *o) { o.Spec.RPO = d("0s") })},
		{name: "rejects a negative rpo", want: "spec.rpo in body should match",
			obj: objective(func(o *o) { o.Spec.RPO = d("-30s") })},
		{name: "rejects an rpo that is not a duration", want: "spec.rpo in body should match",
			obj: raw(objective(), func(o map[string]any) { set(o, "5 minutes", "spec", "rpo") })},
		{name: "rejects an rpo longer than a day", want: "rpo must be between 1s and 24h",
			obj: objective(func(o *o) { o.Spec.RPO = d("25h") })},
		{name: "rejects an rto of zero", want: "rto must be greater than zero",
			obj: objective(func(o *o) { o.Spec.RTO = d("0s") })},
		{name: "rejects an rto that is not a duration", want: "spec.rto in body should match",
			obj: raw(objective(), func(o map[string]any) { set(o, "2 min", "spec", "rto") })},
		{name: "rejects an rto shorter than leaseDuration plus failureThreshold probe intervals",
			want: "rto must be at least failover.leaseDuration + failover.failureThreshold × failover.probeInterval",
			obj:  objective(func(o *o) { o.Spec.RTO = d("29s") })}, // 15s + 3 × 5s = 30s
		{name: "rejects an rto half a second too short",
			want: "rto must be at least failover.leaseDuration + failover.failureThreshold × failover.probeInterval",
			obj:  objective(func(o *o) { o.Spec.RTO = d("29.5s") })},
		{name: "rejects an rto that leaves no time for detection with many failures",
			want: "rto must be at least failover.leaseDuration + failover.failureThreshold × failover.probeInterval",
			obj:  objective(func(o *o) { o.Spec.Failover.FailureThreshold = 30 })}, // 15s + 150s > 2m
		{name: "rejects a probeInterval longer than leaseDuration",
			want: "failover.probeInterval must not be longer than failover.leaseDuration",
			obj:  objective(func(o *o) { o.Spec.Failover.ProbeInterval = d("20s") })},
		{name: "rejects a probeInterval below one second", want: "failover.probeInterval must be between 1s and 10m",
			obj: objective(func(o *o) { o.Spec.Failover.ProbeInterval = d("500ms") })},
		{name: "rejects a leaseDuration below six seconds", want: "failover.leaseDuration must be between 6s and 1h",
			obj: objective(func(o *o) { o.Spec.Failover.LeaseDuration = d("5s") })},
		{name: "rejects a leaseDuration above an hour", want: "failover.leaseDuration must be between 6s and 1h",
			obj: objective(func(o *o) {
				o.Spec.Failover.LeaseDuration = d("2h")
				o.Spec.RTO = d("24h")
			})},
		{name: "rejects a failureThreshold of zero", want: "failureThreshold in body should be greater than or equal to 1",
			obj: raw(objective(), func(o map[string]any) { set(o, int64(0), "spec", "failover", "failureThreshold") })},
		{name: "rejects an unknown failover mode", want: `supported values: "Automatic", "Manual"`,
			obj: objective(func(o *o) { o.Spec.Failover.Mode = "Sometimes" })},
		{name: "rejects an unknown standby mode", want: `supported values: "Cold", "Warm", "Hot"`,
			obj: objective(func(o *o) { o.Spec.Standby = "Lukewarm" })},
		{name: "rejects an unknown failback mode", want: `supported values: "Manual", "Automatic"`,
			obj: objective(func(o *o) { o.Spec.Failback = "Immediately" })},
		{name: "rejects automatic failback with a stabilization window shorter than the lease",
			want: "failbackStabilizationWindow must be at least failover.leaseDuration when failback is Automatic",
			obj: objective(func(o *o) {
				o.Spec.Failback = v1alpha1.FailbackAutomatic
				o.Spec.FailbackStabilizationWindow = d("1m")
				o.Spec.Failover.LeaseDuration = d("2m")
				o.Spec.RTO = d("5m")
			})},
		{name: "rejects a stabilization window below a minute", want: "failbackStabilizationWindow must be between 1m and 24h",
			obj: objective(func(o *o) { o.Spec.FailbackStabilizationWindow = d("30s") })},
	})
}

func TestReplicationPeerValidation(t *testing.T) {
	needAPIServer(t)
	type p = v1alpha1.ReplicationPeer
	runCases(t, []validationCase{
		{name: "accepts the base peer", obj: peer()},
		{name: "accepts a heartbeatInterval of five minutes", obj: peer(func(p *p) { p.Spec.HeartbeatInterval = d("5m") })},
		{name: "accepts a partner named as such", obj: peer(func(p *p) { p.Spec.Role = v1alpha1.PeerRolePartner })},
		{name: "accepts a witness without leaseNamespace", obj: witnessPeer()},
		{name: "accepts a witness with its own leaseNamespace",
			obj: witnessPeer(func(p *p) { p.Spec.LeaseNamespace = "deich-witness-sh-mv" })},

		{name: "rejects an unknown role", want: `spec.role: Unsupported value: "Arbiter": supported values: "Partner", "Witness"`,
			obj: peer(func(p *p) { p.Spec.Role = "Arbiter" })},
		{name: "rejects a leaseNamespace for a partner",
			want: "spec.leaseNamespace: Invalid value: leaseNamespace is only for a peer with role Witness",
			obj:  peer(func(p *p) { p.Spec.Role = v1alpha1.PeerRolePartner; p.Spec.LeaseNamespace = "deich-witness" })},
		{name: "rejects a leaseNamespace for a peer whose role defaults to Partner",
			want: "spec.leaseNamespace: Invalid value: leaseNamespace is only for a peer with role Witness",
			obj:  peer(func(p *p) { p.Spec.LeaseNamespace = "deich-witness" })},
		{name: "rejects a leaseNamespace that is not a DNS label", want: "spec.leaseNamespace in body should match",
			obj: witnessPeer(func(p *p) { p.Spec.LeaseNamespace = "Deich_Witness" })},
		{name: "rejects an empty leaseNamespace sent explicitly", want: "spec.leaseNamespace in body should be at least 1 chars long",
			obj: raw(witnessPeer(), func(o map[string]any) { set(o, "", "spec", "leaseNamespace") })},

		{name: "accepts an egress policy with every rule", obj: peer(func(p *p) {
			p.Spec.Egress = &v1alpha1.EgressPolicy{
				Namespaces: []string{"buergerkonto"}, Kinds: []v1alpha1.ResourceKind{{Group: "apps", Kind: "Deployment"}},
				Secrets: v1alpha1.SecretsDeny, DeniedClassifications: []string{"vs-nfd"},
			}
		})},
		{name: "rejects an egress policy for a witness", want: "spec.egress: Invalid value: egress is only for a peer with role Partner",
			obj: witnessPeer(func(p *p) { p.Spec.Egress = &v1alpha1.EgressPolicy{Secrets: v1alpha1.SecretsDeny} })},
		{name: "rejects an empty namespaces allow-list", want: "spec.egress.namespaces in body should have at least 1 items",
			obj: raw(peer(), func(o map[string]any) { set(o, []any{}, "spec", "egress", "namespaces") })},
		{name: "rejects an unknown secrets rule", want: `spec.egress.secrets: Unsupported value: "Encrypt"`,
			obj: peer(func(p *p) { p.Spec.Egress = &v1alpha1.EgressPolicy{Secrets: "Encrypt"} })},
		{name: "rejects an allowed kind that is never mirrored", want: "objects of this API group are cluster-local or security-sensitive",
			obj: peer(func(p *p) {
				p.Spec.Egress = &v1alpha1.EgressPolicy{Kinds: []v1alpha1.ResourceKind{{Group: "rbac.authorization.k8s.io", Kind: "Role"}}}
			})},
		{name: "rejects a classification that is not a label value", want: "spec.egress.deniedClassifications[0] in body should match",
			obj: peer(func(p *p) { p.Spec.Egress = &v1alpha1.EgressPolicy{DeniedClassifications: []string{"VS NfD"}} })},

		{name: "rejects a heartbeatInterval of zero", want: "heartbeatInterval must be between 1s and 5m",
			obj: raw(peer(), func(o map[string]any) { set(o, "0s", "spec", "heartbeatInterval") })},
		{name: "rejects a heartbeatInterval longer than five minutes", want: "heartbeatInterval must be between 1s and 5m",
			obj: peer(func(p *p) { p.Spec.HeartbeatInterval = d("5m1s") })},
		{name: "rejects a site that is not a DNS label", want: "spec.site in body should match",
			obj: peer(func(p *p) { p.Spec.Site = "MV_Schwerin" })},
		{name: "rejects an empty site", want: "spec.site in body should be at least 1 chars long",
			obj: peer(func(p *p) { p.Spec.Site = "" })},
		{name: "rejects a secret namespace that is not a DNS label", want: "kubeconfigSecretRef.namespace in body should match",
			obj: peer(func(p *p) { p.Spec.KubeconfigSecretRef.Namespace = "deich_system" })},
		{name: "rejects a secret key with a slash", want: "kubeconfigSecretRef.key in body should match",
			obj: peer(func(p *p) { p.Spec.KubeconfigSecretRef.Key = "../kubeconfig" })},
	})
}

func TestSharedServiceValidation(t *testing.T) {
	needAPIServer(t)
	type s = v1alpha1.SharedService
	runCases(t, []validationCase{
		{name: "accepts the base service", obj: sharedService()},
		{name: "accepts core kinds with an explicit empty group",
			obj: raw(sharedService(), withResources("/Service", "/ConfigMap", "/Secret", "/ServiceAccount", "apps/Deployment"))},
		// The ResourceKind rules must not read a group that was left out: kubectl users write
		// "- kind: Service", and a Go client omits the empty group.
		{name: "accepts core kinds written without group",
			obj: raw(sharedService(), withResources("Service", "ConfigMap", "apps/Deployment"))},
		{name: "accepts core kinds from a Go client, which omits the empty group",
			obj: sharedService(func(s *s) {
				s.Spec.Resources = []v1alpha1.ResourceKind{{Kind: "Service"}, {Kind: "Secret"}, {Group: "apps", Kind: "Deployment"}}
			})},
		{name: "accepts a witness site besides the two partners",
			obj: sharedService(func(s *s) { s.Spec.WitnessSite = "hh-hamburg" })},
		{name: "accepts custom resources and the same kind in another group",
			obj: sharedService(func(s *s) {
				s.Spec.Resources = []v1alpha1.ResourceKind{
					{Group: "apps", Kind: "StatefulSet"},
					{Group: "postgresql.cnpg.io", Kind: "Cluster"},
					{Group: "cluster.x-k8s.io", Kind: "Cluster"},
				}
			})},

		{name: "rejects a standby site equal to the primary site", want: "primarySite and standbySite must be different sites",
			obj: sharedService(func(s *s) { s.Spec.StandbySite = "sh-kiel"; s.Spec.HealthChecks = nil; s.Spec.Overrides = nil })},
		{name: "rejects a primary site that is not a DNS label", want: "spec.primarySite in body should match",
			obj: sharedService(func(s *s) { s.Spec.PrimarySite = "SH Kiel" })},
		{name: "rejects a witness site equal to the primary site",
			want: "spec.witnessSite: Invalid value: witnessSite must be a third site, different from primarySite and standbySite",
			obj:  sharedService(func(s *s) { s.Spec.WitnessSite = "sh-kiel" })},
		{name: "rejects a witness site equal to the standby site",
			want: "spec.witnessSite: Invalid value: witnessSite must be a third site, different from primarySite and standbySite",
			obj:  sharedService(func(s *s) { s.Spec.WitnessSite = "mv-schwerin" })},
		{name: "rejects a witness site that is not a DNS label", want: "spec.witnessSite in body should match",
			obj: sharedService(func(s *s) { s.Spec.WitnessSite = "hh.hamburg" })},
		{name: "rejects a health check with none of http, tcp or workload",
			want: "a health check needs exactly one of http, tcp or workload",
			obj:  sharedService(func(s *s) { s.Spec.HealthChecks = []v1alpha1.HealthCheck{{Name: "empty"}} })},
		{name: "rejects a health check with both http and tcp",
			want: "a health check needs exactly one of http, tcp or workload",
			obj: sharedService(func(s *s) {
				s.Spec.HealthChecks = []v1alpha1.HealthCheck{{Name: "both", HTTP: httpCheck("https://buergerkonto.example.de/"), TCP: tcpCheck("buergerkonto.example.de:443")}}
			})},
		{name: "rejects a workload check without site", want: "a workload check needs site",
			obj: sharedService(func(s *s) {
				s.Spec.HealthChecks = []v1alpha1.HealthCheck{{Name: "replicas", Workload: workloadCheck()}}
			})},
		{name: "rejects a health check for a site that is neither primary nor standby",
			want: "a health check's site must be primarySite or standbySite",
			obj: sharedService(func(s *s) {
				s.Spec.HealthChecks = []v1alpha1.HealthCheck{{Name: "replicas", Site: "hh-hamburg", Workload: workloadCheck()}}
			})},
		{name: "rejects two health checks with the same name", want: "Duplicate value",
			obj: sharedService(func(s *s) {
				s.Spec.HealthChecks = []v1alpha1.HealthCheck{
					{Name: "public", HTTP: httpCheck("https://buergerkonto.example.de/")},
					{Name: "public", TCP: tcpCheck("buergerkonto.example.de:443")},
				}
			})},
		{name: "rejects an http check of an ftp URL", want: "url must be an absolute http:// or https:// URL",
			obj: sharedService(func(s *s) { s.Spec.HealthChecks[0].HTTP.URL = "ftp://buergerkonto.example.de/healthz" })},
		{name: "rejects an http check of a relative URL", want: "url must be an absolute http:// or https:// URL",
			obj: sharedService(func(s *s) { s.Spec.HealthChecks[0].HTTP.URL = "/healthz" })},
		{name: "rejects an http check expecting a status above 599", want: "expectedStatus in body should be less than or equal to 599",
			obj: sharedService(func(s *s) { s.Spec.HealthChecks[0].HTTP.ExpectedStatus = 600 })},
		{name: "rejects a tcp address without port", want: "tcp.address in body should match",
			obj: sharedService(func(s *s) { s.Spec.HealthChecks[1].TCP.Address = "db.buergerkonto.svc" })},
		{name: "rejects an override without patches", want: "spec.overrides[0].patches: Required value",
			obj: sharedService(func(s *s) { s.Spec.Overrides = []v1alpha1.Override{{Site: "mv-schwerin"}} })},
		{name: "rejects an override with an empty list of patches", want: "patches in body should have at least 1 items",
			obj: sharedService(func(s *s) { s.Spec.Overrides = []v1alpha1.Override{{Site: "mv-schwerin", Patches: []v1alpha1.Patch{}}} })},
		{name: "rejects an override with neither site nor role", want: "an override needs site, role or both",
			obj: sharedService(func(s *s) { s.Spec.Overrides = []v1alpha1.Override{{Patches: []v1alpha1.Patch{readOnlyPatch()}}} })},
		{name: "rejects an override for a site that is neither primary nor standby",
			want: "an override's site must be primarySite or standbySite",
			obj:  sharedService(func(s *s) { s.Spec.Overrides[0].Site = "hh-hamburg" })},
		{name: "rejects an override for an unknown role", want: `supported values: "Active", "Standby"`,
			obj: sharedService(func(s *s) { s.Spec.Overrides[1].Role = "Primary" })},
		{name: "rejects an empty patch", want: "patch in body should be at least 1 chars long",
			obj: sharedService(func(s *s) { s.Spec.Overrides[0].Patches[0].Patch = "" })},
		{name: "rejects RBAC objects", want: "objects of this API group are cluster-local or security-sensitive and are never mirrored",
			obj: sharedService(func(s *s) {
				s.Spec.Resources = append(s.Spec.Resources, v1alpha1.ResourceKind{Group: "rbac.authorization.k8s.io", Kind: "Role"})
			})},
		{name: "rejects Deich's own objects", want: "objects of this API group are cluster-local or security-sensitive and are never mirrored",
			obj: sharedService(func(s *s) {
				s.Spec.Resources = append(s.Spec.Resources, v1alpha1.ResourceKind{Group: "resilience.deich.io", Kind: "SharedService"})
			})},
		{name: "rejects Pods", want: "this core kind is cluster-local and is never mirrored",
			obj: raw(sharedService(), withResources("apps/Deployment", "/Pod"))},
		{name: "rejects Namespaces", want: "this core kind is cluster-local and is never mirrored",
			obj: raw(sharedService(), withResources("apps/Deployment", "/Namespace"))},
		{name: "rejects a kind listed twice", want: "resources must not list a kind twice",
			obj: sharedService(func(s *s) {
				s.Spec.Resources = append(s.Spec.Resources, v1alpha1.ResourceKind{Group: "apps", Kind: "Deployment"})
			})},
		{name: "rejects a core kind listed twice", want: "resources must not list a kind twice",
			obj: raw(sharedService(), withResources("/ConfigMap", "apps/Deployment", "/ConfigMap"))},
		{name: "rejects an empty list of resources", want: "spec.resources in body should have at least 1 items",
			obj: sharedService(func(s *s) { s.Spec.Resources = []v1alpha1.ResourceKind{} })},
		{name: "rejects a missing list of resources", want: "spec.resources: Required value",
			obj: sharedService(func(s *s) { s.Spec.Resources = nil })},
		{name: "rejects a kind that is not CamelCase", want: "kind in body should match",
			obj: sharedService(func(s *s) { s.Spec.Resources[0].Kind = "deployment" })},
	})
}

func TestSwitchoverValidation(t *testing.T) {
	needAPIServer(t)
	type s = v1alpha1.Switchover
	runCases(t, []validationCase{
		{name: "accepts the base drill", obj: switchover()},
		{name: "accepts a forced move", obj: switchover(func(s *s) { s.Spec.Drill = false; s.Spec.Force = true })},

		{name: "rejects an empty reason", want: "spec.reason in body should be at least 1 chars long",
			obj: switchover(func(s *s) { s.Spec.Reason = "" })},
		{name: "rejects a missing reason", want: "spec.reason: Required value",
			obj: raw(switchover(), func(o map[string]any) { unstructured.RemoveNestedField(o, "spec", "reason") })},
		{name: "rejects a target site that is not a DNS label", want: "spec.targetSite in body should match",
			obj: switchover(func(s *s) { s.Spec.TargetSite = "mv.schwerin" })},
		{name: "rejects a missing shared service name", want: "spec.sharedServiceName in body should be at least 1 chars long",
			obj: switchover(func(s *s) { s.Spec.SharedServiceName = "" })},
	})
}

// ---------------------------------------------------------------------------------------------
// Updates

func TestUpdates(t *testing.T) {
	needAPIServer(t)
	cases := []struct {
		name   string
		obj    client.Object
		change func(client.Object)
		want   string // "" when the change must be accepted
	}{
		{name: "accepts a changed heartbeatInterval", obj: peer(),
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.HeartbeatInterval = d("10s") }},
		{name: "accepts a changed kubeconfig Secret", obj: peer(),
			change: func(o client.Object) {
				o.(*v1alpha1.ReplicationPeer).Spec.KubeconfigSecretRef.Name = "peer-mv-schwerin-rotated"
			}},
		{name: "rejects a changed peer site", obj: peer(), want: "site is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.Site = "hh-hamburg" }},
		{name: "rejects turning a partner into a witness", obj: peer(), want: "role is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.Role = v1alpha1.PeerRoleWitness }},
		{name: "rejects turning a witness into a partner", obj: witnessPeer(), want: "role is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.Role = v1alpha1.PeerRolePartner }},
		{name: "rejects a witness whose role is removed, which makes it a partner", obj: witnessPeer(), want: "role is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.Role = "" }},
		{name: "rejects a changed leaseNamespace", obj: witnessPeer(func(p *v1alpha1.ReplicationPeer) { p.Spec.LeaseNamespace = "deich-witness-sh-mv" }),
			want:   "leaseNamespace is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.LeaseNamespace = "deich-witness-sh-ni" }},
		{name: "rejects a leaseNamespace set on a witness that used the default", obj: witnessPeer(), want: "leaseNamespace is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.LeaseNamespace = "deich-witness-sh-mv" }},
		{name: "rejects a removed leaseNamespace, which moves the Leases to the default",
			obj:    witnessPeer(func(p *v1alpha1.ReplicationPeer) { p.Spec.LeaseNamespace = "deich-witness-sh-mv" }),
			want:   "leaseNamespace is immutable",
			change: func(o client.Object) { o.(*v1alpha1.ReplicationPeer).Spec.LeaseNamespace = "" }},
		{name: "accepts the default leaseNamespace written out", obj: witnessPeer(),
			change: func(o client.Object) {
				o.(*v1alpha1.ReplicationPeer).Spec.LeaseNamespace = v1alpha1.DefaultWitnessLeaseNamespace
			}},

		{name: "accepts a changed rto", obj: objective(),
			change: func(o client.Object) { o.(*v1alpha1.RecoveryObjective).Spec.RTO = d("5m") }},

		{name: "accepts an added resource kind", obj: sharedService(),
			change: func(o client.Object) {
				s := o.(*v1alpha1.SharedService)
				s.Spec.Resources = append(s.Spec.Resources, v1alpha1.ResourceKind{Group: "apps", Kind: "StatefulSet"})
			}},
		{name: "rejects a changed primary site", obj: sharedService(), want: "primarySite is immutable",
			change: func(o client.Object) { o.(*v1alpha1.SharedService).Spec.PrimarySite = "hh-hamburg" }},
		{name: "rejects a changed standby site", obj: sharedService(), want: "standbySite is immutable",
			change: func(o client.Object) { o.(*v1alpha1.SharedService).Spec.StandbySite = "hh-hamburg" }},
		{name: "accepts a witness added to a service", obj: sharedService(),
			change: func(o client.Object) { o.(*v1alpha1.SharedService).Spec.WitnessSite = "hh-hamburg" }},
		{name: "accepts a witness removed from a service",
			obj:    sharedService(func(s *v1alpha1.SharedService) { s.Spec.WitnessSite = "hh-hamburg" }),
			change: func(o client.Object) { o.(*v1alpha1.SharedService).Spec.WitnessSite = "" }},
		{name: "rejects a witness added that is one of the partners", obj: sharedService(),
			want:   "witnessSite must be a third site, different from primarySite and standbySite",
			change: func(o client.Object) { o.(*v1alpha1.SharedService).Spec.WitnessSite = "mv-schwerin" }},

		{name: "accepts changed labels of a switchover", obj: switchover(),
			change: func(o client.Object) { o.SetLabels(map[string]string{"ticket": "chg-0815"}) }},
		{name: "rejects a changed switchover target", obj: switchover(), want: "a Switchover cannot be changed",
			change: func(o client.Object) { o.(*v1alpha1.Switchover).Spec.TargetSite = "sh-kiel" }},
		{name: "rejects turning a drill into a real move", obj: switchover(), want: "a Switchover cannot be changed",
			change: func(o client.Object) { o.(*v1alpha1.Switchover).Spec.Drill = false }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := create(t, tc.obj); err != nil {
				t.Fatalf("create: %v\nobject: %s", err, dump(tc.obj))
			}
			tc.change(tc.obj)
			err := k8sClient.Update(t.Context(), tc.obj, client.FieldValidation("Strict"))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("the API server rejected a valid change:\n%v\nobject: %s", err, dump(tc.obj))
				}
				return
			}
			expectInvalid(t, err, tc.want, tc.obj)
		})
	}
}

// ---------------------------------------------------------------------------------------------
// Defaults

// TestDefaults creates minimal objects as kubectl would send them (fields left out, not sent
// as zero values) and checks what the API server filled in.
func TestDefaults(t *testing.T) {
	needAPIServer(t)

	t.Run("fills in a minimal recovery objective", func(t *testing.T) {
		got := &v1alpha1.RecoveryObjective{}
		createMinimal(t, got, `{"rpo": "30s", "rto": "2m"}`)
		want := v1alpha1.RecoveryObjectiveSpec{
			RPO: d("30s"),
			RTO: d("2m"),
			Failover: v1alpha1.FailoverPolicy{
				Mode:             v1alpha1.FailoverAutomatic,
				FailureThreshold: 3,
				ProbeInterval:    d("10s"),
				LeaseDuration:    d("30s"),
			},
			Standby:                     v1alpha1.StandbyCold,
			Failback:                    v1alpha1.FailbackManual,
			FailbackStabilizationWindow: d("5m"),
		}
		if got.Spec != want {
			t.Errorf("defaulted spec:\n got %+v\nwant %+v", got.Spec, want)
		}
	})

	t.Run("fills in the rest of a partial failover policy", func(t *testing.T) {
		got := &v1alpha1.RecoveryObjective{}
		createMinimal(t, got, `{"rpo": "30s", "rto": "2m", "failover": {"mode": "Manual"}}`)
		want := v1alpha1.FailoverPolicy{
			Mode:             v1alpha1.FailoverManual,
			FailureThreshold: 3,
			ProbeInterval:    d("10s"),
			LeaseDuration:    d("30s"),
		}
		if got.Spec.Failover != want {
			t.Errorf("defaulted failover:\n got %+v\nwant %+v", got.Spec.Failover, want)
		}
	})

	t.Run("fills in a minimal replication peer", func(t *testing.T) {
		got := &v1alpha1.ReplicationPeer{}
		createMinimal(t, got, `{"site": "mv-schwerin", "kubeconfigSecretRef": {"namespace": "deich-system", "name": "peer-mv-schwerin"}}`)
		if got.Spec.KubeconfigSecretRef.Key != v1alpha1.DefaultKubeconfigKey {
			t.Errorf("kubeconfigSecretRef.key = %q, want %q", got.Spec.KubeconfigSecretRef.Key, v1alpha1.DefaultKubeconfigKey)
		}
		if got.Spec.HeartbeatInterval != d("5s") {
			t.Errorf("heartbeatInterval = %s, want 5s", got.Spec.HeartbeatInterval.Duration)
		}
		if got.Spec.Role != v1alpha1.PeerRolePartner {
			t.Errorf("role = %q, want Partner", got.Spec.Role)
		}
		if got.Spec.LeaseNamespace != "" {
			t.Errorf("leaseNamespace = %q, want it unset: a partner keeps no Leases at a witness", got.Spec.LeaseNamespace)
		}
	})

	t.Run("leaves the leaseNamespace of a minimal witness to the manager", func(t *testing.T) {
		got := &v1alpha1.ReplicationPeer{}
		createMinimal(t, got, `{"site": "hh-hamburg", "role": "Witness", "kubeconfigSecretRef": {"namespace": "deich-system", "name": "peer-hh-hamburg"}}`)
		if got.Spec.LeaseNamespace != "" {
			t.Errorf("leaseNamespace = %q, want it unset", got.Spec.LeaseNamespace)
		}
		if ns := got.Spec.WitnessLeaseNamespace(); ns != v1alpha1.DefaultWitnessLeaseNamespace {
			t.Errorf("WitnessLeaseNamespace() = %q, want %q", ns, v1alpha1.DefaultWitnessLeaseNamespace)
		}
	})

	t.Run("fills in a minimal shared service and its health checks", func(t *testing.T) {
		got := &v1alpha1.SharedService{}
		createMinimal(t, got, `{
			"primarySite": "sh-kiel", "standbySite": "mv-schwerin",
			"recoveryObjectiveRef": {"name": "buergerdienste"},
			"selector": {"matchLabels": {"app.kubernetes.io/part-of": "buergerkonto"}},
			"resources": [{"group": "apps", "kind": "Deployment"}],
			"healthChecks": [
				{"name": "public", "http": {"url": "https://buergerkonto.example.de/healthz"}},
				{"name": "database", "tcp": {"address": "db.buergerkonto.svc:5432"}},
				{"name": "replicas", "site": "sh-kiel", "workload": {"kind": "Deployment", "name": "buergerkonto"}}
			]}`)
		if got.Spec.DeletionPolicy != v1alpha1.DeletionPolicyDelete {
			t.Errorf("deletionPolicy = %q, want Delete", got.Spec.DeletionPolicy)
		}
		if len(got.Spec.HealthChecks) != 3 {
			t.Fatalf("got %d health checks, want 3: %+v", len(got.Spec.HealthChecks), got.Spec.HealthChecks)
		}
		if h := got.Spec.HealthChecks[0].HTTP; h.ExpectedStatus != 200 || h.Timeout != d("2s") {
			t.Errorf("http check = %+v, want expectedStatus 200 and timeout 2s", *h)
		}
		if c := got.Spec.HealthChecks[1].TCP; c.Timeout != d("2s") {
			t.Errorf("tcp check = %+v, want timeout 2s", *c)
		}
		if w := got.Spec.HealthChecks[2].Workload; w.MinReady != 1 {
			t.Errorf("workload check = %+v, want minReady 1", *w)
		}
	})
}

// createMinimal creates an object of into's kind with the given JSON spec, sent as is, and
// reads the stored object back into into.
func createMinimal(t *testing.T, into client.Object, spec string) {
	t.Helper()
	gvk, err := apiutil.GVKForObject(into, scheme)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	var s map[string]any
	if err := utiljson.Unmarshal([]byte(spec), &s); err != nil {
		t.Fatalf("bad spec literal: %v", err)
	}
	u.Object["spec"] = s
	u.SetGroupVersionKind(gvk)
	if err := create(t, u); err != nil {
		t.Fatalf("the API server rejected a minimal %s:\n%v\nobject: %s", gvk.Kind, err, dump(u))
	}
	if err := k8sClient.Get(t.Context(), client.ObjectKeyFromObject(u), into); err != nil {
		t.Fatalf("get %s %s: %v", gvk.Kind, u.GetName(), err)
	}
}

func drillSchedule(mutate ...func(*v1alpha1.DrillSchedule)) *v1alpha1.DrillSchedule {
	ds := &v1alpha1.DrillSchedule{
		Spec: v1alpha1.DrillScheduleSpec{
			Schedule: "0 3 1 * *",
			TimeZone: "Europe/Berlin",
			Owner:    "Plattformbetrieb SH",
		},
	}
	for _, m := range mutate {
		m(ds)
	}
	return ds
}

// dp is a pointer to d(s).
func dp(s string) *metav1.Duration {
	v := d(s)
	return &v
}

func TestDrillScheduleValidation(t *testing.T) {
	needAPIServer(t)
	type s = v1alpha1.DrillSchedule
	runCases(t, []validationCase{
		{name: "accepts a monthly schedule", obj: drillSchedule()},
		{name: "accepts a schedule with every bound at its limit", obj: drillSchedule(func(s *s) {
			s.Spec.Timeout, s.Spec.StartingDeadline, s.Spec.HistoryLimit = dp("24h"), dp("10s"), 50
		})},

		{name: "rejects a missing owner", want: "spec.owner: Required value",
			obj: raw(drillSchedule(), func(o map[string]any) { unstructured.RemoveNestedField(o, "spec", "owner") })},
		{name: "rejects an empty schedule", want: "spec.schedule in body should be at least 1 chars long",
			obj: drillSchedule(func(s *s) { s.Spec.Schedule = "" })},
		{name: "rejects a timeout under 30s", want: "timeout must be between 30s and 24h",
			obj: drillSchedule(func(s *s) { s.Spec.Timeout = dp("20s") })},
		{name: "rejects a timeout over a day", want: "timeout must be between 30s and 24h",
			obj: drillSchedule(func(s *s) { s.Spec.Timeout = dp("25h") })},
		{name: "rejects a starting deadline under 10s", want: "startingDeadline must be at least 10s",
			obj: drillSchedule(func(s *s) { s.Spec.StartingDeadline = dp("5s") })},
		{name: "rejects a history of more than 50 reports", want: "spec.historyLimit in body should be less than or equal to 50",
			obj: drillSchedule(func(s *s) { s.Spec.HistoryLimit = 51 })},
	})
}
