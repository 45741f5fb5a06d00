package flowtable

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePage = 2 << 20

// adviseHuge asks the kernel to back the 2 MiB pages inside a large table
// array with transparent huge pages, and to do so now.
//
// The fast path reads these arrays at random, one line per packet per
// array, and at a million sessions they span tens of MiB: on 4 KiB pages
// nearly every read misses the TLB, and in a VM each miss walks both the
// guest's and the host's page tables. Huge pages give the arrays a few
// dozen TLB entries. The arrays are Go memory: madvise only changes how
// the kernel backs the pages (MADV_COLLAPSE copies what is there into a
// huge page), never their contents or mapping, so the Go runtime is
// unaffected. Errors (no THP, no memory to spare) leave the small pages.
func adviseHuge[T any](s []T) {
	if len(s) == 0 {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	lo := (p + hugePage - 1) &^ (hugePage - 1)
	hi := (p + uintptr(len(s))*unsafe.Sizeof(s[0])) &^ (hugePage - 1)
	if hi > lo {
		madviseHuge(lo, hi-lo)
	}
	runtime.KeepAlive(s)
}

func madviseHuge(p, n uintptr) {
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, p, n, unix.MADV_HUGEPAGE)
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, p, n, unix.MADV_COLLAPSE)
}
