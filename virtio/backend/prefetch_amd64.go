package backend

// prefetchRead and prefetchWrite ask the processor to bring the cache
// lines at addrs[0:n] in, to be read or to be written (PREFETCHT0,
// PREFETCHW). They are hints: an address need not be mapped (a prefetch
// never faults), and nothing is read or written.
//
//go:noescape
func prefetchRead(addrs *uintptr, n int)

//go:noescape
func prefetchWrite(addrs *uintptr, n int)
