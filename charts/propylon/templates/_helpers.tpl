{{/* Names and labels shared by every template of the chart. */}}

{{- define "propylon.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The gateway's name: its proxy Deployment, Services and "<name>-snapshot" Secret are named after it. */}}
{{- define "propylon.gatewayName" -}}
{{- default .Release.Name .Values.gateway.name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The proxy pods' ServiceAccount: the operator creates it as "<gateway>-proxy" in the release namespace. */}}
{{- define "propylon.proxyServiceAccountName" -}}
{{- printf "%s-proxy" (include "propylon.gatewayName" .) -}}
{{- end -}}

{{/*
The proxies' cluster-wide ClusterRole and its binding. The namespace is in the name because
cluster-scoped names are shared by every release in the cluster.
*/}}
{{- define "propylon.proxyClusterRoleName" -}}
{{- printf "%s-proxy-%s" (include "propylon.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/*
The operator's ValidatingWebhookConfiguration: cluster-scoped, so named per release and namespace
(two releases with the webhook on must not fight over one object).
*/}}
{{- define "propylon.webhookConfigurationName" -}}
{{- printf "%s.%s.propylon.dev" (include "propylon.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "." -}}
{{- end -}}

{{- define "propylon.operatorName" -}}
{{- printf "%s-operator" (include "propylon.fullname" .) -}}
{{- end -}}

{{/*
The operator's ClusterRole and ClusterRoleBinding, and its reading Roles in watched namespaces:
cluster-scoped names, and namespaces, are shared by every release, so the release namespace is in
the name. Without it a release of the same name in another namespace took over the binding (server-
side apply replaced its subjects), or `helm install` refused the second release.
*/}}
{{- define "propylon.operatorClusterName" -}}
{{- printf "%s-operator-%s" (include "propylon.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end -}}

{{/*
The operator's ServiceAccount: serviceAccount.name, else "<release>-operator", whether the chart
creates it or not. With create: false it names an account made beforehand; never the namespace's
"default" account, which every other pod there runs as and would share the operator's rights.
*/}}
{{- define "propylon.serviceAccountName" -}}
{{- default (include "propylon.operatorName" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/*
A value as a flag or variable carries it: a string as it is, a number or boolean as JSON writes it.
Helm reads every number of a values file as a float64, which %v (and so quote, toString and a bare
{{ }}) writes from a million up with an exponent: 1e+06, which the operator's whole-number flags
refuse (--gateway-burst: a crash loop) and a proxy's OTEL_* variable may too. int64 would cut a
fractional rate; JSON writes 1000000, 2500000.5 and 0.25, every digit kept and no exponent.
*/}}
{{- define "propylon.plain" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "propylon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "propylon.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "propylon.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: propylon
{{- end -}}

{{/* The Redis URL the proxies use: redis.url, else the bundled Redis's Service when it is enabled, else empty. */}}
{{- define "propylon.redisURL" -}}
{{- if .Values.redis.url -}}
{{- .Values.redis.url -}}
{{- else if .Values.redis.bundled.enabled -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "propylon.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
