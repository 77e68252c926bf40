package render

import (
	"path/filepath"
	"testing"

	deichv1alpha1 "github.com/deich-io/deich/api/v1alpha1"
)

func BenchmarkRender(b *testing.B) {
	src := fromFile(b, filepath.Join("testdata", "strip", "deployment.yaml"))
	overrides := []deichv1alpha1.Override{
		override(schwerin, "", patchOf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: buergerkonto-web}
spec:
  template:
    spec:
      containers:
      - name: web
        env: [{name: STATE, value: MV}]
`)),
		override("", standby, targeted(deichv1alpha1.PatchTarget{Group: "apps", Kind: "Deployment", Name: "buergerkonto-web"},
			"- op: add\n  path: /spec/template/spec/containers/0/env/-\n  value: {name: READ_ONLY, value: \"true\"}\n")),
	}
	for _, bc := range []struct {
		name   string
		target Target
	}{
		{"Deployment without overrides", standbyFor(deichv1alpha1.StandbyWarm)},
		{"Deployment with overrides that do not apply", func() Target {
			t := standbyFor(deichv1alpha1.StandbyWarm, overrides...)
			t.Site, t.Role = kiel, deichv1alpha1.RoleActive
			return t
		}()},
		{"Deployment with a strategic-merge and a JSON 6902 override", standbyFor(deichv1alpha1.StandbyWarm, overrides...)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			mustRender(b, src, bc.target) // kyaml parses its OpenAPI schema once, on first use
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(src, bc.target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
