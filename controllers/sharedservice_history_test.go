package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func move(from, to string, epoch int64, completed time.Time) deichv1alpha1.FailoverRecord {
	return deichv1alpha1.FailoverRecord{From: from, To: to, Epoch: epoch, CompletedAt: &metav1.Time{Time: completed}}
}

func TestMergeHistoryKeepsEveryMoveOnceNewestFirst(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	// sh-kiel recorded the moves it served after (epochs 3 and 5), mv-schwerin those it served
	// after (2 and 4); each has already merged some of the other's.
	kiel := []deichv1alpha1.FailoverRecord{move("mv-schwerin", "sh-kiel", 3, t0.Add(2*time.Hour)), move("sh-kiel", "mv-schwerin", 2, t0.Add(time.Hour))}
	schwerin := []deichv1alpha1.FailoverRecord{
		move("sh-kiel", "mv-schwerin", 4, t0.Add(3*time.Hour)), move("mv-schwerin", "sh-kiel", 3, t0.Add(2*time.Hour)), move("sh-kiel", "mv-schwerin", 2, t0.Add(time.Hour)),
	}
	got := mergeHistory(kiel, schwerin)
	var epochs []int64
	for _, rec := range got {
		epochs = append(epochs, rec.Epoch)
	}
	if want := []int64{4, 3, 2}; len(epochs) != len(want) || epochs[0] != 4 || epochs[1] != 3 || epochs[2] != 2 {
		t.Fatalf("merged epochs %v, want %v", epochs, want)
	}
	if again := mergeHistory(got, schwerin); len(again) != 3 {
		t.Errorf("merging twice gave %d records", len(again))
	}
}

func TestMergeHistoryIsBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	var ours, theirs []deichv1alpha1.FailoverRecord
	for i := range 2 * maxFailoverHistory {
		rec := move("sh-kiel", "mv-schwerin", int64(i+2), t0.Add(time.Duration(i)*time.Minute))
		if i%2 == 0 {
			ours = append([]deichv1alpha1.FailoverRecord{rec}, ours...)
		} else {
			theirs = append([]deichv1alpha1.FailoverRecord{rec}, theirs...)
		}
	}
	got := mergeHistory(ours, theirs)
	if len(got) != maxFailoverHistory || got[0].Epoch != int64(2*maxFailoverHistory+1) {
		t.Fatalf("kept %d records, newest epoch %d", len(got), got[0].Epoch)
	}
}

func TestMergeHistoryKnowsRecordsWithoutEpochByTheirTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	old := move("sh-kiel", "mv-schwerin", 0, t0)
	if got := mergeHistory([]deichv1alpha1.FailoverRecord{old}, []deichv1alpha1.FailoverRecord{old}); len(got) != 1 {
		t.Errorf("the same record without epoch kept %d times", len(got))
	}
	other := move("sh-kiel", "mv-schwerin", 0, t0.Add(time.Minute))
	if got := mergeHistory([]deichv1alpha1.FailoverRecord{old}, []deichv1alpha1.FailoverRecord{other}); len(got) != 2 {
		t.Errorf("two moves without epoch merged into %d", len(got))
	}
}

func TestHistoryBehind(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		epoch   int64
		history []deichv1alpha1.FailoverRecord
		want    bool
	}{
		{"the first claim is no move", 1, nil, false},
		{"no lease read yet", 0, nil, false},
		{"a move this site did not record", 2, nil, true},
		{"the move is recorded", 2, []deichv1alpha1.FailoverRecord{move("sh-kiel", "mv-schwerin", 2, t0)}, false},
		{"a later move is missing", 3, []deichv1alpha1.FailoverRecord{move("sh-kiel", "mv-schwerin", 2, t0)}, true},
	} {
		if got := historyBehind(tc.epoch, tc.history); got != tc.want {
			t.Errorf("%s: historyBehind = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHistoryBookAsksAFewTimesPerEpoch(t *testing.T) {
	var b historyBook
	owner := types.NamespacedName{Namespace: "ns", Name: "svc"}
	now := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	if !b.due(owner, 2, now) {
		t.Fatal("first ask not due")
	}
	if b.due(owner, 2, now.Add(time.Second)) {
		t.Error("asked again within historyAskInterval")
	}
	asks := 1
	for i := 1; i < 3*historyAsks; i++ {
		if b.due(owner, 2, now.Add(time.Duration(i)*historyAskInterval)) {
			asks++
		}
	}
	if asks != historyAsks {
		t.Errorf("asked %d times for one epoch, want %d", asks, historyAsks)
	}
	if !b.due(owner, 3, now.Add(time.Hour)) {
		t.Error("a new epoch is not asked for")
	}
}
