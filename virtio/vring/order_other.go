//go:build !amd64 || race

package vring

// storeRelease writes a 16-bit field the other side reads; accesses
// before it are not moved after it.
func storeRelease(p *uint16, v uint16) { storeWord(p, v) }

// storeSeqCst is storeRelease, and loads after it are not moved before
// it either.
func storeSeqCst(p *uint16, v uint16) { storeWord(p, v) }
