package failover

import (
	"testing"
	"time"
)

func TestNextStage(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	minute := time.Minute
	tests := []struct {
		name   string
		stages []StageView
		now    time.Time
		want   StageStep
	}{
		{name: "a fenced service switches its first stage",
			stages: []StageView{{Standby: 1}, {Standby: 2}, {Standby: 3, Ready: true}},
			want:   StageStep{Switch: 0, Waiting: -1}},
		{name: "a stage switched but not ready is waited for, not passed",
			stages: []StageView{{Active: 1, ActiveSince: t0, Timeout: minute}, {Standby: 2}},
			now:    t0.Add(30 * time.Second),
			want:   StageStep{Switch: -1, Waiting: 0, TimesOutAt: t0.Add(minute)}},
		{name: "a stage that is not ready within its timeout stops the promotion",
			stages: []StageView{{Active: 1, ActiveSince: t0, Timeout: minute}, {Standby: 2}},
			now:    t0.Add(minute),
			want:   StageStep{Switch: -1, Waiting: 0, TimedOut: true, TimesOutAt: t0.Add(minute)}},
		{name: "a stage without a timeout waits for ever",
			stages: []StageView{{Active: 1, ActiveSince: t0}, {Standby: 2}},
			now:    t0.Add(24 * time.Hour),
			want:   StageStep{Switch: -1, Waiting: 0}},
		{name: "a ready stage lets the next one switch",
			stages: []StageView{{Active: 1, Ready: true}, {Standby: 2}, {Standby: 1}},
			want:   StageStep{Switch: 1, Waiting: -1}},
		{name: "a stage partly in standby form is switched again",
			stages: []StageView{{Active: 1, Ready: true}, {Standby: 1, Active: 1}},
			want:   StageStep{Switch: 1, Waiting: -1}},
		{name: "a stage with no objects is passed when ready",
			stages: []StageView{{Ready: true}, {Standby: 1}},
			want:   StageStep{Switch: 1, Waiting: -1}},
		{name: "every stage active and ready: done",
			stages: []StageView{{Active: 1, Ready: true}, {Active: 3, Ready: true}},
			want:   StageStep{Switch: -1, Waiting: -1, Done: true}},
		{name: "a later stage already active does not let an earlier, unready one be passed",
			stages: []StageView{{Active: 1}, {Active: 2, Ready: true}},
			want:   StageStep{Switch: -1, Waiting: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextStage(tt.stages, tt.now); got != tt.want {
				t.Errorf("NextStage = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNextFence(t *testing.T) {
	tests := []struct {
		name   string
		stages []StageView
		want   int
	}{
		{name: "the last stage with an active object first", stages: []StageView{{Active: 1}, {Active: 1}, {Standby: 2}}, want: 1},
		{name: "readiness does not matter", stages: []StageView{{Active: 1, Ready: true}, {Active: 1}}, want: 1},
		{name: "a stage partly fenced is fenced again", stages: []StageView{{Active: 1}, {Standby: 1, Active: 1}}, want: 1},
		{name: "everything in standby form", stages: []StageView{{Standby: 1}, {}}, want: -1},
		{name: "no stages", want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NextFence(tt.stages); got != tt.want {
				t.Errorf("NextFence = %d, want %d", got, tt.want)
			}
		})
	}
}
