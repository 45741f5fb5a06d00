// Package gnb emulates the user plane of a 5G gNB for Sluice's testbed, so
// that ordinary tools (ping, iperf3, curl) run in the ue namespace reach the
// dn namespace through Sluice.
//
// # Design
//
// One process holds file descriptors in two network namespaces:
//
//	ue namespace                      gnb namespace
//	  ue0 (TUN): UE addresses,          UDP socket on N3Local (10.103.0.1:2152)
//	  default route via ue0               │
//	       │  IP packets                   │  GTP-U G-PDUs
//	       └──────────── GNB ──────────────┴──────► UPF (10.103.0.2:2152)
//
// Start opens /dev/net/tun on a thread switched into the ue namespace, so the
// TUN device (Config.TUNName, default ue0) is created there; it gives the
// device the UE MTU, a default route and, for each session, the UE's address
// (/32 or /128). It opens the UDP socket on a thread switched into the gnb
// namespace. A descriptor keeps the namespace it was opened in, so the two
// loops below run on ordinary goroutines:
//
//   - uplink: a packet the ue kernel routes into the TUN is looked up by its
//     source address; the session's uplink TEID (the UPF's F-TEID, learned
//     over PFCP) and QFI make a G-PDU with an UL PDU Session Container, sent to
//     Config.UPF. A source without a session is dropped and counted.
//   - downlink: a G-PDU from N3 is looked up by its TEID (the gNB's downlink
//     TEID of a session) and its T-PDU written into the TUN, where the ue
//     kernel delivers it to the application. Echo Requests are answered;
//     Echo Responses, Error Indications and End Markers are counted.
//
// A TUN device without a process behind it is removed by the kernel, so the
// UEs' interface, its addresses and routes vanish when the GNB is closed or
// its process dies: nothing is left to clean up. All UEs share the ue
// namespace; an application picks its UE by binding to the UE's address
// (ping -I ADDR, iperf3 -B ADDR, curl --interface ADDR); unbound traffic
// leaves from the first UE's address.
//
// This is a functional emulator, not a load generator: one packet per system
// call in each direction (package testbed/trafgen offers benchmark load).
package gnb
