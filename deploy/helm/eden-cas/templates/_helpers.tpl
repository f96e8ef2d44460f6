{{/* Name of every object: the release name, plus the chart's unless they are the same. */}}
{{- define "eden-cas.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "eden-cas.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "eden-cas.labels" -}}
{{ include "eden-cas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "eden-cas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "eden-cas.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* EDEN_CAS_BLOB_STORE: empty for fs (the data dir's blobs/), else scheme://bucket[/prefix]. */}}
{{- define "eden-cas.blobStore" -}}
{{- $b := .Values.blobStore -}}
{{- if eq $b.backend "s3" -}}
{{- printf "s3://%s/%s" $b.s3.bucket ($b.s3.prefix | default "") | trimSuffix "/" -}}
{{- else if eq $b.backend "gcs" -}}
{{- printf "gs://%s/%s" $b.gcs.bucket ($b.gcs.prefix | default "") | trimSuffix "/" -}}
{{- else if eq $b.backend "azblob" -}}
{{- printf "azblob://%s/%s" $b.azblob.container ($b.azblob.prefix | default "") | trimSuffix "/" -}}
{{- end -}}
{{- end -}}
