package backend

import (
	"github.com/sluice-net/sluice/virtio/vring"
)

// noFault is what the walkers return when the chain kept the rules.
const noFault Fault = -1

// gather copies the octets of the readable chain at head into dst,
// skipping the first skip (the virtio-net header), and returns how many it
// copied and how many the chain held after skip (more than copied when dst
// is too small). It follows at most the ring's size of descriptors and
// translates each through mem, piece by piece across regions.
func gather(d *vring.Device, mem *Memory, head uint16, skip int, dst []byte) (copied, total int, f Fault) {
	size := d.Ring().Size()
	id := head
	for n := 0; ; n++ {
		if n >= size {
			return copied, total, FaultLoop
		}
		desc := d.Desc(id)
		if desc.Flags&(vring.DescFWrite|vring.DescFIndirect) != 0 {
			return copied, total, FaultFlags
		}
		a, l := desc.Addr, desc.Len
		for first := true; l > 0; first = false {
			b, ok := mem.translate(a, l)
			if !ok {
				if first {
					return copied, total, FaultAddr
				}
				return copied, total, FaultLength
			}
			a += uint64(len(b))
			l -= uint32(len(b))
			if skip > 0 {
				k := min(skip, len(b))
				b = b[k:]
				skip -= k
			}
			total += len(b)
			copied += copy(dst[copied:], b)
		}
		if desc.Flags&vring.DescFNext == 0 {
			return copied, total, noFault
		}
		if desc.Next >= uint16(size) {
			return copied, total, FaultLink
		}
		id = desc.Next
	}
}

// scatter writes hdr and then data into the writable chain at head and
// returns how many octets of data it wrote and the header as it lies in
// the front-end's memory (so that num_buffers can be set afterwards). The
// first piece of the chain must hold the whole header.
func scatter(d *vring.Device, mem *Memory, head uint16, hdr, data []byte) (wrote int, ghdr []byte, f Fault) {
	size := d.Ring().Size()
	id := head
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
			if ghdr == nil {
				if len(b) < len(hdr) {
					return wrote, ghdr, FaultShort
				}
				ghdr = b[:len(hdr)]
				copy(ghdr, hdr)
				b = b[len(hdr):]
			}
			wrote += copy(b, data[wrote:])
		}
		if desc.Flags&vring.DescFNext == 0 {
			return wrote, ghdr, noFault
		}
		if desc.Next >= uint16(size) {
			return wrote, ghdr, FaultLink
		}
		id = desc.Next
	}
}
