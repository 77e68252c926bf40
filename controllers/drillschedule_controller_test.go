package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/testenv"
)

// drillSchedule is a DrillSchedule of ns running every period.
func drillSchedule(ns, name string, period time.Duration) *deichv1alpha1.DrillSchedule {
	return &deichv1alpha1.DrillSchedule{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: deichv1alpha1.DrillScheduleSpec{
			Schedule:     "@every " + period.String(),
			Owner:        "Plattformbetrieb SH",
			HistoryLimit: 2,
			Timeout:      &metav1.Duration{Duration: time.Minute},
		},
	}
}

func getDrillSchedule(ctx context.Context, site *testenv.Site, ds *deichv1alpha1.DrillSchedule) func() (*deichv1alpha1.DrillSchedule, error) {
	return func() (*deichv1alpha1.DrillSchedule, error) {
		got := &deichv1alpha1.DrillSchedule{}
		err := site.Client.Get(ctx, client.ObjectKeyFromObject(ds), got)
		return got, err
	}
}

// newestReport is the newest completed report of the schedule, nil while there is none.
func newestReport(ds *deichv1alpha1.DrillSchedule) *deichv1alpha1.DrillReport {
	for i := range ds.Status.Reports {
		if ds.Status.Reports[i].Result != deichv1alpha1.DrillRunning {
			return &ds.Status.Reports[i]
		}
	}
	return nil
}

func TestDrillScheduleRunsDrillsAndKeepsTheirReports(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "drill-schedule", fastManualObjective())

	// The same schedule at both sites, as GitOps applies it: sh-kiel serves the service and
	// drills it; mv-schwerin skips it.
	ds := drillSchedule(m.ns, "frequent", 8*time.Second)
	g.Expect(kiel.Client.Create(ctx, ds.DeepCopy())).To(Succeed())
	createNamespace(ctx, t, g, schwerin, m.ns)
	g.Expect(schwerin.Client.Create(ctx, ds.DeepCopy())).To(Succeed())
	cleanup(t, kiel, ds.DeepCopy())
	cleanup(t, schwerin, ds.DeepCopy())

	var first deichv1alpha1.DrillReport
	g.Eventually(func(g Gomega) {
		got, err := getDrillSchedule(ctx, kiel, ds)()
		g.Expect(err).NotTo(HaveOccurred())
		rep := newestReport(got)
		g.Expect(rep).NotTo(BeNil())
		first = *rep
	}, 40*time.Second, 200*time.Millisecond).Should(Succeed())
	t.Logf("first report: %+v", first)
	g.Expect(first.Result).To(Equal(deichv1alpha1.DrillPassed), first.Message)
	g.Expect(first.Site).To(Equal(testenv.SiteKiel))
	g.Expect(first.Owner).To(Equal("Plattformbetrieb SH"))
	g.Expect(first.StartedAt).NotTo(BeNil())
	g.Expect(first.CompletedAt).NotTo(BeNil())
	g.Expect(first.Drilled).To(BeEquivalentTo(1))
	g.Expect(first.Passed).To(BeEquivalentTo(1))
	g.Expect(first.Services).To(HaveLen(1))
	svc := first.Services[0]
	g.Expect(svc.Name).To(Equal(m.name))
	g.Expect(svc.FromSite).To(Equal(testenv.SiteKiel))
	g.Expect(svc.TargetSite).To(Equal(testenv.SiteSchwerin))
	g.Expect(svc.EstimatedRecoveryTime).NotTo(BeNil())
	g.Expect(svc.RTO).To(Equal(&metav1.Duration{Duration: time.Minute}))
	g.Expect(svc.RPO).NotTo(BeNil())
	g.Expect(svc.DataAge).NotTo(BeNil())
	g.Expect(svc.DataAge.Duration).To(BeNumerically("<=", svc.RPO.Duration))

	// The drill is a Switchover with drill: true, owned by the schedule, and moved nothing.
	drill := &deichv1alpha1.Switchover{}
	g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Namespace: m.ns, Name: svc.Switchover}, drill)).To(Succeed())
	g.Expect(drill.Spec.Drill).To(BeTrue())
	g.Expect(drill.Spec.Reason).To(ContainSubstring("owner Plattformbetrieb SH"))
	g.Expect(drill.Labels).To(HaveKeyWithValue(deichv1alpha1.LabelDrillSchedule, ds.Name))
	g.Expect(drill.Labels).To(HaveKeyWithValue(deichv1alpha1.LabelDrillRun, first.Run))
	g.Expect(m.replicas(ctx, kiel)()).To(BeEquivalentTo(webReplicas))
	g.Expect(m.replicas(ctx, schwerin)()).To(BeEquivalentTo(0))

	got, err := getDrillSchedule(ctx, kiel, ds)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionReady)).
		To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonScheduled))
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionLastRunPassed)).
		To(haveStatusReason(metav1.ConditionTrue, deichv1alpha1.DrillScheduleReasonRunPassed))
	g.Expect(got.Status.NextScheduleTime).NotTo(BeNil())
	g.Expect(got.Status.LastSuccessfulTime).NotTo(BeNil())
	g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "DrillSchedule", ds.Name) }).Should(ContainElements(
		deichv1alpha1.DrillScheduleEventRunStarted, deichv1alpha1.DrillScheduleEventRunPassed))
	g.Expect(testutil.ToFloat64(metrics.DrillFailed.WithLabelValues(m.ns, ds.Name, testenv.SiteKiel))).To(Equal(0.0))
	g.Expect(testutil.ToFloat64(metrics.DrillLastRun.WithLabelValues(m.ns, ds.Name, testenv.SiteKiel))).To(BeNumerically(">", 0))

	// mv-schwerin does not serve the service: its runs drill nothing and say why.
	g.Eventually(func(g Gomega) {
		got, err := getDrillSchedule(ctx, schwerin, ds)()
		g.Expect(err).NotTo(HaveOccurred())
		rep := newestReport(got)
		g.Expect(rep).NotTo(BeNil())
		g.Expect(rep.Result).To(Equal(deichv1alpha1.DrillSkipped))
		g.Expect(rep.Services).To(ConsistOf(And(
			HaveField("Name", m.name), HaveField("Result", deichv1alpha1.DrillSkipped),
			HaveField("Message", ContainSubstring("sh-kiel serves the service")))))
		g.Expect(meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionLastRunPassed)).
			To(haveStatusReason(metav1.ConditionUnknown, deichv1alpha1.DrillScheduleReasonNoRunYet))
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed())

	t.Run("a run whose drill fails reports the failed check, alerts and warns", func(t *testing.T) {
		g := newG(t)
		m.breakPromotionAtSchwerin(ctx, g)

		var failed deichv1alpha1.DrillReport
		g.Eventually(func(g Gomega) {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			g.Expect(err).NotTo(HaveOccurred())
			rep := newestReport(got)
			g.Expect(rep).NotTo(BeNil())
			g.Expect(rep.Result).To(Equal(deichv1alpha1.DrillFailed))
			failed = *rep
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionLastRunPassed)).
				To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonRunFailed))
		}, 40*time.Second, 200*time.Millisecond).Should(Succeed())
		t.Logf("failed report: %+v", failed)
		g.Expect(failed.Failed).To(BeEquivalentTo(1))
		g.Expect(failed.Message).To(ContainSubstring(m.name))
		g.Expect(failed.Services).To(HaveLen(1))
		g.Expect(failed.Services[0].FailedChecks).To(ContainElement(And(
			HavePrefix(deichv1alpha1.SwitchoverConditionPromotionAccepted+": "), ContainSubstring("spec.replicas"))))
		g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "DrillSchedule", ds.Name) }).Should(
			ContainElement(deichv1alpha1.DrillScheduleEventRunFailed))
		g.Expect(testutil.ToFloat64(metrics.DrillFailed.WithLabelValues(m.ns, ds.Name, testenv.SiteKiel))).To(Equal(1.0))
	})

	t.Run("reports beyond the history limit go, with their drills", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Status.Reports).To(HaveLen(2))
			g.Expect(got.Status.Reports).NotTo(ContainElement(HaveField("Run", first.Run)))
			var drills deichv1alpha1.SwitchoverList
			g.Expect(kiel.Client.List(ctx, &drills, client.InNamespace(m.ns), client.MatchingLabels{deichv1alpha1.LabelDrillSchedule: ds.Name})).To(Succeed())
			runs := map[string]bool{}
			for _, r := range got.Status.Reports {
				runs[r.Run] = true
			}
			for _, sw := range drills.Items {
				if sw.DeletionTimestamp.IsZero() {
					g.Expect(runs).To(HaveKey(sw.Labels[deichv1alpha1.LabelDrillRun]), "drill %s belongs to a reported run", sw.Name)
				}
			}
		}, 40*time.Second, 500*time.Millisecond).Should(Succeed())
	})

	t.Run("a suspended schedule starts no run", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func() error {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			if err != nil {
				return err
			}
			got.Spec.Suspend = true
			return kiel.Client.Update(ctx, got)
		}).Should(Succeed())
		var runs []string
		g.Eventually(func(g Gomega) {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionReady)).
				To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonSuspended))
			g.Expect(got.Status.NextScheduleTime).To(BeNil())
			g.Expect(runningReport(got)).To(BeNil())
			runs = nil
			for _, r := range got.Status.Reports {
				runs = append(runs, r.Run)
			}
		}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
		g.Consistently(func() ([]string, error) {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			if err != nil {
				return nil, err
			}
			var now []string
			for _, r := range got.Status.Reports {
				now = append(now, r.Run)
			}
			return now, nil
		}, 10*time.Second, time.Second).Should(Equal(runs))
	})
}

// runningReport is the schedule's running report, or nil.
func runningReport(ds *deichv1alpha1.DrillSchedule) *deichv1alpha1.DrillReport {
	for i := range ds.Status.Reports {
		if ds.Status.Reports[i].Result == deichv1alpha1.DrillRunning {
			return &ds.Status.Reports[i]
		}
	}
	return nil
}

func TestDrillScheduleThatCannotBeReadSaysSo(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	ns := "drill-schedule-invalid"
	createNamespace(ctx, t, g, kiel, ns)
	for _, tc := range []struct{ name, schedule, tz, want string }{
		{name: "not-cron", schedule: "every first monday", want: `schedule "every first monday"`},
		{name: "unknown-zone", schedule: "0 3 1 * *", tz: "Europe/Kiel", want: `time zone "Europe/Kiel"`},
	} {
		ds := drillSchedule(ns, tc.name, time.Hour)
		ds.Spec.Schedule, ds.Spec.TimeZone = tc.schedule, tc.tz
		g.Expect(kiel.Client.Create(ctx, ds)).To(Succeed())
		cleanup(t, kiel, ds)
		g.Eventually(func(g Gomega) {
			got, err := getDrillSchedule(ctx, kiel, ds)()
			g.Expect(err).NotTo(HaveOccurred())
			ready := meta.FindStatusCondition(got.Status.Conditions, deichv1alpha1.DrillScheduleConditionReady)
			g.Expect(ready).To(haveStatusReason(metav1.ConditionFalse, deichv1alpha1.DrillScheduleReasonInvalidSchedule))
			g.Expect(ready.Message).To(ContainSubstring(tc.want))
			g.Expect(got.Status.NextScheduleTime).To(BeNil())
		}, 20*time.Second, 200*time.Millisecond).Should(Succeed())
		g.Eventually(func() ([]string, error) { return eventReasons(ctx, kiel, "DrillSchedule", ds.Name) }).Should(
			ContainElement(deichv1alpha1.DrillScheduleEventInvalid))
	}
}
