{{/*
Names, labels, images and security contexts shared by every template.
Component helpers take a dict: "root" (the top-level context) and "component" (server, proxy, nginx,
jaeger).
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "lipsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: the release name, plus the chart name unless the release name contains it. */}}
{{- define "lipsync.fullname" -}}
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

{{/* The name of one component's resources, e.g. lipsync-server. */}}
{{- define "lipsync.componentName" -}}
{{- printf "%s-%s" (include "lipsync.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select one component's pods. */}}
{{- define "lipsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lipsync.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every label of one component's resources. */}}
{{- define "lipsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "lipsync.selectorLabels" . }}
app.kubernetes.io/part-of: lipsync
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* An image reference from {"root", "image"}: the tag defaults to the chart's appVersion. */}}
{{- define "lipsync.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}

{{/* Pod security context for a numeric user and group id (the argument). */}}
{{- define "lipsync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context: no privilege escalation, no capabilities, read-only root filesystem. */}}
{{- define "lipsync.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The OpenTelemetry environment of a service (the argument dict's "service" is its name). */}}
{{- define "lipsync.otelEnv" -}}
{{- $endpoint := .root.Values.otel.endpoint -}}
{{- if and (not $endpoint) .root.Values.jaeger.enabled -}}
{{- $endpoint = printf "http://%s:4317" (include "lipsync.componentName" (dict "root" .root "component" "jaeger")) -}}
{{- end -}}
- name: OTEL_SERVICE_NAME
  value: {{ .service }}
{{- if $endpoint }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $endpoint }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: grpc
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .root.Values.otel.samplerArg | quote }}
{{- else }}
- name: OTEL_TRACES_EXPORTER
  value: none
{{- end }}
- name: OTEL_METRICS_EXPORTER
  value: none
- name: OTEL_LOGS_EXPORTER
  value: none
{{- end }}
