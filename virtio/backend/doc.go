// Package backend is Sluice as the vhost-user back-end: it serves the
// vhost-user sockets that VMs (QEMU virtio-net) and containers (DPDK
// virtio-user) attach to, and drives their virtqueues as the virtio device.
//
// Everything a front-end writes is untrusted: its messages, its memory
// table, its descriptors and its ring indices. Memory maps the front-end's
// memory table and translates its addresses region by region, refusing
// anything outside; walk (chain.go) follows a descriptor chain bounded by
// the ring size; the message handler checks each message's size and file
// descriptors. A front-end that breaks the rules fails its queue (the
// worker stops serving it until the front-end sets the ring up again) or
// its connection (closed, and the port accepts or dials again), with one
// log line and a counter by reason (Stats.Faults); it never makes Sluice
// read or write outside the mapped memory, panic or hang, and the other
// ports keep forwarding. One breach the checks cannot cover: shrinking a
// memory file after sending it, which turns the worker's next access to
// the lost pages into a SIGBUS. Memory seals each file against shrinking
// where the file allows it (QEMU's memfd back-ends come sealed); a file
// that does not (DPDK's virtio-user memory, hugetlbfs files) is named in
// the log when the table is mapped.
//
// Threading: a control goroutine per port speaks the protocol and owns the
// connection, the memory table and the ring set-up; each queue pair is a
// dataplane queue served by one worker. The control goroutine hands a
// queue to its worker by publishing an immutable set-up (an atomic
// pointer) and takes it back by publishing a stopped one and waiting until
// the worker has passed a quiescent point (it is outside Receive and
// Transmit, or has entered them again since). Only after that does it read
// a ring's index (GET_VRING_BASE) or unmap memory a new table replaced.
//
// A packet is copied once between two front-ends. Receive lends a packet
// that lies in one piece of the front-end's memory as it is: a ReadOnly
// frame over the mapped buffer, into which Sluice writes nothing (the
// pipeline builds new headers in the frame's Head); its buffer goes back
// to the front-end when the frame is freed, and until then the worker
// counts as inside the port (the epoch stays odd), so a memory table or a
// ring change waits for the frame. Lengths and offsets are Sluice's own,
// taken when the chain is walked, so a front-end that rewrites a lent
// buffer meanwhile changes only its own packet's octets. A packet in
// several pieces is copied into one of the port's frames (with
// dataplane.Headroom). Transmit writes the virtio-net header, the frame's
// Head and its octets straight into the front-end's receive buffers. The
// worker frees every frame of a burst before its next poll, so no
// front-end buffer is held between two polls, and a front-end that goes
// away leaves nothing of Sluice's behind.
//
// With IN_ORDER negotiated (DPDK's virtio-user asks for it), a transmit
// queue's buffers go back in the order they were taken (inOrder): a lent
// buffer holds back the used entries of those taken after it until it is
// freed. The front-end may then free its transmit buffers by the used
// index alone. Receive buffers are filled in order anyway.
package backend
