#!/usr/bin/env bash
# Runs Sluice's benchmarks and prints one table of figures against targets.
# Figures on a shared 2-vCPU machine are noisy: each benchmark runs COUNT
# times (default 3) and the table shows the median.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() { go test -run '^$' -bench "$2" -benchmem -count "$count" -benchtime "$3" "$1" | tee -a "$out" >&2; }
run ./dataplane/ 'Pipeline' 2000000x
run ./flowtable/ 'InstallRemove|MemoryPerSession' 20000x
run ./control/ 'Establish' 100000x

# median NAME UNIT: the median of the figure with that unit over the runs
median() {
  awk -v name="$1" -v unit="$2" '
    $1 ~ "^"name"(-[0-9]+)?$" { for (i = 2; i < NF; i++) if ($(i+1) == unit) print $i }' "$out" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR+1)/2)] }'
}
row() { # label benchmark unit target (<=N at most, >=N at least, - report only)
  local v; v=$(median "$2" "$3")
  local verdict="report"
  if [ "$4" != "-" ] && [ "$v" != "-" ]; then
    verdict=$(awk -v v="$v" -v t="$4" 'BEGIN {
      if (substr(t, 1, 2) == ">=") ok = v+0 >= substr(t, 3)+0; else ok = v+0 <= t+0
      print ok ? "ok" : "MISSED" }')
  fi
  printf '%-48s %14s %-16s %10s  %s\n' "$1" "$v" "$3" "$4" "$verdict"
}

echo
printf '%-48s %14s %-16s %10s  %s\n' "figure" "median" "unit" "target" "verdict"
for dir in uplink downlink; do
  for n in 1 10000 1000000; do
    t=-; [ "$n" = 10000 ] && t=60; [ "$n" = 1000000 ] && t=150
    row "pipeline $dir, $n sessions" "BenchmarkPipeline/$dir/sessions=$n" ns/pkt "$t"
    row "  allocations per packet" "BenchmarkPipeline/$dir/sessions=$n" allocs/op 0
  done
done
row "install+remove, 10 sessions installed" "BenchmarkInstallRemove/sessions=10" ns/op-each -
row "install+remove, 1,000,000 installed" "BenchmarkInstallRemove/sessions=1000000" ns/op-each 20000
row "table memory per session (2 PDR/FAR, QER, URR)" "BenchmarkMemoryPerSession" B/session 1024
row "PFCP establishments over loopback (100,000)" BenchmarkEstablish establishments/s '>=20000'
row "PFCP deletions over loopback (100,000)" BenchmarkEstablish deletions/s -
row "control-plane memory per session" BenchmarkEstablish ctl-B/session 2048
row "control plane and table memory per session" BenchmarkEstablish B/session -
