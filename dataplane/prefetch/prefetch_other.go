//go:build !amd64

package prefetch

import "unsafe"

// Read asks for the line at each address of as, to be read; here it does
// nothing.
func Read(as []uintptr) {}

// Write asks for the line at each address of as, to be written; here it
// does nothing.
func Write(as []uintptr) {}

// Indexed asks for the line at base + idx[i]<<shift, for every i; here it
// does nothing.
func Indexed(base unsafe.Pointer, shift uint, idx []uint32) {}
