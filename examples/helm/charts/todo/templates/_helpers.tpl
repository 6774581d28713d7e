{{- define "todo.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "todo.selector" -}}
app.kubernetes.io/name: todo
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "todo.labels" -}}
{{ include "todo.selector" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "todo.env" -}}
- name: DATABASE_HOST
  value: {{ .Values.database.host | quote }}
- name: DATABASE_NAME
  valueFrom: {secretKeyRef: {name: {{ .Values.database.secretName }}, key: database}}
- name: DATABASE_USER
  valueFrom: {secretKeyRef: {name: {{ .Values.database.secretName }}, key: username}}
- name: DATABASE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.database.secretName }}, key: password}}
{{- end -}}
