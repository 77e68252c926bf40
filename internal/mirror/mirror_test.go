package mirror_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
	"github.com/deich-io/deich/internal/testenv"
)

// ns is the namespace every test object lives in.
const ns = "buergerkonto"

var (
	configMaps     = corev1.SchemeGroupVersion.WithResource("configmaps")
	deployments    = appsv1.SchemeGroupVersion.WithResource("deployments")
	sharedServices = deichv1alpha1.GroupVersion.WithResource("sharedservices")
	configMapKind  = schema.GroupKind{Kind: "ConfigMap"}
	deploymentKind = schema.GroupKind{Group: "apps", Kind: "Deployment"}
)

// startSite starts one real API server with Deich's CRDs and returns a Site that writes there;
// under -short, which runs only the tests that need none, the test is skipped.
func startSite(t *testing.T) (mirror.Site, *testenv.Site) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts an API server")
	}
	env, err := testenv.StartDeich(testenv.SiteSchwerin)
	if err != nil {
		t.Fatalf("start API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	site := env.Site(testenv.SiteSchwerin)
	dyn, err := dynamic.NewForConfig(site.Config)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	meta, err := metadata.NewForConfig(site.Config)
	if err != nil {
		t.Fatalf("metadata client: %v", err)
	}
	return mirror.Site{Name: site.Name, Dynamic: dyn, Metadata: meta, Mapper: site.Client.RESTMapper()}, site
}

func configMap(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{"v": "1"}}}
	u.SetAPIVersion("v1")
	u.SetKind("ConfigMap")
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func deployment(name string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"replicas": int64(0),
		"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": map[string]any{"app": name}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "web", "image": "registry.example/web:1"}}},
		},
	}}}
	u.SetAPIVersion("apps/v1")
	u.SetKind("Deployment")
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetLabels(labels)
	return u
}

func names(t *testing.T, site *testenv.Site, list client.ObjectList) []string {
	t.Helper()
	if err := site.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list: %v", err)
	}
	var out []string
	switch l := list.(type) {
	case *corev1.ConfigMapList:
		for _, it := range l.Items {
			if it.Name != "kube-root-ca.crt" {
				out = append(out, it.Name)
			}
		}
	case *appsv1.DeploymentList:
		for _, it := range l.Items {
			out = append(out, it.Name)
		}
	case *deichv1alpha1.SharedServiceList:
		for _, it := range l.Items {
			out = append(out, it.Name)
		}
	}
	slices.Sort(out)
	return out
}

func TestWritesAtASite(t *testing.T) {
	at, site := startSite(t)
	ctx := context.Background()
	copyLabels := mirror.Labels("buergerkonto", testenv.SiteKiel)

	t.Run("a missing namespace is created, marked as Deich's, and a second call changes nothing", func(t *testing.T) {
		for range 2 {
			if err := at.EnsureNamespace(ctx, ns); err != nil {
				t.Fatalf("EnsureNamespace: %v", err)
			}
		}
		got := &corev1.Namespace{}
		if err := site.Client.Get(ctx, client.ObjectKey{Name: ns}, got); err != nil {
			t.Fatalf("get namespace: %v", err)
		}
		if got.Labels[render.LabelManagedBy] != render.ManagedByDeich {
			t.Errorf("namespace labels = %v, want %s=%s", got.Labels, render.LabelManagedBy, render.ManagedByDeich)
		}
	})

	t.Run("a rejected copy is reported and the others are applied under Deich's field manager", func(t *testing.T) {
		bad := configMap("Not_A_DNS_Name", copyLabels)
		versions, failures := at.ApplyAll(ctx, 4, []mirror.Copy{
			{Resource: configMaps, Kind: "ConfigMap", Obj: configMap("settings", copyLabels)},
			{Resource: configMaps, Kind: "ConfigMap", Obj: bad},
			{Resource: deployments, Kind: "Deployment", Obj: deployment("web", copyLabels)},
		})
		if len(failures) != 1 || !strings.HasPrefix(failures[0].String(), "ConfigMap Not_A_DNS_Name: ") {
			t.Errorf("failures = %q, want one for ConfigMap Not_A_DNS_Name", failures)
		}
		if len(versions) != 3 || versions[0] == "" || versions[1] != "" || versions[2] == "" {
			t.Errorf("versions = %q, want those of the stored settings and web around none for the rejected copy", versions)
		}
		if diff := cmp.Diff([]string{"settings"}, names(t, site, &corev1.ConfigMapList{})); diff != "" {
			t.Errorf("ConfigMaps (-want +got):\n%s", diff)
		}
		cm := &corev1.ConfigMap{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "settings"}, cm); err != nil {
			t.Fatalf("get settings: %v", err)
		}
		if cm.ResourceVersion != versions[0] {
			t.Errorf("ApplyAll reported resourceVersion %q for settings, stored %q", versions[0], cm.ResourceVersion)
		}
		var managers []string
		for _, mf := range cm.ManagedFields {
			managers = append(managers, mf.Manager)
		}
		if diff := cmp.Diff([]string{mirror.FieldManager}, managers); diff != "" {
			t.Errorf("field managers of the copy (-want +got):\n%s", diff)
		}
	})

	t.Run("a copy rendered when it is written is applied, and one that fails to render is reported", func(t *testing.T) {
		versions, failures := at.ApplyAll(ctx, 2, []mirror.Copy{
			{Resource: configMaps, Kind: "ConfigMap", Name: "rendered-late", Render: func() (*unstructured.Unstructured, error) {
				return configMap("rendered-late", copyLabels), nil
			}},
			{Resource: configMaps, Kind: "ConfigMap", Name: "broken", Render: func() (*unstructured.Unstructured, error) {
				return nil, errors.New("patch of override 1 does not apply")
			}},
		})
		if len(failures) != 1 || failures[0].String() != "ConfigMap broken: patch of override 1 does not apply" {
			t.Errorf("failures = %q, want one for ConfigMap broken", failures)
		}
		if versions[0] == "" || versions[1] != "" {
			t.Errorf("versions = %q, want the stored rendered-late's and none for broken", versions)
		}
		late := &corev1.ConfigMap{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "rendered-late"}, late); err != nil {
			t.Fatalf("the copy rendered when written is not at the site: %v", err)
		}
		if err := site.Client.Delete(ctx, late); err != nil {
			t.Fatalf("delete rendered-late: %v", err)
		}
	})

	t.Run("a copy held encoded is applied as it is", func(t *testing.T) {
		data, err := configMap("encoded", copyLabels).MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		versions, failures := at.ApplyAll(ctx, 2, []mirror.Copy{
			{Resource: configMaps, Kind: "ConfigMap", Name: "encoded", Namespace: ns, JSON: data},
		})
		if len(failures) != 0 || versions[0] == "" {
			t.Fatalf("versions = %q, failures = %q; want the copy stored", versions, failures)
		}
		got := &corev1.ConfigMap{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "encoded"}, got); err != nil {
			t.Fatalf("the copy held encoded is not at the site: %v", err)
		}
		if got.ResourceVersion != versions[0] || got.Labels[render.LabelSharedService] != copyLabels[render.LabelSharedService] {
			t.Errorf("stored %s with labels %v; ApplyAll reported %s, want the copy's labels %v", got.ResourceVersion, got.Labels, versions[0], copyLabels)
		}
		if err := site.Client.Delete(ctx, got); err != nil {
			t.Fatalf("delete encoded: %v", err)
		}
	})

	t.Run("a copy re-created since it was read is not deleted", func(t *testing.T) {
		read, err := at.Apply(ctx, configMaps, configMap("replaced", copyLabels))
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if err := site.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "replaced"}}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := at.Apply(ctx, configMaps, configMap("replaced", copyLabels)); err != nil {
			t.Fatalf("apply again: %v", err)
		}
		err = at.Delete(ctx, configMaps, read)
		if !apierrors.IsConflict(err) {
			t.Errorf("Delete of the copy as first read = %v, want a conflict on its UID", err)
		}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "replaced"}, &corev1.ConfigMap{}); err != nil {
			t.Errorf("the re-created copy is gone: %v", err)
		}
		current, err := at.Dynamic.Resource(configMaps).Namespace(ns).Get(ctx, "replaced", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		for range 2 {
			if err := at.Delete(ctx, configMaps, current); err != nil {
				t.Errorf("Delete of the copy as it is, or of one already gone = %v, want nil", err)
			}
		}
	})

	t.Run("a dry run of the active form counts the copies it would promote and changes nothing", func(t *testing.T) {
		n, err := at.DryRunActive(ctx, ns, "buergerkonto", []schema.GroupKind{deploymentKind}, func(live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
			u := deployment(live.GetName(), live.GetLabels())
			if err := unstructured.SetNestedField(u.Object, int64(3), "spec", "replicas"); err != nil {
				return nil, err
			}
			return u, nil
		})
		if err != nil || n != 1 {
			t.Errorf("DryRunActive = %d, %v; want 1 accepted", n, err)
		}
		dep := &appsv1.Deployment{}
		if err := site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, dep); err != nil {
			t.Fatalf("get web: %v", err)
		}
		if got := ptr.Deref(dep.Spec.Replicas, -1); got != 0 {
			t.Errorf("web has %d replicas after a dry run, want 0", got)
		}
		if _, err := at.DryRunActive(ctx, ns, "other-service", []schema.GroupKind{deploymentKind}, nil); err == nil {
			t.Error("DryRunActive of a service without copies succeeded, want an error")
		}
	})

	t.Run("deleting a service's copies removes what Deich manages for it and nothing else", func(t *testing.T) {
		for _, obj := range []*unstructured.Unstructured{
			// A copy written from the other site, after a move.
			configMap("moved", mirror.Labels("buergerkonto", testenv.SiteSchwerin)),
			// Another service's copy, and an object Deich does not manage.
			configMap("other-service", mirror.Labels("register", testenv.SiteKiel)),
			configMap("local", map[string]string{render.LabelSharedService: "buergerkonto"}),
		} {
			if _, err := at.Apply(ctx, configMaps, obj); err != nil {
				t.Fatalf("apply %s: %v", obj.GetName(), err)
			}
		}
		for name, labels := range map[string]map[string]string{
			"buergerkonto": {render.LabelSourceSite: testenv.SiteKiel},
			"register":     nil,
		} {
			svc := &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Spec: deichv1alpha1.SharedServiceSpec{
				PrimarySite: testenv.SiteKiel, StandbySite: testenv.SiteSchwerin,
				RecoveryObjectiveRef: deichv1alpha1.ObjectiveReference{Name: "standard"},
				Resources:            []deichv1alpha1.ResourceKind{{Kind: "ConfigMap"}},
			}}
			if err := site.Client.Create(ctx, svc); err != nil {
				t.Fatalf("create SharedService %s: %v", name, err)
			}
		}

		n, err := at.DeleteService(ctx, ns, "buergerkonto", []schema.GroupKind{configMapKind, deploymentKind, {Group: "example.org", Kind: "NotServed"}}, sharedServices)
		if err != nil {
			t.Fatalf("DeleteService: %v", err)
		}
		if n != 3 {
			t.Errorf("DeleteService deleted %d objects, want 3 (settings, moved, web)", n)
		}
		if diff := cmp.Diff([]string{"local", "other-service"}, names(t, site, &corev1.ConfigMapList{})); diff != "" {
			t.Errorf("ConfigMaps left (-want +got):\n%s", diff)
		}
		if got := names(t, site, &appsv1.DeploymentList{}); len(got) != 0 {
			t.Errorf("Deployments left: %v, want none", got)
		}
		if diff := cmp.Diff([]string{"register"}, names(t, site, &deichv1alpha1.SharedServiceList{})); diff != "" {
			t.Errorf("SharedServices left (-want +got):\n%s", diff)
		}
	})
}
