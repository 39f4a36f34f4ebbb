{{- define "lockgate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lockgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lockgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lockgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "lockgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lockgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The endpoints file lockgate serve --config reads. */}}
{{- define "lockgate.endpointsFile" -}}
endpoints:
{{- range .Values.endpoints }}
  - name: {{ .name | quote }}
    model_uri: {{ .modelUri | quote }}
    {{- if hasKey . "follow" }}
    follow: {{ .follow }}
    {{- end }}
    {{- if hasKey . "onnx" }}
    onnx: {{ .onnx }}
    {{- end }}
    {{- with .canary }}
    canary:
      model_uri: {{ .modelUri | quote }}
      percent: {{ .percent }}
    {{- end }}
    {{- with .shadow }}
    shadow:
      model_uri: {{ .modelUri | quote }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* LOCKGATE_TRUSTED_SIGNERS: each trusted key's file under the signers volume, comma-separated. */}}
{{- define "lockgate.trustedSignerPaths" -}}
{{- $paths := list -}}
{{- range .trustedSigners.keys -}}
{{- $paths = append $paths (printf "/etc/lockgate-signers/%s" .) -}}
{{- end -}}
{{- join "," $paths -}}
{{- end -}}
