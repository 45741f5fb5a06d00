#!/usr/bin/env bash
# Installs what Sluice's tests, benchmarks and demo need on a Debian machine
# with Go, when it is missing. Safe to run again; it changes nothing when
# everything is present.
set -euo pipefail

staticcheck_version=v0.7.0 # staticcheck 2026.1

need=()
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
command -v clang >/dev/null 2>&1 || need+=(clang) # the XDP program's source check (make bpf-check)
command -v llvm-strip >/dev/null 2>&1 || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v dpdk-testpmd >/dev/null 2>&1 || need+=(dpdk-dev) # the vhost-user peer (testbed/vhost)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "deps: missing ${need[*]} (not root or no apt-get): tests that need them will skip" >&2
  fi
fi

gobin=$(go env GOPATH)/bin
if ! "$gobin/staticcheck" -version 2>/dev/null | grep -q "($staticcheck_version)"; then
  echo "deps: installing staticcheck $staticcheck_version"
  GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
fi
