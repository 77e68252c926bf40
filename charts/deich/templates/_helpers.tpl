{{/*
deich.name is the chart name, or nameOverride.
*/}}
{{- define "deich.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
deich.fullname prefixes every object name: the release name when it contains the chart name
(release "deich" gives deich-manager, deich-manager-role, ...), else "<release>-<chart>".
*/}}
{{- define "deich.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
deich.managerName names the Deployment, its ServiceAccount and PodDisruptionBudget.
*/}}
{{- define "deich.managerName" -}}
{{- printf "%s-manager" (include "deich.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
deich.labels go on every object.
*/}}
{{- define "deich.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "deich.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: deich
{{- end }}

{{/*
deich.selectorLabels identify this release's objects.
*/}}
{{- define "deich.selectorLabels" -}}
app.kubernetes.io/name: {{ include "deich.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
deich.managerSelectorLabels select the manager's Pods.
*/}}
{{- define "deich.managerSelectorLabels" -}}
{{ include "deich.selectorLabels" . }}
app.kubernetes.io/component: manager
{{- end }}

{{/*
deich.site is the validated site name; rendering fails when it is unset or not a DNS label.
*/}}
{{- define "deich.site" -}}
{{- $site := required "site is required: set it to this cluster's site name, e.g. --set site=sh-kiel" .Values.site | toString }}
{{- if not (and (le (len $site) 63) (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $site)) }}
{{- fail (printf "site %q is not a DNS label: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit" $site) }}
{{- end }}
{{- $site }}
{{- end }}

{{/*
deich.image is the manager image reference.
*/}}
{{- define "deich.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
deich.generatedRBAC returns the manager's generated RBAC (files/role.yaml, a copy of
config/rbac/role.yaml that `make manifests` keeps current) as a map from kind to object.
*/}}
{{- define "deich.generatedRBAC" -}}
{{- $file := .Files.Get "files/role.yaml" }}
{{- if not $file }}
{{- fail "files/role.yaml is missing from the chart: run `make manifests`" }}
{{- end }}
{{- $objects := dict }}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" $file -1 }}
{{- if trim $doc }}
{{- $obj := fromYaml $doc }}
{{- if hasKey $obj "Error" }}
{{- fail (printf "files/role.yaml: %s" $obj.Error) }}
{{- end }}
{{- $_ := set $objects $obj.kind $obj }}
{{- end }}
{{- end }}
{{- toYaml $objects }}
{{- end }}

{{/*
deich.managerSubject is the manager's ServiceAccount as an RBAC subject list item.
*/}}
{{- define "deich.managerSubject" -}}
- kind: ServiceAccount
  name: {{ include "deich.managerName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
