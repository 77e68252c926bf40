package render

import "testing"

func TestCovers(t *testing.T) {
	rendered := map[string]any{
		"metadata": map[string]any{"name": "web", "labels": map[string]any{"app": "web"}, "annotations": map[string]any{}},
		"spec": map[string]any{
			"replicas": int64(0),
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "web", "image": "web:1"}}}},
		},
	}
	live := map[string]any{
		"metadata": map[string]any{"name": "web", "uid": "x", "labels": map[string]any{"app": "web"}},
		"spec": map[string]any{
			"replicas":             float64(0),
			"revisionHistoryLimit": int64(10),
			"template": map[string]any{"spec": map[string]any{"containers": []any{map[string]any{
				"name": "web", "image": "web:1", "terminationMessagePath": "/dev/termination-log",
			}}}},
		},
		"status": map[string]any{"replicas": int64(0)},
	}
	tests := []struct {
		name   string
		mutate func(live map[string]any)
		want   bool
	}{
		{"accepts what the API server added", func(map[string]any) {}, true},
		{"notices a changed value", func(l map[string]any) {
			l["spec"].(map[string]any)["replicas"] = int64(3)
		}, false},
		{"notices a missing field", func(l map[string]any) {
			delete(l["metadata"].(map[string]any), "labels")
		}, false},
		{"notices a list of another length", func(l map[string]any) {
			spec := l["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			spec["containers"] = append(spec["containers"].([]any), map[string]any{"name": "sidecar"})
		}, false},
		{"notices a changed list element", func(l map[string]any) {
			spec := l["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			spec["containers"].([]any)[0].(map[string]any)["image"] = "web:2"
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := copyValue(live)
			if err != nil {
				t.Fatal(err)
			}
			m := l.(map[string]any)
			tc.mutate(m)
			if got := Covers(m, rendered); got != tc.want {
				t.Errorf("Covers() = %v, want %v", got, tc.want)
			}
		})
	}
}
