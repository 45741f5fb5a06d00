// Package topo builds Sluice's one-machine testbed out of network namespaces:
//
//	 ue ──(TUN, opened by the gNB)── gnb ──N3 veth── upf ──N6 veth── dn
//	10.45.0.0/16                 10.103.0.1   10.103.0.2  10.106.0.1   10.106.0.2
//
// Up creates the four namespaces, named Prefix-ue, Prefix-gnb, Prefix-upf and
// Prefix-dn and bind-mounted under /run/netns so that `ip netns exec` and
// other processes find them; Down removes them. Exec and Do run commands and
// Go code inside them.
//
// The ue namespace is left without links: its interface towards the RAN is a
// TUN device that the gNB emulator (package testbed/gnb) creates there and
// feeds from its own process, so it appears and vanishes with the gNB. UE
// addresses live on that TUN; Topology.UEIf names it and Topology.UEMTU is the
// MTU it gets.
//
// N3 joins gnb and upf, N6 joins upf and dn. Both are veth pairs whose two
// ends carry the same name (n3, n6) in their namespaces, with Options.Queues
// transmit and receive queues on each end. The dn namespace routes the UE
// pool to the upf's N6 address; the upf namespace has its two connected
// subnets and a default route into the data network, with IP forwarding off,
// so that the kernel never forwards user traffic itself: Sluice owns N3
// GTP-U and the UE pool there. EnableKernelForwarding turns the upf namespace
// into a plain IPv4 router instead, as the reference Sluice's figures are
// compared against.
//
// MTUs: N3 and N6 default to 1500 octets and the UEs' interface to 1400, so
// that a UE's largest packet plus the 36 to 44 octets of IPv4, UDP and GTP-U
// headers (with a PDU Session Container) fits on N3 without fragmentation.
//
// Veth ends get locally administered MAC addresses derived from their IPv4
// address (02:00 followed by its four octets), which makes captures easy to
// read; namespaces isolate them from every other topology.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).
package topo
