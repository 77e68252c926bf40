package render

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// This file holds the helpers that work on an object's JSON value (map[string]any, []any,
// string, int64, float64, bool, nil — the types apimachinery decodes JSON into). Render
// accepts hand-built objects too, so the copy normalizes other Go number types and rejects
// anything encoding/json could not serialize, instead of panicking as
// runtime.DeepCopyJSONValue does.

// copyObject deep-copies a source object, leaving out status and metadata.managedFields:
// both are stripped anyway and are often the largest parts of an object.
func copyObject(src map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(src))
	for k, v := range src {
		switch k {
		case "status":
			continue
		case "metadata":
			if meta, ok := v.(map[string]any); ok {
				m := make(map[string]any, len(meta))
				for mk, mv := range meta {
					if mk == "managedFields" {
						continue
					}
					c, err := copyValue(mv)
					if err != nil {
						return nil, prependPath(err, "metadata."+mk)
					}
					m[mk] = c
				}
				out[k] = m
				continue
			}
		}
		c, err := copyValue(v)
		if err != nil {
			return nil, prependPath(err, k)
		}
		out[k] = c
	}
	return out, nil
}

// copyValue deep-copies a JSON value. Integers become int64 and other numbers float64, as
// when apimachinery decodes JSON.
func copyValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool, int64:
		return v, nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, &valueError{msg: fmt.Sprintf("%v is not a JSON number", v)}
		}
		return v, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := copyValue(e)
			if err != nil {
				return nil, prependPath(err, k)
			}
			out[k] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := copyValue(e)
			if err != nil {
				return nil, prependPath(err, "["+strconv.Itoa(i)+"]")
			}
			out[i] = c
		}
		return out, nil
	case map[string]string:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = e
		}
		return out, nil
	case []string:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = e
		}
		return out, nil
	case []map[string]any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := copyValue(e)
			if err != nil {
				return nil, prependPath(err, "["+strconv.Itoa(i)+"]")
			}
			out[i] = c
		}
		return out, nil
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint8:
		return int64(v), nil
	case uint:
		if uint64(v) > math.MaxInt64 {
			return float64(v), nil
		}
		return int64(v), nil
	case uint64:
		if v > math.MaxInt64 {
			return float64(v), nil
		}
		return int64(v), nil
	case float32:
		return copyValue(float64(v))
	default:
		return nil, &valueError{msg: fmt.Sprintf("a value of Go type %T cannot be serialized as JSON", v)}
	}
}

// valueError reports a value that is not JSON, with the field path to it.
type valueError struct {
	path []string // innermost last
	msg  string
}

func (e *valueError) Error() string {
	if len(e.path) == 0 {
		return e.msg
	}
	var b strings.Builder
	for i, p := range e.path {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String() + ": " + e.msg
}

func prependPath(err error, p string) error {
	var ve *valueError
	if errors.As(err, &ve) {
		ve.path = append([]string{p}, ve.path...)
		return ve
	}
	return err
}

// nestedMap returns the object at path, if every step of it is an object.
func nestedMap(m map[string]any, path ...string) (map[string]any, bool) {
	for _, p := range path {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	return m, true
}

// ensureMap returns the object at path, creating missing objects on the way. It fails when a
// step exists but is not an object.
func ensureMap(m map[string]any, path ...string) (map[string]any, error) {
	for i, p := range path {
		switch next := m[p].(type) {
		case map[string]any:
			m = next
		case nil:
			created := map[string]any{}
			m[p] = created
			m = created
		default:
			return nil, fmt.Errorf("%s is not an object", strings.Join(path[:i+1], "."))
		}
	}
	return m, nil
}

// nestedString returns the string at path; "" when it is missing or not a string.
func nestedString(m map[string]any, path ...string) string {
	parent, ok := nestedMap(m, path[:len(path)-1]...)
	if !ok {
		return ""
	}
	s, _ := parent[path[len(path)-1]].(string)
	return s
}

// asInt64 reads an integer JSON number. Hand-built objects may hold float64 for integers.
func asInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case float64:
		if n == math.Trunc(n) && n >= math.MinInt64 && n < math.MaxInt64 {
			return int64(n), true
		}
	}
	return 0, false
}

// stringMap reads metadata.labels or metadata.annotations. A missing map is nil; a map with a
// value that is not a string is an error, because the API server would reject it.
func stringMap(meta map[string]any, key string) (map[string]any, error) {
	switch m := meta[key].(type) {
	case nil:
		return nil, nil
	case map[string]string:
		// Hand-built; the copy turns it into map[string]any.
		out := make(map[string]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out, nil
	case map[string]any:
		for k, v := range m {
			if _, ok := v.(string); !ok {
				return nil, fmt.Errorf("metadata.%s[%q] is not a string", key, k)
			}
		}
		return m, nil
	default:
		return nil, fmt.Errorf("metadata.%s is not an object", key)
	}
}

// deleteKeys removes from the labels or annotations at meta[key] every key that drop says
// to, and removes the map when it ends up empty.
func deleteKeys(meta map[string]any, key string, drop func(string) bool) {
	m, ok := meta[key].(map[string]any)
	if !ok {
		return
	}
	for k := range m {
		if drop(k) {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		delete(meta, key)
	}
}

// toYNode builds a YAML node from a JSON value, with explicit tags so that the round trip
// through kyaml keeps every string a string ("true", "0123") and every number a number.
// Object keys are sorted, so the node is deterministic.
func toYNode(v any) (*kyaml.Node, error) {
	switch v := v.(type) {
	case nil:
		return &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagNull, Value: "null"}, nil
	case string:
		return &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagString, Value: v}, nil
	case bool:
		return &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagBool, Value: strconv.FormatBool(v)}, nil
	case int64:
		return &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagInt, Value: strconv.FormatInt(v, 10)}, nil
	case float64:
		return &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagFloat, Value: strconv.FormatFloat(v, 'g', -1, 64)}, nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		n := &kyaml.Node{Kind: kyaml.MappingNode, Tag: kyaml.NodeTagMap, Content: make([]*kyaml.Node, 0, 2*len(keys))}
		for _, k := range keys {
			val, err := toYNode(v[k])
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, &kyaml.Node{Kind: kyaml.ScalarNode, Tag: kyaml.NodeTagString, Value: k}, val)
		}
		return n, nil
	case []any:
		n := &kyaml.Node{Kind: kyaml.SequenceNode, Tag: kyaml.NodeTagSeq, Content: make([]*kyaml.Node, 0, len(v))}
		for _, e := range v {
			val, err := toYNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, val)
		}
		return n, nil
	default:
		return nil, fmt.Errorf("a value of Go type %T cannot be converted to YAML", v)
	}
}

// fromYNode turns a YAML node back into a JSON value. Numbers become int64 when they are
// integers and float64 otherwise, as apimachinery decodes JSON.
func fromYNode(n *kyaml.Node) (any, error) {
	switch n.Kind {
	case kyaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, fmt.Errorf("a YAML document with %d nodes", len(n.Content))
		}
		return fromYNode(n.Content[0])
	case kyaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != kyaml.ScalarNode {
				return nil, fmt.Errorf("an object key that is not a string")
			}
			v, err := fromYNode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	case kyaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, e := range n.Content {
			v, err := fromYNode(e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case kyaml.ScalarNode:
		return scalarValue(n)
	case kyaml.AliasNode:
		return nil, fmt.Errorf("YAML aliases are not supported")
	default:
		return nil, fmt.Errorf("unknown YAML node kind %d", n.Kind)
	}
}

func scalarValue(n *kyaml.Node) (any, error) {
	switch n.ShortTag() {
	case kyaml.NodeTagNull:
		return nil, nil
	case kyaml.NodeTagBool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil {
			// YAML 1.1 spellings such as "yes" never reach here: nodes come from toYNode.
			return n.Value, nil
		}
		return b, nil
	case kyaml.NodeTagInt:
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			return i, nil
		}
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && !math.IsInf(f, 0) {
			return f, nil
		}
		return n.Value, nil
	case kyaml.NodeTagFloat:
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			// .inf and .nan are not JSON numbers: keep the text.
			return n.Value, nil
		}
		if f == math.Trunc(f) && f >= math.MinInt64 && f < math.MaxInt64 && !strings.ContainsAny(n.Value, ".eE") {
			return int64(f), nil
		}
		return f, nil
	default:
		return n.Value, nil
	}
}
