// Package prefetch asks the CPU to start loading cache lines the fast
// path will read soon, without waiting for them.
//
// A burst's lookups read a line per packet from arrays far larger than
// the caches (bucket, counter and meter lines), and a vhost-user port
// reads rings another core wrote. A plain load of each such line, issued
// only to warm it, occupies the CPU's reorder buffer until its data
// arrives, so a loop of them keeps only a score of misses in flight and
// then stalls; and in a VM each of those misses may also walk two levels
// of page tables. A prefetch retires at once: a burst's 64 lines are all
// requested before the first one is needed, and the work that follows
// overlaps their arrival.
//
// On architectures without an assembly version the functions do
// nothing; prefetching is a hint and never changes a result.
package prefetch

import "unsafe"

// Lines puts into as the address of each cache line that b's first n
// octets touch, as many as as holds, and returns how many it put.
func Lines(as []uintptr, b []byte, n int) int {
	if n <= 0 {
		return 0
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	k := 0
	for end := a + uintptr(n); a < end && k < len(as); a = a&^63 + 64 {
		as[k] = a
		k++
	}
	return k
}
