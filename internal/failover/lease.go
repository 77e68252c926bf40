package failover

import (
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// LeaseNamePrefix starts the name of every Lease Deich writes for services, so `kubectl get
// leases` shows which are Deich's.
const LeaseNamePrefix = "deich-"

// LeaseRecord is what one copy of a service's lease says. A zero ResourceVersion means the
// copy does not exist; otherwise it is the precondition of the compare-and-swap a write of this record
// makes, which is why the record*, Renewed*, Released* and Acquired* functions keep it.
type LeaseRecord struct {
	// Holder is the site that holds the lease, empty when it was released.
	Holder string
	// Duration is spec.leaseDurationSeconds: how long the holder's renewal lets it serve.
	Duration time.Duration
	// AcquireTime and RenewTime are spec.acquireTime and spec.renewTime, by the writer's
	// clock. They are for people; no decision reads them (see the package documentation).
	AcquireTime, RenewTime time.Time
	// Transitions is spec.leaseTransitions: how often the holder changed.
	Transitions int32
	// ResourceVersion is the lease's metadata.resourceVersion, or an entry's version when the
	// copy is an entry of a shared record (EntryWrite).
	ResourceVersion string
	// Epoch is the fencing token of the claim that wrote the record (EpochAnnotation); zero
	// on a lease no claim has written yet.
	Epoch int64
	// Configs are the configurations of arbiters the writer's claim had to hold a majority
	// of (ConfigsAnnotation): whoever takes the copy over inherits them.
	Configs []Config
	// SyncedAt is when, by the writer's clock, the writer last confirmed the partner's copy
	// of the service complete (SyncedAtAnnotation); zero when it did not. The partner's RPO
	// gate reads it; no lease decision does.
	SyncedAt time.Time
}

// The annotations a lease copy carries besides its spec.
const (
	// EpochAnnotation holds the epoch of the claim that last wrote the copy.
	EpochAnnotation = "resilience.deich.io/epoch"
	// ConfigsAnnotation holds the writer's configurations (FormatConfigs).
	ConfigsAnnotation = "resilience.deich.io/arbiters"
	// SyncedAtAnnotation holds LeaseRecord.SyncedAt (RFC 3339, microseconds).
	SyncedAtAnnotation = "resilience.deich.io/synced-at"
)

// Exists reports whether the record is of a lease that exists.
func (r LeaseRecord) Exists() bool { return r.ResourceVersion != "" }

// Released reports whether the lease exists and nobody holds it.
func (r LeaseRecord) Released() bool { return r.Exists() && r.Holder == "" }

// HeldBy reports whether the copy names site as its holder: only then may site renew it and
// count it towards serving (rule 2 of the package documentation).
func (r LeaseRecord) HeldBy(site string) bool { return r.Exists() && site != "" && r.Holder == site }

// RecordFromLease reads a lease; a nil lease (not found) gives the zero record.
func RecordFromLease(l *coordinationv1.Lease) LeaseRecord {
	if l == nil {
		return LeaseRecord{}
	}
	r := LeaseRecord{
		Holder:          ptr.Deref(l.Spec.HolderIdentity, ""),
		Duration:        time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, 0)) * time.Second,
		Transitions:     ptr.Deref(l.Spec.LeaseTransitions, 0),
		ResourceVersion: l.ResourceVersion,
	}
	if l.Spec.AcquireTime != nil {
		r.AcquireTime = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		r.RenewTime = l.Spec.RenewTime.Time
	}
	if e, err := strconv.ParseInt(l.Annotations[EpochAnnotation], 10, 64); err == nil && e > 0 {
		r.Epoch = e
	}
	r.Configs = ParseConfigs(l.Annotations[ConfigsAnnotation])
	if t, err := parseEntryTime(l.Annotations[SyncedAtAnnotation]); err == nil {
		r.SyncedAt = t
	}
	return r
}

// ApplyRecord writes r into l's spec and sets l's resourceVersion to r's, so that an update
// of l succeeds only if the lease is still the one r was decided on. The controller sets
// the name and namespace, creates l when r.ResourceVersion is empty and updates
// it otherwise; it must never replace the resourceVersion with one read later.
func ApplyRecord(l *coordinationv1.Lease, r LeaseRecord) {
	l.ResourceVersion = r.ResourceVersion
	l.Spec.HolderIdentity = nil
	if r.Holder != "" {
		l.Spec.HolderIdentity = ptr.To(r.Holder)
	}
	l.Spec.LeaseDurationSeconds = ptr.To(durationSeconds(r.Duration))
	l.Spec.AcquireTime = microTime(r.AcquireTime)
	l.Spec.RenewTime = microTime(r.RenewTime)
	l.Spec.LeaseTransitions = ptr.To(r.Transitions)
	if r.Epoch > 0 || len(r.Configs) > 0 {
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[EpochAnnotation] = strconv.FormatInt(r.Epoch, 10)
		l.Annotations[ConfigsAnnotation] = FormatConfigs(r.Configs)
	}
	if !r.SyncedAt.IsZero() {
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[SyncedAtAnnotation] = formatEntryTime(r.SyncedAt)
	} else {
		delete(l.Annotations, SyncedAtAnnotation)
	}
}

// RenewedRecord is the write with which site, the holder, renews the lease at now: the
// duration becomes the policy's, rounded up to whole seconds as the Lease stores it.
func RenewedRecord(rec LeaseRecord, site string, p Policy, now time.Time) LeaseRecord {
	rec.Holder = site
	rec.Duration = time.Duration(durationSeconds(p.normalized().LeaseDuration)) * time.Second
	rec.RenewTime = now
	if rec.AcquireTime.IsZero() {
		rec.AcquireTime = now
	}
	return rec
}

// ReleasedRecord is the write with which the holder gives a copy up at now, after it has
// fenced itself, so that the partner may take the copy over without waiting for it to
// expire.
func ReleasedRecord(rec LeaseRecord, now time.Time) LeaseRecord {
	rec.Holder = ""
	rec.RenewTime = now
	return rec
}

// AcquiredRecord is the write with which site takes the lease at now, based on the record
// it observed (never on a later read: see Observation). Taking an existing lease counts a
// transition; creating a missing one starts the count at zero.
func AcquiredRecord(rec LeaseRecord, site string, p Policy, now time.Time) LeaseRecord {
	if rec.Exists() {
		rec.Transitions++
	}
	rec.AcquireTime = now
	return RenewedRecord(rec, site, p, now)
}

// Observation is what one site knows about the lease: the record it last saw and when, by
// its own clock, it first saw that record. Only the observing site's clock measures how
// long a record has stood unchanged; the times written in the record are never compared
// with it.
type Observation struct {
	// Record is the lease as last read, or as the API server returned it to a write of
	// this site.
	Record LeaseRecord
	// ObservedAt is this site's clock when it first saw Record. Zero: never read.
	ObservedAt time.Time
}

// Observe folds a fresh read of the lease (cur, read at now) into prev. ObservedAt moves
// only when the record changed: its holder, renewTime or resourceVersion. A manager that
// starts passes the zero Observation, so the lease it finds counts as observed now — it
// cannot know how long the record has stood, and assuming "just now" is the safe side.
// Call Observe only with what was actually read; when the lease cannot be read, keep prev.
func Observe(prev Observation, cur LeaseRecord, now time.Time) Observation {
	if !prev.ObservedAt.IsZero() && sameRecord(prev.Record, cur) {
		prev.Record = cur
		return prev
	}
	return Observation{Record: cur, ObservedAt: now}
}

func sameRecord(a, b LeaseRecord) bool {
	return a.Holder == b.Holder && a.RenewTime.Equal(b.RenewTime) && a.ResourceVersion == b.ResourceVersion
}

// durationSeconds rounds d up to whole seconds, so the lease never claims less than the
// holder uses, and clamps it to what leaseDurationSeconds can hold.
func durationSeconds(d time.Duration) int32 {
	const maxSeconds = 1<<31 - 1
	switch {
	case d <= 0:
		return 0
	case d > maxSeconds*time.Second:
		return maxSeconds
	}
	return int32((d + time.Second - 1) / time.Second)
}

func microTime(t time.Time) *metav1.MicroTime {
	if t.IsZero() {
		return nil
	}
	return &metav1.MicroTime{Time: t}
}
