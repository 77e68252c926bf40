package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/controllers"
	"github.com/deich-io/deich/internal/operator"
	"github.com/deich-io/deich/internal/peer"
	"github.com/deich-io/deich/internal/testenv"
)

// staleSwitchover is a cache that has not seen one Switchover change: it still returns the
// snapshot it holds for it, and everything else as the API server has it.
type staleSwitchover struct {
	client.Client
	snapshot *deichv1alpha1.Switchover
}

func (c staleSwitchover) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if sw, ok := obj.(*deichv1alpha1.Switchover); ok && key == client.ObjectKeyFromObject(c.snapshot) {
		c.snapshot.DeepCopyInto(sw)
		return nil
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// List lists Switchovers without the cache's field index (the namespace holds one service),
// with the snapshot in place of the stored one.
func (c staleSwitchover) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	sws, ok := list.(*deichv1alpha1.SwitchoverList)
	if !ok {
		return c.Client.List(ctx, list, opts...)
	}
	if err := c.Client.List(ctx, sws, client.InNamespace(c.snapshot.Namespace)); err != nil {
		return err
	}
	for i := range sws.Items {
		if sws.Items[i].Name == c.snapshot.Name {
			c.snapshot.DeepCopyInto(&sws.Items[i])
		}
	}
	return nil
}

// A reconcile that still sees a finished move as Running (its cache lags behind the status
// write) must not write the copy at the other site again: that site would refuse the next
// Switchover because of it until the copy was removed once more.
func TestSwitchoverSeenRunningAfterItFinishedLeavesNoCopyBehind(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	m := setUpMovable(ctx, t, g, "switchover-stale", fastManualObjective())

	sw := m.switchover("move-to-schwerin", testenv.SiteSchwerin, "CHG-4713: maintenance of the Kiel data centre")
	m.create(ctx, t, g, kiel, sw)
	var running *deichv1alpha1.Switchover
	g.Eventually(func(g Gomega) {
		got, err := getSwitchover(ctx, kiel, sw)()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got.Status.Phase).To(Equal(deichv1alpha1.SwitchoverRunning))
		g.Expect(condition(got, deichv1alpha1.SwitchoverConditionPeerInformed)).To(HaveField("Status", Equal(metav1.ConditionTrue)))
		running = got
	}).Should(Succeed(), "the move runs and its copy is at mv-schwerin")
	finished(ctx, g, kiel, sw, deichv1alpha1.SwitchoverSucceeded, 45*time.Second)
	g.Eventually(switchoverGone(ctx, schwerin, sw)).Should(BeTrue(), "the copy at mv-schwerin is removed once the move finished")

	// A second reconciler of sh-kiel whose cache still holds the Running Switchover.
	kubeconfig, err := schwerin.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	registry := peer.NewRegistry(operator.NewScheme())
	_, _, err = registry.Ensure("peer-"+schwerin.Name, schwerin.Name, kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	regCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = registry.Start(regCtx) }()
	local, err := dynamic.NewForConfig(kiel.Config)
	g.Expect(err).NotTo(HaveOccurred())
	r := controllers.NewSwitchoverReconciler(staleSwitchover{Client: kiel.Client, snapshot: running}, kiel.Client, local,
		kiel.Client.RESTMapper(), registry, events.NewFakeRecorder(10), kiel.Name)

	copies, err := dynamic.NewForConfig(schwerin.Config)
	g.Expect(err).NotTo(HaveOccurred())
	w, err := copies.Resource(deichv1alpha1.GroupVersion.WithResource("switchovers")).Namespace(m.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + sw.Name})
	g.Expect(err).NotTo(HaveOccurred())
	defer w.Stop()

	_, err = r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sw)})
	g.Expect(err).NotTo(HaveOccurred())
	g.Consistently(w.ResultChan(), 2*time.Second).ShouldNot(Receive(HaveField("Type", watch.Added)),
		"no copy of the finished Switchover is written at mv-schwerin")
	g.Expect(getSwitchover(ctx, kiel, sw)()).To(HaveField("Status.Phase", deichv1alpha1.SwitchoverSucceeded),
		"the outdated decision is not written")
}
