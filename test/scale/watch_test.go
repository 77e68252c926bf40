package scale

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// serviceWatch follows the SharedServices at a site (testenv.WatchSharedServices) and keeps
// the latest version of each.
type serviceWatch struct {
	stopWatch func()
	stopOnce  sync.Once

	mu       sync.Mutex
	latest   map[string]*deichv1alpha1.SharedService // by namespace: one service each
	versions int
}

// followServices watches the SharedServices at site until stop, handing every version to
// observe (if set) as it arrives.
func followServices(ctx context.Context, t *testing.T, site *testenv.Site, observe func(*deichv1alpha1.SharedService)) *serviceWatch {
	t.Helper()
	w := &serviceWatch{latest: map[string]*deichv1alpha1.SharedService{}}
	stop, err := testenv.WatchSharedServices(ctx, site, func(ev watch.EventType, svc *deichv1alpha1.SharedService) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.versions++
		if ev == watch.Deleted {
			delete(w.latest, svc.Namespace)
			return
		}
		w.latest[svc.Namespace] = svc
		if observe != nil {
			observe(svc)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	w.stopWatch = stop
	return w
}

// stop ends the watch; it may be called more than once.
func (w *serviceWatch) stop() { w.stopOnce.Do(w.stopWatch) }

// notYet lists the services (by namespace) whose latest version does not yet satisfy ok.
func (w *serviceWatch) notYet(names []string, ok func(*deichv1alpha1.SharedService) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var left []string
	for _, n := range names {
		if svc, seen := w.latest[n]; !seen || !ok(svc) {
			left = append(left, n)
		}
	}
	return left
}

// whyNot returns, for a failed assertion that every service satisfies ok, what is wanted and
// where the first services that do not stand.
func (w *serviceWatch) whyNot(names []string, ok func(*deichv1alpha1.SharedService) bool, want string) func() string {
	return func() string {
		left := w.notYet(names, ok)
		lines := []string{fmt.Sprintf("%s: %d of %d not yet", want, len(left), len(names))}
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, n := range left[:min(len(left), 20)] {
			if svc, seen := w.latest[n]; seen {
				n += " (" + describe(svc) + ")"
			}
			lines = append(lines, n)
		}
		return strings.Join(lines, "\n")
	}
}

// waitingFor counts the services (by namespace) whose latest version does not yet satisfy
// ok, by what they wait for: their phase and the reasons of their conditions that are not
// True.
func (w *serviceWatch) waitingFor(names []string, ok func(*deichv1alpha1.SharedService) bool) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	counts := map[string]int{}
	for _, n := range names {
		svc, seen := w.latest[n]
		switch {
		case !seen:
			counts["not seen yet"]++
		case !ok(svc):
			why := []string{"phase " + string(svc.Status.Phase)}
			for _, c := range svc.Status.Conditions {
				if c.Status != metav1.ConditionTrue {
					why = append(why, fmt.Sprintf("%s=%s %s", c.Type, c.Status, c.Reason))
				}
			}
			counts[strings.Join(why, ", ")]++
		}
	}
	return counts
}

// logProgress logs, every interval until stop is called or the test ends, how many of the
// services do not yet satisfy ok, and what they wait for. stop returns once logging ended.
func (w *serviceWatch) logProgress(t *testing.T, names []string, ok func(*deichv1alpha1.SharedService) bool, want string, interval time.Duration) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		<-ended
	}
	t.Cleanup(stop) // a test that fails while waiting logs nothing after it ended
	began := time.Now()
	go func() {
		defer close(ended)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			counts := w.waitingFor(names, ok)
			left := 0
			for _, n := range counts {
				left += n
			}
			keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int { return cmp.Compare(counts[b], counts[a]) })
			var parts []string
			for _, k := range keys[:min(len(keys), 4)] {
				parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
			}
			t.Logf("%s after %s: %d of %d not yet; %s", want, time.Since(began).Round(time.Second), left, len(names), strings.Join(parts, "; "))
		}
	}()
	return stop
}

// fenceCheck records any service that, once active at its site, is seen fenced or no longer
// active there.
type fenceCheck struct {
	mu     sync.Mutex
	active map[string]bool   // namespace -> has been active here
	seen   map[string]string // namespace -> the first version that was not serving
}

func newFenceCheck() *fenceCheck {
	return &fenceCheck{active: map[string]bool{}, seen: map[string]string{}}
}

// observe takes one version of a service.
func (f *fenceCheck) observe(svc *deichv1alpha1.SharedService) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := svc.Status
	if st.Role == deichv1alpha1.RoleActive && st.Phase != deichv1alpha1.PhaseFenced {
		f.active[svc.Namespace] = true
		return
	}
	if f.active[svc.Namespace] && f.seen[svc.Namespace] == "" {
		f.seen[svc.Namespace] = fmt.Sprintf("%s at %s: phase %s, role %s, lease %s",
			svc.Namespace, time.Now().Format("15:04:05.0"), st.Phase, st.Role, leaseMessage(svc))
	}
}

// found returns what was seen: one line per service that was fenced or left active.
func (f *fenceCheck) found() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.seen))
	for _, s := range f.seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
