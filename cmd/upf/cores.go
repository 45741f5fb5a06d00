package main

import "golang.org/x/sys/unix"

// resolveCores gives a configuration with workers: N (and no cores) the
// first N CPUs upf may run on, so that the rest of upf sees cores as if
// they had been listed. In a container those are its cpuset: with the
// CPU manager's static policy and whole CPUs, the CPUs it has to itself.
// One CPU beyond the workers' is left for the control plane when the
// affinity has one.
func resolveCores(cfg *parsed) error {
	n := cfg.cfg.Workers
	if n == 0 || len(cfg.cfg.Cores) > 0 {
		return nil
	}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return bad("workers", "read the CPUs upf may use: %v", err)
	}
	var allowed []int
	for cpu := range 1024 {
		if set.IsSet(cpu) {
			allowed = append(allowed, cpu)
		}
	}
	if len(allowed) < n {
		return bad("workers", "%d workers, but upf may run on only %d CPUs (%v)", n, len(allowed), allowed)
	}
	// The control plane and the Go runtime keep the first CPU when there
	// is one to spare; the workers take the last n.
	cfg.cfg.Cores = append([]int(nil), allowed[len(allowed)-n:]...)
	return nil
}
