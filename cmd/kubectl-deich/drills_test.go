package main

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

func TestDrillsShowsBothSitesSchedulesAndReports(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "drills")

	// The same schedule at both sites, every few seconds: sh-kiel, which serves the service,
	// drills it; mv-schwerin skips it. Suspended after the first report, so the output stays.
	for _, site := range []*testenv.Site{kiel, schwerin} {
		ds := &deichv1alpha1.DrillSchedule{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "monthly"},
			Spec:       deichv1alpha1.DrillScheduleSpec{Schedule: "@every 3s", Owner: "Plattformbetrieb SH (bcm@sh.example)"},
		}
		g.Expect(site.Client.Create(ctx, ds)).To(Succeed())
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(drillSchedule(ctx, site, s.ns)).Should(HaveField("Status.Reports", Not(BeEmpty())), "a run at %s", site.Name)
		ds := &deichv1alpha1.DrillSchedule{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: "monthly"}}
		g.Expect(site.Client.Patch(ctx, ds, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`)))).To(Succeed())
	}
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Eventually(drillSchedule(ctx, site, s.ns)).Should(And(
			HaveField("Status.LastResult", BeElementOf(deichv1alpha1.DrillPassed, deichv1alpha1.DrillSkipped)),
			HaveField("Status.Conditions", ContainElement(And(
				HaveField("Type", deichv1alpha1.DrillScheduleConditionReady), HaveField("Reason", deichv1alpha1.DrillScheduleReasonSuspended))))),
			"the last run at %s finished and no other starts", site.Name)
	}

	r := deich("drills", "-n", s.ns)
	g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
	golden(t, "drills.golden", r.stdout)

	r = deich("drills", "monthly", "-n", s.ns)
	g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^\S+ ago\s+sh-kiel\s+Passed\s+buergerkonto\s+Passed\s+sh-kiel\s+mv-schwerin\s`), "sh-kiel's report:\n%s", r.stdout)
	g.Expect(r.stdout).To(MatchRegexp(`(?m)^\S+ ago\s+mv-schwerin\s+Skipped\s+buergerkonto\s+Skipped\s`), "mv-schwerin's report:\n%s", r.stdout)

	r = deich("drills", "nosuch", "-n", s.ns)
	g.Expect(r.err).To(MatchError(ContainSubstring(`DrillSchedule "nosuch" not found in namespace drills at sh-kiel and mv-schwerin`)))
}

// drillSchedule reads the DrillSchedule "monthly" at site.
func drillSchedule(ctx context.Context, site *testenv.Site, ns string) func() (*deichv1alpha1.DrillSchedule, error) {
	return func() (*deichv1alpha1.DrillSchedule, error) {
		ds := &deichv1alpha1.DrillSchedule{}
		return ds, site.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "monthly"}, ds)
	}
}
