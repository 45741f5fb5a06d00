package vring

import (
	"sync/atomic"
	"unsafe"
)

// The two sides of a ring share 16-bit fields: each side writes its own
// and reads the other's. loadAcquire reads the other side's; storeRelease
// publishes ours when only the order of our own accesses matters (a
// reader that sees the field sees what we wrote before it); storeSeqCst
// publishes ours when a load of the other side's field follows and must
// not be answered before the store is visible: the notification check
// after publishing an index, and the index check after asking to be
// notified. Without that order both sides can miss each other's update
// and one sleeps on work the other has published (VIRTIO 1.2, 2.7.10 and
// 2.7.13.3; DPDK and the kernel put a full barrier there).
//
// On amd64 (order_amd64.s) storeRelease is a plain 16-bit store (TSO
// keeps stores in order) and storeSeqCst an XCHG, one locked write;
// elsewhere, and in race-detector builds (which see only Go's atomics as
// synchronization), both are a compare-and-swap on the aligned 32-bit word
// holding the field (order_other.go).

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
