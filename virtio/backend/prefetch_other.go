//go:build !amd64

package backend

func prefetchRead(addrs *uintptr, n int)  {}
func prefetchWrite(addrs *uintptr, n int) {}
