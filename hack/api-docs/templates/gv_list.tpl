{{- /*
The entry point of crd-ref-docs' markdown renderer: the whole of docs/reference/api.md.
Kinds come in the order the guide introduces them; kinds not named here follow in
alphabetical order, so a new kind is never left out.
*/ -}}
{{- define "gvList" -}}
{{- $gv := index . 0 -}}
{{- $order := list "ReplicationPeer" "RecoveryObjective" "SharedService" "Switchover" -}}
{{- $kinds := list -}}
{{- range $order }}{{ if has . $gv.Kinds }}{{ $kinds = append $kinds . }}{{ end }}{{ end -}}
{{- range $gv.SortedKinds }}{{ if not (has . $kinds) }}{{ $kinds = append $kinds . }}{{ end }}{{ end -}}
{{- $pkg := (index $gv.Types (index $kinds 0)).Package -}}
{{- $seen := dict -}}
{{- range $kinds }}{{ $_ := set $seen . true }}{{ end -}}
<!-- Generated from api/v1alpha1 by `make api-docs` (templates in hack/api-docs). Do not edit. -->

# API reference: `{{ $gv.GroupVersionString }}`

Every kind and field of Deich's API, from the Go types in [`api/v1alpha1`](../../api/v1alpha1):
the descriptions are the ones `kubectl explain` shows, the defaults and validation rules are the
ones the API server applies. For an overview with commented examples see the
[API guide](../api.md).

| Kind | Scope | Short name | What it is |
| --- | --- | --- | --- |
{{- range $kinds }}
{{- $t := index $gv.Types . }}
{{- $res := index (index $t.Markers "kubebuilder:resource") 0 }}
| [{{ . }}](#{{ lower . }}) | {{ $res.Scope }} | {{ range $i, $n := $res.ShortName }}{{ if $i }}, {{ end }}`{{ $n }}`{{ end }} | {{ template "firstSentence" $t.Doc }} |
{{- end }}

All kinds are in the category `deich`: `kubectl get deich` lists them together.

Conventions used below:

- A field is optional unless its validation says **Required**.
- Durations are strings in Go's notation: `500ms`, `30s`, `2m`, `1h30m`.
- Times are RFC 3339 strings, for example `2026-11-23T18:30:00Z`.
- Rules under a type's table are checked by the API server on every create and update; a
  request that breaks one is rejected with the message shown.
{{ range $kinds }}{{ template "kind" (dict "gv" $gv "pkg" $pkg "seen" $seen "type" (index $gv.Types .)) }}{{ end }}
{{- end -}}
