package main

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
	"github.com/deich-io/deich/internal/testenv"
)

func TestSwitchoverMovesTheServiceAndHistoryTellsIt(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "switchover")

	t.Run("a drill towards the standby passes and changes nothing", func(t *testing.T) {
		r := deich("switchover", s.name, "-n", s.ns, "--to", testenv.SiteSchwerin, "--drill", "--wait", "--name", "drill-to-schwerin")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stdout+r.stderr)
		golden(t, "switchover-drill.golden", r.stdout)
		g.Expect(s.status(ctx, kiel)()).To(HaveField("Status.ActiveSite", testenv.SiteKiel))
	})

	t.Run("--wait follows a move to the standby until it succeeded", func(t *testing.T) {
		r := deich("switchover", s.name, "-n", s.ns, "--to", testenv.SiteSchwerin, "--wait", "--name", "move-to-schwerin",
			"--reason", "CHG-4711: power maintenance in Kiel")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stdout+r.stderr)
		golden(t, "switchover-wait.golden", r.stdout)
		sw := &deichv1alpha1.Switchover{}
		g.Expect(schwerin.Client.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "move-to-schwerin"}, sw)).To(Succeed(), "created at the target")
		g.Expect(sw.Status.Phase).To(Equal(deichv1alpha1.SwitchoverSucceeded))
	})

	s.waitProtected(ctx, g, testenv.SiteSchwerin)

	t.Run("history merges both sites' records of the move", func(t *testing.T) {
		g.Eventually(func() ([]string, error) {
			r := deich("history", s.name, "-n", s.ns, "-o", "json")
			if r.err != nil {
				return nil, r.err
			}
			var view HistoryView
			if err := json.Unmarshal([]byte(r.stdout), &view); err != nil {
				return nil, err
			}
			if len(view.Moves) != 1 {
				return nil, nil
			}
			return view.Moves[0].RecordedAt, nil
		}).Should(Equal([]string{testenv.SiteSchwerin, testenv.SiteKiel}), "both sites record the move")

		r := deich("history", s.name, "-n", s.ns)
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		golden(t, "history.golden", r.stdout)

		r = deich("history", s.name, "-n", s.ns, "-o", "yaml")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		golden(t, "history.yaml.golden", r.stdout)
	})

	t.Run("status after the move", func(t *testing.T) {
		r := deich("status", "-n", s.ns)
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		golden(t, "status-after-move.golden", r.stdout)
	})
}

func TestBadInputIsRefusedWithAClearError(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "bad-input")

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown service", []string{"status", "nosuch", "-n", s.ns},
			`SharedService "nosuch" not found in namespace bad-input at sh-kiel and mv-schwerin`},
		{"the history of an unknown service", []string{"history", "nosuch", "-n", s.ns},
			`SharedService "nosuch" not found in namespace bad-input at sh-kiel and mv-schwerin`},
		{"a switchover of an unknown service", []string{"switchover", "nosuch", "-n", s.ns, "--to", testenv.SiteSchwerin},
			`SharedService "nosuch" not found in namespace bad-input at sh-kiel and mv-schwerin`},
		{"a switchover to an unknown site", []string{"switchover", s.name, "-n", s.ns, "--to", "hh-hamburg"},
			`unknown site "hh-hamburg": SharedService bad-input/buergerkonto is shared by sh-kiel (primary) and mv-schwerin (standby)`},
		{"a switchover without a target", []string{"switchover", s.name, "-n", s.ns},
			`required flag(s) "to" not set`},
		{"an unknown output format", []string{"status", "-n", s.ns, "-o", "xml"},
			`unknown output format "xml": use json or yaml, or leave -o out for a table`},
		{"an unknown peer context", []string{"status", "-n", s.ns, "--peer-context", "nosuch"},
			`--peer-context "nosuch": no such context in the kubeconfig`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := deich(c.args...)
			g.Expect(r.err).To(MatchError(ContainSubstring(c.want)))
			g.Expect(r.stdout).To(BeEmpty())
		})
	}

	var list deichv1alpha1.SwitchoverList
	for _, site := range []*testenv.Site{kiel, schwerin} {
		g.Expect(site.Client.List(ctx, &list, client.InNamespace(s.ns))).To(Succeed())
		g.Expect(list.Items).To(BeEmpty(), "bad input creates no Switchover at %s", site.Name)
	}
}
