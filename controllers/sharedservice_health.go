package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/health"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/probes"
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

// checkHealth hands the checks that judge the active site to the probe scheduler, which runs
// them every probeInterval off the reconcile workers, and records their latest observations
// in status. A check the scheduler does not know yet starts from its tally in status, so a
// restarted manager goes on counting failures at the same pace; a check not yet probed is
// missing from status until its first result, which calls for a reconcile.
func (r *SharedServiceReconciler) checkHealth(s *serviceScope) {
	checks := judgingChecks(s.svc)
	if len(checks) == 0 {
		s.svc.Status.HealthChecks = nil
		r.probes.Remove(s.owner)
		return
	}
	policy := failover.PolicyFrom(s.objective, 0)
	previous := map[string]deichv1alpha1.HealthCheckStatus{}
	seed := map[string]probes.Observation{}
	for _, st := range s.svc.Status.HealthChecks {
		previous[st.Name] = st
		if st.LastProbeTime != nil {
			seed[st.Name] = observationOf(st)
		}
	}
	run := make([]probes.Check, 0, len(checks))
	for _, hc := range checks {
		namespace, workloads := s.svc.Namespace, r.workloadReader(s, hc)
		run = append(run, probes.Check{Name: hc.Name, Share: probeShare(hc, namespace), Run: func(ctx context.Context) health.Result {
			return r.prober.Probe(ctx, hc, namespace, workloads, caBundle(ctx, r.apiReader, namespace, hc))
		}})
	}
	r.probes.Set(s.owner, probes.Schedule{Interval: policy.ProbeInterval, FailureThreshold: policy.FailureThreshold}, run, seed)
	observed := r.probes.Observations(s.owner)

	statuses := make([]deichv1alpha1.HealthCheckStatus, 0, len(checks))
	for _, hc := range checks {
		o, ok := observed[hc.Name]
		if !ok {
			continue
		}
		st := deichv1alpha1.HealthCheckStatus{
			Name:                hc.Name,
			Status:              deichv1alpha1.HealthStatus(o.LastStatus),
			ConsecutiveFailures: o.ConsecutiveFailures,
			LastProbeTime:       &metav1.Time{Time: o.LastProbe},
			LastTransitionTime:  &metav1.Time{Time: o.LastTransition},
			Latency:             &metav1.Duration{Duration: o.Latency.Round(time.Millisecond)},
			Message:             o.Message,
		}
		statuses = append(statuses, st)
		r.recordHealthTransition(s, previous[hc.Name], st)
	}
	s.svc.Status.HealthChecks = statuses
}

// observationOf is the scheduler's observation that a check's status records.
func observationOf(st deichv1alpha1.HealthCheckStatus) probes.Observation {
	o := probes.Observation{
		Tally:   health.Tally{ConsecutiveFailures: st.ConsecutiveFailures, LastStatus: health.Status(st.Status)},
		Message: st.Message,
	}
	if st.LastProbeTime != nil {
		o.LastProbe = st.LastProbeTime.Time
	}
	if st.LastTransitionTime != nil {
		o.LastTransition = st.LastTransitionTime.Time
	}
	if st.Latency != nil {
		o.Latency = st.Latency.Duration
	}
	return o
}

// observeProbe exports a probe's verdict as a metric. It is the probe scheduler's Observe.
func (r *SharedServiceReconciler) observeProbe(key types.NamespacedName, check string, o probes.Observation) {
	up := 0.0
	if o.LastStatus == health.StatusHealthy {
		up = 1
	}
	metrics.HealthCheckUp.WithLabelValues(key.Namespace, key.Name, check, r.site).Set(up)
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
	checks := judgingChecks(svc)
	if len(checks) == 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionUnknown, deichv1alpha1.ServiceReasonNoHealthChecks, "the service declares no health checks that judge the active site"
		return c
	}
	var failing, unknown []string
	for _, hc := range checks {
		if !slices.ContainsFunc(svc.Status.HealthChecks, func(st deichv1alpha1.HealthCheckStatus) bool { return st.Name == hc.Name }) {
			unknown = append(unknown, fmt.Sprintf("%s (waiting for its first probe)", hc.Name))
		}
	}
	for _, st := range svc.Status.HealthChecks {
		switch st.Status {
		case deichv1alpha1.HealthUnhealthy:
			// The count itself is in status.healthChecks; the message changes only when the
			// run of failures reaches the threshold, so that it is not written at every probe.
			if st.ConsecutiveFailures >= threshold {
				failing = append(failing, fmt.Sprintf("%s (failed %d times in a row, the failureThreshold: %s)", st.Name, threshold, st.Message))
			} else {
				failing = append(failing, fmt.Sprintf("%s (failing, not yet %d times in a row: %s)", st.Name, threshold, st.Message))
			}
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
		c.Message = fmt.Sprintf("%d check(s) of %s pass", len(checks), activeSite(svc))
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
	meta.SetStatusCondition(&s.svc.Status.Conditions, healthCondition(s.svc, failureThreshold(s.objective)))
}

// probeShare says which checks of other services probe the same thing in the same way as hc
// in namespace, so that the probe scheduler runs one probe for all of them: an HTTP check
// with the same name (its User-Agent), URL, expected status, timeout and CA (a CA is read from
// the service's namespace), a TCP check of the same address and timeout. A workload check
// reads the service's own objects and is never shared.
func probeShare(hc deichv1alpha1.HealthCheck, namespace string) string {
	switch {
	case hc.HTTP != nil:
		key := fmt.Sprintf("http name=%q url=%q status=%d timeout=%s", hc.Name, hc.HTTP.URL, hc.HTTP.ExpectedStatus, hc.HTTP.Timeout.Duration)
		if ref := hc.HTTP.CASecretRef; ref != nil {
			key += fmt.Sprintf(" ca=%s/%s[%s]", namespace, ref.Name, ref.Key)
		}
		return key
	case hc.TCP != nil:
		return fmt.Sprintf("tcp address=%q timeout=%s", hc.TCP.Address, hc.TCP.Timeout.Duration)
	default:
		return ""
	}
}
