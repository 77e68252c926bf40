package render

import "reflect"

// Covers reports whether a live object (as read back from a cluster) carries every field of
// a rendered copy with the same value, whatever its API server added: defaults, status,
// metadata. The controller uses it to tell a current copy from one that changed at the source
// or was edited at the peer. Lists must match element by element; null and empty values in
// the copy match missing ones, as API servers drop them.
func Covers(live, rendered map[string]any) bool {
	return covers(live, rendered)
}

// covers reports whether every field set in want has the same value in have.
func covers(have, want any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return false
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				if isEmpty(wv) {
					continue // API servers drop nulls and empty values
				}
				return false
			}
			if !covers(hv, wv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return false
		}
		for i := range w {
			if !covers(h[i], w[i]) {
				return false
			}
		}
		return true
	case int64, float64, int, int32:
		return numEqual(have, want)
	default:
		return reflect.DeepEqual(have, want)
	}
}

// isEmpty reports whether v is null, an empty object or an empty list.
func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}

// numEqual compares JSON numbers whatever Go type decoding gave them.
func numEqual(a, b any) bool {
	f := func(v any) (float64, bool) {
		switch n := v.(type) {
		case int64:
			return float64(n), true
		case int:
			return float64(n), true
		case int32:
			return float64(n), true
		case float64:
			return n, true
		}
		return 0, false
	}
	x, ok1 := f(a)
	y, ok2 := f(b)
	return ok1 && ok2 && x == y
}
