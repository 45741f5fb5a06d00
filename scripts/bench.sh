#!/usr/bin/env bash
# Runs Sluice's benchmarks and prints one table of figures against targets.
# Figures on a shared 2-vCPU machine are noisy: each benchmark runs COUNT
# times (default 3) and the table shows the median. The pipeline runs two
# session shapes (plain: one QER without rates, one URR; real: what SMFs
# install, see dataplane/bench_test.go) with warm and cold caches; the real
# shape must cost at most 1.3 times the plain one. The pipeline runs its
# whole set COUNT times over, plain and real of one session count next to
# each other, and the ratio is the median of the COUNT passes' ratios: a
# ratio of two runs made a few seconds apart, not minutes. BENCH_FROM=FILE prints
# the table of the benchmark output saved in FILE instead of running.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() { go test -run '^$' -bench "$2" -benchmem -count "${4:-$count}" -benchtime "$3" "$1" | tee -a "$out" >&2; }
if [ -n "${BENCH_FROM:-}" ]; then # only print the table of a saved run's output
  cp "$BENCH_FROM" "$out"
else
  for _ in $(seq "$count"); do run ./dataplane/ 'Pipeline' 1000000x 1; done
  run ./flowtable/ 'InstallRemove|MemoryPerSession' 20000x
  run ./control/ 'Establish' 100000x
fi

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

# ratio LABEL NUM DEN TARGET: the median over the passes of the ratio of
# the worker's CPU time per packet (cpu-ns/pkt: time others held the CPU
# left out) of NUM to DEN, the k-th run of one against the k-th of the
# other; at most TARGET
ratio() {
  awk -v l="$1" -v num="$2" -v den="$3" -v t="$4" '
    function fig(   i) { for (i = 2; i < NF; i++) if ($(i+1) == "cpu-ns/pkt") return $i; return "" }
    $1 ~ "^"num"(-[0-9]+)?$" { a[++na] = fig() }
    $1 ~ "^"den"(-[0-9]+)?$" { b[++nb] = fig() }
    END {
      n = na < nb ? na : nb
      for (i = 1; i <= n; i++) r[i] = a[i] / b[i]
      if (n == 0) { printf "%-48s %14s %-16s %10s  %s\n", l, "-", "ratio", "<=" t, "MISSED"; exit }
      for (i = 2; i <= n; i++) for (j = i; j > 1 && r[j-1] > r[j]; j--) { x = r[j]; r[j] = r[j-1]; r[j-1] = x }
      m = r[int((n+1)/2)]
      printf "%-48s %14.2f %-16s %10s  %s\n", l, m, "ratio", "<=" t, (m <= t ? "ok" : "MISSED") }' "$out"
}

echo
printf '%-48s %14s %-16s %10s  %s\n' "figure" "median" "unit" "target" "verdict"
for dir in uplink downlink; do
  for n in 1 10000 1000000; do
    t=-; [ "$n" = 10000 ] && t=60; [ "$n" = 1000000 ] && t=150
    row "pipeline $dir, $n sessions, plain, warm" "BenchmarkPipeline/plain/warm/$dir/sessions=$n" ns/pkt "$t"
    row "  allocations per packet" "BenchmarkPipeline/plain/warm/$dir/sessions=$n" allocs/op 0
    [ "$n" = 1 ] && continue
    for c in warm cold; do
      [ "$c" = cold ] && row "pipeline $dir, $n sessions, plain, cold" "BenchmarkPipeline/plain/cold/$dir/sessions=$n" ns/pkt -
      row "  worker CPU time" "BenchmarkPipeline/plain/$c/$dir/sessions=$n" cpu-ns/pkt -
      row "pipeline $dir, $n sessions, real, $c" "BenchmarkPipeline/real/$c/$dir/sessions=$n" ns/pkt -
      row "  worker CPU time" "BenchmarkPipeline/real/$c/$dir/sessions=$n" cpu-ns/pkt -
      row "  allocations per packet" "BenchmarkPipeline/real/$c/$dir/sessions=$n" allocs/op 0
      ratio "  real / plain, $c" "BenchmarkPipeline/real/$c/$dir/sessions=$n" "BenchmarkPipeline/plain/$c/$dir/sessions=$n" 1.3
    done
  done
done
row "install+remove, 10 sessions installed" "BenchmarkInstallRemove/sessions=10" ns/op-each -
row "install+remove, 1,000,000 installed" "BenchmarkInstallRemove/sessions=1000000" ns/op-each 20000
row "table memory per session (2 PDR/FAR, QER, URR)" "BenchmarkMemoryPerSession" B/session 1024
row "PFCP establishments over loopback (100,000)" BenchmarkEstablish establishments/s '>=20000'
row "PFCP deletions over loopback (100,000)" BenchmarkEstablish deletions/s -
row "control-plane memory per session" BenchmarkEstablish ctl-B/session 2048
row "control plane and table memory per session" BenchmarkEstablish B/session -
