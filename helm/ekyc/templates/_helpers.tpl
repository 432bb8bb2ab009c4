{{/* vim: set filetype=mustache: */}}

{{- define "ekyc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name. Truncated to 52 characters so that the longest suffix
the chart adds ("-postgresql", 11) still fits a 63-character DNS label.
*/}}
{{- define "ekyc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ekyc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "ekyc.labels" -}}
helm.sh/chart: {{ include "ekyc.chart" . }}
app.kubernetes.io/name: {{ include "ekyc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ekyc
{{- end -}}

{{/* Selector of the ekycd pods. */}}
{{- define "ekyc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ekyc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Selector of a bundled store: include "ekyc.storeSelectorLabels" (list . "postgresql") */}}
{{- define "ekyc.storeSelectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "ekyc.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "ekyc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ekyc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "ekyc.imageRef" -}}
{{- $image := index . 0 -}}
{{- $defaultTag := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $defaultTag $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "ekyc.image" -}}
{{- include "ekyc.imageRef" (list .Values.image .Chart.AppVersion) -}}
{{- end -}}

{{/* ---------------------------------------------------------------- sizing */}}

{{- define "ekyc.hashingThreads" -}}
{{- int .Values.config.argon2.threads -}}
{{- end -}}

{{/*
Memory request in MiB: base + threads x memory_kib x 1.25, rounded up to a
whole MiB. Integer arithmetic: ceil(threads * kib * 5 / (4 * 1024)).
*/}}
{{- define "ekyc.memoryRequestMi" -}}
{{- $threads := int .Values.config.argon2.threads -}}
{{- $kib := int .Values.config.argon2.memoryKib -}}
{{- $hashing := div (add (mul $threads $kib 5) 4095) 4096 -}}
{{- add (int .Values.sizing.baseMemoryMi) $hashing -}}
{{- end -}}

{{- define "ekyc.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else -}}
{{- $threads := include "ekyc.hashingThreads" . | int -}}
{{- $mem := include "ekyc.memoryRequestMi" . | int -}}
requests:
  cpu: {{ $threads | quote }}
  memory: {{ printf "%dMi" $mem }}
{{- if or .Values.sizing.cpuLimit (gt (int .Values.sizing.memoryLimitFactor) 0) }}
limits:
  {{- if .Values.sizing.cpuLimit }}
  cpu: {{ $threads | quote }}
  {{- end }}
  {{- if gt (int .Values.sizing.memoryLimitFactor) 0 }}
  memory: {{ printf "%dMi" (mul $mem (int .Values.sizing.memoryLimitFactor)) }}
  {{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/*
limits.replicas: explicit, else the HPA's maximum, else replicaCount. The
local fallback rate is the shared rate divided by it (docs/deploy.md).
*/}}
{{- define "ekyc.limitsReplicas" -}}
{{- if gt (int .Values.config.limits.replicas) 0 -}}
{{- int .Values.config.limits.replicas -}}
{{- else if .Values.autoscaling.enabled -}}
{{- int .Values.autoscaling.maxReplicas -}}
{{- else -}}
{{- int .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The most replicas this release can run (for connection sizing). */}}
{{- define "ekyc.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- int .Values.autoscaling.maxReplicas -}}
{{- else -}}
{{- int .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds = preStop pause + shutdown_grace_secs
+ 10 s (ekycd's bound on closing the stores) + margin.
*/}}
{{- define "ekyc.terminationGracePeriodSeconds" -}}
{{- add (int .Values.lifecycle.preStopSecs) (int .Values.config.shutdownGraceSecs) 10 (int .Values.lifecycle.terminationMarginSecs) -}}
{{- end -}}

{{/* ---------------------------------------------------------------- paths */}}

{{- define "ekyc.secretsDir" -}}/run/secrets/ekyc{{- end -}}
{{- define "ekyc.tlsDir" -}}/run/secrets/ekyc-tls{{- end -}}
{{- define "ekyc.configDir" -}}/etc/ekyc{{- end -}}
{{- define "ekyc.dataDir" -}}/var/lib/ekycd{{- end -}}

{{- define "ekyc.pepperKey" -}}
{{- default (printf "pepper-v%d.key" (int .Values.pepper.version)) .Values.pepper.secretKey -}}
{{- end -}}

{{/* ---------------------------------------------------------------- stores */}}

{{- define "ekyc.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "ekyc.fullname" .) -}}
{{- end -}}

{{- define "ekyc.redis.fullname" -}}
{{- printf "%s-redis" (include "ekyc.fullname" .) -}}
{{- end -}}

{{- define "ekyc.postgresql.secretName" -}}
{{- default .Values.secrets.existingSecret .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{- define "ekyc.redis.secretName" -}}
{{- default .Values.secrets.existingSecret .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "ekyc.usesRedis" -}}
{{- if or .Values.redis.enabled .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
Environment of the ekycd containers: the config file, then the store URLs
from Secrets. A bundled store's URL is assembled from its password with
Kubernetes' $(VAR) expansion, so no password is ever in values or in the
ConfigMap. The migration init container gets the database only.
*/}}
{{- define "ekyc.envConfig" -}}
- name: EKYCD_CONFIG
  value: {{ printf "%s/ekycd.toml" (include "ekyc.configDir" .) | quote }}
{{- end -}}

{{- define "ekyc.envDatabase" -}}
{{- if .Values.postgresql.enabled -}}
- name: EKYC_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ekyc.postgresql.secretName" . }}
      key: {{ .Values.postgresql.auth.passwordKey }}
- name: EKYCD_DATABASE_URL
  value: {{ printf "postgres://%s:$(EKYC_POSTGRES_PASSWORD)@%s.%s.svc:5432/%s" .Values.postgresql.auth.username (include "ekyc.postgresql.fullname" .) .Release.Namespace .Values.postgresql.auth.database | quote }}
{{- else -}}
- name: EKYCD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.secretKey }}
{{- end -}}
{{- end -}}

{{- define "ekyc.envRedis" -}}
{{- if .Values.redis.enabled -}}
- name: EKYC_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ekyc.redis.secretName" . }}
      key: {{ .Values.redis.auth.passwordKey }}
- name: EKYCD_LIMITS__REDIS_URL
  value: {{ printf "redis://:$(EKYC_REDIS_PASSWORD)@%s.%s.svc:6379/0" (include "ekyc.redis.fullname" .) .Release.Namespace | quote }}
{{- else if .Values.externalRedis.existingSecret -}}
- name: EKYCD_LIMITS__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.secretKey }}
{{- end -}}
{{- end -}}

{{/* Hardened container security context (ekycd and the bundled stores). */}}
{{- define "ekyc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ index . 0 }}
runAsGroup: {{ index . 0 }}
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* --------------------------------------------------- render-time checks */}}
{{- define "ekyc.validate" -}}
{{- $_ := required "secrets.existingSecret is required: create a Secret with the pepper and the signing key first (kubectl create secret generic ekyc-keys --from-literal=pepper-v1.key=\"$(openssl rand -hex 32)\" --from-literal=signing.key=\"$(openssl rand -hex 32)\"; docs/deploy.md) and set secrets.existingSecret to its name" .Values.secrets.existingSecret -}}
{{- if and .Values.postgresql.enabled .Values.externalDatabase.existingSecret -}}
{{- fail "set either postgresql.enabled (the bundled trial instance) or externalDatabase.existingSecret, not both" -}}
{{- end -}}
{{- if not (or .Values.postgresql.enabled .Values.externalDatabase.existingSecret) -}}
{{- fail "ekycd needs PostgreSQL in Kubernetes (the embedded SQLite would live in an emptyDir and be lost with the pod): set externalDatabase.existingSecret to a Secret holding the postgres:// URL, or postgresql.enabled=true for the bundled trial instance" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.externalRedis.existingSecret -}}
{{- fail "set either redis.enabled (the bundled trial instance) or externalRedis.existingSecret, not both" -}}
{{- end -}}
{{- if and (gt (include "ekyc.maxReplicas" . | int) 1) (not (include "ekyc.usesRedis" .)) -}}
{{- fail (printf "%d replicas must share rate limits, quotas and the subject guard: set externalRedis.existingSecret (a Secret holding the redis:// URL) or redis.enabled=true, or run one replica" (include "ekyc.maxReplicas" . | int)) -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled needs tls.existingSecret: a kubernetes.io/tls Secret (tls.crt, tls.key, and ca.crt for mutual TLS)" -}}
{{- end -}}
{{- if and .Values.tls.enabled .Values.tls.requireClientCert (not .Values.tls.clientCa.enabled) -}}
{{- fail "tls.requireClientCert needs tls.clientCa.enabled (the CA that signs client certificates)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (null the other)" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- if and .Values.externalDatabase.existingSecret (not .Values.networkPolicy.egress.postgresql.to) -}}
{{- fail "networkPolicy.egress.postgresql.to is empty: list where the external PostgreSQL is (e.g. [{ipBlock: {cidr: 10.20.0.0/24}}]), or set networkPolicy.enabled=false" -}}
{{- end -}}
{{- if and .Values.externalRedis.existingSecret (not .Values.networkPolicy.egress.redis.to) -}}
{{- fail "networkPolicy.egress.redis.to is empty: list where the external Redis is (e.g. [{ipBlock: {cidr: 10.20.1.0/24}}]), or set networkPolicy.enabled=false" -}}
{{- end -}}
{{- if and .Values.config.telemetry.otlpEndpoint (not .Values.networkPolicy.egress.otlp.to) -}}
{{- fail "networkPolicy.egress.otlp.to is empty: list where the OTLP collector is (e.g. a namespaceSelector of its namespace), or unset config.telemetry.otlpEndpoint" -}}
{{- end -}}
{{- end -}}
{{- end -}}
