package scale

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

// serviceWatch follows the SharedServices at a site by a watch and keeps the latest version
// of each. A watch costs the API server little — it sends each version it stores anyway —
// where polling would list every service again; and it sees every version, where polling
// would miss one that lasted less than its interval.
type serviceWatch struct {
	stopCh, done chan struct{}
	stopOnce     sync.Once
	observe      func(*deichv1alpha1.SharedService)

	mu       sync.Mutex
	latest   map[string]*deichv1alpha1.SharedService // by namespace: one service each
	versions int
	watches  int
}

// followServices watches the SharedServices at site until stop, handing every version to
// observe (if set) as it arrives.
func followServices(ctx context.Context, t *testing.T, site *testenv.Site, observe func(*deichv1alpha1.SharedService)) *serviceWatch {
	t.Helper()
	wc, err := client.NewWithWatch(site.Config, client.Options{Scheme: site.Client.Scheme()})
	if err != nil {
		t.Fatalf("watch client for %s: %v", site.Name, err)
	}
	w := &serviceWatch{stopCh: make(chan struct{}), done: make(chan struct{}), observe: observe, latest: map[string]*deichv1alpha1.SharedService{}}
	go func() {
		defer close(w.done)
		rv := "" // a watch from "" starts with every service as it is now
		for {
			wi, err := wc.Watch(ctx, &deichv1alpha1.SharedServiceList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err == nil {
				w.mu.Lock()
				w.watches++
				w.mu.Unlock()
				rv = w.follow(wi, rv)
			}
			select {
			case <-w.stopCh:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return w
}

// follow records what wi delivers until it ends or the watch is stopped, and returns the
// resourceVersion to watch on from ("" once the API server said it is too old).
func (w *serviceWatch) follow(wi watch.Interface, rv string) string {
	defer wi.Stop()
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-w.stopCh:
			return rv
		case ev, ok = <-wi.ResultChan():
		}
		if !ok {
			return rv
		}
		switch ev.Type {
		case watch.Error:
			return ""
		case watch.Bookmark:
			if o, ok := ev.Object.(client.Object); ok {
				rv = o.GetResourceVersion()
			}
		case watch.Added, watch.Modified, watch.Deleted:
			svc, ok := ev.Object.(*deichv1alpha1.SharedService)
			if !ok {
				continue
			}
			rv = svc.ResourceVersion
			w.mu.Lock()
			w.versions++
			if ev.Type == watch.Deleted {
				delete(w.latest, svc.Namespace)
			} else {
				w.latest[svc.Namespace] = svc
			}
			if w.observe != nil {
				w.observe(svc)
			}
			w.mu.Unlock()
		}
	}
}

// stop ends the watch; it may be called more than once.
func (w *serviceWatch) stop() {
	w.stopOnce.Do(func() { close(w.stopCh) })
	<-w.done
}

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
