package vring

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrLayout reports ring memory that does not fit a split virtqueue.
var ErrLayout = errors.New("bad ring layout")

// MaxSize is the largest split virtqueue size.
const MaxSize = 32768

// Descriptor flags.
const (
	DescFNext     = 1 // the buffer continues in Desc.Next
	DescFWrite    = 2 // device-writable (a receive buffer)
	DescFIndirect = 4 // the buffer is a table of descriptors
)

// Ring flags: VRING_AVAIL_F_NO_INTERRUPT in the available ring's flags
// (driver to device: do not call), VRING_USED_F_NO_NOTIFY in the used
// ring's (device to driver: do not kick). Both are ignored with EVENT_IDX.
const (
	AvailFNoInterrupt = 1
	UsedFNoNotify     = 1
)

// Desc is a descriptor table entry: a buffer at guest address Addr.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// UsedElem is a used ring entry: the head of a descriptor chain the device
// is done with, and how many octets it wrote into it.
type UsedElem struct {
	ID  uint32
	Len uint32
}

// Sizes of the ring parts for a ring of n entries (VIRTIO 1.2, 2.7).
func DescBytes(n int) int  { return 16 * n }
func AvailBytes(n int) int { return 6 + 2*n }
func UsedBytes(n int) int  { return 6 + 8*n }

// Layout is where the three parts of a ring are in one block of memory.
type Layout struct {
	Size              int // entries, a power of two
	Desc, Avail, Used int // offsets
	Bytes             int // total, a multiple of 64
}

// ContiguousLayout lays a ring of n entries out in one block: the
// descriptor table, the available ring, then the used ring on its own
// cache line, so that what the driver writes and what the device writes do
// not share one.
func ContiguousLayout(n int) Layout {
	l := Layout{Size: n, Desc: 0, Avail: DescBytes(n)}
	l.Used = alignUp(l.Avail+AvailBytes(n), 64)
	l.Bytes = alignUp(l.Used+UsedBytes(n), 64)
	return l
}

func alignUp(x, a int) int { return (x + a - 1) &^ (a - 1) }

// Ring is the shared memory of one split virtqueue, as views. It holds no
// state of either side.
type Ring struct {
	size       uint16
	mask       uint16
	desc       []Desc
	availFlags *uint16
	availIdx   *uint16
	availRing  []uint16
	usedEvent  *uint16 // after availRing; written by the driver
	usedFlags  *uint16
	usedIdx    *uint16
	usedRing   []UsedElem
	availEvent *uint16 // after usedRing; written by the device
}

// New returns the views of a ring of size entries whose parts are at the
// starts of desc, avail and used. size must be a power of two up to
// MaxSize; desc must be 16-aligned, avail 2-aligned and used 4-aligned
// (VIRTIO 1.2, 2.7.2); each must be long enough. The memory must stay
// mapped as long as the Ring is used.
func New(desc, avail, used []byte, size int) (Ring, error) {
	if size <= 0 || size > MaxSize || size&(size-1) != 0 {
		return Ring{}, fmt.Errorf("%w: size %d is not a power of two up to %d", ErrLayout, size, MaxSize)
	}
	if len(desc) < DescBytes(size) || len(avail) < AvailBytes(size) || len(used) < UsedBytes(size) {
		return Ring{}, fmt.Errorf("%w: %d, %d and %d octets for a ring of %d", ErrLayout, len(desc), len(avail), len(used), size)
	}
	if addr(desc)%16 != 0 || addr(avail)%2 != 0 || addr(used)%4 != 0 {
		return Ring{}, fmt.Errorf("%w: parts at %#x, %#x, %#x are misaligned", ErrLayout, addr(desc), addr(avail), addr(used))
	}
	r := Ring{size: uint16(size), mask: uint16(size - 1)}
	r.desc = unsafe.Slice((*Desc)(unsafe.Pointer(&desc[0])), size)
	r.availFlags = (*uint16)(unsafe.Pointer(&avail[0]))
	r.availIdx = (*uint16)(unsafe.Pointer(&avail[2]))
	r.availRing = unsafe.Slice((*uint16)(unsafe.Pointer(&avail[4])), size)
	r.usedEvent = (*uint16)(unsafe.Pointer(&avail[4+2*size]))
	r.usedFlags = (*uint16)(unsafe.Pointer(&used[0]))
	r.usedIdx = (*uint16)(unsafe.Pointer(&used[2]))
	r.usedRing = unsafe.Slice((*UsedElem)(unsafe.Pointer(&used[4])), size)
	r.availEvent = (*uint16)(unsafe.Pointer(&used[4+8*size]))
	return r, nil
}

// NewContiguous returns the views of a ring laid out by ContiguousLayout
// at the start of mem, which must be 64-aligned.
func NewContiguous(mem []byte, size int) (Ring, error) {
	l := ContiguousLayout(size)
	if len(mem) < l.Bytes {
		return Ring{}, fmt.Errorf("%w: %d octets for a ring of %d that needs %d", ErrLayout, len(mem), size, l.Bytes)
	}
	return New(mem[l.Desc:l.Avail], mem[l.Avail:l.Used], mem[l.Used:l.Bytes], size)
}

func addr(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}

// Size returns the number of entries.
func (r *Ring) Size() int { return int(r.size) }

// Reset zeroes the ring's indices, flags and event fields, as a new ring
// starts. Only the owner of both sides may call it (a driver whose device
// is gone).
func (r *Ring) Reset() {
	storeRelease(r.availFlags, 0)
	storeRelease(r.availIdx, 0)
	storeRelease(r.usedEvent, 0)
	storeRelease(r.usedFlags, 0)
	storeRelease(r.usedIdx, 0)
	storeRelease(r.availEvent, 0)
}

// needEvent is vring_need_event: whether moving an index from old to new
// passes the other side's event index ev.
func needEvent(ev, new, old uint16) bool {
	return new-ev-1 < new-old
}
