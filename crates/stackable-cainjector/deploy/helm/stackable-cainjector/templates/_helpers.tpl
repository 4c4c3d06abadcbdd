{{/* The chart name, or nameOverride. */}}
{{- define "stackable-cainjector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: fullnameOverride, the release name when it holds the chart name, else <release>-<chart>. */}}
{{- define "stackable-cainjector.fullname" -}}
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

{{- define "stackable-cainjector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stackable-cainjector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stackable-cainjector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stackable-cainjector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The namespaces that get a Role for Secrets: the watched ones and the service CA Secret's. */}}
{{- define "stackable-cainjector.secretNamespaces" -}}
{{- $namespaces := .Values.namespaces }}
{{- if .Values.serviceCa.secret }}
{{- $namespaces = append $namespaces (first (splitList "/" .Values.serviceCa.secret)) }}
{{- end }}
{{- $namespaces | uniq | toJson }}
{{- end }}
