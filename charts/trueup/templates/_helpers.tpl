{{/* Names and labels shared by every template. */}}
{{- define "trueup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "trueup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "trueup.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "trueup.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "trueup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "trueup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "trueup.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "trueup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: trueup
{{- end }}

{{- define "trueup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "trueup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "trueup.inventoryNamespace" -}}
{{- default .Release.Namespace .Values.inventoryNamespace }}
{{- end }}

{{- define "trueup.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "trueup.configMapName" -}}
{{- default (printf "%s-config" (include "trueup.fullname" .)) .Values.existingConfigMap }}
{{- end }}

{{/* The leader Lease: NAME-leader for the config's name, trueup-leader for
a config that sets none. With existingConfigMap the chart cannot see the
name, and says so. */}}
{{- define "trueup.leaseName" -}}
{{- if .Values.existingConfigMap }}
{{- print "trueup-leader (NAME-leader if the config sets name: NAME)" }}
{{- else }}
{{- printf "%s-leader" (default "trueup" .Values.config.name) }}
{{- end }}
{{- end }}

{{/* Where clusters[] mounts a cluster's kubeconfig. */}}
{{- define "trueup.clusterKubeconfig" -}}
{{- printf "/etc/trueup/clusters/%s/%s" .name (default "kubeconfig" .key) }}
{{- end }}
