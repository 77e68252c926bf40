package health

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTallyAdd(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 10 * time.Second) }

	cases := []struct {
		name     string
		start    Tally
		statuses []Status
		want     Tally
	}{{
		name:     "the first result sets the status and its transition",
		statuses: []Status{StatusHealthy},
		want:     Tally{LastStatus: StatusHealthy, LastTransition: at(0)},
	}, {
		name:     "consecutive failures count up and the transition stays at the first failure",
		statuses: []Status{StatusHealthy, StatusUnhealthy, StatusUnhealthy, StatusUnhealthy},
		want:     Tally{ConsecutiveFailures: 3, LastStatus: StatusUnhealthy, LastTransition: at(1)},
	}, {
		name:     "unknown results count as failures alongside unhealthy ones",
		statuses: []Status{StatusUnhealthy, StatusUnknown, StatusUnknown},
		want:     Tally{ConsecutiveFailures: 3, LastStatus: StatusUnknown, LastTransition: at(1)},
	}, {
		name:     "a healthy result resets the count of failures",
		statuses: []Status{StatusUnhealthy, StatusUnknown, StatusHealthy},
		want:     Tally{ConsecutiveFailures: 0, LastStatus: StatusHealthy, LastTransition: at(2)},
	}, {
		name:     "a failure after a healthy result counts from one again",
		statuses: []Status{StatusUnhealthy, StatusUnhealthy, StatusHealthy, StatusUnhealthy},
		want:     Tally{ConsecutiveFailures: 1, LastStatus: StatusUnhealthy, LastTransition: at(3)},
	}, {
		name:     "healthy results in a row keep the first transition",
		statuses: []Status{StatusUnhealthy, StatusHealthy, StatusHealthy, StatusHealthy},
		want:     Tally{LastStatus: StatusHealthy, LastTransition: at(1)},
	}, {
		name:     "a status this package does not know counts as a failure",
		statuses: []Status{StatusHealthy, ""},
		want:     Tally{ConsecutiveFailures: 1, LastStatus: "", LastTransition: at(1)},
	}, {
		name:     "a tally restored from status resumes its count",
		start:    Tally{ConsecutiveFailures: 2, LastStatus: StatusUnhealthy, LastTransition: t0.Add(-time.Hour)},
		statuses: []Status{StatusUnhealthy},
		want:     Tally{ConsecutiveFailures: 3, LastStatus: StatusUnhealthy, LastTransition: t0.Add(-time.Hour)},
	}, {
		name:     "the count stops at the largest int32 instead of wrapping to negative",
		start:    Tally{ConsecutiveFailures: math.MaxInt32, LastStatus: StatusUnhealthy, LastTransition: t0.Add(-time.Hour)},
		statuses: []Status{StatusUnhealthy},
		want:     Tally{ConsecutiveFailures: math.MaxInt32, LastStatus: StatusUnhealthy, LastTransition: t0.Add(-time.Hour)},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.start
			for i, s := range tc.statuses {
				got = got.Add(Result{Status: s}, at(i))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Tally after %v mismatch (-want +got):\n%s", tc.statuses, diff)
			}
		})
	}
}
