{{/*
The values, applied to the base's objects: one patch template per part, each
called with (list $ obj config) for every object of its part. They are the
Helm counterpart of an overlay's patches; everything they do not touch is
the base's. A patch prints "skip" to leave an object out.
*/}}

{{- define "fleetscan.patch.common" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- if eq $obj.kind "Namespace" -}}
{{- if not $root.Values.namespace.create -}}
skip
{{- else -}}
{{- $_ := set $obj.metadata "name" $root.Values.namespace.name -}}
{{- /* The namespace holds the NATS and Trivy DB volumes: an uninstall keeps it. */ -}}
{{- $_ := set $obj.metadata "annotations" (merge ($obj.metadata.annotations | default dict) (dict "helm.sh/resource-policy" "keep")) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fleetscan.patch.nats" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $v := $root.Values.nats -}}
{{- if eq $obj.kind "StatefulSet" -}}
{{- include "fleetscan.resources" (list $obj "nats" $v.resources) -}}
{{- range $c := $obj.spec.template.spec.containers -}}
{{- if eq $c.name "nats" -}}
{{- /* The members' public nkeys, before the base's variables (where kustomize's patch puts them). */ -}}
{{- $env := list -}}
{{- range $v.members -}}
{{- $env = append $env (dict "name" (include "fleetscan.memberEnv" .name) "valueFrom" (dict "secretKeyRef" (dict "name" "fleetscan-nats-users" "key" .name))) -}}
{{- end -}}
{{- $_ := set $c "env" (concat $env ($c.env | default list)) -}}
{{- end -}}
{{- end -}}
{{- range $pvc := $obj.spec.volumeClaimTemplates -}}
{{- if eq $pvc.metadata.name "data" -}}
{{- with $v.storage.size }}{{ $_ := set $pvc.spec.resources.requests "storage" . }}{{ end -}}
{{- with $v.storage.storageClassName }}{{ $_ := set $pvc.spec "storageClassName" . }}{{ end -}}
{{- end -}}
{{- end -}}
{{- else if eq $obj.kind "NetworkPolicy" -}}
{{- /* The monitoring port's peer: KEDA's operator, wherever it runs. */ -}}
{{- range $rule := $obj.spec.ingress -}}
{{- range $peer := $rule.from -}}
{{- if $peer.namespaceSelector -}}
{{- $_ := set $peer "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $v.kedaOperator.namespace)) -}}
{{- $_ := set $peer "podSelector" (dict "matchLabels" $v.kedaOperator.podLabels) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fleetscan.patch.dispatcher" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $v := $root.Values.dispatcher -}}
{{- if eq $obj.kind "CronJob" -}}
{{- include "fleetscan.schedule" (list $obj $v.schedule) -}}
{{- include "fleetscan.resources" (list $obj "dispatcher" $v.resources) -}}
{{- else if eq $obj.kind "ClusterRoleBinding" -}}
{{- range $obj.subjects }}{{ $_ := set . "namespace" $root.Values.namespace.name }}{{ end -}}
{{- end -}}
{{- end -}}

{{- define "fleetscan.patch.worker" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $v := $root.Values.worker -}}
{{- $db := $root.Values.trivyDB -}}
{{- if eq $obj.kind "Deployment" -}}
{{- include "fleetscan.resources" (list $obj "worker" $v.resources) -}}
{{- else if eq $obj.kind "CronJob" -}}
{{- include "fleetscan.schedule" (list $obj $db.updater.schedule) -}}
{{- include "fleetscan.resources" (list $obj "db-update" $db.updater.resources) -}}
{{- else if eq $obj.kind "PersistentVolumeClaim" -}}
{{- with $db.size }}{{ $_ := set $obj.spec.resources.requests "storage" . }}{{ end -}}
{{- with $db.storageClassName }}{{ $_ := set $obj.spec "storageClassName" . }}{{ end -}}
{{- else if eq $obj.kind "ScaledObject" -}}
{{- range $key, $value := omit $v.autoscaling "lagThreshold" -}}
{{- if not (kindIs "invalid" $value) }}{{ $_ := set $obj.spec $key $value }}{{ end -}}
{{- end -}}
{{- range $t := $obj.spec.triggers -}}
{{- if eq $t.type "nats-jetstream" -}}
{{- if not (kindIs "invalid" $v.autoscaling.lagThreshold) }}{{ $_ := set $t.metadata "lagThreshold" (toString $v.autoscaling.lagThreshold) }}{{ end -}}
{{- /* <service>.<namespace>.svc.<cluster domain>:<port> of the release's namespace. */ -}}
{{- $endpoint := regexSplit "[.:]" $t.metadata.natsServerMonitoringEndpoint -1 -}}
{{- $_ := set $t.metadata "natsServerMonitoringEndpoint" (printf "%s.%s.svc.%s:%s" (first $endpoint) $root.Values.namespace.name $root.Values.clusterDomain (last $endpoint)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fleetscan.patch.reporter" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $v := $root.Values.reporter -}}
{{- if eq $obj.kind "CronJob" -}}
{{- include "fleetscan.schedule" (list $obj $v.schedule) -}}
{{- include "fleetscan.resources" (list $obj "reporter" $v.resources) -}}
{{- if $v.serviceAccount.automountToken -}}
{{- $_ := set $obj.spec.jobTemplate.spec.template.spec "automountServiceAccountToken" true -}}
{{- end -}}
{{- else if eq $obj.kind "ServiceAccount" -}}
{{- with $v.serviceAccount.annotations }}{{ $_ := set $obj.metadata "annotations" . }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* fleetscan.patch.monitoring: components/monitoring as it is; its PodMonitor only with the workers. */}}
{{- define "fleetscan.patch.monitoring" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- if and (eq $obj.kind "PodMonitor") (not $root.Values.worker.enabled) -}}
skip
{{- end -}}
{{- end -}}
