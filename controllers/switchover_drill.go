package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/health"
	"github.com/deich-io/deich/internal/mirror"
	"github.com/deich-io/deich/internal/render"
)

// The drill: a rehearsal of the move that changes nothing — the target's copy promoted in a
// server-side dry run and its checks probed.

// drill checks, without changing anything, that a failover to the target would succeed now,
// and estimates how long it would take.
func (r *SwitchoverReconciler) drill(ctx context.Context, s *switchoverScope, svc *deichv1alpha1.SharedService) (ctrl.Result, error) {
	sw := s.sw
	target := sw.Spec.TargetSite
	sw.Status.StartedAt = &metav1.Time{Time: s.now}
	sw.Status.FromSite = activeSite(svc)
	if r.servedHere(svc, target) {
		s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonAlreadyServed,
			fmt.Sprintf("drill: target already serves: %s holds the lease of SharedService %s and serves it; nothing to rehearse", target, svc.Name),
			&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventDrillPassed, action: "Drill"})
		return ctrl.Result{}, nil
	}

	var failed, passed []string
	record := func(condType string, ok bool, okReason, failReason, msg string) {
		if ok {
			s.setCondition(condType, metav1.ConditionTrue, okReason, msg)
			passed = append(passed, msg)
			return
		}
		s.setCondition(condType, metav1.ConditionFalse, failReason, msg)
		failed = append(failed, msg)
	}

	other := peerSite(svc, r.site)
	ok, why := peerReadiness(ctx, r.client, other)
	record(deichv1alpha1.SwitchoverConditionPeerReachable, ok, deichv1alpha1.SwitchoverReasonPeerReady, deichv1alpha1.SwitchoverReasonPeerNotReady,
		fmt.Sprintf("peer %s: %s", other, why))

	ok, age := r.copyWithinRPO(svc, s.now)
	record(deichv1alpha1.SwitchoverConditionCopyWithinRPO, ok, deichv1alpha1.SwitchoverReasonWithinRPO, deichv1alpha1.SwitchoverReasonCopyTooOld, age)

	started := r.clock.Now()
	n, err := r.dryRunPromotion(ctx, svc, target)
	took := r.clock.Since(started)
	if err != nil {
		record(deichv1alpha1.SwitchoverConditionPromotionAccepted, false, "", deichv1alpha1.SwitchoverReasonDryRunRejected,
			fmt.Sprintf("promotion at %s would fail: %v", target, err))
	} else {
		record(deichv1alpha1.SwitchoverConditionPromotionAccepted, true, deichv1alpha1.SwitchoverReasonDryRunAccepted, "",
			fmt.Sprintf("%s's API server accepts the %d copies in their promoted form (dry run, %s)", target, n, took.Round(time.Millisecond)))
	}

	standby := deichv1alpha1.StandbyCold
	objective := r.objective(ctx, svc)
	if objective != nil && objective.Spec.Standby != "" {
		standby = objective.Spec.Standby
	}
	ok, checks := r.probeTargetChecks(ctx, svc, target, standby)
	record(deichv1alpha1.SwitchoverConditionTargetChecksReachable, ok, deichv1alpha1.SwitchoverReasonChecksReachable, deichv1alpha1.SwitchoverReasonChecksUnreachable, checks)

	// Detection and lease expiry run side by side; the promotion then applies the copies.
	p := failover.PolicyFrom(objective, r.maxSkew)
	estimate := max(time.Duration(p.FailureThreshold)*p.ProbeInterval, p.LeaseDuration+p.MaxClockSkew) + took
	sw.Status.EstimatedRecoveryTime = &metav1.Duration{Duration: estimate.Round(time.Millisecond)}
	rto := ""
	if objective != nil {
		rto = fmt.Sprintf(" (RTO %s)", objective.Spec.RTO.Duration)
	}

	if len(failed) > 0 {
		s.setPhase(deichv1alpha1.SwitchoverFailed, metav1.ConditionFalse, deichv1alpha1.SwitchoverReasonDrillFailed,
			fmt.Sprintf("drill failed: a failover to %s would not succeed now: %s. Passed: %s. Estimated recovery time %s%s",
				target, strings.Join(failed, "; "), strings.Join(passed, "; "), sw.Status.EstimatedRecoveryTime.Duration, rto),
			&switchoverEvent{eventType: corev1.EventTypeWarning, reason: deichv1alpha1.SwitchoverEventDrillFailed, action: "Drill"})
		return ctrl.Result{}, nil
	}
	s.setPhase(deichv1alpha1.SwitchoverSucceeded, metav1.ConditionTrue, deichv1alpha1.SwitchoverReasonDrillPassed,
		fmt.Sprintf("drill passed: a failover to %s would succeed now, estimated recovery time %s%s; nothing was changed. %s",
			target, sw.Status.EstimatedRecoveryTime.Duration, rto, strings.Join(passed, "; ")),
		&switchoverEvent{eventType: corev1.EventTypeNormal, reason: deichv1alpha1.SwitchoverEventDrillPassed, action: "Drill"})
	return ctrl.Result{}, nil
}

// objective returns the service's RecoveryObjective; nil when it cannot be read, and the
// failover policy's defaults apply.
func (r *SwitchoverReconciler) objective(ctx context.Context, svc *deichv1alpha1.SharedService) *deichv1alpha1.RecoveryObjective {
	obj := &deichv1alpha1.RecoveryObjective{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: svc.Spec.RecoveryObjectiveRef.Name}, obj); err != nil {
		return nil
	}
	return obj
}

// dryRunPromotion sends every copy of the service at target, in the form a promotion would
// apply, to target's API server as a server-side apply dry run, and returns how many were
// accepted. A copy the server rejects, or none at all, is an error.
func (r *SwitchoverReconciler) dryRunPromotion(ctx context.Context, svc *deichv1alpha1.SharedService, target string) (int, error) {
	at := mirror.Site{Name: r.site, Dynamic: r.local, Mapper: r.mapper}
	if target != r.site {
		conn, why := r.connection(ctx, target)
		if conn == nil {
			return 0, fmt.Errorf("cannot reach %s: %s", target, why)
		}
		at = conn.Writer()
	}
	ctx, cancel := context.WithTimeout(ctx, switchoverPeerTimeout)
	defer cancel()
	n, err := at.DryRunActive(ctx, svc.Namespace, svc.Name, resourceKinds(svc), render.ActiveForm)
	if err != nil {
		return n, fmt.Errorf("SharedService %s at %s: %w", svc.Name, target, err)
	}
	return n, nil
}

// probeTargetChecks runs the health checks that name target once. A check that cannot run
// (Unknown) fails the drill; a failing one does not, since a standby does not serve before
// it is promoted, and is reported.
func (r *SwitchoverReconciler) probeTargetChecks(ctx context.Context, svc *deichv1alpha1.SharedService, target string, standby deichv1alpha1.StandbyMode) (bool, string) {
	var checks []deichv1alpha1.HealthCheck
	for _, hc := range svc.Spec.HealthChecks {
		if hc.Site == target {
			checks = append(checks, hc)
		}
	}
	if len(checks) == 0 {
		return true, fmt.Sprintf("no health check names %s", target)
	}
	// Without a reader a workload check is Unknown: the target cannot be reached.
	var workloads client.Reader
	if target == r.site {
		workloads = r.apiReader
	} else if conn, _ := r.connection(ctx, target); conn != nil {
		workloads = conn.Cluster.GetAPIReader()
	}
	results := make([]health.Result, len(checks))
	var wg sync.WaitGroup
	for i, hc := range checks {
		wg.Go(func() {
			results[i] = r.prober.Probe(ctx, hc, svc.Namespace, workloads, caBundle(ctx, r.apiReader, svc.Namespace, hc))
		})
	}
	wg.Wait()

	var unreachable, reached []string
	for i, hc := range checks {
		res := results[i]
		switch res.Status {
		case health.StatusHealthy:
			reached = append(reached, fmt.Sprintf("%s Healthy", hc.Name))
		case health.StatusUnhealthy:
			reached = append(reached, fmt.Sprintf("%s Unhealthy, as expected of a %s standby (%s)", hc.Name, standby, res.Message))
		default:
			unreachable = append(unreachable, fmt.Sprintf("%s (%s)", hc.Name, res.Message))
		}
	}
	if len(unreachable) > 0 {
		return false, fmt.Sprintf("health checks of %s cannot run: %s", target, strings.Join(unreachable, "; "))
	}
	return true, fmt.Sprintf("health checks of %s reachable: %s", target, strings.Join(reached, "; "))
}
