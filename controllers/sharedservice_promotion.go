package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/render"
)

const (
	// stageRecheck is how soon a promotion looks again at a stage that is not ready yet.
	stageRecheck = time.Second
	// stalledRecheck is how often it looks at a stage that timed out.
	stalledRecheck = 10 * time.Second
)

// formObject is one of a service's objects at this site, with its kind.
type formObject struct {
	k   *mirroredKind
	obj *unstructured.Unstructured
}

// formStage is one stage of a service's promotion at this site: a stage of
// spec.promotion.stages (spec set), or, last, the objects in no stage (spec nil).
type formStage struct {
	spec    *deichv1alpha1.PromotionStage
	objects []formObject
}

func (s formStage) name() string {
	if s.spec == nil {
		return ""
	}
	return s.spec.Name
}

// stagesOf lists the service's objects at this site, as listing says, and sorts them into its
// promotion's stages: each object into the first stage whose target selects it, the rest into
// a last stage of their own, in the order of the service's kinds. Objects of another service
// are left out.
func (r *SharedServiceReconciler) stagesOf(ctx context.Context, f formSpec, listing formListing) ([]formStage, error) {
	if f.svc == nil {
		return nil, errors.New("the service's kinds are not known yet")
	}
	var specs []deichv1alpha1.PromotionStage
	if f.svc.Spec.Promotion != nil {
		specs = f.svc.Spec.Promotion.Stages
	}
	stages := make([]formStage, len(specs)+1)
	for i := range specs {
		stages[i].spec = &specs[i]
	}
	// The kinds are listed at once, apply-parallelism at a time: a promotion or a fence waits
	// for one round trip to the API server, not one per kind.
	listed := make([][]*unstructured.Unstructured, len(f.kinds))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(r.parallelism, 1))
	for i, k := range f.kinds {
		g.Go(func() (err error) {
			listed[i], err = r.formObjects(gctx, f, k, listing)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for ki, k := range f.kinds {
		for _, obj := range listed[ki] {
			if other := obj.GetLabels()[render.LabelSharedService]; other != "" && other != f.svc.Name {
				continue
			}
			i, err := stageIndex(specs, obj)
			if err != nil {
				return nil, err
			}
			stages[i].objects = append(stages[i].objects, formObject{k: k, obj: obj})
		}
	}
	return stages, nil
}

// stageIndex is the stage obj belongs to: the first whose target selects it, or len(specs).
func stageIndex(specs []deichv1alpha1.PromotionStage, obj *unstructured.Unstructured) (int, error) {
	for i := range specs {
		ok, err := render.Selects(&specs[i].Target, obj)
		if err != nil {
			return 0, fmt.Errorf("the target of promotion stage %s: %w", specs[i].Name, err)
		}
		if ok {
			return i, nil
		}
	}
	return len(specs), nil
}

// writesOf decides the writes that put a stage's objects into the wanted form; adjust, if
// set, changes the active form of each object a switch writes.
func (r *SharedServiceReconciler) writesOf(f formSpec, s formStage, active bool, epoch int64, adjust func(formObject) func(*unstructured.Unstructured) error) ([]formWrite, error) {
	var writes []formWrite
	for _, o := range s.objects {
		var adj func(*unstructured.Unstructured) error
		if adjust != nil {
			adj = adjust(o)
		}
		w, ok, err := r.formWriteFor(f, o.k, o.obj, active, epoch, adj)
		if err != nil {
			return nil, err
		}
		if ok {
			writes = append(writes, w)
		}
	}
	return writes, nil
}

// doWrites sends writes apply-parallelism at a time and returns how many switched an object's
// form.
func (r *SharedServiceReconciler) doWrites(ctx context.Context, writes []formWrite) (int, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(r.parallelism, 1))
	var changed atomic.Int64
	for _, w := range writes {
		g.Go(func() error {
			if err := w.do(gctx); err != nil {
				return err
			}
			if w.switches {
				changed.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	return int(changed.Load()), err
}

// fenceStages switches every stage of the service to its standby form, the last stage first
// (failover.NextFence), without reading any stage's readiness: rule S2 of the failover
// package. It returns how many objects it switched.
func (r *SharedServiceReconciler) fenceStages(ctx context.Context, f formSpec) (int, error) {
	stages, err := r.stagesOf(ctx, f, wholeObjects)
	if err != nil {
		return 0, err
	}
	writes := make([][]formWrite, len(stages))
	views := make([]failover.StageView, len(stages))
	for i, s := range stages {
		if writes[i], err = r.writesOf(f, s, false, 0, nil); err != nil {
			return 0, err
		}
		views[i].Active = len(writes[i])
	}
	total := 0
	for i := failover.NextFence(views); i >= 0; i = failover.NextFence(views) {
		n, err := r.doWrites(ctx, writes[i])
		total += n
		if err != nil {
			return total, err
		}
		views[i].Active = 0
	}
	return total, nil
}

// promotionProgress is what a site's manager remembers of the promotion it runs: when each
// stage was first seen active and ready, for the stages' timeouts and the status.
type promotionProgress struct {
	epoch       int64
	startedAt   time.Time
	completedAt time.Time
	stages      []stageProgress
}

type stageProgress struct {
	name        string
	objects     int
	activeSince time.Time
	readyAt     time.Time
	timedOut    bool
	message     string
	// handoffSince is when the promotion first waited for the stage's handoff; handoff says
	// how it went.
	handoffSince time.Time
	handoff      string
}

// promoteStep takes the service's objects a step towards their active form under the claim
// of epoch: it switches stages with failover.NextStage until one is not ready yet (rule S1:
// it switches only within the keeper's decision that calls it, and never waits). It returns
// the switched objects' count and the promotion's progress.
func (f serviceFencer) promoteStep(ctx context.Context, epoch int64) (int, lease.Progress, error) {
	r := f.r
	stages, err := f.promotionStages(ctx, epoch)
	if err != nil {
		return 0, lease.Progress{}, err
	}
	now := r.clock.Now()
	progress, fresh := f.state.progressFor(epoch, stages, now)
	if fresh && !slices.ContainsFunc(stages, toSwitch) {
		// Nothing to switch: the objects ran in their active form before this claim (a
		// service just put under protection at its primary, a manager that restarted after
		// its promotion). Stages order switches; whether the workloads are ready is theirs
		// to say.
		n, err := f.stampPrefix(ctx, stages, failover.StageStep{Done: true}, epoch)
		return n, lease.Progress{Done: err == nil}, err
	}
	views := make([]failover.StageView, len(stages))
	for i, s := range stages {
		views[i] = r.stageView(s, &progress.stages[i], now)
	}
	switched := 0
	for {
		step := failover.NextStage(views, now)
		if step.Switch < 0 {
			stamped, err := f.stampPrefix(ctx, stages, step, epoch)
			if err != nil {
				return switched, lease.Progress{}, err
			}
			switched += stamped
			f.record(stages, progress, step, now)
			switch {
			case step.Done:
				return switched, lease.Progress{Done: true}, nil
			case step.TimedOut:
				return switched, lease.Progress{RecheckIn: stalledRecheck}, nil
			default:
				return switched, lease.Progress{RecheckIn: stageRecheck}, nil
			}
		}
		i := step.Switch
		adjust, wait := f.handoff(ctx, stages[i], &progress.stages[i], now)
		if wait {
			f.record(stages, progress, failover.StageStep{Switch: -1, Waiting: -1}, now)
			return switched, lease.Progress{RecheckIn: stageRecheck}, nil
		}
		writes, err := r.writesOf(f.form, stages[i], true, epoch, adjust)
		if err != nil {
			return switched, lease.Progress{}, err
		}
		n, err := r.doWrites(ctx, writes)
		switched += n
		if err != nil {
			return switched, lease.Progress{}, err
		}
		views[i] = failover.StageView{Active: len(stages[i].objects), ActiveSince: now, Timeout: views[i].Timeout,
			Ready: stages[i].spec == nil || stages[i].spec.ReadyWhen == ""}
		progress.stages[i].activeSince = now
		if views[i].Ready {
			progress.stages[i].readyAt = now
		}
		if s := stages[i]; s.spec != nil {
			handoff := ""
			if h := progress.stages[i].handoff; h != "" {
				handoff = "; handoff: " + h
			}
			r.recorder.Eventf(f.form.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventPromotionStageStarted, stageAction(s.spec.Name),
				"Stage %s: %d object(s) switched to their active form (epoch %d)%s%s", s.spec.Name, n, epoch, handoff, waitingFor(s.spec))
		}
	}
}

// promotionStages lists the stages promoteStep starts from. The first claim of a service
// (epoch 1) usually finds every object at its own site in active form already, and switches
// nothing: it lists the objects' metadata alone, which is all the step reads then, and lists
// the whole objects only when one of them awaits a switch (a service deleted while fenced and
// created again). Every other promotion lists the whole objects at once: a failover's
// workloads await their switch.
func (f serviceFencer) promotionStages(ctx context.Context, epoch int64) ([]formStage, error) {
	if epoch == 1 && !f.state.promotes(epoch) {
		stages, err := f.r.stagesOf(ctx, f.form, metadataOnly)
		if err != nil || !slices.ContainsFunc(stages, toSwitch) {
			return stages, err
		}
	}
	return f.r.stagesOf(ctx, f.form, wholeObjects)
}

func waitingFor(spec *deichv1alpha1.PromotionStage) string {
	if spec.ReadyWhen == "" {
		return ""
	}
	return fmt.Sprintf("; the next stage waits until %s", spec.ReadyWhen)
}

// stageView is what the promotion sees of a stage now: its objects' forms and, once they are
// all active, whether its readiness rule holds for each.
func (r *SharedServiceReconciler) stageView(s formStage, p *stageProgress, now time.Time) failover.StageView {
	var v failover.StageView
	for _, o := range s.objects {
		if s.awaitsSwitch(o) {
			v.Standby++
		} else {
			v.Active++
		}
	}
	if s.spec != nil && s.spec.Timeout != nil {
		v.Timeout = s.spec.Timeout.Duration
	}
	p.objects = len(s.objects)
	if v.Standby > 0 {
		p.activeSince, p.readyAt, p.timedOut = time.Time{}, time.Time{}, false
		return v
	}
	if p.activeSince.IsZero() {
		p.activeSince = now
	}
	v.ActiveSince = p.activeSince
	v.Ready, p.message = r.stageReady(s)
	if v.Ready && p.readyAt.IsZero() {
		p.readyAt = now
	}
	return v
}

// stageReady evaluates a stage's readiness rule over each of its objects; a stage without a
// rule is ready. The message says why a stage is not.
func (r *SharedServiceReconciler) stageReady(s formStage) (bool, string) {
	if s.spec == nil || s.spec.ReadyWhen == "" {
		return true, ""
	}
	rule, err := r.readiness.Compile(s.spec.ReadyWhen)
	if err != nil {
		return false, err.Error()
	}
	for _, o := range s.objects {
		ready, why, err := rule.Ready(o.obj.Object)
		if err != nil {
			return false, fmt.Sprintf("%s %s: %v", o.k.gk.Kind, o.obj.GetName(), err)
		}
		if !ready {
			return false, fmt.Sprintf("%s %s: %s", o.k.gk.Kind, o.obj.GetName(), why)
		}
	}
	return true, ""
}

// stampPrefix stamps the epoch on the objects already in active form of the stages the
// promotion has reached, which a switch did not stamp. It switches nothing: the stages were
// listed before this step switched some of them, and those are in their active form now.
func (f serviceFencer) stampPrefix(ctx context.Context, stages []formStage, step failover.StageStep, epoch int64) (int, error) {
	last := len(stages) - 1
	if !step.Done {
		last = step.Waiting
	}
	var stamps []formWrite
	for _, s := range stages[:last+1] {
		writes, err := f.r.writesOf(f.form, s, true, epoch, nil)
		if err != nil {
			return 0, err
		}
		for _, w := range writes {
			if !w.switches {
				stamps = append(stamps, w)
			}
		}
	}
	return f.r.doWrites(ctx, stamps)
}

// record keeps the promotion's progress for the status, and tells of a stage that became
// ready or timed out.
func (f serviceFencer) record(stages []formStage, p *promotionProgress, step failover.StageStep, now time.Time) {
	f.state.mu.Lock()
	defer f.state.mu.Unlock()
	changed := false
	for i := range p.stages {
		s := &p.stages[i]
		if stages[i].spec == nil {
			continue
		}
		if !s.readyAt.IsZero() && !f.state.reported(i, "ready") {
			changed = true
			f.r.recorder.Eventf(f.form.svc, nil, corev1.EventTypeNormal, deichv1alpha1.ServiceEventPromotionStageReady, stageAction(s.name),
				"Stage %s is ready %s after it was switched to its active form", s.name, s.readyAt.Sub(s.activeSince).Round(time.Millisecond))
		}
		if step.TimedOut && step.Waiting == i && !s.timedOut {
			s.timedOut, changed = true, true
			f.r.recorder.Eventf(f.form.svc, nil, corev1.EventTypeWarning, deichv1alpha1.ServiceEventPromotionStageTimedOut, stageAction(s.name),
				"%s", stalledMessage(stages, i, s))
		}
	}
	if step.Done && p.completedAt.IsZero() {
		p.completedAt, changed = now, true
	}
	changed = changed || !sameProgress(f.state.promotion, p)
	f.state.promotion = p
	if changed {
		f.r.events.TryNotify(f.owner)
	}
}

// sameProgress reports whether a and b would show the same status.
func sameProgress(a, b *promotionProgress) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.epoch == b.epoch && a.startedAt.Equal(b.startedAt) && a.completedAt.Equal(b.completedAt) && slices.Equal(a.stages, b.stages)
}

// stalledMessage tells the SRE what a stage that timed out waits for, and what to do.
func stalledMessage(stages []formStage, i int, s *stageProgress) string {
	var later []string
	for _, st := range stages[i+1:] {
		if st.spec != nil {
			later = append(later, st.spec.Name)
		}
	}
	rest := "the objects in no stage stay"
	if len(later) > 0 {
		rest = fmt.Sprintf("stages %s and the objects in no stage stay", strings.Join(later, ", "))
	}
	var timeout time.Duration
	if t := stages[i].spec.Timeout; t != nil {
		timeout = t.Duration
	}
	return fmt.Sprintf("Stage %s is not ready %s after it was switched to its active form (%s): the promotion stops here, %s in standby form, and this site keeps the lease. "+
		"Make the stage's objects ready and the promotion goes on by itself; or move the service with a Switchover", s.name, timeout, s.message, rest)
}

// adjusts reports whether a switch of the stage changes the active form of its objects: its
// handoff writes a value into them, or removes it.
func (s formStage) adjusts() bool { return s.spec != nil && s.spec.Handoff != nil }

// awaitsSwitch reports whether o is in a standby form the stage's promotion switches.
func (s formStage) awaitsSwitch(o formObject) bool { return awaitsSwitch(o.obj, s.adjusts()) }

// toSwitch reports whether any of a stage's objects is in a standby form its promotion
// switches.
func toSwitch(s formStage) bool { return slices.ContainsFunc(s.objects, s.awaitsSwitch) }

// promotes reports whether a promotion of epoch has recorded its progress: its stages are
// under way, and a step reads their objects whole (their readiness, their handoffs).
func (st *leaseState) promotes(epoch int64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.promotion != nil && st.promotion.epoch == epoch
}

// progressFor returns the progress of the promotion of epoch, starting it afresh (fresh) for
// a new epoch or a changed list of stages.
func (st *leaseState) progressFor(epoch int64, stages []formStage, now time.Time) (p *promotionProgress, fresh bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p = st.promotion
	if p != nil && p.epoch == epoch && len(p.stages) == len(stages) {
		same := true
		for i, s := range stages {
			same = same && p.stages[i].name == s.name()
		}
		if same {
			// A copy the status may read while this promotion goes on.
			c := *p
			c.stages = append([]stageProgress(nil), p.stages...)
			return &c, false
		}
	}
	c := &promotionProgress{epoch: epoch, startedAt: now, stages: make([]stageProgress, len(stages))}
	for i, s := range stages {
		c.stages[i].name = s.name()
	}
	st.reportedStages = map[string]bool{}
	return c, true
}

// reported says whether what happened to stage i was told in an event already, and marks it
// told. Called with st.mu held.
func (st *leaseState) reported(i int, what string) bool {
	key := fmt.Sprintf("%d/%s", i, what)
	if st.reportedStages[key] {
		return true
	}
	if st.reportedStages == nil {
		st.reportedStages = map[string]bool{}
	}
	st.reportedStages[key] = true
	return false
}

// promotionStatus is status.promotion from what the keeper's promotion recorded.
func promotionStatus(svc *deichv1alpha1.SharedService, st *leaseState) *deichv1alpha1.PromotionStatus {
	if svc.Spec.Promotion == nil || st == nil {
		return nil
	}
	st.mu.Lock()
	p := st.promotion
	st.mu.Unlock()
	if p == nil {
		return nil
	}
	out := &deichv1alpha1.PromotionStatus{Epoch: p.epoch, StartedAt: &metav1.Time{Time: p.startedAt}}
	if !p.completedAt.IsZero() {
		out.CompletedAt = &metav1.Time{Time: p.completedAt}
	}
	reached := true
	for _, s := range p.stages {
		if s.name == "" {
			continue
		}
		ss := deichv1alpha1.PromotionStageStatus{Name: s.name, Objects: int32(s.objects)} //nolint:gosec // G115: object counts fit in int32.
		ss.Phase = deichv1alpha1.StagePending
		switch {
		case !s.readyAt.IsZero():
			ss.Phase = deichv1alpha1.StageReady
			ss.ReadyAt = &metav1.Time{Time: s.readyAt}
		case s.timedOut:
			ss.Phase, ss.Message = deichv1alpha1.StageTimedOut, truncate(s.message, 1024)
		case reached && (!s.activeSince.IsZero() || !s.handoffSince.IsZero()):
			// Switched and waiting to be ready, or waiting for its handoff to be switched.
			ss.Phase, ss.Message = deichv1alpha1.StagePromoting, truncate(s.message, 1024)
		}
		if !s.activeSince.IsZero() {
			ss.StartedAt = &metav1.Time{Time: s.activeSince}
		}
		ss.Handoff = truncate(s.handoff, 1024)
		reached = reached && !s.readyAt.IsZero()
		out.Stages = append(out.Stages, ss)
	}
	return out
}

// promotionProblem says why a promotion of svc would stop at one of its stages: a readyWhen
// that does not compile, or a target that is not a valid selector. Empty when none would.
func (r *SharedServiceReconciler) promotionProblem(svc *deichv1alpha1.SharedService) string {
	if svc.Spec.Promotion == nil {
		return ""
	}
	probe := &unstructured.Unstructured{}
	probe.SetAPIVersion("v1")
	probe.SetKind("ConfigMap")
	probe.SetName("probe")
	for i := range svc.Spec.Promotion.Stages {
		stage := &svc.Spec.Promotion.Stages[i]
		if _, err := render.Selects(&stage.Target, probe); err != nil {
			return fmt.Sprintf("stage %s: %v; no promotion can sort the objects into stages, so the RTO cannot be met", stage.Name, err)
		}
		if stage.ReplicationLag != "" {
			if _, err := r.readiness.CompileLag(stage.ReplicationLag); err != nil {
				return fmt.Sprintf("stage %s: %v; the data's lag cannot be read, so the RPO cannot be shown to hold", stage.Name, err)
			}
		}
		if h := stage.Handoff; h != nil {
			if _, err := r.readiness.CompileValue(h.From); err != nil {
				return fmt.Sprintf("stage %s: handoff.from: %v; a planned move would promote it without the handoff", stage.Name, err)
			}
		}
		if stage.ReadyWhen == "" {
			continue
		}
		if _, err := r.readiness.Compile(stage.ReadyWhen); err != nil {
			return fmt.Sprintf("stage %s: %v; a promotion would stop at this stage, so the RTO cannot be met", stage.Name, err)
		}
	}
	return ""
}

// dataLag is what the replicationLag rules of a service's stages say at this site.
type dataLag struct {
	// known is set when a rule gave a lag; lag is the largest, from the object it names.
	known bool
	lag   time.Duration
	from  string
	// unknown says why a rule could not tell, empty when each could.
	unknown string
	// syncedAt is when the data was last known replicated, as the partner's RPO gate is told
	// (leaseState.dataSyncedAt); zero when no stage reads a lag.
	syncedAt time.Time
}

// neverSynced stands for data whose lag was never known: older than any RPO.
var neverSynced = time.Unix(1, 0)

// dataSyncedAt is the time the partner's RPO gate is told the data was last replicated: now
// less the lag while every rule tells it, and while one cannot, the last time they all did —
// or, if they never did, a time older than any RPO. Data whose age is unknown is not shown to
// be within the RPO, so an automatic promotion, or a Switchover without force, does not take
// it for current.
func (st *leaseState) dataSyncedAt(d dataLag, now time.Time) time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case d.unknown != "" && st.lastDataSync.IsZero():
		return neverSynced
	case d.unknown != "":
		return st.lastDataSync
	case d.known:
		st.lastDataSync = now.Add(-d.lag)
		return st.lastDataSync
	}
	return time.Time{}
}

// dataLagOf reads the replicationLag rules of the service's stages over the stage's objects
// at this site, at now.
func (r *SharedServiceReconciler) dataLagOf(ctx context.Context, f formSpec, now time.Time) dataLag {
	var out dataLag
	if f.svc == nil || f.svc.Spec.Promotion == nil || !slices.ContainsFunc(f.svc.Spec.Promotion.Stages, func(s deichv1alpha1.PromotionStage) bool { return s.ReplicationLag != "" }) {
		return out
	}
	stages, err := r.stagesOf(ctx, f, wholeObjects)
	if err != nil {
		out.unknown = err.Error()
		return out
	}
	for _, s := range stages {
		if s.spec == nil || s.spec.ReplicationLag == "" {
			continue
		}
		rule, err := r.readiness.CompileLag(s.spec.ReplicationLag)
		if err != nil {
			out.unknown = fmt.Sprintf("stage %s: %v", s.spec.Name, err)
			continue
		}
		for _, o := range s.objects {
			lag, known, why, err := rule.Lag(o.obj.Object, now)
			name := fmt.Sprintf("%s %s (stage %s)", o.k.gk.Kind, o.obj.GetName(), s.spec.Name)
			switch {
			case err != nil:
				out.unknown = fmt.Sprintf("%s: %v", name, err)
			case !known:
				out.unknown = fmt.Sprintf("%s: %s", name, why)
			case !out.known || lag > out.lag:
				out.known, out.lag, out.from = true, lag, name
			}
		}
	}
	return out
}

// handoff prepares a stage's handoff before its switch: in a planned move it reads the value
// from each object's copy at the site that hands the service over and returns an adjust that
// puts it into the object's active form; it asks to wait (wait) while a value is missing,
// within the stage's timeout. In a failover, or after the timeout, the adjust removes the
// field, so a value of an earlier move is never used again. A stage without a handoff needs
// nothing.
func (f serviceFencer) handoff(ctx context.Context, s formStage, p *stageProgress, now time.Time) (adjust func(formObject) func(*unstructured.Unstructured) error, wait bool) {
	if s.spec == nil || s.spec.Handoff == nil {
		return nil, false
	}
	h := s.spec.Handoff
	path := strings.Split(strings.TrimPrefix(h.To, "/"), "/")
	for i := range path {
		path[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(path[i])
	}
	without := func(formObject) func(*unstructured.Unstructured) error {
		return func(want *unstructured.Unstructured) error {
			unstructured.RemoveNestedField(want.Object, path...)
			return nil
		}
	}
	partner := peerSite(f.form.svc, f.r.site)
	if !f.form.planned {
		p.handoff = fmt.Sprintf("none: a failover, not a planned move, so %s was removed", h.To)
		return without, false
	}
	if p.handoffSince.IsZero() {
		p.handoffSince = now
	}
	values, why := f.handoffValues(ctx, s, h, partner)
	if why == "" {
		p.handoff = fmt.Sprintf("%s from %s", h.From, partner)
		return func(o formObject) func(*unstructured.Unstructured) error {
			return func(want *unstructured.Unstructured) error {
				return unstructured.SetNestedField(want.Object, values[o.obj.GetName()], path...)
			}
		}, false
	}
	timeout := time.Duration(0)
	if s.spec.Timeout != nil {
		timeout = s.spec.Timeout.Duration
	}
	if timeout > 0 && now.Sub(p.handoffSince) >= timeout {
		p.handoff = fmt.Sprintf("none: no value from %s within %s (%s), so %s was removed", partner, timeout, why, h.To)
		return without, false
	}
	p.handoff = fmt.Sprintf("waiting for %s at %s: %s", h.From, partner, why)
	p.message = p.handoff
	return nil, true
}

// handoffValues reads the handoff's value from the copy of each of the stage's objects at
// partner; why says what is missing, empty when every object has its value.
func (f serviceFencer) handoffValues(ctx context.Context, s formStage, h *deichv1alpha1.StageHandoff, partner string) (map[string]string, string) {
	rule, err := f.r.readiness.CompileValue(h.From)
	if err != nil {
		return nil, err.Error()
	}
	conn, ok := f.r.registry.Get(partner)
	if !ok {
		return nil, fmt.Sprintf("no connection to %s", partner)
	}
	values := make(map[string]string, len(s.objects))
	for _, o := range s.objects {
		other, err := conn.Dynamic.Resource(o.k.resource).Namespace(o.obj.GetNamespace()).Get(ctx, o.obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Sprintf("%s %s: %v", o.k.gk.Kind, o.obj.GetName(), err)
		}
		v, ok, why, err := rule.Value(other.Object)
		switch {
		case err != nil:
			return nil, fmt.Sprintf("%s %s: %v", o.k.gk.Kind, o.obj.GetName(), err)
		case !ok:
			return nil, fmt.Sprintf("%s %s: %s", o.k.gk.Kind, o.obj.GetName(), why)
		}
		values[o.obj.GetName()] = v
	}
	return values, ""
}

// stageAction is the action of a stage's events. The events API folds events of one object
// with the same reason and action into one series whatever their messages, so each stage
// gets its own: two stages ready in one step are two events.
func stageAction(stage string) string {
	return "Promote/" + stage
}
