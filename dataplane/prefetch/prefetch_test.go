package prefetch

import (
	"testing"
	"unsafe"
)

// The fast path prefetches addresses it does not check (bucket indices,
// counter and meter slots, ring entries a peer named): a prefetch must
// never fault, read or write, even where nothing is mapped, and must not
// allocate.
func TestPrefetchNeverFaults(t *testing.T) {
	buf := make([]byte, 4096)
	before := append([]byte(nil), buf...)
	addrs := []uintptr{
		0, 64, // the zero page: never mapped
		uintptr(unsafe.Pointer(&buf[0])),
		uintptr(unsafe.Pointer(&buf[0])) - 64, // in front of the slice
		1 << 46,                               // above anything mapped here
		^uintptr(0) &^ 63,                     // the top of the address space
	}
	idx := []uint32{0, 1, 63, 1 << 20, ^uint32(0)}
	allocs := testing.AllocsPerRun(100, func() {
		Read(addrs)
		Write(addrs)
		Indexed(unsafe.Pointer(&buf[0]), 6, idx)
		Read(nil)
		Write(addrs[:0])
		Indexed(nil, 0, nil)
	})
	if allocs != 0 {
		t.Errorf("prefetching allocated %.1f times", allocs)
	}
	for i := range buf {
		if buf[i] != before[i] {
			t.Fatalf("prefetching changed octet %d", i)
		}
	}
}

func BenchmarkRead64(b *testing.B) {
	buf := make([]byte, 64*64)
	var addrs [64]uintptr
	for i := range addrs {
		addrs[i] = uintptr(unsafe.Pointer(&buf[i*64]))
	}
	b.ReportAllocs()
	for b.Loop() {
		Read(addrs[:])
	}
}
