package prefetch

import "unsafe"

// Read asks for the line at each address of as, to be read. Addresses,
// not pointers: filling the list needs no write barrier, and an address
// need not be mapped (a prefetch never faults).
//
//go:noescape
func Read(as []uintptr)

// Write asks for the line at each address of as, to be written
// (PREFETCHW): the line comes in owned, so the store that follows does
// not wait for another core to give it up.
//
//go:noescape
func Write(as []uintptr)

// Indexed asks for the line at base + idx[i]<<shift, for every i, to be
// read: the lines of an array of 1<<shift-octet elements that a burst
// will read.
//
//go:noescape
func Indexed(base unsafe.Pointer, shift uint, idx []uint32)
