{{/*
How this chart works
====================
The objects are not written here: they are the kustomize base of the
repository (deploy/base, deploy/components, deploy/overlays/fleet), shipped
under files/. Each template loads the objects of one base part, applies the
values the way an overlay would (namespace, labels, images, schedules, …) and
prints them. The settings ConfigMaps are built from the base's
configMapGenerator entries (literals and files), merged with the generators of
the components the values switch on, then with .Values.config. A change to a
base file therefore reaches kustomize and Helm alike; the Go tests in deploy/
render both and compare them object by object.
*/}}

{{/* fleetscan.file: the text of a file under files/ (list $ "base/…"); fails when it is missing. */}}
{{- define "fleetscan.file" -}}
{{- $root := index . 0 -}}
{{- $path := printf "files/%s" (index . 1) -}}
{{- $text := $root.Files.Get $path -}}
{{- if not $text -}}
{{- fail (printf "chart file %s is missing or empty (the chart must be packaged with its files/)" $path) -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* fleetscan.objects: the YAML documents of a file under files/, as a JSON list of objects. */}}
{{- define "fleetscan.objects" -}}
{{- $path := index . 1 -}}
{{- $out := list -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" (include "fleetscan.file" .) -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if hasKey $obj "Error" -}}
{{- fail (printf "files/%s: %s" $path $obj.Error) -}}
{{- end -}}
{{- if $obj -}}
{{- $out = append $out $obj -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* fleetscan.object: the one object of kind and name in a file under files/ (list $ path kind name), as JSON. */}}
{{- define "fleetscan.object" -}}
{{- $kind := index . 2 -}}
{{- $name := index . 3 -}}
{{- $found := dict -}}
{{- range $obj := include "fleetscan.objects" (list (index . 0) (index . 1)) | fromJsonArray -}}
{{- if and (eq $obj.kind $kind) (eq $obj.metadata.name $name) -}}
{{- $found = $obj -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "files/%s has no %s %s" (index . 1) $kind $name) -}}
{{- end -}}
{{- toJson $found -}}
{{- end -}}

{{/* fleetscan.labels: the labels Helm adds to every object (on top of the base's). */}}
{{- define "fleetscan.labels" -}}
app.kubernetes.io/part-of: fleetscan
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* fleetscan.emit: prints an object (list $ obj) as its own YAML document, in the namespace and with the labels of the release. */}}
{{- define "fleetscan.emit" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $meta := $obj.metadata -}}
{{- if not (has $obj.kind (list "Namespace" "ClusterRole" "ClusterRoleBinding")) -}}
{{- $_ := set $meta "namespace" $root.Values.namespace.name -}}
{{- end -}}
{{- $labels := merge (dict) (include "fleetscan.labels" $root | fromYaml) ($meta.labels | default dict) -}}
{{- $_ := set $meta "labels" $labels }}
---
{{ toYaml $obj }}
{{ end -}}

{{/* fleetscan.kustomization: the kustomization.yaml of a directory under files/, parsed. */}}
{{- define "fleetscan.kustomization" -}}
{{- include "fleetscan.file" (list (index . 0) (printf "%s/kustomization.yaml" (index . 1))) | fromYaml | toJson -}}
{{- end -}}

{{/*
fleetscan.generated: the data of every ConfigMap the kustomize
configMapGenerators make (list $ dir…), merged in order as `behavior: merge`
does: name -> key -> value, as JSON. Literals are KEY=VALUE; files are read
relative to their kustomization.
*/}}
{{- define "fleetscan.generated" -}}
{{- $root := index . 0 -}}
{{- $all := dict -}}
{{- range $dir := index . 1 -}}
{{- $k := include "fleetscan.kustomization" (list $root $dir) | fromJson -}}
{{- range $gen := $k.configMapGenerator | default list -}}
{{- $data := get $all $gen.name | default dict -}}
{{- range $lit := $gen.literals | default list -}}
{{- $kv := splitn "=" 2 $lit -}}
{{- $_ := set $data $kv._0 $kv._1 -}}
{{- end -}}
{{- range $file := $gen.files | default list -}}
{{- $_ := set $data (base $file) (include "fleetscan.file" (list $root (printf "%s/%s" $dir $file))) -}}
{{- end -}}
{{- $_ := set $all $gen.name $data -}}
{{- end -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{/*
fleetscan.configData: every settings ConfigMap of this release, name -> data,
as JSON: the base's generators, the enabled components' generators, then
.Values.config; the NATS users of the fleet members are added to auth.conf.
*/}}
{{- define "fleetscan.configData" -}}
{{- $dirs := list "base/common" "base/nats" "base/dispatcher" "base/worker" "base/reporter" -}}
{{- if .Values.nats.tls.enabled -}}
{{- $dirs = append $dirs "components/nats-tls" -}}
{{- end -}}
{{- if .Values.monitoring.enabled -}}
{{- $dirs = append $dirs "components/monitoring" -}}
{{- end -}}
{{- $all := include "fleetscan.generated" (list . $dirs) | fromJson -}}
{{- range $part, $settings := .Values.config -}}
{{- $name := printf "fleetscan-%s" $part -}}
{{- $data := get $all $name -}}
{{- range $key, $value := $settings -}}
{{- $_ := set $data $key (toString $value) -}}
{{- end -}}
{{- end -}}
{{- with .Values.nats.members -}}
{{- $nats := get $all "fleetscan-nats-config" -}}
{{- $lines := list -}}
{{- range . -}}
{{- /* $$ is a literal $ in regexReplaceAll's replacement below. */ -}}
{{- $lines = append $lines (printf "    { nkey: $$%s, permissions: $$DISPATCHER_PERMISSIONS }" (include "fleetscan.memberEnv" .name)) -}}
{{- end -}}
{{- $auth := get $nats "auth.conf" -}}
{{- $closing := "(?s)\\n([ \\t]*\\][ \\t]*\\n[ \\t]*\\}[ \\t]*\\n?)$" -}}
{{- if not (regexMatch $closing $auth) -}}
{{- fail "files/base/nats/auth.conf no longer ends with the closing `]` of its users list and of `authorization {`: teach fleetscan.configData where the fleet members' users go" -}}
{{- end -}}
{{- $_ := set $nats "auth.conf" (regexReplaceAll $closing $auth (printf "\n%s\n${1}" (join "\n" $lines))) -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{/* fleetscan.memberEnv: the environment variable holding a fleet member's public nkey (member-a -> FLEETSCAN_MEMBER_A_NKEY). */}}
{{- define "fleetscan.memberEnv" -}}
{{- printf "FLEETSCAN_%s_NKEY" (. | upper | replace "-" "_") -}}
{{- end -}}

{{/*
fleetscan.image: the image for a container of the base (list $ baseImage).
fleetscan/<component>:<tag> becomes <image.repository>/<component>:<tag>,
unless .Values.<component>.image names its own repository, tag or digest.
The NATS image follows .Values.nats.image.
*/}}
{{- define "fleetscan.image" -}}
{{- $root := index . 0 -}}
{{- $base := index . 1 -}}
{{- $name := regexReplaceAll "[:@].*$" $base "" -}}
{{- if hasPrefix "fleetscan/" $name -}}
{{- $component := trimPrefix "fleetscan/" $name -}}
{{- $own := (index $root.Values $component).image | default dict -}}
{{- $repo := $own.repository | default (printf "%s/%s" $root.Values.image.repository $component) -}}
{{- if $own.digest -}}
{{- printf "%s@%s" $repo $own.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo ($own.tag | default $root.Values.image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}
{{- else -}}
{{- $tag := regexReplaceAll "^[^:]*:?" (regexReplaceAll "@.*$" $base "") "" -}}
{{- printf "%s:%s" ($root.Values.nats.image.repository | default $name) ($root.Values.nats.image.tag | default $tag) -}}
{{- end -}}
{{- end -}}

{{/*
fleetscan.pod: applies the release-wide pod values to a workload (list $ obj
configData): images, pull policy and secrets, scheduling, and a checksum of
the settings ConfigMaps the pod reads, so a changed setting rolls it (the
base's generated ConfigMap names carry a content hash instead).
*/}}
{{- define "fleetscan.pod" -}}
{{- $root := index . 0 -}}
{{- $obj := index . 1 -}}
{{- $config := index . 2 -}}
{{- $tmpl := dict -}}
{{- if eq $obj.kind "CronJob" -}}
{{- $tmpl = $obj.spec.jobTemplate.spec.template -}}
{{- else -}}
{{- $tmpl = $obj.spec.template -}}
{{- end -}}
{{- $spec := $tmpl.spec -}}
{{- $used := dict -}}
{{- range $c := concat ($spec.initContainers | default list) $spec.containers -}}
{{- $_ := set $c "image" (include "fleetscan.image" (list $root $c.image)) -}}
{{- $_ := set $c "imagePullPolicy" $root.Values.image.pullPolicy -}}
{{- range $c.envFrom | default list -}}
{{- with .configMapRef }}{{ $_ := set $used .name true }}{{ end -}}
{{- end -}}
{{- range $c.env | default list -}}
{{- with .valueFrom }}{{ with .configMapKeyRef }}{{ $_ := set $used .name true }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- range $spec.volumes | default list -}}
{{- with .configMap }}{{ $_ := set $used .name true }}{{ end -}}
{{- end -}}
{{- with $root.Values.imagePullSecrets -}}
{{- $secrets := list -}}
{{- range . }}{{ $secrets = append $secrets (dict "name" .) }}{{ end -}}
{{- $_ := set $spec "imagePullSecrets" $secrets -}}
{{- end -}}
{{- with $root.Values.nodeSelector }}{{ $_ := set $spec "nodeSelector" . }}{{ end -}}
{{- with $root.Values.tolerations }}{{ $_ := set $spec "tolerations" . }}{{ end -}}
{{- with $root.Values.affinity }}{{ $_ := set $spec "affinity" . }}{{ end -}}
{{- with $root.Values.priorityClassName }}{{ $_ := set $spec "priorityClassName" . }}{{ end -}}
{{- if $used -}}
{{- $data := dict -}}
{{- range $name := keys $used | sortAlpha -}}
{{- $_ := set $data $name (get $config $name) -}}
{{- end -}}
{{- $meta := $tmpl.metadata | default dict -}}
{{- $_ := set $meta "annotations" (merge ($meta.annotations | default dict) (dict "checksum/config" (toJson $data | sha256sum))) -}}
{{- $_ := set $tmpl "metadata" $meta -}}
{{- end -}}
{{- end -}}

{{/*
fleetscan.resources: replaces a container's requests and limits (list obj
containerName resources) when resources is set.
*/}}
{{- define "fleetscan.resources" -}}
{{- $obj := index . 0 -}}
{{- $name := index . 1 -}}
{{- $res := index . 2 -}}
{{- if $res -}}
{{- $spec := dict -}}
{{- if eq $obj.kind "CronJob" }}{{ $spec = $obj.spec.jobTemplate.spec.template.spec }}{{ else }}{{ $spec = $obj.spec.template.spec }}{{ end -}}
{{- $found := false -}}
{{- range $c := concat ($spec.initContainers | default list) $spec.containers -}}
{{- if eq $c.name $name }}{{ $_ := set $c "resources" $res }}{{ $found = true }}{{ end -}}
{{- end -}}
{{- if not $found }}{{ fail (printf "%s %s has no container %s" $obj.kind $obj.metadata.name $name) }}{{ end -}}
{{- end -}}
{{- end -}}

{{/*
fleetscan.patchPods: applies the pod-template patches of a kustomize
component (list $ componentDir obj) to obj when they target it: containers
are matched by name and get the patch's env and volumeMounts, the pod the
patch's volumes, each put first, as kustomize's strategic merge does. (The registry-auth component's
patches are of this form; a test renders the component with both tools.)
*/}}
{{- define "fleetscan.patchPods" -}}
{{- $root := index . 0 -}}
{{- $dir := index . 1 -}}
{{- $obj := index . 2 -}}
{{- $k := include "fleetscan.kustomization" (list $root $dir) | fromJson -}}
{{- range $p := $k.patches | default list -}}
{{- if and (eq $p.target.kind $obj.kind) (eq $p.target.name $obj.metadata.name) -}}
{{- $patch := include "fleetscan.object" (list $root (printf "%s/%s" $dir $p.path) $obj.kind $obj.metadata.name) | fromJson -}}
{{- $into := dict -}}
{{- $from := dict -}}
{{- if eq $obj.kind "CronJob" -}}
{{- $into = $obj.spec.jobTemplate.spec.template.spec -}}
{{- $from = $patch.spec.jobTemplate.spec.template.spec -}}
{{- else -}}
{{- $into = $obj.spec.template.spec -}}
{{- $from = $patch.spec.template.spec -}}
{{- end -}}
{{- range $pc := $from.containers | default list -}}
{{- range $c := $into.containers -}}
{{- if eq $c.name $pc.name -}}
{{- range $field := list "env" "volumeMounts" -}}
{{- if hasKey $pc $field -}}
{{- $_ := set $c $field (concat (get $pc $field) (get $c $field | default list)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with $from.volumes -}}
{{- $_ := set $into "volumes" (concat . ($into.volumes | default list)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
fleetscan.part: renders one part of the base (list $ dir patch): every
object of every file in the resources of dir/kustomization.yaml, in order,
after the named patch template (list $ obj config) has applied the values to
it; a patch that prints "skip" drops the object.
*/}}
{{- define "fleetscan.part" -}}
{{- $root := index . 0 -}}
{{- $dir := index . 1 -}}
{{- $patch := index . 2 -}}
{{- $config := include "fleetscan.configData" $root | fromJson -}}
{{- $k := include "fleetscan.kustomization" (list $root $dir) | fromJson -}}
{{- range $file := $k.resources -}}
{{- range $obj := include "fleetscan.objects" (list $root (printf "%s/%s" $dir $file)) | fromJsonArray -}}
{{- if ne (include $patch (list $root $obj $config) | trim) "skip" -}}
{{- if has $obj.kind (list "Deployment" "StatefulSet" "Job" "CronJob") -}}
{{- include "fleetscan.pod" (list $root $obj $config) -}}
{{- if $root.Values.registryAuth.enabled -}}
{{- include "fleetscan.patchPods" (list $root "components/registry-auth" $obj) -}}
{{- end -}}
{{- end -}}
{{- if eq $obj.kind "Job" -}}
{{- include "fleetscan.jobName" $obj -}}
{{- end -}}
{{- include "fleetscan.emit" (list $root $obj) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
fleetscan.jobName: a Job's template cannot change, so a Job the chart owns is
named after its content (fleetscan-init-<hash>, as kustomize names generated
ConfigMaps): an upgrade that changes it replaces it, one that does not leaves
it alone.
*/}}
{{- define "fleetscan.jobName" -}}
{{- $_ := set .metadata "name" (printf "%s-%s" .metadata.name (toJson .spec | sha256sum | trunc 10)) -}}
{{- end -}}

{{/* fleetscan.schedule: sets a CronJob's schedule (list obj schedule) when one is given. */}}
{{- define "fleetscan.schedule" -}}
{{- $obj := index . 0 -}}
{{- with index . 1 }}{{ $_ := set $obj.spec "schedule" . }}{{ end -}}
{{- end -}}
