package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// The resources followed with a watch.
var (
	switchoverResource    = deichv1alpha1.GroupVersion.WithResource("switchovers")
	sharedServiceResource = deichv1alpha1.GroupVersion.WithResource("sharedservices")
)

// follow watches the Switchover sw at site at from the version it was created with, printing
// every change, until it succeeded or failed or ctx ends; it returns the Switchover as last
// seen. When target (the target site, holding the service as before) is set and the service
// has promotion stages, the stages' progress there is printed too. A watch that breaks is
// resumed where it stopped.
func (o *options) follow(ctx context.Context, p *progressPrinter, at *site, sw *deichv1alpha1.Switchover,
	target *site, before *deichv1alpha1.SharedService) (*deichv1alpha1.Switchover, error) {
	key := client.ObjectKeyFromObject(sw)
	prev := sw.DeepCopy()
	swEvents, stopSw, err := watchOne(ctx, at, switchoverResource, key, sw.ResourceVersion)
	if err != nil {
		return prev, err
	}
	defer func() { stopSw() }()

	var svcEvents <-chan watch.Event
	var prevSvc *deichv1alpha1.SharedService
	var sinceEpoch int64
	if target != nil && before != nil && before.Spec.Promotion != nil && len(before.Spec.Promotion.Stages) > 0 && !sw.Spec.Drill {
		prevSvc = before.DeepCopy()
		if pr := before.Status.Promotion; pr != nil {
			sinceEpoch = pr.Epoch
		}
		ch, stop, err := watchOne(ctx, target, sharedServiceResource, client.ObjectKeyFromObject(before), before.ResourceVersion)
		if err == nil {
			svcEvents = ch
			defer stop()
		}
	}

	for {
		select {
		case <-ctx.Done():
			return prev, ctx.Err()
		case ev, ok := <-swEvents:
			if !ok || ev.Type == watch.Error {
				// The watch broke (its version expired, say): read the Switchover as it is
				// now, and watch again from there.
				cur, err := getSwitchover(ctx, at, key)
				if err != nil {
					return prev, err
				}
				p.print(switchoverProgress(prev, cur))
				prev = cur
				if finished(cur) {
					return cur, nil
				}
				stopSw()
				if swEvents, stopSw, err = watchOne(ctx, at, switchoverResource, key, cur.ResourceVersion); err != nil {
					return prev, err
				}
				continue
			}
			switch ev.Type {
			case watch.Deleted:
				return prev, fmt.Errorf("switchover %s was deleted at %s before it finished", key.Name, at.name)
			case watch.Added, watch.Modified:
			default:
				continue
			}
			cur := &deichv1alpha1.Switchover{}
			if err := fromObject(ev.Object, cur); err != nil {
				return prev, err
			}
			p.print(switchoverProgress(prev, cur))
			prev = cur
			if finished(cur) {
				return cur, nil
			}
		case ev, ok := <-svcEvents:
			if !ok || ev.Type == watch.Error || ev.Type == watch.Deleted {
				svcEvents = nil // the stages are extra; the Switchover tells the outcome
				continue
			}
			cur := &deichv1alpha1.SharedService{}
			if err := fromObject(ev.Object, cur); err != nil {
				continue
			}
			p.print(stageProgress(target.name, prevSvc, cur, sinceEpoch))
			prevSvc = cur
		}
	}
}

// watchOne watches one object from resourceVersion on, resuming the watch when the
// connection drops.
func watchOne(ctx context.Context, s *site, resource schema.GroupVersionResource, key client.ObjectKey, resourceVersion string) (<-chan watch.Event, func(), error) {
	lw := &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", key.Name).String()
			return s.dynamic.Resource(resource).Namespace(key.Namespace).Watch(ctx, opts)
		},
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, resourceVersion, lw)
	if err != nil {
		return nil, nil, fmt.Errorf("watch %s %s at %s: %w", resource.Resource, key, s.name, err)
	}
	return rw.ResultChan(), rw.Stop, nil
}

// fromObject converts a watched object into a typed one.
func fromObject(obj runtime.Object, into any) error {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("unexpected object %T in a watch", obj)
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("decode %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// switchoverProgress says what changed from prev to cur, one line per change: the phase with
// its message; each condition (but Ready, which repeats the phase and message) whose status
// or reason changed, with its message; and the message when only it changed. A drill's end
// adds its estimated recovery time.
func switchoverProgress(prev, cur *deichv1alpha1.Switchover) []string {
	var lines []string
	st, was := cur.Status, prev.Status
	phaseChanged := st.Phase != was.Phase && st.Phase != ""
	if phaseChanged {
		lines = append(lines, phaseLine(st.Phase, st.Message))
	}
	conds := slices.Clone(st.Conditions)
	slices.SortFunc(conds, func(a, b metav1.Condition) int { return strings.Compare(a.Type, b.Type) })
	for _, c := range conds {
		if c.Type == deichv1alpha1.ConditionReady {
			continue
		}
		old := meta.FindStatusCondition(was.Conditions, c.Type)
		if old != nil && old.Status == c.Status && old.Reason == c.Reason {
			continue
		}
		line := fmt.Sprintf("  condition %s=%s (%s)", c.Type, c.Status, c.Reason)
		if c.Message != "" {
			line += ": " + c.Message
		}
		lines = append(lines, line)
	}
	if !phaseChanged && st.Message != was.Message && st.Message != "" {
		lines = append(lines, phaseLine(st.Phase, st.Message))
	}
	return lines
}

// phaseLine is a line for a phase and its message.
func phaseLine(phase deichv1alpha1.SwitchoverPhase, msg string) string {
	if msg == "" {
		return describePhase(phase)
	}
	return describePhase(phase) + ": " + msg
}

// stageProgress says how a promotion through spec.promotion.stages at site moved from prev
// to cur: a line per stage whose phase changed (a stage still Pending has nothing to tell),
// and one when the promotion completed. Only
// a promotion newer than sinceEpoch (the one this move starts) is told.
func stageProgress(site string, prev, cur *deichv1alpha1.SharedService, sinceEpoch int64) []string {
	p := cur.Status.Promotion
	if p == nil || p.Epoch <= sinceEpoch {
		return nil
	}
	var old *deichv1alpha1.PromotionStatus
	if prev != nil && prev.Status.Promotion != nil && prev.Status.Promotion.Epoch == p.Epoch {
		old = prev.Status.Promotion
	}
	var lines []string
	for _, s := range p.Stages {
		var was *deichv1alpha1.PromotionStageStatus
		if old != nil {
			if i := slices.IndexFunc(old.Stages, func(o deichv1alpha1.PromotionStageStatus) bool { return o.Name == s.Name }); i >= 0 {
				was = &old.Stages[i]
			}
		}
		if s.Phase == "" || s.Phase == deichv1alpha1.StagePending || was != nil && was.Phase == s.Phase {
			continue
		}
		line := fmt.Sprintf("  stage %s %s at %s (epoch %d)", s.Name, s.Phase, site, p.Epoch)
		if s.Handoff != "" && s.Phase == deichv1alpha1.StageReady {
			line += ", handoff: " + s.Handoff
		}
		if s.Message != "" && s.Phase != deichv1alpha1.StageReady {
			line += ": " + s.Message
		}
		lines = append(lines, line)
	}
	if p.CompletedAt != nil && (old == nil || old.CompletedAt == nil) {
		lines = append(lines, fmt.Sprintf("  promotion at %s complete (epoch %d)", site, p.Epoch))
	}
	return lines
}
