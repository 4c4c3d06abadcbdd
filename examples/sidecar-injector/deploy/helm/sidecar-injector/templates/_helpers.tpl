{{/* The chart name, or nameOverride. */}}
{{- define "sidecar-injector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: fullnameOverride, the release name when it holds the chart name, else <release>-<chart>. */}}
{{- define "sidecar-injector.fullname" -}}
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

{{- define "sidecar-injector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecar-injector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sidecar-injector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sidecar-injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The shared CA Secret (modes inject, install). */}}
{{- define "sidecar-injector.caSecret" -}}
{{- .Values.caSecret | default (printf "%s-webhook-ca" (include "sidecar-injector.fullname" .)) }}
{{- end }}

{{/* The cert-manager Certificate's name and Secret (mode certManager). */}}
{{- define "sidecar-injector.certificateName" -}}
{{- .Values.certManager.certificate.name | default (include "sidecar-injector.fullname" .) }}
{{- end }}
{{- define "sidecar-injector.tlsSecret" -}}
{{- .Values.certManager.secretName | default (printf "%s-tls" (include "sidecar-injector.fullname" .)) }}
{{- end }}

{{/* Whether the replicas share a CA Secret and talk to the API server (modes inject, install). */}}
{{- define "sidecar-injector.sharedCa" -}}
{{- if has .Values.certificateMode (list "inject" "install") }}true{{ end }}
{{- end }}
