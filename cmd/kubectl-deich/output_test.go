package main

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSpan(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{4123 * time.Millisecond, "4.1s"},
		{41 * time.Second, "41s"},
		{time.Minute, "1m"},
		{125 * time.Second, "2m5s"},
		{3 * time.Hour, "3h"},
		{-1500 * time.Millisecond, "-1.5s"},
	} {
		if got := span(c.d); got != c.want {
			t.Errorf("span(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		t    *metav1.Time
		want string
	}{
		{"a past time", &metav1.Time{Time: now.Add(-3 * time.Minute)}, "3m ago"},
		{"a future time", &metav1.Time{Time: now.Add(5 * time.Second)}, "in 5s"},
		{"no time", nil, "-"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ago(c.t, now); got != c.want {
				t.Errorf("ago() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short enough", 20, "short enough"},
		{"cut at a word boundary, not in a word", 20, "cut at a word..."},
		{"  spaces   and\nnewlines collapse ", 40, "spaces and newlines collapse"},
	} {
		if got := shorten(c.in, c.n); got != c.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
