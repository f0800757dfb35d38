{{/*
The pod, the same for the Deployment (one replica) and the StatefulSet (several); rendered at
indent 0 and placed with nindent.
*/}}
{{- define "cdr-publisher.podTemplate" -}}
metadata:
  labels:
    {{- include "cdr-publisher.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Settings and the catalogue are read once at start: a change must replace the pod.
    checksum/config: {{ include "cdr-publisher.configChecksum" . }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cdr-publisher.fullname" . }}
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    # Makes the token volume writable, and the credential files readable, by the daemon's group.
    fsGroup: 10001
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: cdr-publisher
      image: "{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- if .Values.orgs }}
      args: ["run", "--config", "/etc/cdr-publisher/catalogue/orgs.toml"]
      {{- else }}
      args: ["run"]
      {{- end }}
      envFrom:
        - configMapRef:
            name: {{ include "cdr-publisher.fullname" . }}
        {{- if .Values.orgs }}
        {{- with .Values.existingSecret }}
        - secretRef:
            name: {{ . | quote }}
        {{- end }}
        {{- else }}
        - secretRef:
            name: {{ required "existingSecret: name the Secret holding the CDR_PUBLISHER_* secrets" .Values.existingSecret | quote }}
        {{- end }}
      env:
        # The probes and the Service need these; set here so config cannot move them.
        - name: CDR_PUBLISHER_HTTP_HOST
          value: "0.0.0.0"
        - name: CDR_PUBLISHER_HTTP_PORT
          value: {{ .Values.httpPort | quote }}
        {{- if include "cdr-publisher.statefulSet" . }}
        # Static group membership: the pod's stable name, so a replica replaced within the session
        # timeout is the same member and gets its own slots back. Not with the Deployment of one
        # replica, whose pod names change with every pod (a new name would leave the old member
        # holding the slots until its session expired).
        - name: CDR_PUBLISHER_GROUP_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- if or .Values.adminToken.existingSecret .Values.adminToken.value }}
        - name: CDR_PUBLISHER_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ .Values.adminToken.existingSecret | default (printf "%s-admin" (include "cdr-publisher.fullname" .)) | quote }}
              key: {{ .Values.adminToken.key | quote }}
        {{- end }}
        {{- if and .Values.tokenStore.enabled (not .Values.orgs) }}
        - name: CDR_PUBLISHER_WEBEX_REFRESH_TOKEN_FILE
          value: "{{ .Values.tokenStore.mountPath }}/{{ .Values.tokenStore.fileName }}"
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.httpPort }}
          protocol: TCP
      # /healthz answers 503 until the loop's first turn (state restore can take a while on a
      # large state topic): the startup probe gives it five minutes before liveness applies.
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 30
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: 30
        timeoutSeconds: 5
        failureThreshold: 3
      # Ready once the replica is in the group and has restored its slots: the StatefulSet's
      # rolling update replaces the next pod only then.
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: 15
        timeoutSeconds: 5
        failureThreshold: 2
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
        runAsGroup: 10001
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        privileged: false
        capabilities:
          drop: [ALL]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        # Python's tempfile and librdkafka never need more; the root fs stays read-only.
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tokenStore.enabled }}
        - name: token-store
          mountPath: {{ .Values.tokenStore.mountPath }}
        {{- end }}
        {{- if .Values.orgs }}
        - name: catalogue
          mountPath: /etc/cdr-publisher/catalogue
          readOnly: true
        {{- end }}
        {{- if .Values.credentials.existingSecret }}
        - name: credentials
          mountPath: {{ .Values.credentials.mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        medium: Memory
        sizeLimit: 16Mi
    {{- if .Values.tokenStore.enabled }}
    - name: token-store
      {{- if eq .Values.tokenStore.type "pvc" }}
      # One claim for every replica: an org's rotated refresh token must be readable by whichever
      # replica owns its slot next.
      persistentVolumeClaim:
        claimName: {{ .Values.tokenStore.existingClaim | default (printf "%s-token" (include "cdr-publisher.fullname" .)) }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ .Values.tokenStore.size }}
      {{- end }}
    {{- end }}
    {{- if .Values.orgs }}
    - name: catalogue
      configMap:
        name: {{ include "cdr-publisher.fullname" . }}-orgs
    {{- end }}
    {{- if .Values.credentials.existingSecret }}
    - name: credentials
      # Mounted whole, never with subPath: the kubelet then swaps updated keys in atomically and
      # the daemon re-reads a token file that changed.
      secret:
        secretName: {{ .Values.credentials.existingSecret | quote }}
        defaultMode: 0440
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if include "cdr-publisher.statefulSet" . }}
  # Replicas on different nodes where the cluster allows: a node lost then stops one replica's
  # slots (taken over after the session timeout), not all of them.
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "cdr-publisher.selectorLabels" . | nindent 16 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
