package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/health"
	"github.com/deich-io/deich/internal/metrics"
)

// judgingChecks are the checks that judge the active site: those without site, which probe
// the service as its users reach it, and those naming the active site.
func judgingChecks(svc *deichv1alpha1.SharedService) []deichv1alpha1.HealthCheck {
	active := activeSite(svc)
	var out []deichv1alpha1.HealthCheck
	for _, hc := range svc.Spec.HealthChecks {
		if hc.Site == "" || hc.Site == active {
			out = append(out, hc)
		}
	}
	return out
}

// probeDue reports whether the checks should run now: they run every probeInterval, however
// often the service is reconciled, and the last run is read from status so a restarted
// manager keeps the pace.
func probeDue(svc *deichv1alpha1.SharedService, interval time.Duration, now time.Time) bool {
	for _, st := range svc.Status.HealthChecks {
		if st.LastProbeTime == nil || now.Sub(st.LastProbeTime.Time) >= interval {
			return true
		}
	}
	return len(svc.Status.HealthChecks) != len(judgingChecks(svc))
}

// untilNextProbe is how long until the earliest check is due again, so a reconcile that comes
// early for another reason does not push the probe back by a whole interval.
func untilNextProbe(svc *deichv1alpha1.SharedService, interval time.Duration, now time.Time) time.Duration {
	next := interval
	for _, st := range svc.Status.HealthChecks {
		if st.LastProbeTime != nil {
			next = min(next, interval-now.Sub(st.LastProbeTime.Time))
		}
	}
	return max(next, 10*time.Millisecond)
}

// checkHealth runs the checks that judge the active site, when due, and records them in
// status. It returns when they are due next.
func (r *SharedServiceReconciler) checkHealth(ctx context.Context, s *serviceScope) time.Duration {
	policy := failover.PolicyFrom(s.objective, 0)
	checks := judgingChecks(s.svc)
	if len(checks) == 0 {
		s.svc.Status.HealthChecks = nil
		return 0
	}
	if !probeDue(s.svc, policy.ProbeInterval, s.now) {
		return untilNextProbe(s.svc, policy.ProbeInterval, s.now)
	}

	previous := map[string]deichv1alpha1.HealthCheckStatus{}
	for _, st := range s.svc.Status.HealthChecks {
		previous[st.Name] = st
	}
	results := make([]health.Result, len(checks))
	var wg sync.WaitGroup
	for i, hc := range checks {
		wg.Go(func() {
			results[i] = r.prober.Probe(ctx, hc, s.svc.Namespace, r.workloadReader(s, hc), caBundle(ctx, r.apiReader, s.svc.Namespace, hc))
		})
	}
	wg.Wait()

	statuses := make([]deichv1alpha1.HealthCheckStatus, 0, len(checks))
	for i, hc := range checks {
		prev := previous[hc.Name]
		tally := health.Tally{ConsecutiveFailures: prev.ConsecutiveFailures, LastStatus: health.Status(prev.Status)}
		if prev.LastTransitionTime != nil {
			tally.LastTransition = prev.LastTransitionTime.Time
		}
		tally = tally.Add(results[i], s.now)
		st := deichv1alpha1.HealthCheckStatus{
			Name:                hc.Name,
			Status:              deichv1alpha1.HealthStatus(tally.LastStatus),
			ConsecutiveFailures: tally.ConsecutiveFailures,
			LastProbeTime:       &metav1.Time{Time: s.now},
			LastTransitionTime:  &metav1.Time{Time: tally.LastTransition},
			Latency:             &metav1.Duration{Duration: results[i].Latency.Round(time.Millisecond)},
			Message:             results[i].Message,
		}
		statuses = append(statuses, st)
		up := 0.0
		if st.Status == deichv1alpha1.HealthHealthy {
			up = 1
		}
		metrics.HealthCheckUp.WithLabelValues(s.svc.Namespace, s.svc.Name, hc.Name, r.site).Set(up)
		r.recordHealthTransition(s, prev, st)
	}
	s.svc.Status.HealthChecks = statuses
	return policy.ProbeInterval
}

// recordHealthTransition emits one event when a check starts failing or passes again.
func (r *SharedServiceReconciler) recordHealthTransition(s *serviceScope, prev, cur deichv1alpha1.HealthCheckStatus) {
	switch {
	case cur.Status == prev.Status:
	case cur.Status == deichv1alpha1.HealthHealthy && prev.Status != "":
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventHealthCheckPassing, "Probe",
			"Health check %s passes again (checked from %s): %s", cur.Name, r.site, cur.Message)
	case cur.Status != deichv1alpha1.HealthHealthy:
		r.recorder.Eventf(s.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventHealthCheckFailing, "Probe",
			"Health check %s is %s (checked from %s): %s", cur.Name, cur.Status, r.site, cur.Message)
	}
}

// workloadReader returns a reader for the site a workload check counts replicas at: this
// cluster, or the peer's through its connection; nil when the peer cannot be reached, which the
// probe reports as Unknown.
func (r *SharedServiceReconciler) workloadReader(s *serviceScope, hc deichv1alpha1.HealthCheck) client.Reader {
	if hc.Workload == nil {
		return nil
	}
	site := hc.Site
	if site == "" {
		site = activeSite(s.svc)
	}
	if site == r.site {
		return r.apiReader
	}
	if conn, ok := r.registry.Get(site); ok {
		return conn.Cluster.GetAPIReader()
	}
	return nil
}

// healthCondition summarizes the checks that judge the active site.
func healthCondition(svc *deichv1alpha1.SharedService, threshold int32) metav1.Condition {
	c := metav1.Condition{Type: deichv1alpha1.ServiceConditionHealthy, ObservedGeneration: svc.Generation}
	if len(svc.Status.HealthChecks) == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonNoHealthChecks, "the service declares no health checks that judge the active site"
		return c
	}
	var failing, unknown []string
	for _, st := range svc.Status.HealthChecks {
		switch st.Status {
		case deichv1alpha1.HealthUnhealthy:
			failing = append(failing, fmt.Sprintf("%s (%d of %d failures: %s)", st.Name, st.ConsecutiveFailures, threshold, st.Message))
		case deichv1alpha1.HealthUnknown:
			unknown = append(unknown, fmt.Sprintf("%s (%s)", st.Name, st.Message))
		}
	}
	switch {
	case len(failing) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, deichv1alpha1.ServiceReasonChecksFailing
		c.Message = fmt.Sprintf("%s fails: %s", activeSite(svc), strings.Join(failing, "; "))
	case len(unknown) > 0:
		c.Status, c.Reason = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonChecksUnknown
		c.Message = "cannot evaluate: " + strings.Join(unknown, "; ")
	default:
		c.Status, c.Reason = metav1.ConditionTrue, deichv1alpha1.ServiceReasonChecksPassing
		c.Message = fmt.Sprintf("%d check(s) of %s pass", len(svc.Status.HealthChecks), activeSite(svc))
	}
	if len(c.Message) > 1024 {
		c.Message = c.Message[:1021] + "..."
	}
	return c
}

// setHealthCondition records the Healthy condition when the checks ran.
func setHealthCondition(s *serviceScope) {
	if s.objective == nil {
		return
	}
	meta.SetStatusCondition(&s.svc.Status.Conditions, healthCondition(s.svc, failover.PolicyFrom(s.objective, 0).FailureThreshold))
}
