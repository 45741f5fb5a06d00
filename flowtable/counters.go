package flowtable

import (
	"sync/atomic"
	"time"
)

// Counter is a single-writer counter: one worker adds, any goroutine reads.
// Add is a plain load and store (no locked instruction), which is correct
// only because exactly one goroutine writes each Counter.
type Counter struct{ v atomic.Uint64 }

// Add adds n. Only the owning worker may call it.
func (c *Counter) Add(n uint64) { c.v.Store(c.v.Load() + n) }

// Load returns the current value; safe from any goroutine.
func (c *Counter) Load() uint64 { return c.v.Load() }

// PDRCount counts the packets and octets a PDR matched on one worker.
type PDRCount struct{ Packets, Bytes Counter }

// URRCount is a URR's measurement on one worker.
type URRCount struct {
	ULPackets, ULBytes, DLPackets, DLBytes Counter
	// First and Last are the times (Table clock, ns) of the first and the
	// latest packet counted; 0 when none.
	First, Last atomic.Int64
}

const (
	chunkBits = 12
	chunkSize = 1 << chunkBits
	maxChunks = 1 << 11 // 8 Mi slots of each kind
	// MaxDropReasons bounds the drop reason indices a worker may count.
	MaxDropReasons = 64
)

type pdrChunk [chunkSize]PDRCount
type urrChunk [chunkSize]URRCount

// WorkerCounters are one worker's counters. The worker is their only writer;
// Table and metrics readers sum them across workers. Chunks of slots are
// allocated by the Table writer before it publishes a rule that uses them,
// so the fast path never allocates.
type WorkerCounters struct {
	pdr [maxChunks]atomic.Pointer[pdrChunk]
	urr [maxChunks]atomic.Pointer[urrChunk]
	// Drops counts dropped packets by a reason index the dataplane defines.
	Drops [MaxDropReasons]Counter
}

// PDR returns the counter of a PDR slot. Owning worker only.
func (w *WorkerCounters) PDR(slot uint32) *PDRCount {
	return &w.pdr[slot>>chunkBits].Load()[slot&(chunkSize-1)]
}

// URR returns the counter of a URR slot. Owning worker only.
func (w *WorkerCounters) URR(slot uint32) *URRCount {
	return &w.urr[slot>>chunkBits].Load()[slot&(chunkSize-1)]
}

// CountURR adds one packet of n octets at time now to the URR slot.
func (w *WorkerCounters) CountURR(slot uint32, uplink bool, n uint64, now int64) {
	u := w.URR(slot)
	if uplink {
		u.ULPackets.Add(1)
		u.ULBytes.Add(n)
	} else {
		u.DLPackets.Add(1)
		u.DLBytes.Add(n)
	}
	if u.First.Load() == 0 {
		u.First.Store(now)
	}
	u.Last.Store(now)
}

// slotAlloc hands out counter slots. Freed slots are reused first in, first
// out, so a slot rests as long as possible before a new rule takes it and a
// worker still finishing a burst with the old rule adds to a slot nobody
// reads. Writer only.
type slotAlloc struct {
	next uint32
	free []uint32 // FIFO: take from the front
	head int
}

func (a *slotAlloc) get() uint32 {
	if a.head < len(a.free) && len(a.free)-a.head > 1024 {
		s := a.free[a.head]
		a.head++
		if a.head > len(a.free)/2 {
			a.free = append(a.free[:0], a.free[a.head:]...)
			a.head = 0
		}
		return s
	}
	s := a.next
	a.next++
	return s
}

func (a *slotAlloc) put(s uint32) { a.free = append(a.free, s) }

// Usage is a URR's measurement summed over workers since the URR was
// created.
type Usage struct {
	ULPackets, ULBytes, DLPackets, DLBytes uint64
	First, Last                            time.Duration // Table clock; 0 when no packet
}

// TotalBytes is uplink plus downlink octets.
func (u Usage) TotalBytes() uint64 { return u.ULBytes + u.DLBytes }
