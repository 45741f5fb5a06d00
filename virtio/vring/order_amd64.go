//go:build !race

package vring

// storeRelease writes a 16-bit field the other side reads; accesses
// before it are not moved after it. A plain store: the compiler keeps
// the accesses before a call before it, and the processor keeps stores in
// order.
//
//go:noescape
func storeRelease(p *uint16, v uint16)

// storeSeqCst is storeRelease, and loads after it are not moved before
// it either: an XCHG, which waits for the store to reach the cache
// before any later load.
//
//go:noescape
func storeSeqCst(p *uint16, v uint16)

// Fence orders every access before it before every access after it: a
// locked exchange on the stack, which waits for the stores before it to
// reach the cache before any later load.
func Fence()
