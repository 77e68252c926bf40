package testenv

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

// WatchSharedServices watches the SharedServices at site that opts select (a namespace, a
// field selector) and hands every version the API server stores, and every deletion, to
// observe, in order, from one goroutine. It starts with each selected service as it is now
// and resumes after the API server ends a watch; a watch that is too old starts afresh. A
// test that follows services this way sees each version, where polling misses one that lasted
// less than its interval, and costs the API server little. stop ends the watch and returns
// once observe has returned for the last time.
func WatchSharedServices(ctx context.Context, site *Site, observe func(watch.EventType, *deichv1alpha1.SharedService), opts ...client.ListOption) (stop func(), err error) {
	wc, err := client.NewWithWatch(site.Config, client.Options{Scheme: site.Client.Scheme()})
	if err != nil {
		return nil, fmt.Errorf("testenv: watch client for %s: %w", site.Name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		rv := "" // a watch from "" starts with every selected service as it is now
		for ctx.Err() == nil {
			all := append([]client.ListOption{&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}}}, opts...)
			if wi, err := wc.Watch(ctx, &deichv1alpha1.SharedServiceList{}, all...); err == nil {
				rv = follow(wi, rv, observe)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}

// follow hands what wi delivers to observe until it ends, and returns the resourceVersion to
// watch on from ("" once the API server said it is too old).
func follow(wi watch.Interface, rv string, observe func(watch.EventType, *deichv1alpha1.SharedService)) string {
	defer wi.Stop()
	for ev := range wi.ResultChan() {
		switch ev.Type {
		case watch.Error:
			return ""
		case watch.Bookmark:
			if o, ok := ev.Object.(client.Object); ok {
				rv = o.GetResourceVersion()
			}
		case watch.Added, watch.Modified, watch.Deleted:
			if svc, ok := ev.Object.(*deichv1alpha1.SharedService); ok {
				rv = svc.ResourceVersion
				observe(ev.Type, svc)
			}
		}
	}
	return rv
}
