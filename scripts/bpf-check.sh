#!/usr/bin/env bash
# Compiles the XDP program (dataplane/fastpath/bpf) again with bpf2go and
# fails when the committed object or Go bindings differ from what the C
# source gives: `go build` uses the committed ones and needs no clang.
# Without clang it says so and checks nothing.
set -euo pipefail
dir=dataplane/fastpath
if ! command -v clang >/dev/null 2>&1 || ! command -v llvm-strip >/dev/null 2>&1; then
  echo "bpf-check: no clang/llvm-strip: the committed XDP object is not checked against its source" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'cp "$tmp"/sluice_bpfel.* "$dir"/ 2>/dev/null; rm -rf "$tmp"' EXIT
cp "$dir"/sluice_bpfel.go "$dir"/sluice_bpfel.o "$tmp"/
(cd "$dir" && go generate ./)
status=0
for f in sluice_bpfel.go sluice_bpfel.o; do
  if ! cmp -s "$tmp/$f" "$dir/$f"; then
    echo "bpf-check: $dir/$f differs from what $dir/bpf/xdp.c compiles to: run 'go generate ./$dir' and commit it" >&2
    status=1
  fi
done
exit $status
