package flowtable

import (
	"sync/atomic"
	"time"
)

// Counter is a single-writer counter: one worker adds, any goroutine reads.
//
// Add is a plain add to memory. An atomic store would be an XCHG on amd64, a
// locked instruction costing several nanoseconds, and a packet updates
// several counters. Exactly one goroutine writes each Counter, an aligned
// 8-octet store is never torn on the platforms Sluice runs on, and readers
// load atomically, so a reader sees some recent value. The race detector is
// told not to instrument the writer (go:norace); readers stay instrumented.
type Counter struct{ v uint64 }

// Add adds n. Only the owning worker may call it.
//
//go:norace
func (c *Counter) Add(n uint64) { c.v += n }

// Load returns the current value; safe from any goroutine.
func (c *Counter) Load() uint64 { return atomic.LoadUint64(&c.v) }

// reset zeroes the counter; only the Table writer calls it, on slots no
// worker uses.
func (c *Counter) reset() { atomic.StoreUint64(&c.v, 0) }

// Stamp is a single-writer time stamp with the same contract as Counter.
type Stamp struct{ v int64 }

// Set stores t. Only the owning worker may call it.
//
//go:norace
func (s *Stamp) Set(t int64) { s.v = t }

// Get returns the stamp; 0 when never set. Safe from any goroutine.
//
//go:norace
func (s *Stamp) get() int64 { return s.v }

// Load returns the stamp; safe from any goroutine.
func (s *Stamp) Load() int64 { return atomic.LoadInt64(&s.v) }

func (s *Stamp) reset() { atomic.StoreInt64(&s.v, 0) }

// PDRCount counts the packets and octets a PDR matched on one worker.
type PDRCount struct{ Packets, Bytes Counter }

// URRCount is a URR's measurement on one worker.
type URRCount struct {
	ULPackets, ULBytes, DLPackets, DLBytes Counter
	// First and Last are the times (Table clock, ns) of the first and the
	// latest packet counted; 0 when none.
	First, Last Stamp
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
	if u.First.get() == 0 {
		u.First.Set(now)
	}
	u.Last.Set(now)
}

// touch reads the counters a packet matching r will update, to bring them
// into the cache ahead of the update. Owning worker only.
//
//go:norace
func (w *WorkerCounters) touch(r *Rule) uint64 {
	v := w.PDR(r.PDRSlot).Packets.v
	for _, s := range r.URRSlots {
		v += w.URR(s).ULPackets.v
	}
	return v
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
