package health

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func workloadCheck(kind deichv1alpha1.WorkloadKind, name string, minReady int32) deichv1alpha1.HealthCheck {
	return deichv1alpha1.HealthCheck{
		Name:     "replicas",
		Site:     "mv-schwerin",
		Workload: &deichv1alpha1.WorkloadCheck{Kind: kind, Name: name, MinReady: minReady},
	}
}

func deployment(namespace, name string, ready int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Status:     appsv1.DeploymentStatus{ReadyReplicas: ready},
	}
}

func statefulSet(namespace, name string, ready int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Status:     appsv1.StatefulSetStatus{ReadyReplicas: ready},
	}
}

// siteClient returns a fake client of a site holding objs.
func siteClient(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatalf("add apps/v1 to scheme: %v", err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func TestProbeWorkload(t *testing.T) {
	site := siteClient(t,
		deployment("buergerkonto", "web", 2),
		deployment("buergerkonto", "starting", 0),
		deployment("other", "elsewhere", 3),
		statefulSet("buergerkonto", "db", 3),
		statefulSet("buergerkonto", "db-degraded", 1),
	)
	unreachable := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("dial tcp 10.0.0.7:6443: connect: connection refused")
		},
	}).Build()

	cases := []struct {
		name   string
		check  deichv1alpha1.HealthCheck
		reader client.Reader
		want   Result
	}{{
		name:   "a deployment with at least minReady ready replicas is healthy",
		check:  workloadCheck("Deployment", "web", 2),
		reader: site,
		want:   Result{Status: StatusHealthy, Message: "deployment web: 2 replicas ready, 2 required"},
	}, {
		name:   "a deployment with fewer ready replicas than minReady is unhealthy",
		check:  workloadCheck("Deployment", "starting", 1),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "deployment starting: 0 of 1 required replicas ready"},
	}, {
		name:   "a check built without minReady requires one ready replica",
		check:  workloadCheck("Deployment", "starting", 0),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "deployment starting: 0 of 1 required replicas ready"},
	}, {
		name:   "a statefulset with enough ready replicas is healthy",
		check:  workloadCheck("StatefulSet", "db", 3),
		reader: site,
		want:   Result{Status: StatusHealthy, Message: "statefulset db: 3 replicas ready, 3 required"},
	}, {
		name:   "a statefulset with too few ready replicas is unhealthy",
		check:  workloadCheck("StatefulSet", "db-degraded", 2),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "statefulset db-degraded: 1 of 2 required replicas ready"},
	}, {
		name:   "a missing workload is unhealthy",
		check:  workloadCheck("Deployment", "gone", 1),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "deployment gone: not found in namespace buergerkonto"},
	}, {
		name:   "a workload of the same name in another namespace does not count",
		check:  workloadCheck("Deployment", "elsewhere", 1),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "deployment elsewhere: not found in namespace buergerkonto"},
	}, {
		name:   "a statefulset is not found under the deployment kind",
		check:  workloadCheck("Deployment", "db", 1),
		reader: site,
		want:   Result{Status: StatusUnhealthy, Message: "deployment db: not found in namespace buergerkonto"},
	}, {
		name:  "a site without a reader is unknown",
		check: workloadCheck("Deployment", "web", 1),
		want:  Result{Status: StatusUnknown, Message: "cannot read site mv-schwerin: no connection to its API server"},
	}, {
		name:   "a site whose API server cannot be read is unknown and the message carries the error",
		check:  workloadCheck("Deployment", "web", 1),
		reader: unreachable,
		want:   Result{Status: StatusUnknown, Message: "cannot read site mv-schwerin: get deployment buergerkonto/web: dial tcp 10.0.0.7:6443: connect: connection refused"},
	}, {
		name:   "a kind the API does not allow is unknown",
		check:  workloadCheck("DaemonSet", "web", 1),
		reader: site,
		want:   Result{Status: StatusUnknown, Message: `workload kind "DaemonSet" is not supported: use Deployment or StatefulSet`},
	}}
	// The fake clock stands still, so every latency is zero and results compare exactly.
	p := NewProber(WithClock(testingclock.NewFakePassiveClock(time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC))))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := p.Probe(t.Context(), tc.check, "buergerkonto", tc.reader, nil)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProbeWorkloadWithoutSiteNamesTheCheckedSite(t *testing.T) {
	check := workloadCheck("Deployment", "web", 1)
	check.Site = ""

	got := NewProber().Probe(t.Context(), check, "buergerkonto", nil, nil)

	want := Result{Status: StatusUnknown, Message: "cannot read the checked site: no connection to its API server"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Probe() mismatch (-want +got):\n%s", diff)
	}
}
