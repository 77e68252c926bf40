package controllers

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	metadatafake "k8s.io/client-go/metadata/fake"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/render"
)

// countingReader counts the whole lists a switch sends.
type countingReader struct {
	client.Reader
	lists int
}

func (c *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists++
	return c.Reader.List(ctx, list, opts...)
}

// TestFirstClaimListsMetadataUnlessAnObjectAwaitsItsSwitch: the first claim of a service lists
// the metadata of its objects, and their whole content only when one of them is in a standby
// form it switches; every other promotion, and a first claim whose stages are under way,
// lists the whole objects.
func TestFirstClaimListsMetadataUnlessAnObjectAwaitsItsSwitch(t *testing.T) {
	const ns = "buergerkonto"
	selected := map[string]string{"app": "buergerkonto"}
	kinds := []*mirroredKind{
		{gk: schema.GroupKind{Kind: "ConfigMap"}, resource: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, version: "v1"},
		{gk: schema.GroupKind{Group: "apps", Kind: "Deployment"}, resource: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, version: "v1"},
	}
	object := func(apiVersion, kind, name string, annotations map[string]string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"replicas": int64(3)}}}
		if kind == "ConfigMap" {
			u.Object = map[string]any{"data": map[string]any{"TZ": "Europe/Berlin"}}
		}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		u.SetLabels(selected)
		u.SetAnnotations(annotations)
		return u
	}
	fenced := map[string]string{render.AnnotationSourceReplicas: "3"}

	for _, tc := range []struct {
		name string
		// deployment is the Deployment's annotations; epoch the claim's.
		deployment map[string]string
		epoch      int64
		// under way: a promotion of the epoch has recorded its progress.
		underWay bool
		// whole is how many whole lists the step sends; metadata how many lists of metadata.
		whole, metadata int
		// switches is how many objects await their switch.
		switches int
	}{
		{name: "first claim, every object in active form", epoch: 1, metadata: 2},
		{name: "first claim of objects left fenced", deployment: fenced, epoch: 1, metadata: 2, whole: 2, switches: 1},
		{name: "first claim, stages under way", epoch: 1, underWay: true, whole: 2},
		{name: "a later claim", epoch: 2, whole: 2},
		{name: "a failover", deployment: fenced, epoch: 4, whole: 2, switches: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []*unstructured.Unstructured{
				object("v1", "ConfigMap", "settings", nil),
				object("apps/v1", "Deployment", "web", tc.deployment),
			}
			var whole []client.Object
			var meta []runtime.Object
			for _, o := range objs {
				whole = append(whole, o)
				meta = append(meta, &metav1.PartialObjectMetadata{
					TypeMeta:   metav1.TypeMeta{APIVersion: o.GetAPIVersion(), Kind: o.GetKind()},
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: o.GetName(), Labels: o.GetLabels(), Annotations: o.GetAnnotations()},
				})
			}
			scheme := runtime.NewScheme()
			if err := clientgoscheme.AddToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			if err := metav1.AddMetaToScheme(scheme); err != nil {
				t.Fatal(err)
			}
			reader := &countingReader{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(whole...).Build()}
			metaClient := metadatafake.NewSimpleMetadataClient(scheme, meta...)
			r := &SharedServiceReconciler{site: "sh-kiel", apiReader: reader, localMeta: metaClient, parallelism: 4}
			state := &leaseState{}
			if tc.underWay {
				state.promotion = &promotionProgress{epoch: tc.epoch}
			}
			f := serviceFencer{r: r, state: state, form: formSpec{
				svc:   &deichv1alpha1.SharedService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "buergerkonto"}},
				kinds: kinds, selector: labels.SelectorFromSet(selected),
			}}

			stages, err := f.promotionStages(t.Context(), tc.epoch)
			if err != nil {
				t.Fatal(err)
			}
			metadataLists := 0
			for _, a := range metaClient.Actions() {
				if a.GetVerb() == "list" {
					metadataLists++
				}
			}
			if reader.lists != tc.whole || metadataLists != tc.metadata {
				t.Errorf("lists sent: %d whole, %d of metadata; want %d whole, %d of metadata", reader.lists, metadataLists, tc.whole, tc.metadata)
			}
			switches, listed := 0, 0
			for _, s := range stages {
				for _, o := range s.objects {
					listed++
					if s.awaitsSwitch(o) {
						switches++
						if _, ok := o.obj.Object["spec"]; !ok {
							t.Errorf("%s %s awaits its switch but was listed without its content", o.k.gk.Kind, o.obj.GetName())
						}
					}
					if o.obj.GetAPIVersion() == "" || o.obj.GetKind() != o.k.gk.Kind || o.obj.GetName() == "" {
						t.Errorf("listed object without its identity: %v", o.obj.Object)
					}
				}
			}
			if listed != len(objs) || switches != tc.switches {
				t.Errorf("listed %d objects, %d awaiting their switch; want %d, %d", listed, switches, len(objs), tc.switches)
			}
		})
	}
}
