package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// preflight checks what can be checked before anything starts — the
// workers' CPUs and the interfaces — so that `upf check` catches it and
// `upf run` fails before N4 is up. Every problem is reported, each with
// its field path.
func preflight(cfg *parsed) error {
	return errors.Join(checkCPUs(cfg), checkN4Addrs(cfg), checkInterfaces(cfg))
}

// checkN4Addrs verifies that every N4 address is one of this host's (or
// the unspecified address), so that binding it will work.
func checkN4Addrs(cfg *parsed) error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return bad("n4.addresses", "list the host's addresses: %v", err)
	}
	local := map[netip.Addr]bool{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			local[p.Addr().Unmap()] = true
		}
	}
	var errs []error
	for i, ap := range cfg.n4 {
		if a := ap.Addr().Unmap(); !a.IsUnspecified() && !local[a] {
			errs = append(errs, bad(fmt.Sprintf("n4.addresses[%d]", i), "%v is not an address of this host (or its network namespace)", a))
		}
	}
	return errors.Join(errs...)
}

// checkCPUs verifies that every configured core exists and that upf may
// run on it (its CPU affinity, as a container's cpuset limits it).
func checkCPUs(cfg *parsed) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return bad("cores", "read the CPUs upf may use: %v", err)
	}
	var allowed []int
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			allowed = append(allowed, cpu)
		}
	}
	var errs []error
	for i, cpu := range cfg.cfg.Cores {
		if cpu < 0 || !set.IsSet(cpu) {
			errs = append(errs, bad(fmt.Sprintf("cores[%d]", i), "CPU %d is not available to upf; it may use CPUs %v", cpu, allowed))
		}
	}
	return errors.Join(errs...)
}
