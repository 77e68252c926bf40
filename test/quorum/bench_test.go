package quorum

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	. "github.com/onsi/gomega"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// The benchmarks of the quorum lease run on the sites of the fault tests, with the same
// objective (leaseDuration 6s, probes every second, failureThreshold 2, --max-clock-skew 1s).
// They print tables and never assert on timings; run them with -benchtime=1x:
//
//	KUBEBUILDER_ASSETS=bin go test -run='^$' -bench=. -benchtime=1x ./test/quorum/

// BenchmarkFailoverTimeWithWitness measures the time from the loss of the active site sh-kiel
// (its manager and its API server stopped) to mv-schwerin serving, split as
// BenchmarkFailoverTime in test/failover splits it, beside the floor the quorum lease allows:
// mv-schwerin needs its own copy and the witness's, so it may take them over no earlier than
// the later of their last renewals by sh-kiel plus leaseDuration plus --max-clock-skew.
func BenchmarkFailoverTimeWithWitness(b *testing.B) {
	ctx := context.Background()
	var rows []failoverTiming
	for i := 0; i < b.N; i++ {
		rows = append(rows, measureFailover(ctx, b, fmt.Sprintf("bench-quorum-failover-%d", benchSeq.Add(1))))
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "detection\tlease wait\tpromotion\trecovery\tlease floor\tover floor\t")
	var worst time.Duration
	for _, r := range rows {
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", sec(r.detection), sec(r.leaseWait), sec(r.promotion), sec(r.recovery), sec(r.floor), sec(r.overFloor))
		worst = max(worst, r.overFloor)
	}
	_ = tw.Flush()
	b.Logf("failover time with a witness, leaseDuration %s, %d × %s probes, --max-clock-skew %s (times from the loss of sh-kiel):\n%s",
		leaseDuration, failureThreshold, probeInterval, maxClockSkew, out.String())
	b.ReportMetric(worst.Seconds(), "s-over-floor-max")
}

type failoverTiming struct {
	detection, leaseWait, promotion, recovery, floor, overFloor time.Duration
}

// benchSeq numbers the benchmarks' namespaces: the testing package may run a benchmark
// function more than once (b.N = 1 first).
var benchSeq atomic.Int32

func sec(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func measureFailover(ctx context.Context, b *testing.B, ns string) failoverTiming {
	b.Helper()
	g := newG(b)
	s := setUp(ctx, b, g, ns)

	// The copies mv-schwerin needs, as sh-kiel last renewed them: the floor is the later one.
	var lastRenewal time.Time
	for _, arbiter := range []string{testenv.SiteSchwerin, testenv.SiteHamburg} {
		rec, err := s.leaseCopy(ctx, arbiter)()
		g.Expect(err).NotTo(HaveOccurred())
		lastRenewal = maxTime(lastRenewal, rec.RenewTime)
	}
	// The site goes dark at one instant: every link to it is cut, then its manager and its
	// API server stop.
	w := watchPromotion(ctx, s, schwerin)
	lost := time.Now()
	restore := cut(b, testenv.SiteKiel, testenv.SiteSchwerin, testenv.SiteHamburg)
	for _, arbiter := range []string{testenv.SiteSchwerin, testenv.SiteHamburg} {
		rec, err := s.leaseCopy(ctx, arbiter)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(rec.Holder).To(Equal(testenv.SiteKiel))
		lastRenewal = maxTime(lastRenewal, rec.RenewTime)
	}
	bringBack := loseSite(b, kiel)
	g.Eventually(w.done).WithTimeout(2*rto).Should(BeClosed(), "mv-schwerin serves")
	detected, served := w.detected, w.served
	own, err := s.leaseCopy(ctx, testenv.SiteSchwerin)()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(own.Holder).To(Equal(testenv.SiteSchwerin))

	floor := lastRenewal.Add(leaseDuration + maxClockSkew)
	timing := failoverTiming{
		detection: detected.Sub(lost),
		leaseWait: max(own.AcquireTime.Sub(detected), 0),
		promotion: served.Sub(maxTime(own.AcquireTime, detected)),
		recovery:  served.Sub(lost),
		floor:     floor.Sub(lost),
		overFloor: served.Sub(maxTime(floor, detected)),
	}

	// sh-kiel returns and fences what it left in active form; it stands by.
	restore()
	g.Expect(bringBack()).To(Succeed())
	s.markReady(ctx, g, schwerin)
	g.Eventually(s.status(ctx, kiel)).WithTimeout(2 * rto).Should(And(
		HaveField("Status.Role", deichv1alpha1.RoleStandby),
		HaveField("Status.Phase", deichv1alpha1.PhaseProtected)))
	return timing
}

// promotionWatch records when a site's checks of its partner first failed failureThreshold
// times and when it first served.
type promotionWatch struct {
	detected, served time.Time
	done             chan struct{}
}

// watchPromotion polls site every 20ms until it serves; done is closed then.
func watchPromotion(ctx context.Context, s service, site *testenv.Site) *promotionWatch {
	w := &promotionWatch{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		deadline := time.Now().Add(2 * rto)
		for time.Now().Before(deadline) {
			if n, err := s.checkFailures(ctx, site)(); err == nil && n >= failureThreshold && w.detected.IsZero() {
				w.detected = time.Now()
			}
			if f, _ := s.formOf(ctx, site, deploymentGVK, "web"); f == formActive {
				w.served = time.Now()
				if w.detected.IsZero() {
					w.detected = w.served // detection and promotion were written together
				}
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

// BenchmarkInterruptionAtTheActive measures what each fault that must not move the service
// costs at the active site: sh-kiel's Deployment is read every 20ms from before the fault
// until it healed and sh-kiel holds all three copies again, and every read that found it not
// in its active form, or the service Fenced, counts as interrupted. The target is none.
func BenchmarkInterruptionAtTheActive(b *testing.B) {
	ctx := context.Background()
	faults := []struct {
		name  string
		fault func(b testing.TB) (heal func() error)
	}{
		{"standby site lost", func(b testing.TB) func() error { return loseSite(b, schwerin) }},
		{"partners cut apart", func(b testing.TB) func() error {
			return noError(cut(b, testenv.SiteKiel, testenv.SiteSchwerin))
		}},
		{"witness lost", loseWitness},
		{"witness cut off", func(b testing.TB) func() error {
			return noError(cut(b, testenv.SiteHamburg, testenv.SiteKiel, testenv.SiteSchwerin))
		}},
	}
	var out strings.Builder
	tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	_, _ = fmt.Fprintln(tw, "fault\tfault held\treads\tinterrupted\tlongest interruption\t")
	var worst time.Duration
	for i := 0; i < b.N; i++ {
		for _, f := range faults {
			g := newG(b)
			s := setUp(ctx, b, g, fmt.Sprintf("bench-quorum-interruption-%d", benchSeq.Add(1)))
			m := watchServing(ctx, s, kiel)
			faultAt := time.Now()
			heal := f.fault(b)
			time.Sleep(window)
			held := time.Since(faultAt)
			g.Expect(heal()).To(Succeed())
			g.Eventually(s.quorum(ctx, kiel)).WithTimeout(2 * rto).Should(Equal("3/3"))
			reads, interrupted, longest := m.stop()
			worst = max(worst, longest)
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t\n", f.name, sec(held), reads, interrupted, sec(longest))
		}
	}
	_ = tw.Flush()
	b.Logf("interruption at the active sh-kiel, leaseDuration %s, --max-clock-skew %s:\n%s", leaseDuration, maxClockSkew, out.String())
	b.ReportMetric(worst.Seconds(), "s-interrupted-max")
}

// servingMonitor reads whether a site serves every 20ms.
type servingMonitor struct {
	stopCh chan struct{}
	done   chan struct{}

	mu                 sync.Mutex
	reads, interrupted int
	longest            time.Duration
}

func watchServing(ctx context.Context, s service, site *testenv.Site) *servingMonitor {
	m := &servingMonitor{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var since time.Time
		for {
			serving := s.keepsServing(ctx, site)() == nil
			now := time.Now()
			m.mu.Lock()
			m.reads++
			switch {
			case !serving:
				m.interrupted++
				if since.IsZero() {
					since = now
				}
				m.longest = max(m.longest, now.Sub(since))
			default:
				since = time.Time{}
			}
			m.mu.Unlock()
			select {
			case <-m.stopCh:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *servingMonitor) stop() (reads, interrupted int, longest time.Duration) {
	close(m.stopCh)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reads, m.interrupted, m.longest
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
