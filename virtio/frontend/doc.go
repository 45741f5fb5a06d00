// Package frontend is Sluice as a virtio-user front-end: a vhost-user
// port whose packet memory is Sluice's own, attached to a vswitch's
// vhost-user socket, as a container network function with a userspace CNI
// is (the switch, OVS-DPDK, VPP or DPDK's vhost PMD, is the back-end).
//
// A Pool is a memfd (huge pages when there are, normal pages otherwise)
// holding the rings and packet buffers of every queue a worker serves; it is
// shared with the switch through SET_MEM_TABLE. Ports whose queues share a
// pool forward between each other without a copy: a packet received on one
// is transmitted on the other from the buffer it arrived in. Receive
// buffers are posted with dataplane.Headroom in front of the packet (less
// the virtio-net header the device writes there), so encapsulation
// prepends in place.
//
// Each queue pair of a Port is a dataplane queue: Receive, Transmit, Wait
// and Free of its frames are called by the one worker that owns it. A
// control goroutine per port connects (client mode) or accepts (server
// mode), negotiates and, when the switch goes away, hands the rings back to
// the worker to reclaim every frame the dead connection held (counted in
// Stats.Released) and connects again, without the port being recreated.
package frontend
