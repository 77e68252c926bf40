package controllers

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/deich-io/deich/internal/informers"
)

// renderKey is everything a copy is rendered from: the source object as of one
// resourceVersion, the service's spec (its overrides, selector and resources) and the
// objective's (its standby mode) as of one generation each, and the standby site.
type renderKey struct {
	uid                 types.UID
	resourceVersion     string
	generation          int64
	objectiveGeneration int64
	egressVersion       string
	standby             string
}

// renderedCopy is what a full round remembers of one copy it rendered: what from, its content
// hash, and the resourceVersion of the copy at the standby that was seen to hold it.
type renderedCopy struct {
	key         renderKey
	hash        string
	copyVersion string
}

// renderCache lets a round — full, or of the objects that changed — skip the copies that are
// known to be current, such as a copy whose watch event follows this manager's own write: the
// source, the service and the objective are as they were when the copy was rendered, and the
// copy at the standby is still the one that was seen to hold that rendering (any write there,
// Deich's or another's, gives it a new resourceVersion). It keeps no rendered objects, only
// their keys. It is safe for concurrent use.
type renderCache struct {
	mu       sync.Mutex
	services map[types.NamespacedName]map[copyRef]renderedCopy
}

// keyOf is the renderKey of src for the service, its objective and the standby's egress policy
// as s has them, and for the standby site.
func keyOf(src metav1.Object, s *serviceScope, standby string) renderKey {
	return renderKey{
		uid: src.GetUID(), resourceVersion: src.GetResourceVersion(), generation: s.svc.Generation,
		objectiveGeneration: s.objective.Generation, egressVersion: s.egressVersion, standby: standby,
	}
}

// current returns the hash of the copy rendered under key when the copy at the standby, cp,
// is still the one that was seen to hold it.
func (c *renderCache) current(owner types.NamespacedName, ref copyRef, key renderKey, cp *informers.Object) (string, bool) {
	if cp == nil {
		return "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.services[owner][ref]
	if !ok || e.key != key || e.copyVersion == "" || e.copyVersion != cp.GetResourceVersion() {
		return "", false
	}
	return e.hash, true
}

// record remembers that the copy at the standby, as of copyVersion, holds the rendering of key.
func (c *renderCache) record(owner types.NamespacedName, ref copyRef, key renderKey, hash, copyVersion string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.services == nil {
		c.services = map[types.NamespacedName]map[copyRef]renderedCopy{}
	}
	m, ok := c.services[owner]
	if !ok {
		m = map[copyRef]renderedCopy{}
		c.services[owner] = m
	}
	m[ref] = renderedCopy{key: key, hash: hash, copyVersion: copyVersion}
}

// retain drops what is remembered of the service's copies that are not in keep.
func (c *renderCache) retain(owner types.NamespacedName, keep map[copyRef]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ref := range c.services[owner] {
		if _, ok := keep[ref]; !ok {
			delete(c.services[owner], ref)
		}
	}
}

// forget drops everything remembered of the service.
func (c *renderCache) forget(owner types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.services, owner)
}
