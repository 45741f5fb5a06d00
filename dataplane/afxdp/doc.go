// Package afxdp is Sluice's AF_XDP port driver: XDP sockets (XSK) over
// golang.org/x/sys/unix, one per served queue of an interface, and the XDP
// program that steers the packets Sluice owns into them.
//
// Each socket has its own UMEM (packet memory outside the Go heap, with
// dataplane.Headroom reserved in front of every received packet so that
// encapsulation prepends in place) and its four rings: fill and completion
// (frames given to and taken back from the kernel), rx and tx. The rings are
// single-producer single-consumer queues shared with the kernel; Sluice keeps
// cached copies of the kernel's indices so that a burst costs one atomic load
// and one atomic store per ring, and asks the kernel for a wakeup only when
// the kernel says it needs one (XDP_USE_NEED_WAKEUP).
//
// The XDP program is generated at run time with cilium/ebpf's asm package (no
// C toolchain is needed to build Sluice). On an N3 port it steers GTP-U (UDP
// port 2152) addressed to the N3 addresses into the sockets; on an N6 port it
// steers packets addressed to the UE pools. Everything else (ARP, neighbour
// discovery, ICMP to the host, PFCP, management traffic, IP fragments on N3)
// is passed to the kernel, so the host stays reachable.
//
// A Port implements dataplane.Port and dataplane.Waiter. Its per-queue
// methods are called only by the worker that owns the queue; see Port for
// which methods are safe for concurrent use.
package afxdp
