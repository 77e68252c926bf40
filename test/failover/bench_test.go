package failover

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// BenchmarkFailoverTime measures the time from the loss of the active site (its manager
// stopped and every link to it cut at once, so the loss has a sharp instant) to the standby
// serving, split into detection (the standby's checks
// reach failureThreshold), lease wait (until the standby takes the lease) and promotion
// (until its Deployment is back at the source's replica count), beside the floor the
// protocol allows: the last renewal plus leaseDuration plus --max-clock-skew. Run it with
// -benchtime=1x; it prints a table and never asserts on timings.
//
//	KUBEBUILDER_ASSETS=bin go test -run='^$' -bench=FailoverTime -benchtime=1x ./test/failover/
func BenchmarkFailoverTime(b *testing.B) {
	ctx := context.Background()
	type config struct{ lease, probe time.Duration }
	configs := []config{{15 * time.Second, 2 * time.Second}, {15 * time.Second, 10 * time.Second}, {30 * time.Second, 2 * time.Second}, {30 * time.Second, 10 * time.Second}}
	var rows []failoverTiming
	for i := 0; i < b.N; i++ {
		for j, c := range configs {
			rows = append(rows, measureFailover(ctx, b, fmt.Sprintf("bench-failover-%d-%d", i, j), c.lease, c.probe))
		}
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "leaseDuration\tprobeInterval\tdetection\tlease wait\tpromotion\trecovery\tlease floor\tover floor\t")
	for _, r := range rows {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.lease, r.probe, sec(r.detection), sec(r.leaseWait), sec(r.promotion), sec(r.recovery), sec(r.floor), sec(r.overFloor))
	}
	_ = tw.Flush()
	b.Logf("failover time, threshold 3, --max-clock-skew %s, Cold standby (times from the loss of sh-kiel):\n%s", maxClockSkew, out.String())
	var worst time.Duration
	for _, r := range rows {
		worst = max(worst, r.overFloor)
	}
	b.ReportMetric(worst.Seconds(), "s-over-floor-max")
}

type failoverTiming struct {
	lease, probe                                                time.Duration
	detection, leaseWait, promotion, recovery, floor, overFloor time.Duration
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func measureFailover(ctx context.Context, b *testing.B, ns string, lease, probe time.Duration) failoverTiming {
	b.Helper()
	g := newG(b)
	const threshold = 3
	objective := testobjects.MakeRecoveryObjective("").Failover(threshold, probe, lease).RTO(2 * time.Minute)
	// sh-kiel's service as mv-schwerin reaches it, across the link.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	defer srv.Close()
	toKielService, err := testenv.NewProxy(srv.Listener.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = toKielService.Close() }()
	s := setUp(ctx, b, g, ns, objective, deichv1alpha1.HealthCheck{
		Name: "kiel-web", Site: testenv.SiteKiel,
		HTTP: &deichv1alpha1.HTTPCheck{URL: "http://" + toKielService.Addr() + "/healthz", ExpectedStatus: http.StatusOK, Timeout: metav1.Duration{Duration: time.Second}},
	})

	// The site goes dark. Its last renewal is what the standby has to wait out.
	lost := time.Now()
	g.Expect(stopManager(kiel)).To(Succeed())
	toKiel.Cut()
	toKielService.Cut()
	lastRenewal := s.leaseEntry(ctx, g, schwerin).RenewTime

	var detected time.Time
	g.Eventually(func() bool {
		svc, err := s.status(ctx, schwerin)()
		if err != nil {
			return false
		}
		for _, hc := range svc.Status.HealthChecks {
			if hc.ConsecutiveFailures >= threshold {
				detected = time.Now()
				return true
			}
		}
		return false
	}, 2*time.Minute, 20*time.Millisecond).Should(BeTrue())
	served := s.servingSince(ctx, g, schwerin, 2*time.Minute)
	entry := s.leaseEntry(ctx, g, schwerin)
	g.Expect(entry.Holder).To(Equal(testenv.SiteSchwerin))
	acquired := entry.AcquireTime

	floor := lastRenewal.Add(lease + maxClockSkew)
	mustWait := floor
	if detected.After(mustWait) {
		mustWait = detected
	}
	t := failoverTiming{
		lease: lease, probe: probe,
		detection: detected.Sub(lost),
		leaseWait: max(acquired.Sub(detected), 0),
		promotion: served.Sub(acquired),
		recovery:  served.Sub(lost),
		floor:     floor.Sub(lost),
		overFloor: served.Sub(mustWait),
	}

	// Bring sh-kiel back; it returns fenced, as the standby.
	toKiel.Restore()
	g.Expect(startManager(kiel)).To(Succeed())
	g.Eventually(s.replicas(ctx, kiel), 2*time.Minute).Should(BeEquivalentTo(0))
	g.Eventually(s.status(ctx, kiel), 2*time.Minute).Should(HaveField("Status.Role", deichv1alpha1.RoleStandby))
	return t
}
