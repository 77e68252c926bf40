package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

const (
	// failback is the Switchover that moves the service home.
	failback = "buergerkonto-failback"
	// failbackTimeout bounds the move home, from the Switchover's creation until the primary
	// serves with every stage ready.
	failbackTimeout = 2 * time.Minute
)

// moveBack powers the primary's data centre on again, waits until it stands by, and moves the
// service home with a Switchover: a planned move, in which the database stage hands the
// demoted cluster's token to the one it promotes.
func (st *story) moveBack(ctx context.Context) error {
	st.out.println("")
	st.out.say("Act 3: %s's data centre is back. Its API server starts with the data etcd kept, then its controllers, kwok, Deich manager and (played) CloudNativePG", primary)
	began := time.Now()
	if err := st.sites.bringBack(ctx, primary); err != nil {
		return err
	}
	st.out.say("%s is up again after %s; its Deich manager finds the lease held by %s and fences its copies, which %s keeps current", primary, since(began), standby, standby)
	if err := st.waitStandsBy(ctx); err != nil {
		return err
	}
	st.out.say("%s stands by %s after it came back: its database follows db-%s, its record publishes nothing", primary, since(began), standby)
	st.out.say("  (after a failover a real CloudNativePG would first rebuild db-%s from db-%s, by pg_rewind or a new base backup: it was promoted without a token; the demo skips that)", primary, standby)
	st.showDataLayer()

	epoch, err := st.epoch(ctx, standby)
	if err != nil {
		return err
	}
	sw, err := st.failbackSwitchover()
	if err != nil {
		return err
	}
	st.out.say("At %s: Switchover %s (the sample with drill: false, targetSite %s): a planned move, %s fences first and hands its database's demotion token over",
		primary, failback, primary, standby)
	created := time.Now()
	if err := st.applyAfterRestart(ctx, sw); err != nil {
		return err
	}
	if err := st.followMove(ctx, epoch); err != nil {
		return err
	}
	took := since(created)
	if err := st.showStages(ctx, primary, created, "the Switchover was created"); err != nil {
		return err
	}
	show(st.out, st.cfg, primary, "-n", namespace, "get", "clusters.postgresql.cnpg.io", database, "-o",
		`jsonpath=spec.replica.promotionToken={.spec.replica.promotionToken}{"\n"}`)
	st.showDataLayer()
	show(st.out, st.cfg, primary, "-n", namespace, "get", "switchovers", "-o", "wide")
	home, err := st.sharedService(ctx, primary)
	if err != nil {
		return err
	}
	handoff := handoffOf(home.Status.Promotion)
	if !strings.HasSuffix(handoff, " from "+standby) {
		return fmt.Errorf("%s was promoted without %s's demotion token: handoff %q", database, standby, handoff)
	}
	st.out.say("Result: %s serves %s again, %s after the Switchover was created; its database was promoted with %s's demotion token, without a rebuild of db-%s.",
		primary, service, took, standby, standby)
	return nil
}

// handoffOf is what the first stage with a handoff records of it, or "".
func handoffOf(p *deichv1alpha1.PromotionStatus) string {
	if p == nil {
		return ""
	}
	for _, s := range p.Stages {
		if s.Handoff != "" {
			return s.Handoff
		}
	}
	return ""
}

// waitStandsBy waits until the standby serves the service with a current copy at the primary,
// the primary stands by, and the primary's database runs as a replica.
func (st *story) waitStandsBy(ctx context.Context) error {
	return st.waitFor(ctx, protectedTimeout, service+" Protected at "+standby+" with "+primary+" standing by", func() (bool, error) {
		at, err := st.sharedService(ctx, standby)
		if err != nil {
			return false, err
		}
		home, err := st.sharedService(ctx, primary)
		if err != nil {
			return false, err
		}
		db, err := st.cluster(ctx, primary)
		if err != nil {
			return false, err
		}
		// The Switchover is refused while the copy it would serve from is older than the RPO.
		current := apimeta.IsStatusConditionTrue(home.Status.Conditions, deichv1alpha1.ServiceConditionObjectivesMet)
		return at.Status.Phase == deichv1alpha1.PhaseProtected && at.Status.ActiveSite == standby &&
			home.Status.Role == deichv1alpha1.RoleStandby && current && db.phase == healthy && db.currentPrimary == "", nil
	})
}

// epoch is the epoch of the claim that serves, as site reports it.
func (st *story) epoch(ctx context.Context, site string) (int64, error) {
	ss, err := st.sharedService(ctx, site)
	if err != nil {
		return 0, err
	}
	if ss.Status.Lease == nil {
		return 0, fmt.Errorf("%s reports no lease", site)
	}
	return ss.Status.Lease.Epoch, nil
}

// applyAfterRestart applies obj at the primary, whose API server has just started again: until
// it has loaded the schemas of the custom resources, its admission policies (Deich's
// deich-switchover-requester among them) answer 503 Service Unavailable for them.
func (st *story) applyAfterRestart(ctx context.Context, obj *unstructured.Unstructured) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for told := false; ; told = true {
		applyErr := st.apply(ctx, st.site(primary), []*unstructured.Unstructured{obj})
		if !apierrors.IsServiceUnavailable(applyErr) {
			return applyErr
		}
		if !told {
			st.out.say("At %s: 503 Service Unavailable, the API server has not loaded the CRDs' schemas since its start; trying again every second", primary)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("%w: %w", err, applyErr)
		}
	}
}

// failbackSwitchover is the Switchover sample turned into the move home.
func (st *story) failbackSwitchover() (*unstructured.Unstructured, error) {
	objs, err := decodeFile(st.sample("switchover"), nil)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, fmt.Errorf("%s: want one Switchover, found %d objects", st.sample("switchover"), len(objs))
	}
	sw := objs[0]
	sw.SetName(failback)
	for field, value := range map[string]any{
		"targetSite": primary,
		"drill":      false,
		"reason":     "Failback to " + primary + " after the power cut, change ticket CHG-0816",
	} {
		if err := unstructured.SetNestedField(sw.Object, value, "spec", field); err != nil {
			return nil, err
		}
	}
	return sw, nil
}

// followMove samples both sites until the Switchover has succeeded and the primary serves with
// every stage of its promotion (of an epoch after epoch) ready, telling what changes.
func (st *story) followMove(ctx context.Context, epoch int64) error {
	stages := newStageWatch(primary, epoch)
	last := map[string]string{}
	tell := func(key, line string) {
		if last[key] != line {
			st.out.say("%s", line)
			last[key] = line
		}
	}
	deadline := time.Now().Add(failbackTimeout)
	for time.Now().Before(deadline) {
		if err := sleep(ctx, pollInterval); err != nil {
			return err
		}
		phase, message, err := st.switchoverPhase(ctx)
		if err != nil {
			continue
		}
		tell("switchover", fmt.Sprintf("At %s: Switchover %s %s: %s", primary, failback, phase, message))
		if phase == deichv1alpha1.SwitchoverFailed {
			return fmt.Errorf("switchover %s failed: %s", failback, message)
		}
		if from, err := st.sharedService(ctx, standby); err == nil {
			tell(standby, fmt.Sprintf("At %s: phase %s, active site %s", standby, from.Status.Phase, from.Status.ActiveSite))
		}
		home, err := st.sharedService(ctx, primary)
		if err != nil {
			continue
		}
		tell(primary, fmt.Sprintf("At %s: phase %s, active site %s", primary, home.Status.Phase, home.Status.ActiveSite))
		stages.follow(st.out, home.Status.Promotion)
		p := home.Status.Promotion
		want, ready, err := st.deployment(ctx, primary)
		if err == nil && phase == deichv1alpha1.SwitchoverSucceeded && home.Status.ActiveSite == primary &&
			p != nil && p.Epoch > epoch && p.CompletedAt != nil && want > 0 && ready == want {
			return nil
		}
	}
	return fmt.Errorf("%s did not serve %s within %s of the Switchover", primary, service, fmtDur(failbackTimeout))
}

// switchoverPhase reads the failback Switchover's phase and message at the primary.
func (st *story) switchoverPhase(ctx context.Context) (deichv1alpha1.SwitchoverPhase, string, error) {
	sw := &deichv1alpha1.Switchover{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := st.site(primary).Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: failback}, sw); err != nil {
		return "", "", err
	}
	return sw.Status.Phase, sw.Status.Message, nil
}
