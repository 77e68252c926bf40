package controllers_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/lease"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/testenv"
	"github.com/deich-io/deich/internal/testobjects"
)

// Between full rounds (every RPO/3, here 200s), each watch event is mirrored on its own:
// an edit at the source, an edit of a copy at the standby, an object leaving the selection
// and a new object each reach the standby through a round for that object, and none of them
// goes through every object of the service.
func TestChangesAreMirroredObjectByObject(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "mirror-changes"
	createNamespace(ctx, t, g, kiel, ns)
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective("long-resync").RPO(10 * time.Minute).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		cleanup(t, site, obj)
	}
	partOf := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}
	settings := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings", Labels: partOf}, Data: map[string]string{"greeting": "Moin"}}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other", Labels: partOf}, Data: map[string]string{"x": "1"}}
	for _, o := range []client.Object{settings, other} {
		g.Expect(kiel.Client.Create(ctx, o)).To(Succeed())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Objective("long-resync").Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
		HaveField("Status.MirroredResources.Count", BeEquivalentTo(2)),
	))

	rounds := func(scope string) float64 {
		return testutil.ToFloat64(metrics.MirrorRounds.WithLabelValues(ns, svc.Name, scope))
	}
	// settled waits until at least atLeast rounds of scope ran and then none for a second,
	// and returns their count.
	settled := func(g Gomega, scope string, atLeast float64) float64 {
		var n float64
		g.Eventually(func() bool {
			n = rounds(scope)
			time.Sleep(time.Second)
			return n >= atLeast && rounds(scope) == n
		}).Should(BeTrue(), "the %s rounds of what happened before come to an end", scope)
		return n
	}
	// The watches' first lists are not known object by object: the full rounds they call
	// for come first.
	full := settled(g, metrics.RoundFull, 1)
	copyOf := func(name string) func() (map[string]string, error) {
		return func() (map[string]string, error) {
			cm := &corev1.ConfigMap{}
			err := schwerin.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)
			return cm.Data, err
		}
	}

	t.Run("an edit at the source", func(t *testing.T) {
		g := newG(t)
		changes := rounds(metrics.RoundChanges)
		g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(settings), settings)).To(Succeed())
		settings.Data["greeting"] = "Moin moin"
		g.Expect(kiel.Client.Update(ctx, settings)).To(Succeed())
		g.Eventually(copyOf("settings")).Should(HaveKeyWithValue("greeting", "Moin moin"))
		g.Eventually(func() float64 { return rounds(metrics.RoundChanges) }).Should(BeNumerically(">", changes))
	})

	t.Run("an edit of a copy at the standby", func(t *testing.T) {
		g := newG(t)
		cp := &corev1.ConfigMap{}
		g.Expect(schwerin.Client.Get(ctx, client.ObjectKeyFromObject(other), cp)).To(Succeed())
		cp.Data["x"] = "edited at the standby"
		g.Expect(schwerin.Client.Update(ctx, cp)).To(Succeed())
		g.Eventually(copyOf("other")).Should(HaveKeyWithValue("x", "1"))
	})

	t.Run("a new object", func(t *testing.T) {
		g := newG(t)
		added := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "added", Labels: partOf}, Data: map[string]string{"new": "yes"}}
		g.Expect(kiel.Client.Create(ctx, added)).To(Succeed())
		g.Eventually(copyOf("added")).Should(HaveKeyWithValue("new", "yes"))
	})

	t.Run("an object that leaves the selection", func(t *testing.T) {
		g := newG(t)
		g.Expect(kiel.Client.Get(ctx, client.ObjectKeyFromObject(other), other)).To(Succeed())
		delete(other.Labels, "app.kubernetes.io/part-of")
		g.Expect(kiel.Client.Update(ctx, other)).To(Succeed())
		g.Eventually(func() bool {
			_, err := copyOf("other")()
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
	})

	t.Run("a deleted object", func(t *testing.T) {
		g := newG(t)
		g.Expect(kiel.Client.Delete(ctx, settings)).To(Succeed())
		g.Eventually(func() bool {
			_, err := copyOf("settings")()
			return apierrors.IsNotFound(err)
		}).Should(BeTrue())
	})

	t.Run("the copy is confirmed current between rounds", func(t *testing.T) {
		g := newG(t)
		// The sync time the active's lease keeper writes into the service's entry of the
		// shared lease record at the standby's cluster.
		syncedAt := func() (time.Time, error) {
			leases := &coordinationv1.LeaseList{}
			if err := schwerin.Client.List(ctx, leases, client.InNamespace(lease.PartnerLeaseNamespace)); err != nil {
				return time.Time{}, err
			}
			for i := range leases.Items {
				entries, err := failover.EntriesFromLease(&leases.Items[i])
				if err != nil {
					continue
				}
				if rec, ok := entries[ns+"/"+svc.Name]; ok {
					return rec.SyncedAt, nil
				}
			}
			return time.Time{}, nil
		}
		// The deletion before this ends with the copy's removal seen by the watch of the copies,
		// which may come after the test saw it gone.
		changes := settled(g, metrics.RoundChanges, 0)
		for range 2 {
			since := time.Now()
			g.Eventually(syncedAt).WithTimeout(30*time.Second).Should(BeTemporally(">", since),
				"a renewal carries a sync time younger than the last round")
		}
		g.Expect(rounds(metrics.RoundChanges)).To(Equal(changes), "no round ran meanwhile")
	})

	g.Expect(rounds(metrics.RoundFull)).To(Equal(full), "no change went through every object of the service")

	t.Run("a change of the service goes through every object", func(t *testing.T) {
		g := newG(t)
		updateService(ctx, g, kiel, client.ObjectKeyFromObject(svc), func(s *deichv1alpha1.SharedService) {
			s.Spec.DeletionPolicy = deichv1alpha1.DeletionPolicyRetain
		})
		g.Eventually(func() float64 { return rounds(metrics.RoundFull) }).Should(BeNumerically(">", full))
		g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(HaveField("Status.MirroredResources.Count", BeEquivalentTo(1)),
			"the full round records the objects as they are now")
	})
}

// A full round renders only the copies whose source, service, objective or copy at the
// standby changed since the copy was last seen current there: with full rounds every two
// seconds (RPO 6s), an unchanged service renders nothing, an edit renders its object, and a
// copy edited at the standby is rendered again and reverted.
func TestFullRoundsOfAnUnchangedServiceRenderNothing(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	connectSites(ctx, t, g)
	const ns = "render-once"
	createNamespace(ctx, t, g, kiel, ns)
	for _, site := range []*testenv.Site{kiel, schwerin} {
		obj := testobjects.MakeRecoveryObjective("short-resync").RPO(6 * time.Second).Obj()
		g.Expect(site.Client.Create(ctx, obj)).To(Succeed())
		cleanup(t, site, obj)
	}
	partOf := map[string]string{"app.kubernetes.io/part-of": "buergerkonto"}
	for _, name := range []string{"settings", "texts", "features"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: partOf}, Data: map[string]string{"v": "1"}}
		g.Expect(kiel.Client.Create(ctx, cm)).To(Succeed())
	}
	svc := testobjects.MakeSharedService("buergerkonto", ns).Objective("short-resync").Obj()
	g.Expect(kiel.Client.Create(ctx, svc)).To(Succeed())
	cleanup(t, kiel, svc)
	g.Eventually(serviceStatus(ctx, kiel, ns, svc.Name)).Should(And(
		HaveField("Status.Phase", Equal(deichv1alpha1.PhaseProtected)),
		HaveField("Status.MirroredResources.Count", BeEquivalentTo(3)),
	))

	rendered := func() float64 { return testutil.ToFloat64(metrics.CopiesRendered.WithLabelValues(ns, svc.Name)) }
	fullRounds := func() float64 {
		return testutil.ToFloat64(metrics.MirrorRounds.WithLabelValues(ns, svc.Name, metrics.RoundFull))
	}
	// rendersNothingFor waits for n more full rounds and checks that none rendered a copy.
	rendersNothingFor := func(g Gomega, n float64) {
		// Settle first: the round that follows a change may render what the change touched.
		// Settled is two polls with a full round between them and no render.
		before, rounds := -1.0, 0.0
		g.Eventually(func() bool {
			r, f := rendered(), fullRounds()
			settled := r == before && f > rounds
			before, rounds = r, f
			return settled
		}).WithPolling(2500 * time.Millisecond).WithTimeout(30 * time.Second).Should(BeTrue())
		g.Eventually(fullRounds).WithTimeout(30*time.Second).Should(BeNumerically(">=", rounds+n), "full rounds run every resync")
		g.Expect(rendered()).To(Equal(before), "full rounds of an unchanged service render no copy")
	}
	copyOf := func(name string) func() (map[string]string, error) {
		return func() (map[string]string, error) {
			cm := &corev1.ConfigMap{}
			err := schwerin.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)
			return cm.Data, err
		}
	}
	g.Expect(rendered()).To(BeNumerically(">=", 3), "the first full round rendered every copy")

	t.Run("an unchanged service", func(t *testing.T) {
		rendersNothingFor(newG(t), 3)
	})

	t.Run("an edit at the source renders that object", func(t *testing.T) {
		g := newG(t)
		before := rendered()
		cm := &corev1.ConfigMap{}
		g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "texts"}, cm)).To(Succeed())
		cm.Data["v"] = "2"
		g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
		g.Eventually(copyOf("texts")).Should(HaveKeyWithValue("v", "2"))
		g.Expect(rendered()).To(BeNumerically(">", before))
		rendersNothingFor(g, 2)
	})

	t.Run("an edit is rendered once, not again for its copy's own event", func(t *testing.T) {
		g := newG(t)
		rendersNothingFor(g, 1)
		before := rendered()
		const edits = 9
		for i := range edits {
			name := []string{"settings", "texts", "features"}[i%3]
			cm := &corev1.ConfigMap{}
			g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm)).To(Succeed())
			cm.Data["edit"] = strconv.Itoa(i)
			g.Expect(kiel.Client.Update(ctx, cm)).To(Succeed())
			g.Eventually(copyOf(name)).Should(HaveKeyWithValue("edit", strconv.Itoa(i)))
		}
		rendersNothingFor(g, 1)
		// The watch of the copies reports each write of this manager's; the copy it wrote is
		// known to be current. A full round that meets an edit before its event may render it
		// a second time: two of those are allowed.
		g.Expect(rendered() - before).To(BeNumerically("<=", edits+2))
	})

	t.Run("a copy edited at the standby is reverted", func(t *testing.T) {
		g := newG(t)
		cp := &corev1.ConfigMap{}
		g.Expect(schwerin.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "features"}, cp)).To(Succeed())
		cp.Data["v"] = "edited at the standby"
		g.Expect(schwerin.Client.Update(ctx, cp)).To(Succeed())
		g.Eventually(copyOf("features")).Should(HaveKeyWithValue("v", "1"))
		rendersNothingFor(g, 2)
	})

	t.Run("a change of the objective renders every copy again", func(t *testing.T) {
		g := newG(t)
		before := rendered()
		obj := &deichv1alpha1.RecoveryObjective{}
		g.Expect(kiel.Client.Get(ctx, client.ObjectKey{Name: "short-resync"}, obj)).To(Succeed())
		obj.Spec.RPO = metav1.Duration{Duration: 9 * time.Second}
		g.Expect(kiel.Client.Update(ctx, obj)).To(Succeed())
		g.Eventually(rendered).Should(BeNumerically(">=", before+3))
	})
}
