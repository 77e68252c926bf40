package controllers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

func TestHealthChecksJudgeTheActiveSiteFromBothSites(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "health-http"
	createNamespace(ctx, t, g, kiel, ns)

	// The service as its users reach it: healthy until it starts answering 500.
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)

	// Fast probes, so the test sees several of them.
	for _, site := range []*testenv.Site{kiel, schwerin} {
		// Manual mode: this test watches the checks, not the failover they would cause.
		obj := testobjects.MakeRecoveryObjective("fast-probes").Failover(2, time.Second, 6*time.Second).RTO(time.Minute).
			Mode(deichv1alpha1.FailoverManual).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		cleanup(t, site, obj)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOfBuergerkonto}}
	g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	svc := testobjects.MakeSharedService("buergerkonto", ns).Objective("fast-probes").
		HealthCheck(deichv1alpha1.HealthCheck{Name: "public-endpoint", HTTP: &deichv1alpha1.HTTPCheck{
			URL: srv.URL + "/healthz", ExpectedStatus: 200, Timeout: metav1.Duration{Duration: time.Second},
		}}).
		HealthCheck(deichv1alpha1.HealthCheck{Name: "kiel-web", Site: testenv.SiteKiel, Workload: &deichv1alpha1.WorkloadCheck{
			Kind: "Deployment", Name: "web", MinReady: 1,
		}}).Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)

	check := func(site *testenv.Site, name string) func() *deichv1alpha1.HealthCheckStatus {
		return func() *deichv1alpha1.HealthCheckStatus {
			s, err := serviceStatus(ctx, site, ns, svc.Name)()
			if err != nil {
				return nil
			}
			for i := range s.Status.HealthChecks {
				if s.Status.HealthChecks[i].Name == name {
					return &s.Status.HealthChecks[i]
				}
			}
			return nil
		}
	}
	healthy := func(site *testenv.Site) func() *metav1.Condition {
		return func() *metav1.Condition {
			s, err := serviceStatus(ctx, site, ns, svc.Name)()
			if err != nil {
				return nil
			}
			return meta.FindStatusCondition(s.Status.Conditions, deichv1alpha1.ServiceConditionHealthy)
		}
	}

	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(check(site, "public-endpoint")).Should(And(Not(BeNil()), HaveField("Status", Equal(deichv1alpha1.HealthHealthy))),
			"the shared endpoint is probed from %s", site.Name)
		// The Deployment "web" does not exist at sh-kiel: the workload check fails from both sites,
		// read locally at sh-kiel and through the peer connection at mv-schwerin.
		g.Eventually(check(site, "kiel-web")).Should(And(Not(BeNil()),
			HaveField("Status", Equal(deichv1alpha1.HealthUnhealthy)),
			HaveField("Message", ContainSubstring("not found"))))
		g.Eventually(healthy(site)).Should(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.ServiceReasonChecksFailing))
	}

	t.Run("a failing endpoint counts consecutive failures and says why", func(t *testing.T) {
		g := newG(t)
		status.Store(http.StatusInternalServerError)
		g.Eventually(check(kiel, "public-endpoint")).Should(And(Not(BeNil()),
			HaveField("Status", Equal(deichv1alpha1.HealthUnhealthy)),
			HaveField("ConsecutiveFailures", BeNumerically(">=", 2)),
			HaveField("Message", ContainSubstring("status 500, want 200"))))
		g.Expect(testutil.ToFloat64(metrics.HealthCheckUp.WithLabelValues(ns, svc.Name, "public-endpoint", testenv.SiteKiel))).To(BeZero())
		g.Eventually(func() ([]string, error) {
			return eventReasons(ctx, kiel, "SharedService", svc.Name)
		}).Should(ContainElement(deichv1alpha1.ServiceEventHealthCheckFailing))
	})

	t.Run("a recovered endpoint resets the count", func(t *testing.T) {
		g := newG(t)
		status.Store(http.StatusOK)
		g.Eventually(check(kiel, "public-endpoint")).Should(And(Not(BeNil()),
			HaveField("Status", Equal(deichv1alpha1.HealthHealthy)),
			HaveField("ConsecutiveFailures", BeZero())))
		g.Eventually(func() ([]string, error) {
			return eventReasons(ctx, kiel, "SharedService", svc.Name)
		}).Should(ContainElement(deichv1alpha1.ServiceEventHealthCheckPassing))
	})
}
