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

// Lines names each cache line a range touches once, from the range's
// first octet, and stops when its list is full.
func TestLines(t *testing.T) {
	buf := make([]byte, 512)
	base := uintptr(unsafe.Pointer(&buf[0]))
	off := int((64 - base&63) & 63) // buf[off] starts a line
	var as [8]uintptr
	for _, c := range []struct {
		from, n, room int
		want          []int // offsets in buf of the lines named
	}{
		{off, 128, 8, []int{off, off + 64}},
		{off + 10, 128, 8, []int{off + 10, off + 64, off + 128}},
		{off + 63, 2, 8, []int{off + 63, off + 64}},
		{off + 5, 1, 8, []int{off + 5}},
		{off, 0, 8, nil},
		{off, 256, 3, []int{off, off + 64, off + 128}},
	} {
		k := Lines(as[:c.room], buf[c.from:], c.n)
		got := make([]int, k)
		for i := range got {
			got[i] = int(as[i] - base)
		}
		if len(got) != len(c.want) {
			t.Errorf("Lines(buf[%d:], %d) with room for %d named %v; want %v", c.from, c.n, c.room, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("Lines(buf[%d:], %d) with room for %d named %v; want %v", c.from, c.n, c.room, got, c.want)
				break
			}
		}
	}
}
