{{/* Names and labels shared by every manifest. */}}
{{- define "cdr-publisher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdr-publisher.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "cdr-publisher.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cdr-publisher.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdr-publisher.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cdr-publisher.labels" -}}
{{ include "cdr-publisher.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* More than one replica runs as a StatefulSet (stable names for static group membership). */}}
{{- define "cdr-publisher.statefulSet" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- end -}}

{{/* Checksum of everything the daemon reads once at start: a change must replace the pods. */}}
{{- define "cdr-publisher.configChecksum" -}}
{{- list .Values.config .Values.orgs .Values.serviceApp | toYaml | sha256sum -}}
{{- end -}}

{{/* The catalogue file: [[orgs]] tables and the [service_app] table, as docs/orgs.md. */}}
{{- define "cdr-publisher.catalogue" -}}
{{- $doc := dict "orgs" .Values.orgs -}}
{{- if .Values.serviceApp }}{{ $_ := set $doc "service_app" .Values.serviceApp }}{{ end -}}
{{- toToml $doc -}}
{{- end -}}

{{/*
Combinations that cannot work, refused at render time with the value to change (rather than as
pods that never become ready, or a rotated refresh token lost when a slot moves).
*/}}
{{- define "cdr-publisher.validate" -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if lt $replicas 0 -}}
{{- fail (printf "replicaCount %d: must be 0 or more" $replicas) -}}
{{- end -}}
{{- $slots := int (default "12" (index .Values.config "CDR_PUBLISHER_STATE_PARTITIONS")) -}}
{{- if gt $replicas $slots -}}
{{- fail (printf "replicaCount %d exceeds the %d state partitions (config.CDR_PUBLISHER_STATE_PARTITIONS): a slot is owned by one replica, so replicas beyond %d would own nothing. The count is fixed when the state topic is created; set it to the existing topic's count" $replicas $slots $slots) -}}
{{- end -}}
{{- if and (gt $replicas 1) (eq (toString (index .Values.config "CDR_PUBLISHER_COORDINATION")) "none") -}}
{{- fail (printf "replicaCount %d with config.CDR_PUBLISHER_COORDINATION=none: each replica would own every slot and fence the others; use group (the default)" $replicas) -}}
{{- end -}}
{{- $store := .Values.tokenStore -}}
{{- $refreshing := list -}}
{{- range $i, $org := .Values.orgs -}}
{{- if not (kindIs "map" $org) -}}
{{- fail (printf "orgs[%d]: each org is a table (id, credentials; docs/orgs.md)" $i) -}}
{{- end -}}
{{- if not $org.id -}}
{{- fail (printf "orgs[%d].id: every org needs its Webex org id" $i) -}}
{{- end -}}
{{- range $key := list "token" "client_secret" "refresh_token" -}}
{{- if hasKey $org $key -}}
{{- fail (printf "orgs[%d].%s: no secret values in the chart's values (they end up in a ConfigMap and the release history); put it in a file of credentials.existingSecret and name that file (%s_file)" $i $key $key) -}}
{{- end -}}
{{- end -}}
{{- if $org.refresh_token_file -}}
{{- $refreshing = append $refreshing (printf "orgs[%d].refresh_token_file" $i) -}}
{{- end -}}
{{- end -}}
{{- with .Values.serviceApp -}}
{{- range $key := list "client_secret" "applications_token" -}}
{{- if hasKey $.Values.serviceApp $key -}}
{{- fail (printf "serviceApp.%s: no secret values in the chart's values; put it in a file of credentials.existingSecret and name that file (%s_file)" $key $key) -}}
{{- end -}}
{{- end -}}
{{- with .integration -}}
{{- range $key := list "client_secret" "refresh_token" -}}
{{- if hasKey $.Values.serviceApp.integration $key -}}
{{- fail (printf "serviceApp.integration.%s: no secret values in the chart's values; put it in a file of credentials.existingSecret and name that file (%s_file)" $key $key) -}}
{{- end -}}
{{- end -}}
{{- $refreshing = append $refreshing "serviceApp.integration.refresh_token_file" -}}
{{- end -}}
{{- $refreshing = append $refreshing "serviceApp.token_store_dir" -}}
{{- end -}}
{{- if .Values.orgs -}}
{{- $org := toString (index .Values.config "CDR_PUBLISHER_ORG_ID") -}}
{{- if not (or (eq $org "default") (eq $org "") (eq $org "<nil>")) -}}
{{- fail (printf "orgs and config.CDR_PUBLISHER_ORG_ID=%s are both set: with a catalogue, leave CDR_PUBLISHER_ORG_ID at \"default\" (the daemon refuses both)" $org) -}}
{{- end -}}
{{- end -}}
{{/* Every file the catalogue names must exist in the pod: on the credentials Secret's mount, or
(the files the daemon writes) on the token store. */}}
{{- $writable := printf "%s/" (trimSuffix "/" $store.mountPath) -}}
{{- $readable := printf "%s/" (trimSuffix "/" .Values.credentials.mountPath) -}}
{{- $files := list -}}
{{- range $i, $org := .Values.orgs -}}
{{- range $key := list "token_file" "client_secret_file" "first_refresh_token_file" -}}
{{- with index $org $key -}}{{- $files = append $files (list (printf "orgs[%d].%s" $i $key) .) -}}{{- end -}}
{{- end -}}
{{- with $org.refresh_token_file -}}{{- $files = append $files (list (printf "orgs[%d].refresh_token_file" $i) . "store") -}}{{- end -}}
{{- end -}}
{{- with .Values.serviceApp -}}
{{- range $key := list "client_secret_file" "applications_token_file" -}}
{{- with index $.Values.serviceApp $key -}}{{- $files = append $files (list (printf "serviceApp.%s" $key) .) -}}{{- end -}}
{{- end -}}
{{- with .token_store_dir -}}{{- $files = append $files (list "serviceApp.token_store_dir" . "store") -}}{{- end -}}
{{- with .integration -}}
{{- with .client_secret_file -}}{{- $files = append $files (list "serviceApp.integration.client_secret_file" .) -}}{{- end -}}
{{- with .first_refresh_token_file -}}{{- $files = append $files (list "serviceApp.integration.first_refresh_token_file" .) -}}{{- end -}}
{{- with .refresh_token_file -}}{{- $files = append $files (list "serviceApp.integration.refresh_token_file" . "store") -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- range $files -}}
{{- $place := index . 0 -}}
{{- $path := toString (index . 1) -}}
{{- if eq (len .) 3 -}}
{{- if not (and $store.enabled (hasPrefix $writable $path)) -}}
{{- fail (printf "%s %s: the daemon writes the rotated refresh token there, so it must be on the token store (tokenStore.enabled, under tokenStore.mountPath %s); the root file system is read-only" $place $path $store.mountPath) -}}
{{- end -}}
{{- else if not (and $.Values.credentials.existingSecret (hasPrefix $readable $path)) -}}
{{- fail (printf "%s %s: not in the pod; credential files come from the Secret credentials.existingSecret, mounted at credentials.mountPath %s" $place $path $.Values.credentials.mountPath) -}}
{{- end -}}
{{- end -}}
{{/* Several replicas share the token store: one claim every replica can mount and write. */}}
{{- if and (gt $replicas 1) $store.enabled -}}
{{- if eq $store.type "pvc" -}}
{{- if not (has "ReadWriteMany" $store.accessModes) -}}
{{- fail (printf "replicaCount %d with a %s token store claim: every replica must mount the one claim holding the rotated refresh tokens (the replica that takes an org's slot over reads the token the last owner wrote), and pods on other nodes cannot mount it. Use a ReadWriteMany claim (tokenStore.accessModes=[ReadWriteMany] with a storage class that offers it, or tokenStore.existingClaim naming one and its accessModes), or, when no org refreshes a token, tokenStore.enabled=false" $replicas (join "," $store.accessModes)) -}}
{{- end -}}
{{- else if $refreshing -}}
{{- fail (printf "replicaCount %d with an emptyDir token store while %s keeps rotated refresh tokens: each replica would have its own, and the token an org's last owner rotated would be lost when its slot moves. Use a ReadWriteMany claim (tokenStore.type=pvc, tokenStore.accessModes=[ReadWriteMany])" $replicas (first $refreshing)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
