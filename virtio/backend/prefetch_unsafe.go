package backend

import (
	"unsafe"

	"github.com/sluice-net/sluice/virtio/vring"
)

// lineAddr is the address of b's first octet, for prefetch.Read and
// prefetch.Write only: a hint, never dereferenced by Go code.
func lineAddr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// usedLines puts at q.lines[nl:] the cache lines of the next n used
// entries d will write (one address per line, ring wrap included) and
// returns the new count.
func (q *queue) usedLines(nl int, d *vring.Device, n int) int {
	const perLine = 64 / int(unsafe.Sizeof(vring.UsedElem{}))
	for k := 0; k < n && nl < len(q.lines); {
		a := uintptr(unsafe.Pointer(d.UsedEntry(k)))
		q.lines[nl] = a
		nl++
		k += perLine - int(a&63)/int(unsafe.Sizeof(vring.UsedElem{}))
	}
	return nl
}

// descLines puts at q.lines[nl:] the descriptor table entries of the next
// n available heads d will take (as the front-end wrote them now: a hint)
// and returns the new count.
func (q *queue) descLines(nl int, d *vring.Device, n int) int {
	for k := 0; k < n && nl < len(q.lines); k++ {
		q.lines[nl] = uintptr(unsafe.Pointer(d.DescEntry(d.PeekAvail(k))))
		nl++
	}
	return nl
}
