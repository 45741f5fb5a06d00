{{/* The release's resource name prefix. */}}
{{- define "sluice.fullname" -}}
{{- printf "%s-sluice" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object. */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* ip4add: an IPv4 address (dict key "ip") plus n (key "n"). */}}
{{- define "sluice.ip4add" -}}
{{- $o := splitList "." .ip -}}
{{- if ne (len $o) 4 -}}{{- fail (printf "%q is not an IPv4 address" .ip) -}}{{- end -}}
{{- $v := add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) .n -}}
{{- if gt $v 4294967295 -}}{{- fail (printf "%s + %d is past 255.255.255.255" .ip .n) -}}{{- end -}}
{{- printf "%d.%d.%d.%d" (div $v 16777216) (mod (div $v 65536) 256) (mod (div $v 256) 256) (mod $v 256) -}}
{{- end -}}

{{/* pow2: 2 to the power .n. */}}
{{- define "sluice.pow2" -}}
{{- $v := 1 -}}
{{- range until (int .n) -}}{{- $v = mul $v 2 -}}{{- end -}}
{{- $v -}}
{{- end -}}

{{/*
instance: what instance .i of the release has to itself, as YAML: its N4,
N3 and N6 addresses, Node ID, UE pool and TEID range.
*/}}
{{- define "sluice.instance" -}}
{{- $v := .root.Values -}}
{{- $i := int .i -}}
{{- $name := printf "%s-%d" (include "sluice.fullname" .root) $i -}}
{{- $n4 := include "sluice.ip4add" (dict "ip" $v.n4.addressStart "n" $i) -}}
{{- $plen := int $v.uePools.prefixLength -}}
{{- if or (lt $plen 8) (gt $plen 30) -}}{{- fail "uePools.prefixLength: want 8 to 30" -}}{{- end -}}
{{- $block := int64 (include "sluice.pow2" (dict "n" (sub 32 $plen))) -}}
{{- $per := int64 $v.teids.perInstance -}}
{{- $first := mul $per $i -}}
{{- $last := sub (mul $per (add $i 1)) 1 -}}
{{- if gt $last 4294967295 -}}{{- fail (printf "teids: instance %d would end at %d, past 2^32-1; lower teids.perInstance" $i $last) -}}{{- end -}}
name: {{ $name }}
n4: {{ $n4 }}
nodeId: {{ if $v.n4.nodeIdDomain }}{{ printf "%s.%s" $name $v.n4.nodeIdDomain }}{{ else }}{{ $n4 }}{{ end }}
n3: {{ include "sluice.ip4add" (dict "ip" $v.n3.addressStart "n" $i) }}
n6: {{ include "sluice.ip4add" (dict "ip" $v.n6.addressStart "n" $i) }}
uePool: {{ include "sluice.ip4add" (dict "ip" $v.uePools.start "n" (mul $block $i)) }}/{{ $plen }}
teidFirst: {{ max $first 1 }}
teidLast: {{ $last }}
{{- end -}}

{{/* vhostUser: the vhost_user block of interface .role of instance .name. */}}
{{- define "sluice.vhostUser" -}}
{{- $vu := .vu -}}
vhost_user:
  socket: {{ printf "%s/%s-%s.sock" $vu.socketDir .name .role }}
  mode: {{ $vu.mode }}
  mtu: {{ $vu.mtu }}
  peer_mac: {{ $vu.peerMac | quote }}
{{- end -}}

{{/* upfyaml: upf.yaml of instance .i (dict "root" $ "i" i). */}}
{{- define "sluice.upfyaml" -}}
{{- $i := .i -}}
{{- $in := include "sluice.instance" (dict "root" .root "i" $i) | fromYaml -}}
{{- $v := .root.Values -}}
# Sluice instance {{ $i }} of {{ $v.instances }}: its own Node ID, N3
# address, UE pool and TEID range.
log_level: {{ $v.logLevel }}
metrics: ":{{ $v.metrics.port }}"
admin: {{ $v.adminSocket }}
n4:
  addresses: ["{{ $in.n4 }}:8805"]
  node_id: {{ $in.nodeId }}
  allowed_peers: {{ toJson $v.n4.allowedPeers }}
  {{- with $v.n4.smfs }}
  smfs: {{ toJson . }}
  {{- end }}
  heartbeat_interval: {{ $v.n4.heartbeatInterval }}
  t1: {{ $v.n4.t1 }}
  n1: {{ $v.n4.n1 }}
  peer_failure_grace: {{ $v.n4.peerFailureGrace }}
  report_interval: {{ $v.n4.reportInterval }}
interfaces:
  - device: n3
    role: n3
    addresses: [{{ $in.n3 }}]
    {{- if eq $v.n3.attachment.type "vhost-user" }}
    {{- include "sluice.vhostUser" (dict "vu" $v.n3.vhostUser "name" $in.name "role" "n3") | nindent 4 }}
    {{- end }}
  - device: n6
    role: n6
    {{- if eq $v.n6.attachment.type "vhost-user" }}
    {{- include "sluice.vhostUser" (dict "vu" $v.n6.vhostUser "name" $in.name "role" "n6") | nindent 4 }}
    {{- end }}
ue_pools: [{{ $in.uePool }}]
teids: {first: {{ $in.teidFirst | int64 }}, last: {{ $in.teidLast | int64 }}}
workers: {{ $v.workers }}
worker_nice: {{ $v.workerNice }}
sessions: {{ $v.sessions }}
xdp_mode: {{ $v.xdpMode }}
huge_pages: {{ $v.hugePages.enabled }}
{{- end -}}
