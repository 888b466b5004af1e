{{/* The chart name, or nameOverride. */}}
{{- define "mlsd-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already holds the
chart name (`helm install mlsd-operator ...` gives plain `mlsd-operator`, as in manifests/), else
RELEASE-mlsd-operator.
*/}}
{{- define "mlsd-operator.fullname" -}}
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

{{/* Labels that select the operator pods; never change them in an upgrade (selectors are immutable). */}}
{{- define "mlsd-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlsd-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "mlsd-operator.labels" -}}
{{ include "mlsd-operator.selectorLabels" . }}
app.kubernetes.io/part-of: mlsd-serving
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mlsd-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlsd-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlsd-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The samples to install, as a JSON list: samples.include, or every file in files/samples. */}}
{{- define "mlsd-operator.samples" -}}
{{- $names := list }}
{{- if .Values.samples.include }}
{{- $names = .Values.samples.include }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/samples/*.yaml" }}
{{- $names = append $names (base $path | trimSuffix ".yaml") }}
{{- end }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* Whether to create an optional monitoring object: (list SETTING "group/version/Kind" $).
     SETTING true or false decides; "auto" creates it when the cluster serves that kind. */}}
{{- define "mlsd-operator.wanted" -}}
{{- $setting := index . 0 }}{{- $kind := index . 1 }}{{- $root := index . 2 }}
{{- if eq (toString $setting) "auto" }}
{{- if $root.Capabilities.APIVersions.Has $kind }}true{{- end }}
{{- else if $setting }}true{{- end }}
{{- end }}
