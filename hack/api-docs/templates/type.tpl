{{- /*
kind: the section of one kind, followed by the sections of every type it uses that no earlier
kind used. Argument: dict with gv, pkg (the API's Go package), seen (names already rendered)
and type.
*/ -}}
{{- define "kind" -}}
{{- $t := .type -}}
{{- $res := index (index $t.Markers "kubebuilder:resource") 0 }}
## {{ $t.Name }}

{{ template "paragraphs" $t.Doc }}

{{ if eq $res.Scope "Cluster" }}Cluster-scoped{{ else }}Namespaced{{ end }}
{{- range $i, $n := $res.ShortName }}{{ if $i }},{{ else }}; short name{{ end }} `{{ $n }}`{{ end }}.
{{- with index $t.Markers "kubebuilder:printcolumn" }}
{{- $wide := list }}{{ $plain := list }}
{{- range . }}{{ if gt .Priority 0 }}{{ $wide = append $wide (upper .Name) }}{{ else }}{{ $plain = append $plain (upper .Name) }}{{ end }}{{ end }}
`kubectl get` shows {{ join ", " $plain }}{{ if $wide }}; `-o wide` adds {{ join ", " $wide }}{{ end }}.
{{- end }}
{{ template "rules" $t }}
| Field | Type | Description | Default | Validation |
| --- | --- | --- | --- | --- |
| `apiVersion` | string | `{{ .gv.GroupVersionString }}` | | **Required** |
| `kind` | string | `{{ $t.Name }}` | | **Required** |
{{- template "rows" . }}
{{ template "walk" . }}
{{- end -}}

{{- /*
walk: the sections of the types the fields of .type use, depth first, each type once.
*/ -}}
{{- define "walk" -}}
{{- $args := . -}}
{{- range .type.Members -}}
{{- $child := index $args.gv.Types .Type.Name -}}
{{- if and $child (eq .Type.Package $args.pkg) (not (hasKey $args.seen .Type.Name)) -}}
{{- $_ := set $args.seen .Type.Name true -}}
{{- $next := dict "gv" $args.gv "pkg" $args.pkg "seen" $args.seen "type" $child -}}
{{- template "type" $next -}}
{{- template "walk" $next -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /*
type: the section of a struct (its fields) or of a string type (its allowed values).
*/ -}}
{{- define "type" -}}
{{- $t := .type -}}
{{- $args := . }}
### {{ $t.Name }}

{{ template "paragraphs" $t.Doc }}
{{- $refs := list -}}
{{- range $t.SortedReferences }}{{ if and (eq .Package $args.pkg) (index $args.gv.Types .Name) }}{{ $refs = append $refs (printf "[%s](#%s)" .Name (lower .Name)) }}{{ end }}{{ end }}
{{- if $refs }}

Used in {{ join ", " (uniq $refs) }}.
{{- end }}
{{ if $t.EnumValues }}
| Value | Meaning |
| --- | --- |
{{- range $t.EnumValues }}
| `{{ .Name }}` | {{ template "constDoc" .Doc }} |
{{- end }}
{{ else if index $t.Markers "kubebuilder:validation:Enum" }}
One of {{ range $i, $v := index (index $t.Markers "kubebuilder:validation:Enum") 0 }}{{ if $i }}, {{ end }}`{{ $v }}`{{ end }}.
{{ else if $t.Members }}
{{- template "rules" $t }}
| Field | Type | Description | Default | Validation |
| --- | --- | --- | --- | --- |
{{- template "rows" . }}
{{ end }}
{{- end -}}

{{- /*
rules: the CEL rules declared on a type, as the messages the API server answers with.
*/ -}}
{{- define "rules" -}}
{{- with index .Markers "kubebuilder:validation:XValidation" }}
Rules:
{{ range . }}
- {{ .Message }}
{{- end }}
{{ end -}}
{{- end -}}
