//go:build !amd64 || race

package vring

import "sync/atomic"

// storeRelease writes a 16-bit field the other side reads; accesses
// before it are not moved after it.
func storeRelease(p *uint16, v uint16) { storeWord(p, v) }

// storeSeqCst is storeRelease, and loads after it are not moved before
// it either.
func storeSeqCst(p *uint16, v uint16) { storeWord(p, v) }

// Fence orders every access before it before every access after it.
func Fence() {
	var x uint32
	atomic.AddUint32(&x, 0)
}

// storeWord writes a 16-bit field by compare-and-swap on its 32-bit word,
// keeping the word's other half as it is; Go's atomics being sequentially
// consistent, neither earlier accesses nor later loads move across it.
func storeWord(p *uint16, v uint16) {
	w, shift := word(p)
	for {
		old := atomic.LoadUint32(w)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(w, old, nw) {
			return
		}
	}
}
