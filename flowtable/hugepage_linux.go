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

// newHuge returns a zeroed T outside the Go heap, aligned to a huge page
// and advised to be backed by huge pages, and the function that unmaps it.
// T must hold no Go pointers and be a multiple of hugePage in size. On
// error (no address space) it falls back to the Go heap and small pages.
//
// Counter and meter chunks live here: the fast path writes them at
// random, a line per packet per array, and on small pages every such
// write at a million sessions misses the TLB. A Go allocation of a chunk
// is not aligned to a huge page, so it could not be backed by one.
func newHuge[T any]() (*T, func()) {
	var zero T
	n := unsafe.Sizeof(zero)
	b, err := unix.Mmap(-1, 0, int(n+hugePage), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return new(T), func() {}
	}
	base := unsafe.Pointer(unsafe.SliceData(b))
	p := uintptr(base)
	off := (p+hugePage-1)&^(hugePage-1) - p
	mem := unsafe.Add(base, off)
	lo := uintptr(mem)
	// Keep the aligned part only.
	if off > 0 {
		_, _, _ = unix.Syscall(unix.SYS_MUNMAP, p, off, 0)
	}
	if end := p + n + hugePage; end > lo+n {
		_, _, _ = unix.Syscall(unix.SYS_MUNMAP, lo+n, end-(lo+n), 0)
	}
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, lo, n, unix.MADV_HUGEPAGE)
	return (*T)(mem), func() { _, _, _ = unix.Syscall(unix.SYS_MUNMAP, lo, n, 0) }
}
