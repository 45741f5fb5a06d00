package vring

import (
	"sync/atomic"
	"unsafe"
)

// word returns the aligned 32-bit word holding the 16-bit field at p, and
// the shift of the field within it. p must be 2-aligned; the word lies in
// the same page (and, for rings in one buffer, the same allocation).
func word(p *uint16) (*uint32, uint) {
	off := uintptr(unsafe.Pointer(p)) & 3
	return (*uint32)(unsafe.Add(unsafe.Pointer(p), -int(off))), uint(off) * 8
}

// loadAcquire reads a 16-bit field the other side of the ring writes;
// accesses after it are not moved before it.
func loadAcquire(p *uint16) uint16 {
	w, shift := word(p)
	return uint16(atomic.LoadUint32(w) >> shift)
}

// storeRelease writes a 16-bit field the other side reads; accesses before
// it are not moved after it, and (Go atomics being sequentially
// consistent) loads after it are not moved before it. The other half of
// the word is kept as it is.
func storeRelease(p *uint16, v uint16) {
	w, shift := word(p)
	for {
		old := atomic.LoadUint32(w)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(w, old, nw) {
			return
		}
	}
}
