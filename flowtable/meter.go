package flowtable

import (
	"fmt"
	"sync/atomic"
)

// Meter is a token bucket enforcing a maximum bit rate, implemented as the
// generic cell rate algorithm: one atomic "theoretical arrival time" that
// every worker advances with a compare-and-swap, so a QER's MBR holds
// however its packets are spread over workers. Safe for concurrent use.
//
// A Table keeps its meters in a slab of its own (meterSlab), two to a
// cache line, so that a rule's meters share one line and the fast path
// reaches them by index instead of through heap pointers.
type Meter struct {
	tat       atomic.Int64 // ns on the Table clock
	psPerByte int64        // picoseconds of budget one octet costs
	tolerance int64        // ns of burst allowed ahead of the rate
	rateBPS   uint64
}

// burstWindow is how far ahead of the rate a flow may run: a bucket depth of
// 10 ms of traffic, but at least a few full-size packets so low rates still
// pass ordinary packets.
const (
	burstWindowNS = 10_000_000
	minBurstBytes = 3 * 1500
)

// NewMeter returns a meter for rate bits per second.
func NewMeter(rateBPS uint64) *Meter {
	m := &Meter{}
	m.init(rateBPS)
	return m
}

// init sets the meter to rate bits per second with a full bucket. Only
// the Table writer calls it, on meters no published rule uses.
func (m *Meter) init(rateBPS uint64) {
	m.tat.Store(0)
	m.rateBPS = rateBPS
	m.psPerByte = int64(8_000_000_000_000 / rateBPS)
	if m.psPerByte == 0 {
		m.psPerByte = 1
	}
	m.tolerance = burstWindowNS
	if minTol := minBurstBytes * m.psPerByte / 1000; minTol > m.tolerance {
		m.tolerance = minTol
	}
}

// Rate returns the meter's rate in bits per second.
func (m *Meter) Rate() uint64 { return m.rateBPS }

// Allow reports whether a packet of n octets at time now conforms, and if
// so charges it. A packet that does not conform is not charged.
func (m *Meter) Allow(now int64, n int) bool { return m.take(now, n, n) != 0 }

// take charges want octets at time now if they conform, else least
// octets if those do, and returns how many it charged: want, least or 0.
func (m *Meter) take(now int64, want, least int) int {
	// A bounded number of tries: contention needs another worker to win
	// each round, so the loop ends; on persistent contention nothing is
	// charged (the packet is dropped) rather than spinning.
	for range 8 {
		old := m.tat.Load()
		tat := max(old, now)
		g := want
		cost := int64(g) * m.psPerByte / 1000
		if tat+cost-now > m.tolerance {
			g = least
			if cost = int64(g) * m.psPerByte / 1000; tat+cost-now > m.tolerance {
				return 0
			}
		}
		if m.tat.CompareAndSwap(old, tat+cost) {
			return g
		}
	}
	return 0
}

// give takes back the charge of n octets that take charged and no packet
// used. Under persistent contention it gives up: the meter then stays
// charged, which errs on the side of the rate.
func (m *Meter) give(n int) {
	cost := int64(n) * m.psPerByte / 1000
	for range 8 {
		old := m.tat.Load()
		if m.tat.CompareAndSwap(old, old-cost) {
			return
		}
	}
}

// chunk is how many octets a worker charges ahead (Table.Police): an
// eighth of the burst tolerance at the meter's rate.
func (m *Meter) chunk() int { return int(m.tolerance * 125 / m.psPerByte) }

// Meter memory is lines of two meters; a meter slot is an index of a
// meter. Chunks of lines are allocated by the Table writer before it
// publishes a rule that uses them and are never freed, so a slot stays
// valid memory for as long as the Table lives.
const meterLine = 2

type meterChunk [chunkLines][meterLine]Meter

// meterSlab is a Table's meters. Writer allocates (meterAlloc); workers
// read chunks atomically.
type meterSlab struct {
	chunks [maxChunks]atomic.Pointer[meterChunk]
	n      int       // chunks allocated; writer only
	unmap  *unmapper // frees the chunks once the slab is unreachable
}

func newMeterSlab() *meterSlab {
	s := &meterSlab{}
	s.unmap = newUnmapper(s)
	return s
}

// at returns the meter of a slot.
func (s *meterSlab) at(slot uint32) *Meter {
	l := slot / meterLine
	return &s.chunks[l>>chunkLineBits].Load()[l&(chunkLines-1)][slot%meterLine]
}

// ensure allocates the chunks that hold lines lines. Writer only.
func (s *meterSlab) ensure(lines uint32) error {
	need := int(lines+chunkLines-1) >> chunkLineBits
	if need > maxChunks {
		return fmt.Errorf("allocate meters: %d lines exceed the limit of %d", lines, maxChunks*chunkLines)
	}
	for ; s.n < need; s.n++ {
		c, free := newHuge[meterChunk]()
		s.unmap.add(free)
		s.chunks[s.n].Store(c)
	}
	return nil
}

// meterAlloc hands out meter slots. Each rule's new meters start a line,
// so a rule with two meters finds both in one line. Freed lines are
// reused first in, first out, after quarantine others, like counter
// lines (cellAlloc). Writer only.
type meterAlloc struct {
	next       uint32 // lines handed out so far
	free       []uint32
	head       int
	live       []uint8 // live meters by line
	open, used uint32
	// fresh are the slots taken since the last begin, for rolling back a
	// compile that fails.
	fresh []uint32
}

// begin starts a rule's meters on a new line.
func (a *meterAlloc) begin() { a.used = meterLine }

func (a *meterAlloc) alloc() uint32 {
	if a.used == meterLine {
		if len(a.free)-a.head > quarantine {
			a.open = a.free[a.head]
			a.head++
			if a.head > len(a.free)/2 {
				a.free = append(a.free[:0], a.free[a.head:]...)
				a.head = 0
			}
		} else {
			a.open = a.next
			a.next++
			a.live = append(a.live, 0)
		}
		a.used = 0
	}
	s := a.open*meterLine + a.used
	a.used++
	a.live[a.open]++
	a.fresh = append(a.fresh, s)
	return s
}

func (a *meterAlloc) release(s uint32) {
	l := s / meterLine
	if a.live[l]--; a.live[l] == 0 {
		a.free = append(a.free, l)
	}
}
