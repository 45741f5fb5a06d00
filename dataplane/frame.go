// Package dataplane is Sluice's packet path: the frame and port model that
// AF_XDP, vhost-user and TAP ports implement, and the per-core workers that
// receive bursts, match them against the flow table, apply the rules
// (GTP-U decapsulation and encapsulation, gating, metering, counting) and
// transmit them, run to completion.
//
// Nothing on the per-packet path allocates, locks or blocks; rules arrive
// through flowtable's lock-free table and counters are per worker.
package dataplane

// BurstSize is the number of frames a worker receives, processes and
// transmits at a time. Every port and the pipeline size their batches by it.
const BurstSize = 64

// Headroom is the space a port leaves in front of a received packet so that
// GTP-U encapsulation (outer Ethernet, IPv6, UDP, GTP-U with a PDU Session
// Container: 14+40+8+16 octets) prepends in place. Ports reserve at least
// this much.
const Headroom = 256

// HeadCap is the most octets the pipeline puts in a frame's Head: new
// outer headers (Ethernet, IPv4, UDP, GTP-U with a PDU Session Container)
// and the front of the IP header it rewrites (TTL and checksum), or a
// whole GTP-U echo response or error indication.
const HeadCap = 128

// Frame is one packet in memory a port owns (UMEM, guest memory or a pool):
// Buf is the whole buffer, and the packet is Head followed by
// Buf[Off:Off+Len]. A frame is owned by exactly one stage at a time;
// whoever holds it must pass it to a port's Transmit or give it back with
// Owner.Free. Frames are values, moved in arrays, so handling them never
// allocates.
//
// A port that hands over packets where they lie in a peer's memory (a
// vhost-user front-end's transmit buffers) sets ReadOnly: the pipeline
// then writes nothing into Buf, but builds the octets it changes (new
// outer headers, the rewritten front of the IP header, a reply) in Head
// and points Off past the octets they replace. Head is memory of the
// worker that built it (the end of a HeadCap array, so that a frame stays
// a few words: a pointer and an offset), valid until the frame is
// transmitted or freed.
// Receive needs to set neither: the worker keeps Head empty and ReadOnly
// false on the frames it receives into, so only a port that lends sets
// ReadOnly. Transmit copies Head and then Data() (CopyTo); a port that
// transmits frames of its own in place only ever sees ReadOnly frames of
// other owners.
type Frame struct {
	Buf      []byte
	Off      int
	Len      int
	Handle   uint64         // the owner's own reference (UMEM address, descriptor index)
	head     *[HeadCap]byte // Head is head[headOff:]; nil: none
	Queue    uint16         // the owner's queue the frame came from
	ReadOnly bool           // Buf is a peer's memory, not to be written
	headOff  uint8
	Owner    FrameOwner // the port whose memory this is
}

// Head returns the octets in front of Buf[Off:] (see above); nil on a
// frame as a port received it.
func (f *Frame) Head() []byte {
	if f.head == nil {
		return nil
	}
	return f.head[f.headOff:]
}

// SetHead makes h[off:] the frame's Head; h nil removes it. The pipeline
// sets it; ports and tests that build frames may.
func (f *Frame) SetHead(h *[HeadCap]byte, off int) {
	f.head, f.headOff = h, uint8(off)
}

// Data returns the octets in Buf: the whole packet when Head is empty.
func (f *Frame) Data() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// Size returns the packet's length: Head and the octets in Buf.
func (f *Frame) Size() int { return len(f.Head()) + f.Len }

// CopyTo copies the packet (Head, then the octets in Buf) into b and
// returns how many octets it copied: all of them unless b is shorter.
func (f *Frame) CopyTo(b []byte) int {
	n := copy(b, f.Head())
	return n + copy(b[n:], f.Buf[f.Off:f.Off+f.Len])
}

// CopyFrom copies into b the packet's octets from pos on (pos counts from
// the start of Head) and returns how many it copied: as many as fit in b.
// Ports that scatter a packet over several buffers use it.
func (f *Frame) CopyFrom(b []byte, pos int) int {
	n := 0
	h := f.Head()
	if pos < len(h) {
		n = copy(b, h[pos:])
		if n == len(b) {
			return n
		}
	}
	return n + copy(b[n:], f.Buf[f.Off+pos+n-len(h):f.Off+f.Len])
}

// Prepend grows the packet by n octets at the front and reports whether the
// headroom allowed it. It is for frames Sluice may write (not ReadOnly)
// and without a Head.
func (f *Frame) Prepend(n int) bool {
	if n > f.Off {
		return false
	}
	f.Off -= n
	f.Len += n
	return true
}

// Pull removes n octets from the front of the packet, which must have no
// Head.
func (f *Frame) Pull(n int) {
	f.Off += n
	f.Len -= n
}

// FrameOwner takes frames back. Free is called by the worker that serves the
// frames' queue; it must not block.
type FrameOwner interface {
	Free(frames []Frame)
}

// Port is a network port served by workers, one queue per worker. Every
// method with a queue argument is called only by the worker that owns that
// queue, so implementations need no locks on it.
type Port interface {
	FrameOwner
	// Name identifies the port in logs and metrics.
	Name() string
	// Queues is the number of queues the port offers.
	Queues() int
	// Receive moves up to len(frames) received frames into frames and
	// returns how many. The caller owns them from then on.
	Receive(q int, frames []Frame) int
	// Transmit takes ownership of every frame given and returns how many it
	// queued for sending; the rest it has freed and counted as dropped.
	// Frames owned by another port are copied into the port's own memory
	// and given back to their owner.
	Transmit(q int, frames []Frame) int
}

// Waiter is implemented by ports that can put an idle worker to sleep until
// a queue has work (XSK poll, a vhost kick eventfd).
type Waiter interface {
	// Wait blocks until queue q may have frames or timeoutMS passes.
	Wait(q int, timeoutMS int) error
}

// MAC is an Ethernet address.
type MAC [6]byte

// FDPoller is implemented by ports whose queues have a file descriptor that
// polls readable when frames arrive, so a worker serving several ports can
// sleep on all of them at once.
type FDPoller interface {
	PollFD(q int) int
}
