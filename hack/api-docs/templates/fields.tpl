{{- /*
rows: one table row per field of .type: name, type, description, default, validation.
*/ -}}
{{- define "rows" -}}
{{- $args := . -}}
{{- range .type.Members }}
| `{{ .Name }}` | {{ template "fieldType" (dict "t" .Type "args" $args) }} | {{ if eq .Name "metadata" }}Standard object metadata: name{{ if not (eq (index (index $args.type.Markers "kubebuilder:resource") 0).Scope "Cluster") }}, namespace{{ end }}, labels, annotations.{{ else }}{{ template "cell" .Doc }}{{ end }} | {{ template "default" .Markers }} | {{ template "validation" (dict "field" . "args" $args) }} |
{{- end }}
{{- end -}}

{{- /*
fieldType: the type of a field as a user writes it in YAML: a list of X, a link to the
section of an API type, or a plain name.
*/ -}}
{{- define "fieldType" -}}
{{- $t := .t -}}
{{- $meta := "k8s.io/apimachinery/pkg/apis/meta/v1" -}}
{{- if eq (int $t.Kind) 5 }}list of {{ end -}}
{{- if and (eq $t.Package .args.pkg) (index .args.gv.Types $t.Name) -}}
[{{ $t.Name }}](#{{ lower $t.Name }})
{{- else if and (eq $t.Package $meta) (has $t.Name (list "Duration")) -}}
duration
{{- else if and (eq $t.Package $meta) (has $t.Name (list "Time" "MicroTime")) -}}
time
{{- else if and (eq $t.Package $meta) (eq $t.Name "Condition") -}}
[Condition](https://pkg.go.dev/k8s.io/apimachinery/pkg/apis/meta/v1#Condition)
{{- else if and (eq $t.Package $meta) (eq $t.Name "LabelSelector") -}}
[LabelSelector](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/)
{{- else if and (eq $t.Package $meta) (eq $t.Name "ObjectMeta") -}}
[ObjectMeta](https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/)
{{- else if hasPrefix "int" $t.Name -}}
integer
{{- else if eq $t.Name "bool" -}}
boolean
{{- else -}}
{{ $t.Name }}
{{- end -}}
{{- end -}}

{{- /* default: the value of +kubebuilder:default, as it would be written in YAML or JSON. */ -}}
{{- define "default" -}}
{{- with index . "kubebuilder:default" -}}
{{- $v := (index . 0).Value -}}
{{- if kindIs "string" $v }}`{{ $v }}`{{ else }}`{{ toJson $v | replace "\"" "" | replace "," ", " | replace ":" ": " }}`{{ end -}}
{{- end -}}
{{- end -}}

{{- /*
validation: what the API server enforces on a field, one item per line. Rules declared on
the field's own type are listed in that type's section, not repeated here.
*/ -}}
{{- define "validation" -}}
{{- $f := .field -}}
{{- $m := $f.Markers -}}
{{- $own := list -}}
{{- $typ := index .args.gv.Types $f.Type.Name -}}
{{- if and $typ (eq $f.Type.Package .args.pkg) }}{{ range index $typ.Markers "kubebuilder:validation:XValidation" }}{{ $own = append $own .Message }}{{ end }}{{ end -}}
{{- $items := list -}}
{{- if or (index $m "required") (index $m "kubebuilder:validation:Required") }}{{ $items = append $items "**Required**" }}{{ end -}}
{{- with index $m "kubebuilder:validation:Enum" }}{{ $vals := list }}{{ range index . 0 }}{{ $vals = append $vals (printf "`%v`" .) }}{{ end }}{{ $items = append $items (printf "One of %s" (join ", " $vals)) }}{{ end -}}
{{- $duration := and (eq $f.Type.Name "Duration") (eq $f.Type.Package "k8s.io/apimachinery/pkg/apis/meta/v1") -}}
{{- if not $duration -}}
{{- $min := index $m "kubebuilder:validation:MinLength" }}{{ $max := index $m "kubebuilder:validation:MaxLength" -}}
{{- if and $min $max }}{{ $items = append $items (printf "%v to %v characters" (index $min 0) (index $max 0)) -}}
{{- else if $max }}{{ $items = append $items (printf "At most %v characters" (index $max 0)) -}}
{{- else if $min }}{{ $items = append $items (printf "At least %v characters" (index $min 0)) }}{{ end -}}
{{- with index $m "kubebuilder:validation:Pattern" }}{{ $items = append $items (printf "Matches `%s`" (printf "%s" (index . 0) | replace "|" "\\|")) }}{{ end -}}
{{- end -}}
{{- $min := index $m "kubebuilder:validation:Minimum" }}{{ $max := index $m "kubebuilder:validation:Maximum" -}}
{{- if and $min $max }}{{ $items = append $items (printf "%v to %v" (index $min 0) (index $max 0)) -}}
{{- else if $max }}{{ $items = append $items (printf "At most %v" (index $max 0)) -}}
{{- else if $min }}{{ $items = append $items (printf "At least %v" (index $min 0)) }}{{ end -}}
{{- $min = index $m "kubebuilder:validation:MinItems" }}{{ $max = index $m "kubebuilder:validation:MaxItems" -}}
{{- if and $min $max }}{{ $items = append $items (printf "%v to %v items" (index $min 0) (index $max 0)) -}}
{{- else if $max }}{{ $items = append $items (printf "At most %v items" (index $max 0)) -}}
{{- else if $min }}{{ $items = append $items (printf "At least %v items" (index $min 0)) }}{{ end -}}
{{- with index $m "listMapKey" }}{{ $keys := list }}{{ range . }}{{ $keys = append $keys (printf "`%v`" .) }}{{ end }}{{ $items = append $items (printf "Unique by %s" (join ", " $keys)) }}{{ end -}}
{{- range index $m "kubebuilder:validation:XValidation" }}{{ if not (has .Message $own) }}{{ $items = append $items (.Message | replace "|" "\\|" | replace "<" "&lt;") }}{{ end }}{{ end -}}
{{- join "<br />" $items -}}
{{- end -}}
