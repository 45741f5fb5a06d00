#!/usr/bin/env bash
# Installs what the namespace benchmark (make bench-e2e) needs beyond the
# tests' dependencies: DPDK's dpdk-testpmd, from Debian's dpdk-dev, for the
# AF_XDP ceiling it measures. Installs nothing when it is present; without
# root or apt-get it says so, and the benchmark leaves the ceiling out.
set -euo pipefail

if command -v dpdk-testpmd >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "bench-deps: installing dpdk-dev (dpdk-testpmd)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dpdk-dev >/dev/null
else
  echo "bench-deps: dpdk-testpmd missing (not root or no apt-get): the benchmark will not measure the AF_XDP ceiling" >&2
fi
