// Package trafgen generates benchmark traffic for Sluice's testbed and
// counts what gets through.
//
// Ordinary generators cannot load Sluice on the testbed's small machines (a
// Go UDP sender manages about 0.2 Mpps on one vCPU). The Generator here is
// an XDP program run by the kernel in live-frames test mode (BPF_PROG_RUN
// with BPF_F_TEST_XDP_LIVE_FRAMES): the kernel loops over page-pool frames,
// the program writes the next packet of the stream into each and returns
// XDP_TX, and the kernel transmits it from the named veth end into its peer,
// several million packets per second on one CPU. The program is built with
// cilium/ebpf's asm package, so no C compiler is involved.
//
// A stream (Spec) cycles through many sessions: GTP-U uplink G-PDUs from the
// gNB's N3 address to the UPF's, TEID and UE source address stepping with
// the session (UplinkSpec); plain downlink packets from the data network to
// the UE addresses (DownlinkSpec); or uplink without the tunnel, for a
// kernel router as reference (PlainUplinkSpec). Spec.Size is the length of
// the user's IP packet, the same measure on N3 and N6. Every header,
// checksums included, is written for every packet: live frames come back
// with whatever their last receiver left in them.
//
// Where the work lands: a veth delivers an XDP-transmitted frame to the
// peer's receive queue numbered by the sending CPU (modulo the queue count),
// and the peer's NAPI runs on the sending CPU too unless it is threaded
// (topo's ThreadedNAPI and PinNAPI move it). Left alone, generator, Sluice's
// XDP steering and a sink all run on the generator's CPU and the generator
// slows to what the chain takes; for figures, thread and pin the NAPI of the
// unit under test onto its own CPU and give the sink's NAPI threads real-
// time priority. Measured on the 2-vCPU machines, one sending thread offers
// 19-20 Mpps of 64-octet packets into a veth whose peer drops them with XDP,
// and pacing holds rates within a few per cent (the kernel's ~20 ms of set-
// up per run counts as run time).
//
// A Sink is an XDP program on the receiving veth end that counts matching
// packets in per-CPU counters and drops them, passing everything else (ARP
// above all) to the kernel. Measure runs a generator against a sink and
// reports offered and delivered rates.
//
// Everything here needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for
// namespaces). Runs are bounded by RunOptions.Duration.
package trafgen
