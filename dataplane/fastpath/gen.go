package fastpath

// The program is C (xdp.c) compiled by clang through bpf2go; the object and
// its Go bindings are committed, so building Sluice needs no clang. `make
// bpf-check` compiles it again and fails when the committed files differ.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -target bpfel -cflags "-O2 -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -type fp_rule -type fp_meter -type egress -type neigh_key -type neigh -type stat -type cell -type fp_slot sluice bpf/xdp.c
