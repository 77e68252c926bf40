package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// stageWatch tells the stages of a site's promotion as the story samples its status.promotion.
type stageWatch struct {
	site string
	// after: only a promotion of a later epoch is told; status.promotion keeps the site's
	// latest promotion, which may be an earlier one.
	after int64
	seen  map[string]deichv1alpha1.StagePhase
}

func newStageWatch(site string, after int64) *stageWatch {
	return &stageWatch{site: site, after: after, seen: map[string]deichv1alpha1.StagePhase{}}
}

// follow tells each stage whose phase changed since the last sample.
func (w *stageWatch) follow(out *teller, p *deichv1alpha1.PromotionStatus) {
	if p == nil || p.Epoch <= w.after {
		return
	}
	for _, s := range p.Stages {
		before := w.seen[s.Name]
		if s.Phase == before || s.Phase == deichv1alpha1.StagePending {
			continue
		}
		w.seen[s.Name] = s.Phase
		switch s.Phase {
		case deichv1alpha1.StagePromoting:
			out.say("At %s: stage %s switched to its active form (%d object(s)), epoch %d%s", w.site, s.Name, s.Objects, p.Epoch, stageDetail(s))
		case deichv1alpha1.StageReady:
			// A stage may be switched and ready between two samples.
			switched := ""
			if before == "" {
				switched = " switched to its active form and"
			}
			out.say("At %s: stage %s%s ready (%d object(s))%s", w.site, s.Name, switched, s.Objects, stageDetail(s))
		default:
			out.say("At %s: stage %s %s%s", w.site, s.Name, s.Phase, stageDetail(s))
		}
	}
}

// stageDetail is a stage's handoff and what it waits for, if anything.
func stageDetail(s deichv1alpha1.PromotionStageStatus) string {
	var parts []string
	if s.Handoff != "" {
		parts = append(parts, "handoff: "+s.Handoff)
	}
	if s.Message != "" && s.Message != s.Handoff && s.Phase != deichv1alpha1.StageReady {
		parts = append(parts, s.Message)
	}
	if len(parts) == 0 {
		return ""
	}
	return " — " + strings.Join(parts, "; ")
}

// showStages prints site's latest promotion from its status.promotion: each stage in order,
// when it was switched and when it was ready, counted from since (what names the moment).
func (st *story) showStages(ctx context.Context, site string, since time.Time, what string) error {
	ss, err := st.sharedService(ctx, site)
	if err != nil {
		return err
	}
	p := ss.Status.Promotion
	if p == nil {
		return fmt.Errorf("%s reports no status.promotion", site)
	}
	// The API stores whole seconds; counting from the second of since keeps the times in order.
	base := since.Truncate(time.Second)
	rel := func(t *metav1.Time) string {
		if t == nil {
			return "-"
		}
		return fmt.Sprintf("+%ds", int(t.Sub(base).Seconds()))
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "STAGE\tPHASE\tOBJECTS\tSWITCHED\tREADY\tHANDOFF")
	for _, s := range p.Stages {
		handoff := s.Handoff
		if handoff == "" {
			handoff = "-"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Phase, s.Objects, rel(s.StartedAt), rel(s.ReadyAt), handoff)
	}
	_ = tw.Flush()
	completed := "not yet"
	if p.CompletedAt != nil {
		completed = rel(p.CompletedAt)
	}
	st.out.say("At %s: status.promotion of epoch %d, stage by stage (times after %s, in whole seconds as the API stores them; completed %s):",
		site, p.Epoch, what, completed)
	st.out.indent(b.String())
	return checkOrder(p)
}

// checkOrder fails when a stage was switched before the stage before it was ready, or has not
// become ready. The API's whole seconds leave equal times in order.
func checkOrder(p *deichv1alpha1.PromotionStatus) error {
	for i, s := range p.Stages {
		if s.StartedAt == nil || s.ReadyAt == nil {
			return fmt.Errorf("stage %s has not become ready (phase %s)", s.Name, s.Phase)
		}
		if i > 0 && s.StartedAt.Before(p.Stages[i-1].ReadyAt) {
			return fmt.Errorf("stage %s was switched at %s, before stage %s was ready at %s",
				s.Name, s.StartedAt.Format(time.TimeOnly), p.Stages[i-1].Name, p.Stages[i-1].ReadyAt.Format(time.TimeOnly))
		}
	}
	return nil
}
