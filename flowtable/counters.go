package flowtable

import (
	"fmt"
	"runtime"
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

// peek reads the counter from its owning worker, without synchronisation.
//
//go:norace
func (c *Counter) peek() uint64 { return c.v }

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

// PDRCount counts the packets and octets a PDR matched on one worker. It
// fills one 16-octet cell.
type PDRCount struct{ Packets, Bytes Counter }

// URRCount is a URR's measurement of one direction on one worker, two
// cells. A URR has one for each direction in which a rule of its session
// counts it; its usage is their sum.
type URRCount struct {
	Packets, Bytes Counter
	// First and Last are the times (Table clock, ns) of the first and the
	// latest packet counted; 0 when none.
	First, Last Stamp
}

// pdrCells is how many cells a PDR counter takes: the counter, and the
// credit after it.
const pdrCells = 2

// credit is one worker's advance on the meters of a rule: octets it has
// charged to them ahead of its packets and may still send without
// charging them again (Table.Police). It fills the cell after the rule's
// PDR counter (every PDR counter has one: pdrCells), in the line every
// packet of the rule updates anyway, so a packet sent on credit touches
// neither the meters' shared line nor an atomic. The Table writer zeroes
// it with the line (resetLines).
type credit struct {
	meter uint64 // the verdict's meter (slot plus one) the octets were charged to
	bytes uint64
}

// spend takes n octets of credit charged to meter, if there are that
// many. Owning worker only.
//
//go:norace
func (c *credit) spend(meter uint32, n int) bool {
	if c.meter != uint64(meter) || c.bytes < uint64(n) {
		return false
	}
	c.bytes -= uint64(n)
	return true
}

// charged reports whether the credit is for meter (it may be spent).
// Owning worker only.
//
//go:norace
func (c *credit) charged(meter uint32) bool { return c.meter == uint64(meter) }

// coverBytes is a packet of any common size: MatchBatch leaves the meters'
// line alone for a rule whose credit holds that much.
const coverBytes = 2048

// covers reports whether the credit is for meter and holds coverBytes.
// Owning worker only.
//
//go:norace
func (c *credit) covers(meter uint32) bool { return c.meter == uint64(meter) && c.bytes >= coverBytes }

// left returns the octets of credit charged to meter. Owning worker only.
//
//go:norace
func (c *credit) left(meter uint32) int {
	if c.meter != uint64(meter) {
		return 0
	}
	return int(c.bytes)
}

// set makes the credit n octets charged to meter. Owning worker only.
//
//go:norace
func (c *credit) set(meter uint32, n int) { c.meter, c.bytes = uint64(meter), uint64(n) }

// Counter memory is cells of 16 octets, four to a cache line. A slot is a
// cell index. The Table lays out each session's new counters so that a
// rule's PDR counter and the URR half it counts into share a line: a
// packet updates one line of counters.
const (
	lineCells     = 4
	chunkLineBits = 15 // 2 MiB of lines per chunk
	chunkLines    = 1 << chunkLineBits
	maxChunks     = 1 << 10 // 32 Mi lines
	// MaxDropReasons bounds the drop reason indices a worker may count.
	MaxDropReasons = 64
)

type counterLine [lineCells]PDRCount

// counterChunk is a chunk of counter lines and the worker's marks of the
// lines in it whose URR counters moved (one bit a line; see Activity).
type counterChunk struct {
	lines [chunkLines]counterLine
	moved [chunkLines / 64]uint64
}

// WorkerCounters are one worker's counters. The worker is their only writer;
// Table and metrics readers sum them across workers. Chunks of lines are
// allocated by the Table writer before it publishes a rule that uses them,
// so the fast path never allocates. The worker declares when it matches
// and counts (Enter, Exit) so that final usage misses none of its counts.
type WorkerCounters struct {
	chunks [maxChunks]atomic.Pointer[counterChunk]
	// Drops counts dropped packets by a reason index the dataplane defines.
	Drops [MaxDropReasons]Counter
	// span is odd while the worker is inside a span (Enter, Exit). Written
	// by the worker; Table writers wait on it (quiesce).
	span atomic.Uint64
	// unmap frees the chunks once the counters are unreachable.
	unmap *unmapper
	// chunkOf, when set, gives chunk i's memory instead of allocating it
	// (nil: allocate): the counter sets of the XDP fast path live in its
	// program's memory (fastpub.go). Table writer only.
	chunkOf func(i int) *counterChunk
}

// unmapper frees memory outside the Go heap once its owner is garbage
// (runtime.AddCleanup). Writer only until then.
type unmapper struct{ fns []func() }

func newUnmapper[T any](owner *T) *unmapper {
	u := &unmapper{}
	runtime.AddCleanup(owner, func(u *unmapper) {
		for _, f := range u.fns {
			f()
		}
	}, u)
	return u
}

func (u *unmapper) add(f func()) { u.fns = append(u.fns, f) }

// addChunk gives w chunk i. Counter chunks stay on small pages: on this
// kind of VM, lines written at random in huge pages measured slower than
// in small ones (see the flowtable commit that tried it), unlike the
// read-mostly bucket array.
func (w *WorkerCounters) addChunk(i int) {
	if w.chunkOf != nil {
		if c := w.chunkOf(i); c != nil {
			w.chunks[i].Store(c)
			return
		}
	}
	c, free := newHuge[counterChunk]()
	w.unmap.add(free)
	w.chunks[i].Store(c)
}

// prefault writes to every page of chunk i, so that a worker registered
// after sessions exist does not take the page faults of its counters on
// the fast path (the chunks of a worker registered first are written by
// the Table writer as it lays out sessions). Table writer only, before it
// publishes the worker.
func (w *WorkerCounters) prefault(i int) {
	c := w.chunks[i].Load()
	const pageLines = 4096 / 64
	for l := 0; l < chunkLines; l += pageLines {
		c.lines[l][0].Packets.v = 0
	}
}

func (w *WorkerCounters) line(l uint32) *counterLine {
	return &w.chunks[l>>chunkLineBits].Load().lines[l&(chunkLines-1)]
}

// mark notes that a URR counter in line l moved. The word is written only
// when the bit is clear, so a line counted again and again costs a load.
// The sweeping reader takes the marks with an atomic swap; a plain store
// racing with it can only bring back bits the reader already took (the
// URR is read once more for nothing), never lose one. Owning worker only.
//
//go:norace
func (w *WorkerCounters) mark(l uint32) {
	c := w.chunks[l>>chunkLineBits].Load()
	i, bit := (l&(chunkLines-1))>>6, uint64(1)<<(l&63)
	if c.moved[i]&bit == 0 {
		c.moved[i] |= bit
	}
}

// PDR returns the counter of a PDR slot. Owning worker only.
func (w *WorkerCounters) PDR(slot uint32) *PDRCount {
	return &w.line(slot / lineCells)[slot%lineCells]
}

// URR returns the counter of a URR slot (one direction of a URR). Owning
// worker only.
func (w *WorkerCounters) URR(slot uint32) *URRCount {
	return urrCount(w.PDR(slot))
}

// CountURR adds one packet of n octets at time now to the URR slot, which
// counts the direction uplink says (the slot's, as Rule.URRSlots gives it).
func (w *WorkerCounters) CountURR(slot uint32, uplink bool, n uint64, now int64) {
	w.URR(slot).count(n, now)
	w.mark(slot / lineCells)
}

// touch reads the counter line a packet matching r will update (and more
// when its URRs lie elsewhere), to bring it into the cache ahead of the
// update. Owning worker only.
//
//go:norace
func (w *WorkerCounters) touch(r *Rule) uint64 {
	v := w.PDR(r.PDRSlot).Packets.v
	if n := len(r.URRSlots); n > 1 || n == 1 && r.URRSlots[0]/lineCells != r.PDRSlot/lineCells {
		for _, s := range r.URRSlots {
			v += w.PDR(s).Packets.v
		}
	}
	return v
}

// CountPDR counts a packet of n octets under the PDR that v found. Owning
// worker only.
func (w *WorkerCounters) CountPDR(v *Verdict, n uint64) {
	p := v.pdr
	if p == nil {
		p = w.PDR(v.PDRSlot())
	}
	p.Packets.Add(1)
	p.Bytes.Add(n)
}

// CountURRs counts a forwarded packet of n octets at time now in each URR
// of the rule v found. Owning worker only.
func (w *WorkerCounters) CountURRs(v *Verdict, n uint64, now int64) {
	if v.rule != nil || v.pdr == nil {
		w.countURRs(v, n, now)
		return
	}
	if v.act&vURR != 0 {
		urrBefore(v.pdr).count(n, now)
		w.mark(v.PDRSlot() / lineCells)
	}
	if v.act&vURR2 != 0 {
		urrAfter(v.pdr).count(n, now)
		w.mark(v.PDRSlot()/lineCells + 1)
	}
}

// count adds one packet of n octets at time now.
func (u *URRCount) count(n uint64, now int64) {
	u.Packets.Add(1)
	u.Bytes.Add(n)
	if u.First.get() == 0 {
		u.First.Set(now)
	}
	u.Last.Set(now)
}

// countURRs is CountURRs for a verdict with a rule, or without MatchBatch's
// counter.
func (w *WorkerCounters) countURRs(v *Verdict, n uint64, now int64) {
	if r := v.rule; r != nil {
		for _, s := range r.URRSlots {
			w.CountURR(s, r.Uplink, n, now)
		}
		return
	}
	if v.act&vURR != 0 {
		w.CountURR(v.PDRSlot()-2, false, n, now)
	}
	if v.act&vURR2 != 0 {
		w.CountURR(v.PDRSlot()+2, false, n, now)
	}
}

// noSlot marks a URR direction without a counter.
const noSlot = ^uint32(0)

// cellAlloc hands out counter cells by the line. Freed lines are reused
// first in, first out, so a line rests as long as possible before a new
// session takes it and a worker still finishing a burst with an old rule
// adds to a line nobody reads. A line is freed when its last live cell
// is; its other cells are not handed out again before. Writer only.
//
// A rule that counts two URRs takes a pair of lines, an even one and the
// next: the first URR's half and the PDR counter in the first, the second
// URR's half at the start of the second. Freed pairs are reused as pairs.
type cellAlloc struct {
	next  uint32   // lines handed out so far
	free  []uint32 // FIFO of free lines: take from the front
	head  int
	pairs []uint32 // FIFO of free pairs, by their even line
	phead int
	live  []uint8  // live cells by line
	pair  []bool   // the line is one of a pair
	owner []uint64 // SEID of the session that took the line last
	seid  uint64   // the session being placed (begin)
	// open is the line being filled for the session being compiled and
	// used its cells taken; fresh lists the lines it opened.
	open, used uint32
	fresh      []uint32
}

// quarantine is how many freed lines wait before one is reused.
const quarantine = 1024

func (a *cellAlloc) newLine() uint32 {
	var l uint32
	if len(a.free)-a.head > quarantine {
		l = a.free[a.head]
		a.head++
		if a.head > len(a.free)/2 {
			a.free = append(a.free[:0], a.free[a.head:]...)
			a.head = 0
		}
	} else {
		l = a.next
		a.next++
		a.live = append(a.live, 0)
		a.pair = append(a.pair, false)
		a.owner = append(a.owner, 0)
	}
	a.owner[l] = a.seid
	a.fresh = append(a.fresh, l)
	a.open, a.used = l, 0
	return l
}

// newPair takes a pair of lines: an even line and the next.
func (a *cellAlloc) newPair() uint32 {
	var l uint32
	if len(a.pairs)-a.phead > quarantine/2 {
		l = a.pairs[a.phead]
		a.phead++
		if a.phead > len(a.pairs)/2 {
			a.pairs = append(a.pairs[:0], a.pairs[a.phead:]...)
			a.phead = 0
		}
	} else {
		if a.next%2 != 0 { // an odd line left over serves as a single
			a.live = append(a.live, 0)
			a.pair = append(a.pair, false)
			a.owner = append(a.owner, 0)
			a.free = append(a.free, a.next)
			a.next++
		}
		l = a.next
		a.next += 2
		a.live = append(a.live, 0, 0)
		a.pair = append(a.pair, true, true)
		a.owner = append(a.owner, 0, 0)
	}
	a.owner[l], a.owner[l+1] = a.seid, a.seid
	a.fresh = append(a.fresh, l, l+1)
	// What else the session places may go to the rest of the second line.
	a.open, a.used = l+1, 2
	return l
}

// placePair lays out a rule with two URR halves and its PDR counter in a
// new pair of lines.
func (a *cellAlloc) placePair(half0, half1, pdr *uint32) {
	l := a.newPair()
	c := l * lineCells
	*half0, *pdr, *half1 = c, c+2, c+lineCells
	a.live[l], a.live[l+1] = 2+pdrCells, 2
}

// begin starts placing the new counters of session seid: they never share
// a line with another session's.
func (a *cellAlloc) begin(seid uint64) {
	a.seid = seid
	a.fresh = a.fresh[:0]
	a.used = lineCells
}

// place takes cells for a URR half (when half is not nil) and a PDR
// counter with its credit (when pdr is not nil) in one line, the half on
// an even cell.
func (a *cellAlloc) place(half, pdr *uint32) {
	n := uint32(0)
	start := a.used
	if half != nil {
		n += 2
		start = (start + 1) &^ 1
	}
	if pdr != nil {
		n += pdrCells
	}
	if n == 0 {
		return
	}
	if start+n > lineCells {
		a.newLine()
		start = 0
	}
	c := a.open*lineCells + start
	if half != nil {
		*half = c
		c += 2
	}
	if pdr != nil {
		*pdr = c
	}
	a.live[a.open] += uint8(n)
	a.used = start + n
}

// release frees n cells from cell c on.
func (a *cellAlloc) release(c uint32, n uint8) {
	l := c / lineCells
	if a.live[l] -= n; a.live[l] == 0 {
		a.freeLine(l)
	}
}

// freeLine queues a line whose cells are all free: a single on its own,
// a pair once both its lines are free.
func (a *cellAlloc) freeLine(l uint32) {
	switch {
	case !a.pair[l]:
		a.free = append(a.free, l)
	case a.live[l^1] == 0:
		a.pairs = append(a.pairs, l&^1)
	}
}

// rollback frees the lines taken since begin, for a compile that failed.
func (a *cellAlloc) rollback() {
	for _, l := range a.fresh {
		a.live[l] = 0
	}
	for _, l := range a.fresh {
		if !a.pair[l] {
			a.free = append(a.free, l)
		} else if l%2 == 0 {
			a.pairs = append(a.pairs, l)
		}
	}
	a.fresh = a.fresh[:0]
}

// ensureChunks makes sure every worker has the chunks that hold the lines
// handed out so far. Caller holds t.mu.
func (t *Table) ensureChunks() error {
	need := int(t.cells.next+chunkLines-1) >> chunkLineBits
	if need > maxChunks {
		return fmt.Errorf("allocate counters: %d lines exceed the limit of %d", t.cells.next, maxChunks*chunkLines)
	}
	for ; t.chunks < need; t.chunks++ {
		for _, w := range t.workers {
			w.addChunk(t.chunks)
		}
		t.snooze[t.chunks].Store(new(snoozeChunk))
	}
	return nil
}

// resetLines zeroes the given lines in every worker. A line is reused only
// after many others were freed (cellAlloc), so no worker still counts into
// it for the rule that had it before.
func (t *Table) resetLines(lines []uint32) {
	for _, l := range lines {
		t.snoozeOf(l).Store(0)
	}
	for _, w := range t.workers {
		for _, l := range lines {
			c := w.line(l)
			for i := range c {
				c[i].Packets.reset()
				c[i].Bytes.reset()
			}
		}
	}
}

// Usage is a URR's measurement summed over workers since the URR was
// created.
type Usage struct {
	ULPackets, ULBytes, DLPackets, DLBytes uint64
	First, Last                            time.Duration // Table clock; 0 when no packet
}

// TotalBytes is uplink plus downlink octets.
func (u Usage) TotalBytes() uint64 { return u.ULBytes + u.DLBytes }
