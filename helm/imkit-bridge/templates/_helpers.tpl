{{- define "imkit-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "imkit-bridge.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "imkit-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imkit-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "imkit-bridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "imkit-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "imkit-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imkit-bridge.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "imkit-bridge.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else if .Values.secrets.values -}}
{{- include "imkit-bridge.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Path the image's IMKIT_BRIDGE_CONFIG points at; the ConfigMap is mounted there. */}}
{{- define "imkit-bridge.configDir" -}}/etc/imkit-bridge{{- end -}}

{{/* Where redisTls.existingSecret is mounted (ca.crt, tls.crt, tls.key). */}}
{{- define "imkit-bridge.redisTlsDir" -}}/etc/imkit-bridge/redis-tls{{- end -}}

{{/* config.redis with the chart's default server when it names none (JSON). */}}
{{- define "imkit-bridge.redisConfig" -}}
{{- $redis := deepCopy (.Values.config.redis | default dict) -}}
{{- if not (or $redis.url $redis.sentinels $redis.cluster) -}}
{{- $_ := set $redis "url" "redis://imkit-bridge-redis:6379" -}}
{{- end -}}
{{- toJson $redis -}}
{{- end -}}

{{/*
The Redis URLs of config.redis, whichever topology: url, sentinels or cluster.
*/}}
{{- define "imkit-bridge.redisUrls" -}}
{{- $redis := include "imkit-bridge.redisConfig" . | fromJson -}}
{{- if $redis.sentinels }}{{ toJson $redis.sentinels }}
{{- else if $redis.cluster }}{{ toJson $redis.cluster }}
{{- else }}{{ toJson (list $redis.url) }}
{{- end -}}
{{- end -}}

{{/*
The bridge's bridge.yaml: config from values plus what the chart owns (admin server on the
Service port, shutdown timeout below the pod's termination grace period, ingest sharing from
ingest.copies, ingest.lease and ingest.catchUpConcurrency).
*/}}
{{- define "imkit-bridge.bridgeConfig" -}}
{{- $config := deepCopy .Values.config -}}
{{- $redis := include "imkit-bridge.redisConfig" . | fromJson -}}
{{- $_ := set $config "redis" $redis -}}
{{- with .Values.redisTls.existingSecret -}}
{{- range include "imkit-bridge.redisUrls" $ | fromJsonArray -}}
{{- if not (or (hasPrefix "rediss://" .) (contains "${env:" .)) -}}
{{- fail (printf "redisTls.existingSecret needs rediss:// addresses in config.redis (got %s)" (regexReplaceAll "//[^@/]*@" . "//")) -}}
{{- end -}}
{{- end -}}
{{- $dir := include "imkit-bridge.redisTlsDir" $ -}}
{{- $tls := dict "ca" (printf "%s/ca.crt" $dir) -}}
{{- if $.Values.redisTls.clientCertificate -}}
{{- $_ := set $tls "cert" (printf "%s/tls.crt" $dir) -}}
{{- $_ := set $tls "key" (printf "%s/tls.key" $dir) -}}
{{- end -}}
{{- $_ := set $redis "tls" $tls -}}
{{- end -}}
{{- $server := dict "host" "0.0.0.0" "port" (int .Values.service.port) -}}
{{- if .Values.adminToken.existingSecret -}}
{{- $_ := set $server "adminToken" "${env:ADMIN_TOKEN}" -}}
{{- end -}}
{{- $_ := set $config "server" $server -}}
{{- $_ := set $config "shutdownTimeout" (printf "%ds" (int .Values.shutdown.timeoutSeconds)) -}}
{{- $_ := set $config "ingest" (dict "copies" .Values.ingest.copies "lease" .Values.ingest.lease "catchUpConcurrency" (int .Values.ingest.catchUpConcurrency)) -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Roles to deploy: a list of dicts with the component name, the --role flag and its values.
*/}}
{{- define "imkit-bridge.components" -}}
{{- if eq .Values.mode "all" -}}
- {name: all, role: all}
{{- else -}}
- {name: ingest, role: ingest}
- {name: worker, role: worker}
{{- end -}}
{{- end -}}

{{/* Replicas the Deployment of a component runs at least; decides whether a PDB makes sense. */}}
{{- define "imkit-bridge.minReplicas" -}}
{{- $root := .root -}}
{{- if and (eq .name "worker") $root.Values.autoscaling.keda.enabled -}}
{{- $root.Values.autoscaling.keda.minReplicas -}}
{{- else if and (eq .name "worker") $root.Values.autoscaling.hpa.enabled -}}
{{- $root.Values.autoscaling.hpa.minReplicas -}}
{{- else -}}
{{- (index $root.Values .name).replicas -}}
{{- end -}}
{{- end -}}

{{- define "imkit-bridge.validate" -}}
{{- $ingestReplicas := int (ternary .Values.all.replicas .Values.ingest.replicas (eq .Values.mode "all")) -}}
{{- if and (ne (toString .Values.ingest.copies) "all") (gt (int .Values.ingest.copies) $ingestReplicas) -}}
{{- fail (printf "ingest.copies (%v) must not exceed the ingest replicas (%d): each account is held by that many pods" .Values.ingest.copies $ingestReplicas) -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled -}}
{{- fail "autoscaling.keda and autoscaling.hpa are exclusive (KEDA manages its own HPA)" -}}
{{- end -}}
{{- if and (or .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled) (ne .Values.mode "split") -}}
{{- fail "autoscaling scales the worker Deployment: it needs mode: split" -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (lt (int .Values.autoscaling.keda.maxReplicas) (int .Values.autoscaling.keda.minReplicas)) -}}
{{- fail "autoscaling.keda.maxReplicas must be >= minReplicas" -}}
{{- end -}}
{{- if and .Values.autoscaling.hpa.enabled (lt (int .Values.autoscaling.hpa.maxReplicas) (int .Values.autoscaling.hpa.minReplicas)) -}}
{{- fail "autoscaling.hpa.maxReplicas must be >= minReplicas" -}}
{{- end -}}
{{- if and .Values.autoscaling.keda.enabled (not (or .Values.config.webhooks .Values.config.destinations)) -}}
{{- fail "autoscaling.keda needs at least one destination in config.webhooks or config.destinations (one trigger per destination queue)" -}}
{{- end -}}
{{- end -}}
