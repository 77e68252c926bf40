package main

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
)

func TestStatusShowsAProtectedServiceAtBothSites(t *testing.T) {
	ctx := context.Background()
	g := newG(t)
	s := setUp(ctx, t, g, "status")

	t.Run("the table has a row per site, the other site found through the ReplicationPeer", func(t *testing.T) {
		r := deich("status", "-n", s.ns)
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		g.Expect(r.stderr).To(BeEmpty())
		golden(t, "status.golden", r.stdout)
	})

	t.Run("json names each site by its objects, not by its context", func(t *testing.T) {
		r := deich("status", s.name, "-n", s.ns, "--peer-context", ctxSchwerin, "-o", "json")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		var view StatusView
		g.Expect(json.Unmarshal([]byte(r.stdout), &view)).To(Succeed())
		g.Expect(view.Sites).To(HaveLen(2))
		g.Expect(view.Sites[0]).To(And(HaveField("Name", "sh-kiel"), HaveField("NameFrom", nameFromStatus), HaveField("Via", `context "kiel-admin"`)))
		g.Expect(view.Sites[1]).To(And(HaveField("Name", "mv-schwerin"), HaveField("NameFrom", nameFromStatus), HaveField("Via", `context "schwerin-admin"`)))
		golden(t, "status.json.golden", r.stdout)
	})

	t.Run("yaml", func(t *testing.T) {
		r := deich("status", s.name, "-n", s.ns, "--peer-context", ctxSchwerin, "-o", "yaml")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		golden(t, "status.yaml.golden", r.stdout)
	})

	t.Run("a site behind a cut link is a row that says it is unreachable", func(t *testing.T) {
		pluginLink.Cut()
		defer pluginLink.Restore()
		r := deich("status", "-n", s.ns, "--peer-context", ctxSchwerinCut, "--site-timeout", "3s")
		g.Expect(r.err).NotTo(HaveOccurred(), r.stderr)
		golden(t, "status-unreachable.golden", r.stdout)
	})

	t.Run("with no site to read the command fails and says why", func(t *testing.T) {
		pluginLink.Cut()
		defer pluginLink.Restore()
		r := deich("status", "-n", s.ns, "--context", ctxSchwerinCut, "--site-timeout", "2s")
		g.Expect(r.err).To(MatchError(ContainSubstring(`no site could be read: schwerin-through-a-cut-link (context "schwerin-through-a-cut-link"): unreachable`)))
		g.Expect(r.stdout).To(BeEmpty())
	})
}
