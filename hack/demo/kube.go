package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/testenv"
)

// fieldOwner is the field manager of everything the demo applies.
const fieldOwner = "deich-demo"

// decodeFile reads the objects of a (multi-document) YAML file; edit, if set, may change the
// text first.
func decodeFile(path string, edit func(string) string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the demo's own manifests.
	if err != nil {
		return nil, err
	}
	if edit != nil {
		data = []byte(edit(string(data)))
	}
	objs, err := testenv.DecodeObjects(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return objs, nil
}

// apply applies objs at site with server-side apply, as `kubectl apply --server-side` would,
// and prints one line per object.
func (st *story) apply(ctx context.Context, site *testenv.Site, objs []*unstructured.Unstructured) error {
	var lines []string
	for _, obj := range objs {
		// Apply writes the answer into what it is given; the manifests are applied at more
		// than one site.
		err := site.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(fieldOwner), client.ForceOwnership)
		if err != nil {
			return fmt.Errorf("apply %s %s at %s: %w", obj.GetKind(), objectName(obj), site.Name, err)
		}
		lines = append(lines, strings.ToLower(obj.GetKind())+"/"+obj.GetName()+" serverside-applied")
	}
	st.out.indent(strings.Join(lines, "\n"))
	return nil
}

// objectName is namespace/name, or name for a cluster-scoped object.
func objectName(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// waitEstablished waits until every CustomResourceDefinition among objs is Established at site.
func waitEstablished(ctx context.Context, site *testenv.Site, objs []*unstructured.Unstructured) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, obj := range objs {
		if obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		err := poll(ctx, func() (bool, error) {
			crd := &unstructured.Unstructured{}
			crd.SetGroupVersionKind(obj.GroupVersionKind())
			if err := site.Client.Get(ctx, client.ObjectKeyFromObject(obj), crd); err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established at %s: %w", obj.GetName(), site.Name, err)
		}
	}
	// The client discovers the new kinds on first use; make sure it can.
	return poll(ctx, func() (bool, error) {
		_, err := site.Client.RESTMapper().RESTMapping(objs[len(objs)-1].GroupVersionKind().GroupKind())
		if apimeta.IsNoMatchError(err) {
			return false, err
		}
		return true, nil
	})
}

// kubectl runs kubectl against site as the demo's admin and returns its output.
func kubectl(cfg config, site string, args ...string) (string, error) {
	all := append([]string{
		"--kubeconfig=" + cfg.path(site+".kubeconfig"),
		// kubectl's discovery cache goes into the demo directory too, so that `down` leaves
		// nothing behind.
		"--cache-dir=" + cfg.path("kube-cache"),
		"--request-timeout=5s",
	}, args...)
	cmd := exec.Command(cfg.kubectl, all...) //nolint:gosec // G204: the kubectl the Makefile built.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// show prints what kubectl shows at site, after the command line an SRE would type.
func show(out *teller, cfg config, site string, args ...string) {
	out.say("At %s: kubectl %s", site, strings.Join(args, " "))
	text, err := kubectl(cfg, site, args...)
	if err != nil && text == "" {
		text = err.Error()
	}
	out.indent(text)
}

// printStatus shows where the service runs and how to look around.
func printStatus(out *teller, cfg config, st state) {
	for _, s := range st.Sites {
		switch {
		case s.Dark:
			out.say("%s is dark: its API server, controllers, kwok and Deich manager are stopped (etcd keeps its data)", s.Name)
		case s.Witness:
			show(out, cfg, s.Name, "-n", testenv.WitnessNamespace, "get", "leases")
		default:
			show(out, cfg, s.Name, "-n", namespace, "get", "sharedservices", "-o", "wide")
		}
	}
	kubectlShown := cfg.kubectl
	if root, err := testenv.RepoRoot(); err == nil {
		if rel, err := filepath.Rel(root, cfg.kubectl); err == nil && !strings.HasPrefix(rel, "..") {
			kubectlShown = rel
		}
	}
	out.println("")
	out.println("The demo is running. Talk to a site with kubectl (%s, built by 'make demo'):", kubectlShown)
	for _, s := range st.Sites {
		out.println("")
		switch {
		case s.Dark:
			out.println("  # %s (dark: kubectl gets 'connection refused' until 'make demo-down')", s.Name)
		case s.Witness:
			out.println("  # %s, the witness (no Deich here: only the partners' Leases in %s)", s.Name, testenv.WitnessNamespace)
		default:
			out.println("  # %s", s.Name)
		}
		out.println("  export KUBECONFIG=%s", cfg.path(s.Name+".kubeconfig"))
	}
	out.println("")
	for _, c := range []string{
		"-n " + namespace + " get sharedservices -o wide",
		"-n " + namespace + " get deployments,pods -o wide",
		"-n " + namespace + " get clusters.postgresql.cnpg.io,dnsendpoints.externaldns.k8s.io -o wide",
		"-n " + namespace + " describe sharedservice " + service,
		"get replicationpeers,recoveryobjectives,nodes",
	} {
		out.println("  %s %s", kubectlShown, c)
	}
	out.println("")
	out.println("Deich managers (metrics, health probes):")
	for _, s := range st.Sites {
		if !s.Dark && s.Metrics != "" {
			out.println("  %s: http://%s/metrics  http://%s/readyz", s.Name, s.Metrics, s.Health)
		}
	}
	out.println("")
	out.println("Logs of every process: %s/ (the story: story.log)", cfg.path("logs"))
	downCmd := "make demo-down"
	if root, err := testenv.RepoRoot(); err != nil || cfg.dir != filepath.Join(root, ".demo") {
		downCmd = "make demo-down DEMO_DIR=" + cfg.dir
	}
	out.println("'%s' stops everything and removes %s.", downCmd, cfg.dir)
}
