package afxdp

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// ringMem stands in for a ring's shared memory: the index and flags words
// and the entries. Both sides of a test ring are ring values over it, as
// Sluice and the kernel are over an mmapped ring.
type ringMem[T any] struct {
	producer, consumer, flags uint32
	entries                   []T
}

func newRingMem[T any](size int, start uint32) *ringMem[T] {
	return &ringMem[T]{producer: start, consumer: start, entries: make([]T, size)}
}

func (m *ringMem[T]) prodSide() ring[T] {
	return newProdRing(&m.producer, &m.consumer, &m.flags, m.entries)
}

func (m *ringMem[T]) consSide() ring[T] {
	return newConsRing(&m.producer, &m.consumer, &m.flags, m.entries)
}

// TestRingFIFO moves values through a ring in bursts of random sizes,
// across the wrap of the entry array and of the 32-bit indices, and checks
// that they come out in order and that neither side sees more room or more
// entries than there are.
func TestRingFIFO(t *testing.T) {
	for _, start := range []uint32{0, 1<<32 - 100} {
		mem := newRingMem[uint64](16, start)
		p, c := mem.prodSide(), mem.consSide()
		rnd := rand.New(rand.NewPCG(1, 2))
		var next, want uint64
		for range 10000 {
			inFlight := uint32(next - want)
			n := p.free(uint32(rnd.IntN(20)))
			if n > 16-inFlight {
				t.Fatalf("producer sees %d free with %d of 16 in flight", n, inFlight)
			}
			for i := range n {
				*p.prodEntry(i) = next
				next++
			}
			p.submit(n)

			inFlight = uint32(next - want)
			m := c.available(uint32(rnd.IntN(20)))
			if m > inFlight {
				t.Fatalf("consumer sees %d entries with %d in flight", m, inFlight)
			}
			for i := range m {
				if got := *c.consEntry(i); got != want {
					t.Fatalf("consumed %d, want %d", got, want)
				}
				want++
			}
			c.release(m)
		}
		if want < 10000 {
			t.Errorf("only %d values went through the ring", want)
		}
	}
}

// TestRingVisibility checks that entries become visible to the consumer
// only when submitted, and room to the producer only when released.
func TestRingVisibility(t *testing.T) {
	mem := newRingMem[uint64](4, 0)
	p, c := mem.prodSide(), mem.consSide()
	if n := p.free(8); n != 4 {
		t.Fatalf("empty ring of 4: producer sees %d free, want 4", n)
	}
	*p.prodEntry(0) = 7
	*p.prodEntry(1) = 8
	if n := c.available(4); n != 0 {
		t.Fatalf("before submit the consumer sees %d entries, want 0", n)
	}
	p.submit(2)
	if n := c.available(4); n != 2 {
		t.Fatalf("after submitting 2 the consumer sees %d entries", n)
	}
	if n := p.free(4); n != 2 {
		t.Fatalf("with 2 unreleased entries the producer sees %d free, want 2", n)
	}
	c.release(1)
	if n := p.free(4); n != 3 {
		t.Fatalf("after releasing 1 the producer sees %d free, want 3", n)
	}
	if mem.producer != 2 || mem.consumer != 1 {
		t.Errorf("shared indices are producer %d consumer %d, want 2 and 1", mem.producer, mem.consumer)
	}
	mem.flags = ringNeedWakeup
	if !p.needWakeup() || !c.needWakeup() {
		t.Error("need-wakeup flag set but not seen")
	}
}

// TestRingConcurrent runs a producer and a consumer goroutine over one
// ring, as Sluice and the kernel do. Under the race detector it checks
// that entries are published and reclaimed with the index accesses
// ordering them.
func TestRingConcurrent(t *testing.T) {
	const total = 200000
	mem := newRingMem[desc](64, 1<<32-1000)
	p, c := mem.prodSide(), mem.consSide()
	deadline := time.Now().Add(20 * time.Second)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for next := uint64(0); next < total && time.Now().Before(deadline); {
			n := p.free(uint32(min(32, total-next)))
			if n == 0 {
				runtime.Gosched()
			}
			for i := range n {
				*p.prodEntry(i) = desc{addr: next, len: uint32(next)}
				next++
			}
			p.submit(n)
		}
	}()
	var want uint64
	for want < total && time.Now().Before(deadline) {
		n := c.available(32)
		if n == 0 {
			runtime.Gosched()
		}
		for i := range n {
			d := *c.consEntry(i)
			if d.addr != want || d.len != uint32(want) {
				t.Fatalf("consumed %+v, want addr and len %d", d, want)
			}
			want++
		}
		c.release(n)
	}
	wg.Wait()
	if want != total {
		t.Fatalf("consumed %d of %d entries before the deadline", want, total)
	}
}

func TestRingSizeMustBePowerOfTwo(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a ring of 6 entries was accepted")
		}
	}()
	var w uint32
	newProdRing(&w, &w, &w, make([]uint64, 6))
}
