package controllers

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/informers"
	"github.com/deich-io/deich/internal/metrics"
	"github.com/deich-io/deich/internal/render"
)

// A full round renders every selected object whose copy at the standby is not known to be
// current (see renderCache) before it writes any: a source that does not render stops the
// round, and the standby keeps its last good copies. The objects are rendered on as many
// workers as the process has cores, in chunks of renderChunk, so that a service of thousands
// of objects waits for its first write a fraction of the time one worker would take. Each
// copy is held encoded, as it is sent, until it is written, up to renderHeldBytes a round;
// past that, a copy is rendered again where it is written, so that a first mirror of tens of
// thousands of objects never holds them all.
const (
	renderChunk     = 128
	renderHeldBytes = 16 << 20
)

// renderJob is one selected object of a full round, and what became of it.
type renderJob struct {
	kind *mirroredKind
	src  *informers.Object
	key  renderKey
	// current: the copy at the standby is known to hold this rendering; nothing was
	// rendered, and d carries the hash alone.
	current bool
	d       desiredCopy
	keep    bool
	err     error
}

// render builds every copy for the standby. Any failure stops the whole round: nothing is
// applied, so the standby keeps its last good copies.
func (r *SharedServiceReconciler) render(s *serviceScope, sources map[*mirroredKind][]*informers.Object, standby string, copies map[copyRef]*informers.Object) bool {
	var jobs []renderJob
	for _, k := range s.kinds {
		for _, src := range sources[k] {
			jobs = append(jobs, renderJob{kind: k, src: src, key: keyOf(src, s, standby)})
		}
	}
	r.renderJobs(s, jobs, r.renderTarget(s, standby), copies)

	rendered := 0
	defer func() { metrics.CopiesRendered.WithLabelValues(s.svc.Namespace, s.svc.Name).Add(float64(rendered)) }()
	for _, j := range jobs {
		var denied *render.EgressDeniedError
		switch {
		case j.current:
			s.desired = append(s.desired, j.d)
		case errors.As(j.err, &denied):
			s.deny(copyRef{j.kind.resource, j.src.GetName()}, denied)
		case j.err != nil:
			s.fail(deichv1alpha1.ServiceReasonRenderFailed, fmt.Sprintf("render %s %s for %s: %v; nothing was changed at the standby", j.kind.gk.Kind, j.src.GetName(), standby, j.err), true)
			return false
		case j.keep:
			rendered++
			s.sourceStandby = s.sourceStandby || j.d.sourceStandby
			s.desired = append(s.desired, j.d)
		}
	}
	return true
}

// renderJobs renders the jobs, on up to one worker per core, each job into its own entry.
func (r *SharedServiceReconciler) renderJobs(s *serviceScope, jobs []renderJob, target render.Target, copies map[copyRef]*informers.Object) {
	var held atomic.Int64
	one := func(j *renderJob) {
		ref := copyRef{j.kind.resource, j.src.GetName()}
		if hash, ok := r.rendered.current(s.owner, ref, j.key, copies[ref]); ok {
			j.current, j.d = true, desiredCopy{kind: j.kind, name: j.src.GetName(), hash: hash, key: j.key}
			return
		}
		j.d, j.keep, j.err = renderSource(j.src, target, j.kind, s.svc.Name)
		if j.err != nil || !j.keep {
			return
		}
		j.d.key = j.key
		j.err = j.d.hold(&held, func() (*unstructured.Unstructured, error) {
			again, _, err := renderSource(j.src, target, j.kind, s.svc.Name)
			return again.obj, err
		})
	}
	if len(jobs) <= renderChunk {
		for i := range jobs {
			one(&jobs[i])
		}
		return
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for start := 0; start < len(jobs); start += renderChunk {
		chunk := jobs[start:min(start+renderChunk, len(jobs))]
		g.Go(func() error {
			for i := range chunk {
				one(&chunk[i]) // each worker writes its own entries
			}
			return nil
		})
	}
	_ = g.Wait() // the jobs carry their errors
}

// hold keeps the rendered copy until it is written: encoded, while the round's copies held so
// far (held, in bytes) stay within renderHeldBytes; otherwise not at all, and rerender makes
// it again where it is written.
func (d *desiredCopy) hold(held *atomic.Int64, rerender func() (*unstructured.Unstructured, error)) error {
	obj := d.obj
	d.obj = nil
	if held.Load() >= renderHeldBytes {
		d.rerender = rerender
		return nil
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	held.Add(int64(len(data)))
	d.encoded = data
	return nil
}

// renderSource renders the copy of one selected object as the sources' watch holds it.
func renderSource(src *informers.Object, target render.Target, k *mirroredKind, service string) (desiredCopy, bool, error) {
	u, err := src.Content()
	if err != nil {
		return desiredCopy{}, false, err
	}
	return renderCopy(u, target, k, service)
}

// renderCopy renders the copy of one selected object; keep is false for an object that is
// not mirrored: a copy this site holds for another service, or an object of a kind that
// never leaves the site (e.g. a service-account token Secret among the selected Secrets).
func renderCopy(src *unstructured.Unstructured, target render.Target, k *mirroredKind, service string) (d desiredCopy, keep bool, err error) {
	if isOwnedCopy(src) && src.GetLabels()[render.LabelSharedService] != service {
		return desiredCopy{}, false, nil
	}
	cp, err := render.Render(src, target)
	if err != nil {
		var nm *render.NotMirrorableError
		if errors.As(err, &nm) {
			return desiredCopy{}, false, nil
		}
		return desiredCopy{}, false, err
	}
	return desiredCopy{kind: k, name: cp.GetName(), obj: cp, hash: cp.GetAnnotations()[render.AnnotationContentHash], sourceStandby: awaitsSwitch(src, false)}, true, nil
}
