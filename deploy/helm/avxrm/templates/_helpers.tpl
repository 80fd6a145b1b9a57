{{- define "avxrm.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "avxrm.labels" -}}
app.kubernetes.io/name: avxrm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "avxrm.jobsNamespace" -}}{{ .Values.jobsNamespace | default .Release.Namespace }}{{- end -}}
