package backend

import (
	"encoding/binary"

	"github.com/sluice-net/sluice/dataplane"
	"github.com/sluice-net/sluice/virtio"
	"github.com/sluice-net/sluice/virtio/vring"
)

// noFault is what the walkers return when the chain kept the rules.
const noFault Fault = -1

// chainReader walks the readable descriptor chain at head, treating it as
// a front-end's input: it follows at most the ring's size of descriptors,
// refuses writable, indirect and out-of-ring links, and translates each
// descriptor through mem, piece by piece across regions. It yields the
// chain's octets after the first skip.
type chainReader struct {
	d     *vring.Device
	mem   *Memory
	size  int
	n     int // descriptors taken
	id    uint16
	desc  vring.Desc
	a     uint64 // the rest of the current descriptor
	l     uint32
	first bool // no piece of the current descriptor translated yet
	open  bool // a descriptor is being read
	skip  int
}

func readChain(d *vring.Device, mem *Memory, head uint16, skip int) chainReader {
	return chainReader{d: d, mem: mem, size: d.Ring().Size(), id: head, skip: skip}
}

// next returns the next non-empty piece, or ok false at the end of the
// chain (f is noFault) or at a fault.
func (r *chainReader) next() (b []byte, ok bool, f Fault) {
	for {
		for r.open && r.l > 0 {
			b, ok := r.mem.translate(r.a, r.l)
			if !ok {
				if r.first {
					return nil, false, FaultAddr
				}
				return nil, false, FaultLength
			}
			r.first = false
			r.a += uint64(len(b))
			r.l -= uint32(len(b))
			if r.skip > 0 {
				k := min(r.skip, len(b))
				b = b[k:]
				r.skip -= k
			}
			if len(b) > 0 {
				return b, true, noFault
			}
		}
		if r.open {
			if r.desc.Flags&vring.DescFNext == 0 {
				return nil, false, noFault
			}
			if r.desc.Next >= uint16(r.size) {
				return nil, false, FaultLink
			}
			r.id = r.desc.Next
		}
		if r.n >= r.size {
			return nil, false, FaultLoop
		}
		r.n++
		r.desc = r.d.Desc(r.id)
		if r.desc.Flags&(vring.DescFWrite|vring.DescFIndirect) != 0 {
			return nil, false, FaultFlags
		}
		r.a, r.l, r.first, r.open = r.desc.Addr, r.desc.Len, true, true
	}
}

// gather copies the readable chain at head into dst (chainReader), after
// skipping the first skip (the virtio-net header), and returns how many
// it copied and how many the chain held after skip (more than copied when
// dst is too small).
func gather(d *vring.Device, mem *Memory, head uint16, skip int, dst []byte) (copied, total int, f Fault) {
	r := readChain(d, mem, head, skip)
	for {
		b, ok, f := r.next()
		if !ok {
			return copied, total, f
		}
		total += len(b)
		copied += copy(dst[copied:], b)
	}
}

// locate checks the readable chain at head as gather does and returns
// its octets after the first skip where they lie in the front-end's
// memory, when they are in one piece (one descriptor, or a header
// descriptor and one more); pkt is nil when they are in several. total is
// their number either way.
func locate(d *vring.Device, mem *Memory, head uint16, skip int) (pkt []byte, total int, f Fault) {
	// What front-ends send nearly always: one readable descriptor, with
	// nothing but the header and the packet, in one region. Anything
	// else (and this case when it does not hold whole) takes the walk,
	// which finds the same answer or the fault.
	if desc := d.Desc(head); desc.Flags == 0 && int(desc.Len) > skip {
		if b, ok := mem.translate(desc.Addr, desc.Len); ok && len(b) == int(desc.Len) {
			return b[skip:len(b):len(b)], len(b) - skip, noFault
		}
	}
	r := readChain(d, mem, head, skip)
	for pieces := 0; ; pieces++ {
		b, ok, f := r.next()
		switch {
		case !ok && f != noFault:
			return nil, total, f
		case !ok:
			if pieces > 1 {
				pkt = nil
			}
			return pkt, total, noFault
		case pieces == 0:
			pkt = b[:len(b):len(b)]
		}
		total += len(b)
	}
}

// scatter writes a virtio-net header of hl octets (numBuffers 1 when hl
// is 12; none when hl is 0) and then f's packet from octet pos on into
// the writable chain at head. It returns how many packet octets it wrote
// and the header as it lies in the front-end's memory (so that
// num_buffers can be set afterwards). The first piece of the chain must
// hold the whole header.
func scatter(d *vring.Device, mem *Memory, head uint16, hl int, f *dataplane.Frame, pos int) (wrote int, ghdr []byte, fl Fault) {
	size := d.Ring().Size()
	left := f.Size() - pos
	id := head
	hdrDone := hl == 0
	for n := 0; ; n++ {
		if n >= size {
			return wrote, ghdr, FaultLoop
		}
		desc := d.Desc(id)
		if desc.Flags&vring.DescFWrite == 0 || desc.Flags&vring.DescFIndirect != 0 {
			return wrote, ghdr, FaultFlags
		}
		a, l := desc.Addr, desc.Len
		for first := true; l > 0; first = false {
			b, ok := mem.translate(a, l)
			if !ok {
				if first {
					return wrote, ghdr, FaultAddr
				}
				return wrote, ghdr, FaultLength
			}
			a += uint64(len(b))
			l -= uint32(len(b))
			if !hdrDone {
				if len(b) < hl {
					return wrote, ghdr, FaultShort
				}
				ghdr = b[:hl]
				putNetHeader(ghdr)
				b = b[hl:]
				hdrDone = true
			}
			if wrote < left && len(b) > 0 {
				wrote += f.CopyFrom(b[:min(len(b), left-wrote)], pos+wrote)
			}
		}
		if desc.Flags&vring.DescFNext == 0 {
			if !hdrDone {
				return wrote, ghdr, FaultShort
			}
			return wrote, ghdr, noFault
		}
		if desc.Next >= uint16(size) {
			return wrote, ghdr, FaultLink
		}
		id = desc.Next
	}
}

// putNetHeader writes a virtio-net header with no offloads: 12 octets
// with num_buffers 1, or the 10 of the legacy layout. The 12 are written
// only where they differ: a front-end recycles its receive buffers, so
// the header there usually holds these values already, and when it ends
// a cache line the packet does not start (DPDK puts it at the end of the
// mbuf's headroom), a line left unwritten stays valid in the front-end's
// cache: neither side pays for moving it between the cores.
func putNetHeader(b []byte) {
	if len(b) == virtio.NetHeaderLen {
		if binary.LittleEndian.Uint64(b[0:8]) != 0 {
			binary.LittleEndian.PutUint64(b[0:8], 0)
		}
		if binary.LittleEndian.Uint32(b[8:12]) != 1<<16 {
			binary.LittleEndian.PutUint32(b[8:12], 1<<16) // num_buffers
		}
		return
	}
	clear(b)
}
