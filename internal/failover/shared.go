package failover

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// EntriesAnnotation holds the entries of a shared record (see "Shared records" in the package
// documentation): a JSON object from each service's key to its copy of the lease.
const EntriesAnnotation = "resilience.deich.io/entries"

// EntryWrite is one service's write of its entry in a shared record: Record, compare-and-swapped
// on its ResourceVersion, the entry's version (the entry must be missing when that is empty).
// Delete removes the entry instead, on the same precondition unless Record.ResourceVersion is
// empty, in which case it removes whatever entry there is.
type EntryWrite struct {
	Key    string
	Record LeaseRecord
	Delete bool
}

// EntryResult is the outcome of one EntryWrite: OK when it was applied; Record is the entry
// as it stands afterwards — the committed record, or the current one when the compare-and-swap
// failed (the zero record for a missing entry).
type EntryResult struct {
	OK     bool
	Record LeaseRecord
}

// ApplyEntryWrites applies writes, in order, to the entries of one shared record and returns
// the new entries and each write's outcome; entries is not modified. Each write is a
// compare-and-swap on its own entry, exactly as rule 1 asks of a copy stored on its own: it
// is applied only if the entry's version is the one it was decided on, and then gets a fresh
// version from version, which must never return a value it returned before (nor one another
// writer's version function returns). A second write of one entry in the same batch was
// decided on the same version as the first and fails.
//
// The caller stores the result with one compare-and-swap of the whole record on the version
// it read entries from, and applies the writes again on a fresh read when that fails: the
// entries' order of writes is then the record's, and every entry write succeeds only on top
// of the entry it was decided on.
func ApplyEntryWrites(entries map[string]LeaseRecord, writes []EntryWrite, version func() string) (map[string]LeaseRecord, []EntryResult) {
	out := maps.Clone(entries)
	if out == nil {
		out = map[string]LeaseRecord{}
	}
	results := make([]EntryResult, len(writes))
	for i, w := range writes {
		cur := out[w.Key]
		if w.Delete {
			if w.Record.ResourceVersion != "" && w.Record.ResourceVersion != cur.ResourceVersion {
				results[i] = EntryResult{Record: cur}
				continue
			}
			delete(out, w.Key)
			results[i] = EntryResult{OK: true}
			continue
		}
		if w.Record.ResourceVersion != cur.ResourceVersion {
			results[i] = EntryResult{Record: cur}
			continue
		}
		rec := w.Record
		rec.ResourceVersion = version()
		out[w.Key] = rec
		results[i] = EntryResult{OK: true, Record: rec}
	}
	return out, results
}

// entryJSON is an entry as the shared record stores it: the fields of a Lease's spec and the
// annotations of a copy stored on its own, and the entry's version.
type entryJSON struct {
	Holder               string `json:"holderIdentity,omitempty"`
	LeaseDurationSeconds int32  `json:"leaseDurationSeconds"`
	AcquireTime          string `json:"acquireTime,omitempty"`
	RenewTime            string `json:"renewTime,omitempty"`
	LeaseTransitions     int32  `json:"leaseTransitions,omitempty"`
	Epoch                int64  `json:"epoch,omitempty"`
	Arbiters             string `json:"arbiters,omitempty"`
	SyncedAt             string `json:"syncedAt,omitempty"`
	Version              string `json:"version"`
}

const entryTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// EntriesFromLease reads the entries of a shared record; a nil lease (not found) has none. An
// annotation that cannot be parsed is an error: a record Deich cannot read is never
// overwritten.
func EntriesFromLease(l *coordinationv1.Lease) (map[string]LeaseRecord, error) {
	out := map[string]LeaseRecord{}
	if l == nil || l.Annotations[EntriesAnnotation] == "" {
		return out, nil
	}
	var raw map[string]entryJSON
	if err := json.Unmarshal([]byte(l.Annotations[EntriesAnnotation]), &raw); err != nil {
		return nil, fmt.Errorf("lease %s/%s: annotation %s: %w", l.Namespace, l.Name, EntriesAnnotation, err)
	}
	for k, e := range raw {
		if e.Version == "" {
			return nil, fmt.Errorf("lease %s/%s: annotation %s: entry %q has no version", l.Namespace, l.Name, EntriesAnnotation, k)
		}
		rec := LeaseRecord{
			Holder:          e.Holder,
			Duration:        time.Duration(e.LeaseDurationSeconds) * time.Second,
			Transitions:     e.LeaseTransitions,
			ResourceVersion: e.Version,
			Epoch:           e.Epoch,
			Configs:         ParseConfigs(e.Arbiters),
		}
		var err error
		if rec.AcquireTime, err = parseEntryTime(e.AcquireTime); err != nil {
			return nil, fmt.Errorf("lease %s/%s: entry %q: acquireTime: %w", l.Namespace, l.Name, k, err)
		}
		if rec.RenewTime, err = parseEntryTime(e.RenewTime); err != nil {
			return nil, fmt.Errorf("lease %s/%s: entry %q: renewTime: %w", l.Namespace, l.Name, k, err)
		}
		if rec.SyncedAt, err = parseEntryTime(e.SyncedAt); err != nil {
			return nil, fmt.Errorf("lease %s/%s: entry %q: syncedAt: %w", l.Namespace, l.Name, k, err)
		}
		out[k] = rec
	}
	return out, nil
}

// ApplyEntries writes entries into l's annotation, in a stable order of keys; l's
// resourceVersion is left as it is, the precondition of the whole record's compare-and-swap.
func ApplyEntries(l *coordinationv1.Lease, entries map[string]LeaseRecord) error {
	raw := make(map[string]entryJSON, len(entries))
	for _, k := range slices.Sorted(maps.Keys(entries)) {
		r := entries[k]
		raw[k] = entryJSON{
			Holder:               r.Holder,
			LeaseDurationSeconds: durationSeconds(r.Duration),
			AcquireTime:          formatEntryTime(r.AcquireTime),
			RenewTime:            formatEntryTime(r.RenewTime),
			LeaseTransitions:     r.Transitions,
			Epoch:                r.Epoch,
			Arbiters:             FormatConfigs(r.Configs),
			SyncedAt:             formatEntryTime(r.SyncedAt),
			Version:              r.ResourceVersion,
		}
	}
	b, err := json.Marshal(raw) // encoding/json sorts map keys
	if err != nil {
		return fmt.Errorf("encode the entries of lease %s/%s: %w", l.Namespace, l.Name, err)
	}
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[EntriesAnnotation] = string(b)
	l.Annotations[EntryCountAnnotation] = strconv.Itoa(len(entries))
	return nil
}

// EntryCountAnnotation holds how many entries a shared record has, for `kubectl get leases`
// readers who do not want to parse EntriesAnnotation.
const EntryCountAnnotation = "resilience.deich.io/entry-count"

func formatEntryTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(entryTimeFormat)
}

func parseEntryTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(entryTimeFormat, s)
}
