package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/testenv"
)

// kwok manages the nodes carrying this annotation (--manage-nodes-with-annotation-selector).
const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	kwokNodeValue      = "fake"
)

// nodeName is the name of the one node of site.
func nodeName(site string) string { return site + "-node-1" }

// createNode registers the fake node of site, as a kubelet would register its machine: kwok
// then keeps it Ready and plays the lifecycle of the pods scheduled to it. It has no taint, so
// ordinary workloads run on it unchanged.
func createNode(ctx context.Context, site *testenv.Site, name string) error {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("16"),
		corev1.ResourceMemory: resource.MustParse("64Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{kwokNodeAnnotation: kwokNodeValue},
			Labels: map[string]string{
				"kubernetes.io/hostname":      name,
				"kubernetes.io/os":            "linux",
				"kubernetes.io/arch":          "amd64",
				"topology.kubernetes.io/zone": site.Name,
				"type":                        "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
	}
	if err := site.Client.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s at %s: %w", name, site.Name, err)
	}
	return nil
}

// waitNodeReady waits until the node's Ready condition is True.
func waitNodeReady(ctx context.Context, site *testenv.Site, name string) error {
	return poll(ctx, func() (bool, error) {
		node := &corev1.Node{}
		if err := site.Client.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
			return false, err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

// waitDefaultServiceAccount waits until the ServiceAccount default/default exists, which
// kube-controller-manager creates when it runs.
func waitDefaultServiceAccount(ctx context.Context, site *testenv.Site) error {
	return poll(ctx, func() (bool, error) {
		err := site.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "default"}, &corev1.ServiceAccount{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
}

// errGiveUp marks an error of a poll condition after which waiting longer is pointless.
var errGiveUp = errors.New("giving up")

// poll calls cond every 200ms until it returns true or ctx ends; it then returns the last
// error cond returned, if any, together with ctx's. An error wrapping errGiveUp ends it at
// once.
func poll(ctx context.Context, cond func() (bool, error)) error {
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errGiveUp) {
			return err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), lastErr)
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
