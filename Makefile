# Sluice: build, lint, test, benchmark.
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin

.PHONY: all build deps lint test bench fuzz demo

all: build

build:
	$(GO) build ./...

deps:
	@scripts/deps.sh

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN)/staticcheck ./...

# The test command of the README and of CI: lint, then every test with the
# race detector (the packages share state between workers and the control
# plane). Tests that need root (namespaces, XDP) skip with a reason without it.
test: lint bpf-check
	$(GO) test -race -count=1 -timeout 20m ./...
	cd deploy && $(GO) vet ./... && $(GOBIN)/staticcheck ./... && $(GO) test -count=1 -timeout 20m ./...

# The XDP program is C compiled with bpf2go; its object and bindings are
# committed so that building Sluice needs no clang. This compiles it again
# and fails when they differ from the source.
.PHONY: bpf-check
bpf-check: deps
	@scripts/bpf-check.sh

# Sluice's main job on a namespace testbed (needs root): upf up, sessions
# over PFCP, ping and iperf3 through it both ways, figures and counters.
demo: deps
	$(GO) run ./testbed/cmd/demo

# Benchmarks with their targets, printed as one table.
bench:
	@scripts/bench.sh

# A short run of every fuzz target (each parser has one).
fuzz:
	@scripts/fuzz.sh 30s

# Sluice against plain kernel IPv4 forwarding and the AF_XDP ceiling
# (DPDK testpmd io forwarding) on the namespace testbed (issue 4; needs
# root, about 20 minutes; BENCHFLAGS=-quick for about 3): tables on stdout,
# JSON and an SVG plot in out/bench/.
.PHONY: bench-e2e bench-deps
bench-e2e: bench-deps
	$(GO) run ./testbed/cmd/benchrun $(BENCHFLAGS)

# What bench-e2e needs beyond the tests' dependencies (dpdk-dev), when missing.
bench-deps:
	@scripts/bench-deps.sh

# The split-TCP proxy on emulated radio and Internet legs (needs root):
# 20 MB downloads and uploads, 5 repetitions, profiles (a) clean, (b) and
# (c) lossy, with and without the proxy; medians against the targets.
# SPLITFLAGS="-reps 1 -size 5000000" for a quick look.
.PHONY: bench-split
bench-split:
	$(GO) run ./testbed/cmd/splitbench $(SPLITFLAGS)
