package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// The workload kinds a WorkloadCheck may name (the API's enum).
const (
	kindDeployment  deichv1alpha1.WorkloadKind = "Deployment"
	kindStatefulSet deichv1alpha1.WorkloadKind = "StatefulSet"
)

// workloadReadTimeout bounds the read of a workload. A workload check has no timeout of its
// own, and a reader backed by an unreachable peer must not hold the caller past its next
// probe interval.
const workloadReadTimeout = 5 * time.Second

// probeWorkload reads a Deployment or StatefulSet at the checked site and compares its ready
// replicas with minReady.
func (p *Prober) probeWorkload(ctx context.Context, site string, check *deichv1alpha1.WorkloadCheck, namespace string, workloads client.Reader) Result {
	kind := strings.ToLower(string(check.Kind))
	var obj client.Object
	switch check.Kind {
	case kindDeployment:
		obj = &appsv1.Deployment{}
	case kindStatefulSet:
		obj = &appsv1.StatefulSet{}
	default:
		// The API server rejects other kinds; one built in code still gets a verdict.
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("workload kind %q is not supported: use Deployment or StatefulSet", check.Kind)}
	}
	if workloads == nil {
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("cannot read %s: no connection to its API server", siteName(site))}
	}

	readCtx, cancel := context.WithTimeout(ctx, workloadReadTimeout)
	defer cancel()
	start := p.clock.Now()
	err := workloads.Get(readCtx, client.ObjectKey{Namespace: namespace, Name: check.Name}, obj)
	latency := p.clock.Since(start)
	switch {
	case apierrors.IsNotFound(err):
		return Result{Status: StatusUnhealthy, Message: fmt.Sprintf("%s %s: not found in namespace %s", kind, check.Name, namespace), Latency: latency}
	case err != nil:
		return Result{Status: StatusUnknown, Message: fmt.Sprintf("cannot read %s: get %s %s/%s: %v", siteName(site), kind, namespace, check.Name, err), Latency: latency}
	}

	var ready int32
	switch o := obj.(type) {
	case *appsv1.Deployment:
		ready = o.Status.ReadyReplicas
	case *appsv1.StatefulSet:
		ready = o.Status.ReadyReplicas
	}
	minReady := check.MinReady
	if minReady < 1 {
		minReady = 1 // the API server's default, for a check built in code
	}
	if ready < minReady {
		return Result{Status: StatusUnhealthy, Message: fmt.Sprintf("%s %s: %d of %d required replicas ready", kind, check.Name, ready, minReady), Latency: latency}
	}
	return Result{Status: StatusHealthy, Message: fmt.Sprintf("%s %s: %d replicas ready, %d required", kind, check.Name, ready, minReady), Latency: latency}
}

// siteName names the checked site in a message.
func siteName(site string) string {
	if site == "" {
		return "the checked site"
	}
	return "site " + site
}
