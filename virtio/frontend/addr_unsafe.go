package frontend

import "unsafe"

// addrOf returns the virtual address of b's first octet: the front-end's
// addresses for the switch (Sluice uses them as guest addresses too).
func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
