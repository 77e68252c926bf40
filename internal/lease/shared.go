package lease

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/deich-io/deich/internal/failover"
	"github.com/deich-io/deich/internal/render"
)

// Batcher is a Store whose copy is an entry of a shared record, written together with the
// entries of other services (see "Shared records" in package failover). The keeper tells
// Step which arbiters have a write about to be sent (ServiceState.Batch), so that renewals
// due soon join it, and lets the record wake the service's loop when one opens.
type Batcher interface {
	Store
	// Open reports whether a write of the record is gathering entries and about to be sent.
	Open() bool
	// Subscribe sets the function that wakes this service's loop when a write of the record
	// opens for another service's entry; it replaces an earlier one.
	Subscribe(wake func())
	// Unsubscribe forgets it.
	Unsubscribe()
}

// RecordOptions tune Records.
type RecordOptions struct {
	// Linger is how long a write of a record waits, once the first entry write arrived, for
	// other services' writes to join it; default 20ms.
	Linger time.Duration
	// WriteTimeout bounds each write of a record, its retries included; default 2s.
	WriteTimeout time.Duration
	// MaxAge is how old a read of a record may be to answer another service's Read; default
	// 1s. A write's answer counts as a read sent when the write was.
	MaxAge time.Duration
	// MaxAttempts bounds how often a write of a record is tried again after the record
	// changed under it; default 8.
	MaxAttempts int
	// ObserveRecordWrite, if set, is called after every write of a record sent to an
	// arbiter's API server (a create, an update or a delete) with its outcome: nil,
	// ErrConflict when the record had changed, or the error. It must not block.
	ObserveRecordWrite func(arbiter string, err error)
}

// ErrRecordTooLarge is returned for the writes of a batch that would make a shared record
// larger than a Lease's annotations can hold.
var ErrRecordTooLarge = errors.New("the shared lease record would be too large")

// maxEntriesBytes keeps a record's entries well under the 256 KiB the API server allows for
// all of an object's annotations together.
const maxEntriesBytes = 200 << 10

// Records writes and reads the shared records of one manager process: one batching writer
// per record (arbiter and Lease). It is safe for concurrent use.
type Records struct {
	clock clock.Clock
	opts  RecordOptions

	mu      sync.Mutex
	records map[recordID]*record
}

type recordID struct {
	arbiter string
	key     client.ObjectKey
}

// NewRecords returns Records measuring time on c.
func NewRecords(c clock.Clock, opts RecordOptions) *Records {
	if opts.Linger <= 0 {
		opts.Linger = 20 * time.Millisecond
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 2 * time.Second
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = time.Second
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 8
	}
	return &Records{clock: c, opts: opts, records: map[recordID]*record{}}
}

// RecordRef says where a shared record lives.
type RecordRef struct {
	// Arbiter is the site whose cluster stores the record, Client reaches its API server
	// (reading directly, not from a cache).
	Arbiter string
	Client  client.Client
	// Key is the Lease that holds the record.
	Key client.ObjectKey
	// CreateNamespace lets the first write create the Lease's namespace when the cluster
	// lacks it (a partner's cluster); a witness gives its namespace.
	CreateNamespace bool
}

// Entry returns the Store of entry in the record at ref. The client of an arbiter may change
// (a peer's credentials were renewed): the latest one is used.
func (rs *Records) Entry(ref RecordRef, entry string) *EntryStore {
	id := recordID{arbiter: ref.Arbiter, key: ref.Key}
	rs.mu.Lock()
	r, ok := rs.records[id]
	if !ok {
		r = &record{rs: rs, arbiter: ref.Arbiter, key: ref.Key, wakes: map[string]func(){}}
		rs.records[id] = r
	}
	rs.mu.Unlock()
	r.mu.Lock()
	r.client, r.createNamespace = ref.Client, ref.CreateNamespace
	r.mu.Unlock()
	return &EntryStore{r: r, entry: entry}
}

// EntryStore is one service's copy at one arbiter, as an entry of a shared record.
type EntryStore struct {
	r     *record
	entry string
}

var _ Batcher = (*EntryStore)(nil)

// Read returns the entry; a missing entry (or record) is the zero record.
func (s *EntryStore) Read(ctx context.Context) (failover.LeaseRecord, error) {
	entries, err := s.r.read(ctx)
	if err != nil {
		return failover.LeaseRecord{}, err
	}
	return entries[s.entry], nil
}

// Write compare-and-swaps rec on the entry's version (creating the entry when
// rec.ResourceVersion is empty), together with the other entry writes of its batch, and
// returns the entry as committed. ErrConflict, with the current entry, means the entry
// changed since rec's version.
func (s *EntryStore) Write(ctx context.Context, rec failover.LeaseRecord) (failover.LeaseRecord, error) {
	return s.r.write(ctx, failover.EntryWrite{Key: s.entry, Record: rec})
}

// Delete removes the entry, whatever it holds.
func (s *EntryStore) Delete(ctx context.Context) error {
	_, err := s.r.write(ctx, failover.EntryWrite{Key: s.entry, Delete: true})
	return err
}

// Open reports whether a write of the record is gathering entries.
func (s *EntryStore) Open() bool {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.r.gathering
}

// Subscribe sets how to wake this entry's service when a write of the record opens.
func (s *EntryStore) Subscribe(wake func()) {
	s.r.mu.Lock()
	s.r.wakes[s.entry] = wake
	s.r.mu.Unlock()
}

// Unsubscribe forgets it.
func (s *EntryStore) Unsubscribe() {
	s.r.mu.Lock()
	delete(s.r.wakes, s.entry)
	s.r.mu.Unlock()
}

// record is the batching writer of one shared record.
type record struct {
	rs      *Records
	arbiter string
	key     client.ObjectKey

	mu              sync.Mutex
	client          client.Client
	createNamespace bool
	wakes           map[string]func()
	// queue holds the entry writes waiting for the next write of the record; flushing is
	// set while a writer goroutine runs, gathering while it still accepts joiners.
	queue     []*pending
	flushing  bool
	gathering bool
	cached    *coordinationv1.Lease // nil: not known (or not found, when cachedOK)
	cachedOK  bool
	cachedAt  time.Time
	// entries are cached's entries, parsed once for every service's Read; read-only.
	entries    map[string]failover.LeaseRecord
	entriesErr error
	readInFly  *readCall
	versionBuf [8]byte
}

type pending struct {
	ctx  context.Context
	w    failover.EntryWrite
	done chan outcome
}

type outcome struct {
	rec failover.LeaseRecord
	err error
}

type readCall struct {
	done    chan struct{}
	entries map[string]failover.LeaseRecord
	err     error
}

func (r *record) write(ctx context.Context, w failover.EntryWrite) (failover.LeaseRecord, error) {
	p := &pending{ctx: ctx, w: w, done: make(chan outcome, 1)}
	var wakes []func()
	r.mu.Lock()
	r.queue = append(r.queue, p)
	if !r.flushing {
		r.flushing, r.gathering = true, true
		for k, wake := range r.wakes {
			if k != w.Key {
				wakes = append(wakes, wake)
			}
		}
		// The write of the record serves every service in the batch, so it runs on its own
		// context, bounded by WriteTimeout, not on the context of the first to arrive.
		go r.flush() //nolint:gosec // detached on purpose, see above
	}
	r.mu.Unlock()
	for _, wake := range wakes {
		wake()
	}
	select {
	case o := <-p.done:
		return o.rec, o.err
	case <-ctx.Done():
		return failover.LeaseRecord{}, fmt.Errorf("write entry %q of lease %s: %w", w.Key, r.key, ctx.Err())
	}
}

// flush writes the record for the queued entry writes until the queue is empty. Only one
// flush runs per record at a time, so a process's writes of a record never race each other.
func (r *record) flush() {
	<-r.rs.clock.After(r.rs.opts.Linger)
	for {
		r.mu.Lock()
		batch := r.queue
		r.queue, r.gathering = nil, false
		if len(batch) == 0 {
			r.flushing = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		live := batch[:0]
		for _, p := range batch {
			if p.ctx.Err() == nil { // abandoned writes are not sent
				live = append(live, p)
			}
		}
		if len(live) == 0 {
			continue
		}
		writes := make([]failover.EntryWrite, len(live))
		for i, p := range live {
			writes[i] = p.w
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.rs.opts.WriteTimeout)
		results, err := r.commit(ctx, writes)
		cancel()
		for i, p := range live {
			switch {
			case err != nil:
				p.done <- outcome{err: err}
			case results[i].OK:
				p.done <- outcome{rec: results[i].Record}
			default:
				p.done <- outcome{rec: results[i].Record, err: ErrConflict}
			}
		}
	}
}

// commit applies writes to the record with failover.ApplyEntryWrites and stores the result
// with a compare-and-swap of the whole record, reading it again and applying the same writes
// again as long as the record changed in between. Entry results are reported only when they
// are true of the record as stored: after a write of it succeeded, or as read just now.
func (r *record) commit(ctx context.Context, writes []failover.EntryWrite) ([]failover.EntryResult, error) {
	r.mu.Lock()
	c, createNS := r.client, r.createNamespace
	base, needRead := r.cached, !r.cachedOK
	r.mu.Unlock()
	for range r.rs.opts.MaxAttempts {
		fresh := needRead
		if needRead {
			sentAt := r.rs.clock.Now()
			var err error
			if base, err = r.get(ctx, c); err != nil {
				return nil, err
			}
			r.remember(base, sentAt)
		}
		// Every path that tries again does so on a fresh read.
		needRead = true
		entries, err := failover.EntriesFromLease(base)
		if err != nil {
			return nil, err
		}
		next, results := failover.ApplyEntryWrites(entries, writes, r.newVersion)
		if !anyApplied(results) {
			if fresh {
				return results, nil
			}
			continue // the entries may be stale: read the record and try again
		}
		if len(next) == 0 {
			// The last entry went: the record goes too (or is never created).
			if base == nil {
				return results, nil
			}
			sentAt := r.rs.clock.Now()
			err := c.Delete(ctx, base, client.Preconditions{ResourceVersion: &base.ResourceVersion})
			r.observeWrite(err, apierrors.IsConflict(err) || apierrors.IsNotFound(err))
			switch {
			case err == nil:
				r.remember(nil, sentAt)
				return results, nil
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
				continue // it changed, or went, since it was read
			default:
				r.forget()
				return nil, fmt.Errorf("delete lease %s: %w", r.key, err)
			}
		}
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.key.Namespace, Name: r.key.Name,
			Labels: map[string]string{render.LabelManagedBy: render.ManagedByDeich}}}
		if base != nil {
			l = base.DeepCopy()
		}
		if err := failover.ApplyEntries(l, next); err != nil {
			return nil, err
		}
		if n := len(l.Annotations[failover.EntriesAnnotation]); n > maxEntriesBytes {
			return nil, fmt.Errorf("write lease %s: %d entries take %d bytes, more than %d: %w", r.key, len(next), n, maxEntriesBytes, ErrRecordTooLarge)
		}
		sentAt := r.rs.clock.Now()
		// For people: when the record was last written, by the writer's clock.
		l.Spec.RenewTime = &metav1.MicroTime{Time: sentAt}
		if base == nil {
			err = c.Create(ctx, l)
			if apierrors.IsNotFound(err) && createNS {
				r.observeWrite(err, false) // refused: the namespace is missing
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.key.Namespace, Labels: map[string]string{render.LabelManagedBy: render.ManagedByDeich}}}
				if nsErr := c.Create(ctx, ns); nsErr != nil && !apierrors.IsAlreadyExists(nsErr) {
					return nil, fmt.Errorf("create namespace %s for lease %s: %w", r.key.Namespace, r.key, nsErr)
				}
				err = c.Create(ctx, l)
			}
		} else {
			err = c.Update(ctx, l)
		}
		r.observeWrite(err, apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || base != nil && apierrors.IsNotFound(err))
		switch {
		case err == nil:
			r.remember(l, sentAt)
			return results, nil
		case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || base != nil && apierrors.IsNotFound(err):
			continue // the record changed since it was read: none of the writes was stored
		default:
			r.forget()
			return nil, fmt.Errorf("write lease %s: %w", r.key, err)
		}
	}
	return nil, fmt.Errorf("write lease %s: it changed under each of %d attempts", r.key, r.rs.opts.MaxAttempts)
}

// observeWrite reports a write of the record to RecordOptions.ObserveRecordWrite; raced says
// the record had changed since it was read.
func (r *record) observeWrite(err error, raced bool) {
	f := r.rs.opts.ObserveRecordWrite
	if f == nil {
		return
	}
	if raced {
		err = ErrConflict
	}
	f(r.arbiter, err)
}

func anyApplied(results []failover.EntryResult) bool {
	for _, res := range results {
		if res.OK {
			return true
		}
	}
	return false
}

// newVersion returns a random 64-bit version: unique among every entry version ever written
// with overwhelming probability, whichever process writes it.
func (r *record) newVersion() string {
	_, _ = rand.Read(r.versionBuf[:])
	return hex.EncodeToString(r.versionBuf[:])
}

func (r *record) get(ctx context.Context, c client.Client) (*coordinationv1.Lease, error) {
	var l coordinationv1.Lease
	switch err := c.Get(ctx, r.key, &l); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read lease %s: %w", r.key, err)
	}
	return &l, nil
}

// remember keeps l (nil: not found) as the record read or written at sentAt, with its
// entries, unless a later read is kept already.
func (r *record) remember(l *coordinationv1.Lease, sentAt time.Time) {
	entries, err := failover.EntriesFromLease(l)
	r.keep(l, sentAt, entries, err)
}

func (r *record) keep(l *coordinationv1.Lease, sentAt time.Time, entries map[string]failover.LeaseRecord, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cachedOK {
		switch order, known := compareVersions(l, r.cached); {
		case known && order < 0:
			return // a later version is kept already (a watch delivered it, say)
		case known && order == 0:
			if sentAt.After(r.cachedAt) {
				r.cachedAt = sentAt
			}
			return
		case !known && r.cachedAt.After(sentAt):
			return
		}
	}
	r.cached, r.cachedOK, r.cachedAt = l, true, sentAt
	r.entries, r.entriesErr = entries, err
}

// Seen takes l, a shared record at arbiter as a watch of it delivered it just now, as a read
// of the record answered now, when it is later than the version the record holds, and returns
// the entries whose version it changed. A version a watch delivers was stored before it
// arrived, so a renewal it shows was sent before now: a standby that counts its wait from
// now counts it from no earlier than a read would, only sooner than a read an interval later.
// A record no service of this process uses, or a version that cannot be ordered against the
// one held, is ignored.
func (rs *Records) Seen(arbiter string, l *coordinationv1.Lease) []string {
	if l == nil {
		return nil
	}
	rs.mu.Lock()
	r, ok := rs.records[recordID{arbiter: arbiter, key: client.ObjectKeyFromObject(l)}]
	rs.mu.Unlock()
	if !ok {
		return nil
	}
	entries, err := failover.EntriesFromLease(l)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cachedOK && r.cached != nil {
		if order, known := compareVersions(l, r.cached); !known || order <= 0 {
			return nil
		}
	}
	var changed []string
	for k, e := range entries {
		if old, ok := r.entries[k]; !ok || old.ResourceVersion != e.ResourceVersion {
			changed = append(changed, k)
		}
	}
	for k := range r.entries {
		if _, ok := entries[k]; !ok {
			changed = append(changed, k)
		}
	}
	r.cached, r.cachedOK, r.cachedAt = l, true, rs.clock.Now()
	r.entries, r.entriesErr = entries, nil
	return changed
}

// compareVersions orders two versions of one record by resourceVersion: -1, 0 or 1 as a is
// earlier than, the same as or later than b. known is false when either is missing or its
// resourceVersion is not a number (the API server's are etcd revisions).
func compareVersions(a, b *coordinationv1.Lease) (order int, known bool) {
	if a == nil || b == nil {
		return 0, false
	}
	av, errA := strconv.ParseUint(a.ResourceVersion, 10, 64)
	bv, errB := strconv.ParseUint(b.ResourceVersion, 10, 64)
	if errA != nil || errB != nil {
		return 0, false
	}
	return cmp.Compare(av, bv), true
}

func (r *record) forget() {
	r.mu.Lock()
	r.cached, r.cachedOK = nil, false
	r.mu.Unlock()
}

// read returns the record's entries as read no longer than MaxAge ago, joining a read on its
// way if there is one. The map is shared: callers only read it.
func (r *record) read(ctx context.Context) (map[string]failover.LeaseRecord, error) {
	r.mu.Lock()
	if r.cachedOK && r.rs.clock.Since(r.cachedAt) < r.rs.opts.MaxAge {
		entries, err := r.entries, r.entriesErr
		r.mu.Unlock()
		return entries, err
	}
	call := r.readInFly
	if call == nil {
		call = &readCall{done: make(chan struct{})}
		r.readInFly = call
		c := r.client
		// A read shared by every service waiting for it: bounded by WriteTimeout, not by the
		// context of the first to ask.
		go func() { //nolint:gosec // detached on purpose, see above
			ctx, cancel := context.WithTimeout(context.Background(), r.rs.opts.WriteTimeout)
			defer cancel()
			sentAt := r.rs.clock.Now()
			l, err := r.get(ctx, c)
			if err == nil {
				call.entries, err = failover.EntriesFromLease(l)
				r.keep(l, sentAt, call.entries, err)
			}
			call.err = err
			r.mu.Lock()
			r.readInFly = nil
			r.mu.Unlock()
			close(call.done)
		}()
	}
	r.mu.Unlock()
	select {
	case <-call.done:
		return call.entries, call.err
	case <-ctx.Done():
		return nil, fmt.Errorf("read lease %s: %w", r.key, ctx.Err())
	}
}
