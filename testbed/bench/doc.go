// Package bench measures Sluice against the kernel's own IPv4 forwarding on
// one namespace topology, as issue 4 asks: for each packet size, direction
// and session count it offers the traffic generator's maximum rate to each
// system in turn and reports what was offered and what arrived, Sluice's
// delivered rate as a ratio of the kernel's and of the AF_XDP ceiling's,
// and the CPU Sluice uses when it has sessions but no traffic.
//
// The systems under test, on the same links, in rounds. A round measures
// one direction and packet size at a time (a block); each block runs
// every system once, in the order kernel, sluice-fast, afxdp-io, sluice
// and every other round in reverse, and each system one run at every
// session count (in ascending order). This machine's rates drift by tens
// of percent over minutes; a ratio of two systems, or of Sluice's two
// session counts, is the median of the ratios of their runs in the same
// round, taken a minute or less apart in the same block, not of medians
// taken a phase apart:
//
//   - Kernel: the upf namespace as a plain IPv4 router
//     (topo.EnableKernelForwarding). The gNB side offers plain IP uplink on
//     N3 (trafgen.PlainUplinkSpec), the data network plain downlink on N6;
//     no GTP-U anywhere. This is the reference.
//   - AF_XDP ceiling (afxdp-io): DPDK's dpdk-testpmd (Debian's dpdk-dev)
//     in the upf namespace with kernel forwarding off, one net_af_xdp port
//     on each of N3 and N6, forwarding every packet unchanged to the other
//     port (io mode): no parsing, no lookup, no rewrite. It gets the frames
//     Sluice gets (GTP-U uplink on N3, plain downlink on N6) and its
//     output is counted as it leaves, the uplink still in its tunnel. It
//     tells how much of the distance to the kernel is the I/O method
//     (AF_XDP, copy mode on veth) rather than Sluice. It is a reference
//     AF_XDP forwarder more than a strict bound: DPDK's driver and mbuf
//     handling cost CPU time of their own. Measured only when dpdk-testpmd
//     is installed, unless asked for (Options.Systems).
//   - Sluice: the real upf binary in the upf namespace with kernel
//     forwarding off, sessions established over PFCP from the gnb
//     namespace with deterministic identifiers (session i has uplink TEID
//     ULTEIDBase+i and UE address i of the pool, the ones the generator
//     cycles through), GTP-U uplink offered on N3 and plain downlink on N6.
//     A block starts upf once, establishes the smallest count's
//     sessions, measures, establishes the next count's additional
//     sessions, and so on. upf and testpmd are stopped at the end of
//     their block, which detaches their XDP programs; the runner checks
//     that they are gone.
//
// XDP sinks count the delivered packets on the far side (dn's N6 for
// uplink, gnb's N3 for downlink).
//
// Where the work runs, on the 2-vCPU machines (see the repository's
// machine notes): the generator, the sinks and this process on GenCPU; the
// unit under test on DUTCPU. Every veth end has threaded NAPI. The upf
// namespace's ends (the kernel router's forwarding, Sluice's XDP steering
// and AF_XDP receive copy) are pinned to DUTCPU; the far ends (the sinks)
// are pinned to GenCPU with real-time priority and deferred re-arming
// (napi_defer_hard_irqs, gro_flush_timeout), so that a transmitter on
// DUTCPU fills their ring without waking them for every burst. The upf
// process runs entirely on DUTCPU (its worker with `cores: [DUTCPU]`, its
// other threads under taskset), and so does testpmd (its main and its
// forwarding lcore both mapped to DUTCPU, its EAL threads under taskset).
//
// The upf namespace's ends keep the kernel's NAPI defaults unless
// Options.DUTDefer is set: their NAPI threads sleep when their ring is
// empty, and the generator's transmission wakes them, a cross-CPU wake-up
// (on these virtual machines an interrupt to a vCPU that may be halted),
// for every burst. When the unit under test keeps up with the generator,
// the generator pays for those wake-ups, and they may be what limits the
// offered rate. DUTDefer and DUTFlush give the upf ends deferred re-arming
// like the sinks', for every system of the run alike: while traffic
// flows their NAPI is polled by its own timer on DUTCPU. AF_XDP preferred
// busy polling, which would let upf and testpmd run that NAPI in their own
// system calls, is not available there: on Linux 6.18 a copy-mode socket
// on veth still has NAPI ID 0 (SO_INCOMING_NAPI_ID) after receiving, so
// its recvfrom polls nothing.
//
// AF_XDP transmission on veth is copy mode: the worker's sendto builds an
// skb and runs veth_xmit on DUTCPU, which only queues the skb on the
// peer's ring and schedules the peer's NAPI. Without threaded NAPI on the
// peer that scheduling raises the receive softirq on the sending CPU, and
// the sink's receive work (and the freeing of the skb, whose destructor
// posts the frame to the socket's completion ring) would be charged to
// DUTCPU. With the sink ends' NAPI threaded and pinned to GenCPU, the
// receive and the completion run there; what remains on DUTCPU is the
// copy into the skb and the completion ring's spin lock, shared with the
// sink's CPU. Each run records per-CPU and per-thread CPU time (Trial.CPU)
// so that a reader can check where the work landed.
//
// The machines are shared: another process busy on DUTCPU takes CPU time
// from the unit under test (under the ordinary scheduler, half of it).
// Before each run the runner waits for DUTCPU to be quiet; a run during
// which DUTCPU spent more than Options.MaxForeign on work that the unit
// under test does not account for is marked disturbed, kept in the
// results, left out of the medians and repeated once in its round. So is
// a run taken while the host ran the two CPUs in another placement than
// usual: the runner samples how long a cache line takes between them
// through every run (placement_linux.go), since the systems forward across
// them and all run faster while they are close.
//
// Everything here needs root. Runs are bounded by the context and by each
// point's duration; the topology, the upf process and the XDP programs
// are removed on every exit path.
package bench
