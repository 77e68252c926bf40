package dashboard

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
)

func TestCheckHoldsQueriesToTheScrapedFamilies(t *testing.T) {
	got := exported{
		"deich_serving":           {kind: dto.MetricType_GAUGE, labels: set("namespace", "service", "site")},
		"deich_sync_errors_total": {kind: dto.MetricType_COUNTER, labels: set("namespace", "service", "reason")},
		"deich_recovery_seconds":  {kind: dto.MetricType_HISTOGRAM, labels: set("namespace", "service", "site")},
		"rpc_seconds":             {kind: dto.MetricType_SUMMARY, labels: set("method")},
		"up_total":                {kind: dto.MetricType_COUNTER, labels: set()},
	}
	for _, tc := range []struct {
		name string
		q    queried
		want []string
	}{{
		name: "a metric with the labels its query matches on passes",
		q:    queried{"deich_serving": {labels: set("namespace", "site"), where: []string{"panel A"}}},
	}, {
		name: "the target labels job and instance are Prometheus', not the manager's",
		q:    queried{"up_total": {labels: set("job", "instance"), where: []string{"panel A"}}},
	}, {
		name: "a histogram's series count as the histogram",
		q: queried{
			"deich_recovery_seconds_bucket": {labels: set("site"), where: []string{"panel A"}},
			"deich_recovery_seconds_sum":    {labels: set(), where: []string{"panel A"}},
			"deich_recovery_seconds_count":  {labels: set(), where: []string{"panel A"}},
		},
	}, {
		name: "a summary's _sum and _count count as the summary, it has no _bucket",
		q: queried{
			"rpc_seconds_sum":    {labels: set(), where: []string{"panel A"}},
			"rpc_seconds_bucket": {labels: set(), where: []string{"panel B"}},
		},
		want: []string{"rpc_seconds_bucket is not exported (queried by panel B)"},
	}, {
		name: "a _sum of a counter is a metric of its own",
		q:    queried{"up_total_sum": {labels: set(), where: []string{"panel A"}}},
		want: []string{"up_total_sum is not exported (queried by panel A)"},
	}, {
		name: "a metric no manager exports is reported with where it is queried",
		q:    queried{"deich_drills_total": {labels: set(), where: []string{"panel A", "panel B"}}},
		want: []string{"deich_drills_total is not exported (queried by panel A; panel B)"},
	}, {
		name: "a label the metric does not carry is reported",
		q:    queried{"deich_sync_errors_total": {labels: set("namespace", "site"), where: []string{"panel A"}}},
		want: []string{"deich_sync_errors_total has no label site (its labels: namespace, reason, service; queried by panel A)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, check(tc.q, got)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}
